from .base import CanonicalSpace

__all__ = ["CanonicalSpace"]
