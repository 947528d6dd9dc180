"""Exports deploy: a batch-1 example gives files that run at batch 1 and 16 (and at another
sequence length for token inputs); a loaded .pt2 evaluates from the command line."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from netsculpt.cli import main
from netsculpt.io import export, load_model_file

TOL = 1e-4


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10),
    ).eval()  # fmt: skip


class TokenModel(nn.Module):
    """input_ids + attention_mask -> per-token features (a stand-in for a text encoder)."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.proj = nn.Linear(16, 8)

    def forward(self, input_ids, attention_mask):
        h = self.proj(self.emb(input_ids)) * attention_mask.unsqueeze(-1)
        return h.sum(1) / attention_mask.sum(1, keepdim=True)


def _ort(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_runs_at_batch_1_and_16(tmp_path):
    pytest.importorskip("onnxscript")
    model = _cnn()
    path = export(model, tmp_path / "m.onnx", torch.randn(1, 1, 8, 8))
    session = _ort(path)
    name = session.get_inputs()[0].name
    for n in (1, 16):
        x = torch.randn(n, 1, 8, 8)
        (out,) = session.run(None, {name: x.numpy()})
        with torch.no_grad():
            assert abs(out - model(x).numpy()).max() < TOL


def test_onnx_token_inputs_have_dynamic_batch_and_sequence(tmp_path):
    pytest.importorskip("onnxscript")
    model = TokenModel().eval()
    example = {"input_ids": torch.randint(0, 50, (1, 7)), "attention_mask": torch.ones(1, 7).long()}
    path = export(model, tmp_path / "t.onnx", example)
    session = _ort(path)
    ids = torch.randint(0, 50, (16, 12))
    mask = torch.ones(16, 12, dtype=torch.long)
    mask[:, 9:] = 0
    (out,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        assert abs(out - model(ids, mask).numpy()).max() < TOL


def test_pt2_runs_at_batch_16_and_evaluates_from_the_cli(tmp_path, capsys):
    model = _cnn()
    path = export(model, tmp_path / "m.pt2", torch.randn(1, 1, 8, 8))
    program = torch.export.load(str(path)).module()
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert (program(x) - model(x)).abs().max() < TOL
        assert (load_model_file(path)(x) - model(x)).abs().max() < TOL
    from netsculpt.io import resolve_model

    loaded, example, _ = resolve_model(str(path))
    assert loaded.eval() is loaded and loaded.train() is loaded  # no "eval() is not supported"
    assert example[0][0].shape[0] == 1  # MACs read per sample
    assert main(["evaluate", str(path), "--data", "digits-image"]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_static_export_keeps_the_example_shape(tmp_path):
    path = export(_cnn(), tmp_path / "s.pt2", torch.randn(2, 1, 8, 8), dynamic=False)
    program = torch.export.load(str(path)).module()
    program(torch.randn(2, 1, 8, 8))
    with pytest.raises(Exception, match="shape|size|guard|dim"):
        program(torch.randn(16, 1, 8, 8))


def test_cli_export_checks_the_file(tmp_path, capsys):
    out = tmp_path / "mlp.pt2"
    assert main(["export", "digits-mlp", str(out), "--check"]) == 0
    text = capsys.readouterr().out
    assert "dynamic batch" in text and "batch 16: max |diff|" in text and "ok" in text
    assert main(["export", "digits-mlp", str(tmp_path / "m.tflite")]) == 2


@pytest.fixture(scope="module")
def program_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pt2") / "cnn.pt2"
    assert main(["-q", "export", "digits-cnn", str(path)]) == 0
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze"],
        ["prune", "--amount", "0.3", "-o", "{t}/p"],
        ["merge", "-o", "{t}/m"],
        ["heal", "--data", "digits-image", "--steps", "3", "-o", "{t}/h"],
        ["evaluate", "--data", "digits-image"],
        ["export", "{t}/again.onnx"],
    ],
)
def test_a_pt2_is_the_model_of_every_command(program_file, tmp_path, capsys, argv):
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    assert main(["-q", argv[0], str(program_file), *argv[1:]]) == 0
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize("command", ["cut", "grow", "optimize"])
def test_depth_commands_refuse_a_pt2_in_one_line(program_file, tmp_path, capsys, command):
    extra = {"cut": ["--count", "1"], "grow": [], "optimize": ["--target-macs", "0.5"]}[command]
    argv = [command, str(program_file), *extra, "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch.export program" in err
    assert not (tmp_path / "out").exists()
