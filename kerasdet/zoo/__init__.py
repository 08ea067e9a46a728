"""The model zoo: `list()`, `card(name)`, `load(name, weights="default", num_classes=None)`."""

from kerasdet.zoo.registry import build, card, list, load  # noqa: A004
from kerasdet.zoo.weights import sha256_of

__all__ = ["build", "card", "list", "load", "sha256_of"]
