"""merge exports the model once, and again only after a fold pass that edited it."""

import pytest
import torch

import netsculpt as ns

# measured before merge ran on the engine (a92cc1e): a capture per snapshot and per fold pass
EXPORTS_BEFORE = 4


@pytest.fixture
def count_exports(monkeypatch):
    calls = []
    export = torch.export.export

    def counting(*args, **kwargs):
        calls.append(1)
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.export, "export", counting)
    return calls


def test_merge_on_resnet50_exports_once_per_editing_pass(count_exports):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    report = ns.merge(model, torch.randn(1, 3, 64, 64))
    assert len(report.details["folds"]["folds"]) == 53  # every BatchNorm
    # one capture to plan the BatchNorm folds, one after them (the other passes find nothing
    # there, and the after-snapshot reads it too)
    assert len(count_exports) <= 2 < EXPORTS_BEFORE
    assert report.details["exports"] == len(count_exports)
