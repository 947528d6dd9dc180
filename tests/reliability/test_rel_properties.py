"""Property tests on random small networks: MLPs, CNNs and token models with residual adds,
concats, BatchNorm, depthwise and grouped convs and nn.MultiheadAttention.

Bounded for CI (derandomized, 15 examples each, no deadline): the whole file takes about 30 s
of CPU, under a minute on two cores.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import netsculpt as ns
from netsculpt.errors import NetsculptError

SETTINGS = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Residual(nn.Module):
    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):
        return x + self.body(x)


class Concat(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.cat([self.a(x), self.b(x)], dim=1)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, x):
        y = self.norm(x)
        return x + self.attn(y, y, y, need_weights=False)[0]


class Net(nn.Module):
    """``stem → blocks → head``; ``kind`` says how the last blocks' output is pooled."""

    def __init__(self, kind: str, stem: nn.Module, blocks: list[nn.Module], head: nn.Module):
        super().__init__()
        self.kind = kind
        self.stem, self.blocks, self.head = stem, nn.ModuleList(blocks), head

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        if self.kind == "cnn":
            x = x.mean((2, 3))
        elif self.kind == "tokens":
            x = x.mean(1)
        return self.head(x)


def _mlp_block(kind: str, d: int, w: int) -> tuple[nn.Module, int]:
    if kind == "dense":
        return nn.Sequential(nn.Linear(d, w), nn.ReLU()), w
    if kind == "residual":
        return Residual(nn.Sequential(nn.Linear(d, w), nn.ReLU(), nn.Linear(w, d))), d
    if kind == "concat":
        return Concat(nn.Linear(d, w), nn.Sequential(nn.Linear(d, 4), nn.ReLU())), w + 4
    return nn.Sequential(nn.Linear(d, w), nn.BatchNorm1d(w), nn.ReLU()), w  # "bn"


def _conv_block(kind: str, c: int, w: int) -> tuple[nn.Module, int]:
    if kind == "conv":
        return nn.Sequential(nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()), w
    if kind == "residual":
        body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.Conv2d(c, c, 1))  # fmt: skip
        return Residual(body), c
    if kind == "depthwise":
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.ReLU()), c
    if kind == "grouped":
        return nn.Sequential(nn.Conv2d(c, 2 * w, 3, padding=1, groups=2), nn.ReLU()), 2 * w
    return Concat(nn.Conv2d(c, w, 1), nn.Conv2d(c, 4, 3, padding=1)), w + 4  # "concat"


KINDS = {
    "mlp": ["dense", "residual", "concat", "bn"],
    "cnn": ["conv", "residual", "depthwise", "grouped", "concat"],
    "tokens": ["attention", "mlp"],
}


@st.composite
def recipes(draw, families=("mlp", "cnn", "tokens")):
    family = draw(st.sampled_from(families))
    blocks = draw(
        st.lists(
            st.tuples(st.sampled_from(KINDS[family]), st.integers(2, 6)), min_size=1, max_size=3
        )
    )
    return family, tuple(blocks), draw(st.integers(0, 2**16))


def build(recipe) -> tuple[nn.Module, torch.Tensor]:
    """The network and an example input of ``recipe``, same weights for the same recipe."""
    family, blocks, seed = recipe
    torch.manual_seed(seed)
    mods: list[nn.Module] = []
    if family == "mlp":
        d = 8
        stem, x = nn.Linear(6, d), torch.randn(4, 6)
        for kind, w in blocks:
            m, d = _mlp_block(kind, d, 2 * w)
            mods.append(m)
    elif family == "cnn":
        d = 8
        stem, x = nn.Conv2d(3, d, 3, padding=1), torch.randn(2, 3, 6, 6)
        for kind, w in blocks:
            m, d = _conv_block(kind, d, 2 * w)
            mods.append(m)
    else:
        d = 16
        stem, x = nn.Linear(5, d), torch.randn(2, 5, 5)
        for kind, w in blocks:
            if kind == "attention":
                mods.append(SelfAttention(d, 4))
            else:
                mods.append(Residual(nn.Sequential(nn.Linear(d, 4 * w), nn.GELU(),
                                                   nn.Linear(4 * w, d))))  # fmt: skip
    model = Net(family, stem, mods, nn.Linear(d, 3)).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model, x


def _out(model, x):
    with torch.no_grad():
        return model(x)


def _rel(a, b) -> float:
    return float((a - b).abs().max()) / max(float(a.abs().max()), 1e-12)


@SETTINGS
@given(recipes(), st.floats(0.05, 0.9))
def test_prune_refuses_or_keeps_the_output_shape_with_finite_outputs(recipe, amount):
    model, x = build(recipe)
    shape = _out(model, x).shape
    try:
        ns.prune(model, x, amount=amount)
    except NetsculptError:
        return
    out = _out(model, x)
    assert out.shape == shape and torch.isfinite(out).all()


@SETTINGS
@given(recipes())
def test_merge_folds_keep_outputs_within_1e_4(recipe):
    model, x = build(recipe)
    ref = _out(model, x)
    ns.merge(model, x)
    assert _rel(ref, _out(model, x)) <= 1e-4


@SETTINGS
@given(recipes(families=("mlp", "cnn")), st.sampled_from(["deeper", "wider"]))
def test_grow_keeps_outputs_within_1e_5(recipe, kind):
    model, x = build(recipe)
    ref = _out(model, x)
    try:
        ns.grow(model, x, kind=kind, where="auto", count=1)
    except NetsculptError:
        return  # nowhere to grow this way (said so in one line)
    assert float((ref - _out(model, x)).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


@SETTINGS
@given(recipes(), st.sampled_from(["tiny-amount", "zero-threshold"]))
def test_a_prune_that_removes_nothing_changes_nothing(recipe, how):
    model, x = build(recipe)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    text, ref = repr(model), _out(model, x)
    if how == "tiny-amount":
        ns.prune(model, x, amount=1e-6)
    else:
        ns.prune(model, x, threshold=0.0)
    assert repr(model) == text
    after = model.state_dict()
    assert after.keys() == state.keys()
    assert all(torch.equal(after[k], v) for k, v in state.items())
    assert torch.equal(_out(model, x), ref)


@SETTINGS
@given(recipe=recipes(), amount=st.floats(0.1, 0.7))
def test_save_then_load_gives_the_same_outputs(tmp_path_factory, recipe, amount):
    model, x = build(recipe)
    with contextlib.suppress(NetsculptError):  # the unpruned model must round-trip too
        ns.prune(model, x, amount=amount)
    folder = tmp_path_factory.mktemp("save") / "m"
    ns.save(model, folder)
    fresh, _ = build(recipe)
    loaded = ns.load(folder, fresh)
    assert repr(loaded) == repr(model)
    torch.testing.assert_close(_out(loaded, x), _out(model, x), rtol=0, atol=0)


@pytest.mark.parametrize("family", ["mlp", "cnn", "tokens"])
def test_every_family_builds_and_runs(family):
    for kind in KINDS[family]:
        model, x = build((family, ((kind, 3),), 0))
        assert not math.isnan(float(_out(model, x).sum()))
