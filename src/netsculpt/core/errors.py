"""Errors netsculpt raises on purpose (the core layer's home for them)."""

from netsculpt.errors import (
    CaptureError,
    InputError,
    NetsculptError,
    UnsupportedOpError,
    VerificationError,
)

__all__ = [
    "CaptureError",
    "InputError",
    "NetsculptError",
    "UnsupportedOpError",
    "VerificationError",
]
