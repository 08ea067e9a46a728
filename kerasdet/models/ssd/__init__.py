from kerasdet.models.ssd.ssd import SSD

__all__ = ["SSD"]
