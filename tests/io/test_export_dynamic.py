"""Exports deploy: a batch-1 example gives files that run at batch 1 and 16 (and at another
sequence length for token inputs); a loaded .pt2 evaluates from the command line."""

from __future__ import annotations

import json

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


def _params(path) -> int:
    return sum(p.numel() for p in load_model_file(path).parameters())


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze"],
        ["prune", "--amount", "0.3", "-o", "{t}/out.pt2"],
        ["cut", "--count", "1", "-o", "{t}/out.pt2"],
        ["grow", "-o", "{t}/out.pt2"],
        ["optimize", "--target-macs", "0.8", "--no-heal", "--time-budget", "20",
         "-o", "{t}/out.pt2"],
        ["merge", "-o", "{t}/out.pt2"],
        ["heal", "--data", "digits-image", "--steps", "3", "-o", "{t}/out.pt2"],
        ["evaluate", "--data", "digits-image"],
        ["export", "{t}/again.onnx"],
    ],
)  # fmt: skip
def test_a_pt2_is_the_model_of_every_command(program_file, tmp_path, capsys, argv):
    """Each command takes the .pt2; an edited model goes out as a .pt2 that loads, runs at
    batch 16 and has the parameter count the report gives."""
    argv = [a.replace("{t}", str(tmp_path)) for a in argv]
    report = ["--report", str(tmp_path / "r.json")] if "-o" in argv else []
    assert main(["-q", argv[0], str(program_file), *argv[1:], *report]) == 0
    assert "error" not in capsys.readouterr().err
    out = tmp_path / "out.pt2"
    if "-o" not in argv:
        return
    import json

    after = json.loads((tmp_path / "r.json").read_text())["after"]["params"]
    assert _params(out) == after
    with torch.no_grad():
        y = load_model_file(out)(torch.randn(16, 1, 8, 8))
    assert y.shape == (16, 10) and torch.isfinite(y).all()


def test_merge_models_and_run_take_a_pt2(program_file, tmp_path, capsys):
    out = tmp_path / "avg.pt2"
    assert main(["-q", "merge-models", str(program_file), str(program_file), "-o", str(out)]) == 0
    assert _params(out) == _params(program_file)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {program_file}\nsteps:\n  - prune: {{amount: 0.5}}\n")
    assert main(["-q", "run", str(recipe), "-o", str(tmp_path / "run.pt2")]) == 0
    assert 0 < _params(tmp_path / "run.pt2") < _params(program_file)
    # the report goes beside the program, as a folder output gets report.json / report.html
    saved = json.loads((tmp_path / "run.report.json").read_text())
    assert saved["op"] == "run" and saved["after"]["params"] == _params(tmp_path / "run.pt2")
    assert "<html" in (tmp_path / "run.report.html").read_text().lower()
    extra = tmp_path / "extra.json"
    argv = ["-q", "run", str(recipe), "-o", str(tmp_path / "run2.pt2"), "--report", str(extra)]
    assert main(argv) == 0
    assert json.loads(extra.read_text())["after"]["params"] == saved["after"]["params"]
    assert (
        main(["-q", "run", str(recipe), "-o", str(tmp_path / "r3.pt2"), "--report", "x.txt"]) == 2
    )
    assert not (tmp_path / "r3.pt2").exists()
    (tmp_path / "r4.report.html").mkdir()  # where the report would go: refused before any work
    assert main(["-q", "run", str(recipe), "-o", str(tmp_path / "r4.pt2")]) == 2
    assert not (tmp_path / "r4.pt2").exists() and not (tmp_path / "r4.report.json").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["cut", "--blocks", "block"],
        ["grow", "--where", "block"],
        ["merge"],
        ["prune", "--amount", "0.5"],
    ],
)
def test_a_pt2_gives_the_same_result_as_the_model_it_came_from(
    program_file, tmp_path, capsys, argv
):
    """The same op on digits-cnn and on its .pt2: the same report figures, the same outputs."""
    import json

    runs = {}
    for name, model, out in (
        ("builtin", "digits-cnn", tmp_path / "a"),
        ("program", str(program_file), tmp_path / "b.pt2"),
    ):
        rep = tmp_path / f"{name}.json"
        assert main(["-q", argv[0], model, *argv[1:], "-o", str(out), "--report", str(rep)]) == 0
        data = json.loads(rep.read_text())
        runs[name] = (data["before"], data["after"], load_model_file(out))
    (b1, a1, m1), (b2, a2, m2) = runs["builtin"], runs["program"]
    for key in ("params", "macs"):
        assert b1[key] == b2[key] and a1[key] == a2[key]
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        assert (m1.eval()(x) - m2(x)).abs().max() < TOL


def test_a_pt2_model_needs_a_pt2_output(program_file, tmp_path, capsys):
    argv = ["prune", str(program_file), "--amount", "0.5", "-o", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give -o OUT.pt2" in err
    assert not (tmp_path / "out").exists()
