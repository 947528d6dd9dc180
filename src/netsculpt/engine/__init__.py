"""The engine: one Session per verb call, backends that apply Plans, the op registry, and the
verbs made from it."""

from netsculpt.engine.session import Session

__all__ = ["Session"]
