"""Errors netsculpt raises on purpose (defined in :mod:`netsculpt.core.errors`; this module
keeps the public import path ``netsculpt.errors``)."""

from netsculpt.core.errors import (
    CaptureError,
    InputError,
    ManifestError,
    NetsculptError,
    UnsafeFileError,
    UnsupportedOpError,
    VerificationError,
)

__all__ = [
    "CaptureError",
    "InputError",
    "ManifestError",
    "NetsculptError",
    "UnsafeFileError",
    "UnsupportedOpError",
    "VerificationError",
]
