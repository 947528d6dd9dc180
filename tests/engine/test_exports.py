"""How often a verb exports the model: the Session exports once, and again only after an edit
that changes what the next step reads.

Before the engine (commit a92cc1e) the same calls exported: prune 1, cut count=3 4 (one
capture, a re-capture before each removal after the first, one for the after-MACs). A
one-shot cut now plans every removal on one capture (deepest first, so the earlier names stay
valid) and predicts the after-MACs from it.
"""

from __future__ import annotations

import pytest
import torch

import netsculpt as ns

torchvision = pytest.importorskip("torchvision")


@pytest.fixture
def exports(monkeypatch) -> list:
    calls: list = []
    real = torch.export.export

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", counting)
    return calls


def _resnet50() -> torch.nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None).eval()


X = torch.randn(1, 3, 64, 64)


def test_prune_exports_once(exports):
    ns.prune(_resnet50(), X, amount=0.3)
    assert len(exports) <= 1  # before: 1


def test_one_shot_cut_exports_once(exports):
    from netsculpt.measure import count_macs

    g = torch.Generator().manual_seed(0)
    data = [torch.randn(2, 3, 32, 32, generator=g) for _ in range(2)]  # small: scoring is cheap
    model = _resnet50()
    rep = ns.cut(model, X, count=3, data=data)
    assert len(rep.details["removed"]) == 3
    assert len(exports) <= 1  # before: 4 (k + 1)
    assert rep.details["exports"] == len(exports)
    assert rep.after.macs == count_macs(model, X)  # the predicted MACs are the real ones
