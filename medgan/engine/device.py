"""Moved to :mod:`medgan.utils.device` (inference uses it without the training engine); kept for old imports."""
from medgan.utils.device import resolve_device

__all__ = ["resolve_device"]
