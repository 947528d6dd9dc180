"""The contract's clauses for the verbs that are not one model + one plan: merge_models (several
models in, a new one out), heal (weights change, structure stays), and the Hugging Face and
shard-by-shard entry points. Each row: the result runs with the same output shape, the report's
numbers match a fresh count, refused input leaves everything unchanged, save → load round-trips.
"""

import copy

import pytest
import torch
from torch import nn

import netsculpt as ns
from netsculpt.errors import InputError
from netsculpt.measure import count_params


def _mlps(n=3):
    out = []
    for i in range(n):
        torch.manual_seed(i)
        out.append(nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3)))
    return out


def _state(m):
    return {k: v.clone() for k, v in m.state_dict().items()}


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


X = torch.randn(4, 6)


@pytest.mark.parametrize("method", ["average", "task_arithmetic", "ties"])
def test_merge_models_contract(method, tmp_path):
    base, *models = _mlps(3)
    before = [_state(m) for m in (base, *models)]
    merged = ns.merge_models(models, base=base, method=method)
    assert all(_same(s, _state(m)) for s, m in zip(before, (base, *models))), "inputs unchanged"
    assert merged(X).shape == models[0](X).shape and torch.isfinite(merged(X)).all()
    assert count_params(merged) == count_params(models[0])
    ns.save(merged, tmp_path / "m")
    back = ns.load(tmp_path / "m", model=_mlps(1)[0])
    assert torch.allclose(back(X), merged(X), atol=1e-6)
    with pytest.raises(InputError):
        ns.merge_models(models, base=base, method="nope")
    assert all(_same(s, _state(m)) for s, m in zip(before, (base, *models)))


def test_heal_contract(tmp_path):
    model = _mlps(1)[0]
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(4)]
    arch = str(model)
    state = _state(model)
    with pytest.raises(InputError):
        ns.heal(model, data, epochs=0, progress=False)
    assert _same(state, _state(model)), "a refused heal changes nothing"
    rep = ns.heal(model, data, epochs=1, progress=False, seed=0)
    assert str(model) == arch and rep.after.params == count_params(model)
    again = _mlps(1)[0]
    ns.heal(again, data, epochs=1, progress=False, seed=0)
    assert _same(_state(again), _state(model)), "a fixed seed gives the same weights"
    ns.save(model, tmp_path / "h")
    back = ns.load(tmp_path / "h", model=_mlps(1)[0])
    assert torch.allclose(back(X), model(X), atol=1e-6)


def test_heal_keeps_pruning_masks():
    model = _mlps(1)[0]
    ns.prune(model, X, sparsity=0.5, remove_dead=False)
    zeros = (model[0].weight == 0).clone()
    data = [(torch.randn(8, 6), torch.randint(0, 3, (8,))) for _ in range(4)]
    ns.heal(copy.deepcopy(model), data, epochs=1, progress=False)
    ns.heal(model, data, epochs=1, progress=False)
    assert (model[0].weight[zeros] == 0).all()
