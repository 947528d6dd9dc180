"""Small helpers (defined in :mod:`netsculpt.core.utils`; this module keeps the import path
``netsculpt.utils``)."""

from netsculpt.core.utils import (  # noqa: F401
    eval_mode,
    masks_suspended,
    normalize_inputs,
    qualified_name,
    unique_state_dict,
)
