"""Widths that modules (timm's above all) derive from other attributes and keep in a plain one.

timm's ``Attention`` computes ``attn_dim = num_heads * head_dim`` once in ``__init__`` and
reshapes with it in ``forward``; once heads are removed, it must follow ``num_heads``. The
derived attribute is listed in the module's ``_netsculpt_attrs`` so that the structure manifest
records it and ``ns.load`` sets it back on a fresh instance.
"""

from __future__ import annotations

from torch import nn

# attribute -> the attributes whose product it is
DERIVED = {"attn_dim": ("num_heads", "head_dim")}


def _product(values: dict, names: tuple[str, ...]) -> int | None:
    out = 1
    for n in names:
        v = values.get(n)
        if type(v) is not int:
            return None
        out *= v
    return out


def fix_derived_widths(modules: dict[str, nn.Module], snap) -> None:
    """Recompute every derived width of a module whose sources this edit changed, when it was
    their product before the edit (read from the snapshot)."""
    for mod in modules.values():
        saved = snap._attrs.get(id(mod))
        if saved is None:
            continue
        before = saved[2]
        for attr, sources in DERIVED.items():
            if type(before.get(attr)) is not int or _product(before, sources) != before[attr]:
                continue
            now = _product(vars(mod), sources)
            if now is not None and now != mod.__dict__.get(attr):
                mod.__dict__[attr] = now
                extra = tuple(getattr(mod, "_netsculpt_attrs", ()))
                if attr not in extra:
                    mod.__dict__["_netsculpt_attrs"] = extra + (attr,)
