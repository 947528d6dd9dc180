"""MAC counts against hand-computed numbers, and the measure() summary."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netsculpt as ns
from netsculpt.measure import (
    count_macs,
    count_params,
    latency_ms,
    macs_from_program,
    measure,
    saved_size_bytes,
)


def test_linear_macs_count_batch_and_features():
    assert count_macs(nn.Linear(10, 7), torch.zeros(3, 10)) == 3 * 10 * 7


def test_conv_macs():
    # out 8x8 spatial, 16 out channels, each reads 4 in-channels x 3x3
    assert count_macs(nn.Conv2d(4, 16, 3), torch.zeros(1, 4, 10, 10)) == 8 * 8 * 16 * 4 * 9


def test_grouped_and_depthwise_conv_macs():
    grouped = nn.Conv2d(8, 16, 3, padding=1, groups=4)
    assert count_macs(grouped, torch.zeros(2, 8, 5, 5)) == 2 * 16 * 25 * (8 // 4) * 9
    depthwise = nn.Conv1d(6, 6, 5, groups=6)
    assert count_macs(depthwise, torch.zeros(1, 6, 20)) == 16 * 6 * 1 * 5


def test_transposed_conv_counts_input_side():
    conv_t = nn.ConvTranspose2d(4, 6, 3, stride=2)
    # every input element is multiplied into Cout x k x k outputs
    assert count_macs(conv_t, torch.zeros(1, 4, 5, 5)) == 4 * 25 * 6 * 9


class _MatMuls(nn.Module):
    def forward(self, a, b):
        return (
            (a @ b).sum()
            + torch.bmm(a, b).sum()
            + torch.einsum("bij,bjk->bik", a, b).sum()
            + torch.mm(a[0], b[0]).sum()
        )


def test_matmul_bmm_einsum_mm_macs():
    a, b = torch.randn(2, 3, 4), torch.randn(2, 4, 5)
    per_batch = 3 * 4 * 5
    assert count_macs(_MatMuls(), (a, b)) == 3 * 2 * per_batch + per_batch


class _Attention(nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v)


def test_sdpa_counts_both_matmuls():
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 3)
    assert count_macs(_Attention(), (q, k, v)) == 2 * 5 * 7 * 8 + 2 * 5 * 7 * 3


def test_kwargs_inputs_and_program_entry_point():
    lin = nn.Linear(4, 2)
    assert count_macs(lin, {"input": torch.zeros(5, 4)}) == 40
    ep = torch.export.export(lin, (torch.zeros(1, 4),))
    assert macs_from_program(ep) == 8


def test_count_macs_restores_train_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(), nn.BatchNorm1d(4))
    model.train()
    model[1].eval()
    count_macs(model, torch.zeros(2, 4))
    assert model.training and model[0].training and not model[1].training


def test_resnet18_macs_match_torchvision():
    torchvision = pytest.importorskip("torchvision")
    macs = count_macs(torchvision.models.resnet18(), torch.zeros(1, 3, 224, 224))
    assert abs(macs / 1.81e9 - 1) < 0.01


def test_count_params_counts_tied_weights_once():
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    assert count_params(nn.ModuleDict({"emb": emb, "head": head})) == 40


def test_saved_size_and_latency():
    lin = nn.Linear(100, 100)
    assert 40_400 <= saved_size_bytes(lin) < 41_000
    stats = latency_ms(lin, torch.zeros(1, 100), repeats=3, warmup=1)
    assert 0 < stats["min"] <= stats["median"] <= stats["max"]


def test_measure_summary_and_callable_package():
    m = measure(nn.Linear(4, 3), torch.zeros(1, 4), latency=False)
    assert m.to_dict() == {"params": 15, "macs": 12, "latency_ms": None, "size_bytes": m.size_bytes}
    threads = torch.get_num_threads()
    assert ns.measure(nn.Linear(4, 3), torch.zeros(1, 4)).latency_ms > 0
    assert torch.get_num_threads() == threads
