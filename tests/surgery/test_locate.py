"""A width hard-coded in forward is reported with the module and the source line."""

from __future__ import annotations

import inspect

import torch
from torch import nn

import netsculpt as ns


class HardCoded(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv, self.o = nn.Linear(8, 24), nn.Linear(8, 8)

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        mixed = (q * k).softmax(-1) * v
        return self.o(mixed.reshape(b * t, 8).reshape(b, t, 8))  # width 8 written in the code


def test_note_names_the_line_that_fixes_the_width():
    model, x = HardCoded().eval(), torch.randn(2, 3, 8)
    rep = ns.prune(model, x, amount=0.5)
    (why,) = rep.details["skipped"].values()
    line = next(
        i for i, src in enumerate(inspect.getsource(HardCoded).splitlines()) if "width 8" in src
    )
    lineno = inspect.getsourcelines(HardCoded)[1] + line
    assert f"test_locate.py:{lineno}" in why and "reshape" in why
    assert any(f"test_locate.py:{lineno}" in n for n in rep.notes)
