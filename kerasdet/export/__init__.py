"""Exports for serving: `saved_model(model, path)` (TF Serving signatures with NMS inside)."""

from kerasdet.export.saved_model import saved_model

__all__ = ["saved_model"]
