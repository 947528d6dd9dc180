"""Wanda and SparseGPT in ``ns.prune``: the OBS solver, the masks, layer-by-layer order,
replay of a saved plan and the refusals."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.calibration.stats import input_stats
from netsculpt.errors import InputError
from netsculpt.surgery.sparsegpt import obs_prune


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8)).eval()


def _data(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(16, 16, generator=g) for _ in range(n)]


def _problem(rows=6, cols=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(rows, cols, generator=g)
    x = torch.randn(200, cols, generator=g) @ torch.randn(cols, cols, generator=g)  # correlated
    return w, x, 2 * x.t() @ x / 200


def test_obs_nm_pattern_and_lazy_blocks_equal_column_by_column():
    w, x, h = _problem()
    new, keep = obs_prune(w, h, pattern=(2, 4), blocksize=4)
    assert (keep.view(6, 4, 4).sum(-1) == 2).all()  # exactly 2 of every 4 inputs kept
    assert (new[~keep] == 0).all()
    # the lazy batch update (blocks of 4) is the column-by-column OBS update (one block)
    same, keep_same = obs_prune(w, h, pattern=(2, 4), blocksize=16)
    assert torch.equal(keep, keep_same)
    torch.testing.assert_close(new, same, rtol=1e-4, atol=1e-5)


def test_obs_reconstruction_beats_the_same_mask_without_it():
    w, x, h = _problem()
    new, keep = obs_prune(w, h, sparsity=0.5)
    assert int((~keep).sum()) == 48  # exactly half of every 16-column block
    err_obs = (x @ new.t() - x @ w.t()).square().sum()
    err_mask = (x @ (w * keep).t() - x @ w.t()).square().sum()
    assert err_obs < 0.7 * err_mask
    assert not torch.equal(new[keep], w[keep])  # the kept weights changed


def test_wanda_masks_each_row_by_weight_times_input_norm():
    m, data = _mlp(), _data()
    ref = copy.deepcopy(m)
    ns.prune(m, data[0][:2], data=data, importance="wanda", sparsity=0.5, remove_dead=False)
    stats = input_stats({"0": ref[0]}, lambda: [ref(x) for x in data])
    score = ref[0].weight.abs() * stats["0"].norm()
    keep = m[0].weight != 0
    assert (keep.sum(1) == 8).all()  # half of every output row
    for r in range(32):
        assert set(score[r].topk(8).indices.tolist()) == set(keep[r].nonzero().flatten().tolist())
    assert torch.equal(m[0].weight[keep], ref[0].weight[keep])  # Wanda keeps weights as they are


def test_sparsegpt_is_sequential_layer_by_layer():
    """Layer 2's Hessian is measured on the outputs of the pruned layer 0."""
    m, data = _mlp(), _data()
    rep = ns.prune(m, data[0][:2], data=data, importance="sparsegpt", pattern="2:4",
                   remove_dead=False)  # fmt: skip
    assert [a.kind for a in rep.plan.actions] == ["obs_prune", "obs_prune"]
    assert [a.args["step"] for a in rep.plan.actions] == [0, 1]
    pruned0 = copy.deepcopy(m)
    ref = _mlp()
    stats = input_stats({"2": pruned0[2]}, lambda: [pruned0(x) for x in data], hessian=True)
    w2, _ = obs_prune(ref[2].weight, stats["2"].hessian, pattern=(2, 4))
    torch.testing.assert_close(m[2].weight, w2)
    assert rep.details["sparsity"] == pytest.approx(0.5)


def test_sparsegpt_beats_magnitude_on_a_tiny_llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   intermediate_size=128, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    dense = transformers.LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(0, 128, (4, 16), generator=g)} for _ in range(4)]
    with torch.no_grad():
        ref = [dense(**b).logits for b in data]
    errs = {}
    for imp in ("magnitude", "sparsegpt"):
        m = copy.deepcopy(dense)
        rep = ns.prune(m, data[0], data=data, importance=imp, sparsity=0.5, ignore=["lm_head"],
                       remove_dead=False)  # fmt: skip
        with torch.no_grad():
            errs[imp] = sum(float((m(**b).logits - r).square().mean()) for b, r in zip(data, ref))
        if imp == "sparsegpt":
            assert sorted({a.args["step"] for a in rep.plan.actions}) == [0, 1]
            assert m.model.layers[1].mlp.down_proj.weight.eq(0).float().mean() == 0.5
            assert m.lm_head.weight.ne(0).all()
    assert errs["sparsegpt"] < 0.7 * errs["magnitude"]


@pytest.mark.parametrize("importance", ["wanda", "sparsegpt"])
def test_a_saved_plan_replays_to_the_same_weights(importance, tmp_path):
    m, data = _mlp(), _data()
    rep = ns.prune(m, data[0][:2], data=data, importance=importance, sparsity=0.5,
                   remove_dead=False)  # fmt: skip
    path = tmp_path / "plan.json"
    rep.plan.to_json(path)
    assert "_hessian" not in path.read_text() and "_mask" not in path.read_text()
    assert json.loads(path.read_text())["actions"][1]["step"] == 1
    fresh = _mlp()
    ns.apply(fresh, data[0][:2], path, data=data)
    for a, b in zip(fresh.parameters(), m.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(InputError, match="calibration data"):
        ns.apply(_mlp(), data[0][:2], path)


def test_refusals_are_one_line():
    m, data = _mlp(), _data()
    with pytest.raises(InputError, match="needs calibration data"):
        ns.prune(m, data[0][:2], importance="sparsegpt", sparsity=0.5)
    with pytest.raises(InputError, match="threshold= and global_"):
        ns.prune(m, data[0][:2], data=data, importance="wanda", threshold=0.1)
    with pytest.raises(InputError, match="threshold= and global_"):
        ns.prune(m, data[0][:2], data=data, importance="sparsegpt", sparsity=0.5, global_=True)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(InputError, match="no Linear weights"):
        ns.prune(conv, torch.ones(1, 3, 8, 8), data=[torch.ones(2, 3, 8, 8)],
                 importance="wanda", sparsity=0.5)  # fmt: skip
    with pytest.raises(InputError, match="not a multiple of M"):
        ns.prune(nn.Sequential(nn.Linear(6, 4)), torch.ones(1, 6), data=[torch.ones(2, 6)],
                 importance="wanda", pattern="2:4")  # fmt: skip
    assert [p.eq(0).sum() for p in m.parameters()] == [0, 0, 0, 0]  # refused: model unchanged
