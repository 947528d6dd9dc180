"""A failed edit leaves the model exactly as it was: classes, attributes (none added), tensors,
manifest entries, and what the next save / load makes of it."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import NetsculptError, VerificationError
from netsculpt.graph import build_graph
from netsculpt.surgery import slicing
from netsculpt.surgery.slicing import remove_channels
from tinymodels import Transformer  # tests/ is on sys.path (its conftest.py)

TABLES = ("_parameters", "_buffers", "_modules")


def _plain(value):
    if isinstance(value, torch.Tensor):
        return ("tensor", tuple(value.shape), value.dtype)
    if isinstance(value, dict):  # hook tables and the like: compare what they hold
        return (type(value).__name__, sorted(map(str, value)))
    return value


def model_state(model: nn.Module) -> dict:
    """repr, every module's class and non-table ``__dict__``, and the state dict."""
    return {
        "repr": repr(model),
        "vars": {
            name: (type(m), {k: _plain(v) for k, v in vars(m).items() if k not in TABLES})
            for name, m in model.named_modules()
        },
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def assert_same(before: dict, after: dict) -> None:
    assert after["repr"] == before["repr"]
    assert after["vars"] == before["vars"]
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), k


def _mha_heads(graph) -> int:
    return next(
        g.id
        for g in graph.groups
        if g.kind == "head" and any(m.module == "mha" for m in g.members) and g.prunable
    )


def test_failed_head_removal_on_multihead_attention_is_undone_exactly(tmp_path):
    torch.manual_seed(0)
    model, x = Transformer().eval(), torch.randint(0, 50, (2, 8))
    graph = build_graph(model, x)
    gid = _mha_heads(graph)
    before = model_state(model)
    with pytest.raises(VerificationError, match="restored"):
        # the check fails after the surgery swapped the class and recorded it in the manifest
        remove_channels(model, graph, {gid: [0]}, x, check=lambda a, b: "forced failure")
    assert_same(before, model_state(model))
    assert type(model.mha) is nn.MultiheadAttention
    assert "inner_dim" not in vars(model.mha) and "_netsculpt_edits" not in vars(model)
    ns.save(model, tmp_path / "m")
    loaded = ns.load(tmp_path / "m", Transformer().eval())
    assert type(loaded.mha) is nn.MultiheadAttention
    torch.testing.assert_close(loaded(x), model(x))


def test_forced_verify_failure_in_prune_leaves_the_model_untouched(monkeypatch, tmp_path):
    torch.manual_seed(0)
    model, x = Transformer().eval(), torch.randint(0, 50, (2, 8))
    before = model_state(model)
    out = model(x)

    def broken(*args, **kwargs):
        raise VerificationError("forced failure of the verify step")

    monkeypatch.setattr(slicing, "verify", broken)
    with contextlib.suppress(NetsculptError):  # refused, or nothing removed: both are fine
        ns.prune(model, x, amount=0.5)
    monkeypatch.undo()
    assert_same(before, model_state(model))
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)
    ns.save(model, tmp_path / "m")
    assert type(ns.load(tmp_path / "m", Transformer()).mha) is nn.MultiheadAttention


def test_a_successful_edit_still_records_and_undo_forgets_it():
    torch.manual_seed(0)
    model, x = Transformer().eval(), torch.randint(0, 50, (2, 8))
    graph = build_graph(model, x)
    before = model_state(model)
    edit = remove_channels(model, graph, {_mha_heads(graph): [0]}, x)
    assert type(model.mha).__name__ == "PrunedMultiheadAttention"
    assert [e["path"] for e in model._netsculpt_edits] == ["mha"]
    edit.undo()
    assert_same(before, model_state(model))
