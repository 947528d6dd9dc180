"""Errors netsculpt raises on purpose. Each message says what went wrong and where, in one line."""

from __future__ import annotations


class NetsculptError(ValueError):
    """Base class: the CLI prints the message on one line and exits with status 2."""


class InputError(NetsculptError):
    """Bad user input: a file, a model, an example input, an option value."""


class CaptureError(NetsculptError):
    """torch.export could not capture the model on the example inputs."""


class UnsupportedOpError(NetsculptError):
    """An ATen op in the graph has no channel rule; names the op, the module and the remedy."""


class VerificationError(NetsculptError):
    """An edit broke the model (wrong output shape / values); the model was restored."""


class UnsafeFileError(InputError):
    """A file netsculpt will not read because reading it could run code (a pickle with
    globals, compiled code in a ``.pt2``) or because it lies outside the folder it belongs to."""


class ManifestError(InputError):
    """A ``manifest.json`` that does not match the schema or names things that do not exist."""
