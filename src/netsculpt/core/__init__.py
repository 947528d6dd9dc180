"""The bottom layer: errors, small utilities, and the public data every layer passes on
(:class:`~netsculpt.core.plan.Plan`). Imports nothing else of netsculpt."""

from netsculpt.core.errors import (
    CaptureError,
    InputError,
    NetsculptError,
    UnsupportedOpError,
    VerificationError,
)
from netsculpt.core.plan import Action, Plan

__all__ = [
    "Action",
    "CaptureError",
    "InputError",
    "NetsculptError",
    "Plan",
    "UnsupportedOpError",
    "VerificationError",
]
