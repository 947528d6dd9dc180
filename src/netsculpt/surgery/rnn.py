"""Recurrent modules after their hidden units were sliced: sizes from the weights, flat weights.

``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` read ``hidden_size``, ``input_size`` and ``proj_size`` in
``forward`` (initial states, checks) and run from ``_flat_weights``, a list of the parameters
built at construction: after surgery replaced the parameters, it must be rebuilt
(``_init_flat_weights`` also calls ``flatten_parameters()``). The sizes are plain attributes,
listed in ``_netsculpt_attrs`` so that the structure manifest carries them.

>>> from torch import nn
>>> lstm = nn.LSTM(4, 6)
>>> sizes(lstm)
{'input_size': 4, 'hidden_size': 6, 'proj_size': 0}
"""

from __future__ import annotations

from torch import nn

RECURRENT = (nn.RNNBase, nn.RNNCellBase)
ATTRS = ("input_size", "hidden_size", "proj_size")


def sizes(mod: nn.Module) -> dict[str, int]:
    """The sizes the module's weights have now."""
    if isinstance(mod, nn.RNNCellBase):
        return {"input_size": mod.weight_ih.shape[1], "hidden_size": mod.weight_hh.shape[1]}
    out = {"input_size": int(mod.weight_ih_l0.shape[1])}
    if getattr(mod, "proj_size", 0):
        out["hidden_size"] = int(mod.weight_hr_l0.shape[1])
        out["proj_size"] = int(mod.weight_hr_l0.shape[0])
    else:
        out["hidden_size"] = int(mod.weight_hh_l0.shape[1])
        out["proj_size"] = 0
    return out


def refresh(mod: nn.Module) -> None:
    """Point ``_flat_weights`` at the module's current parameters (after any replacement)."""
    if isinstance(mod, nn.RNNBase):
        mod._init_flat_weights()


def fix_recurrent(mod: nn.Module, set_attrs) -> None:
    """Set the sizes from the weights (through ``set_attrs``, which snapshots) and refresh."""
    set_attrs(mod, **sizes(mod))
    names = tuple(getattr(mod, "_netsculpt_attrs", ()))
    extra = tuple(a for a in ATTRS if hasattr(mod, a) and a not in names)
    if extra:
        mod.__dict__["_netsculpt_attrs"] = names + extra
    refresh(mod)
