"""The merge and merge-models sub-commands: write a loadable folder, or exit 2 writing nothing."""

import torch

import netsculpt as ns
from netsculpt.cli import main
from netsculpt.data import build_builtin


def test_merge_folds_a_builtin_and_saves_it(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["merge", "digits-cnn", "-o", str(out), "--report", str(tmp_path / "r.json")]) == 0
    loaded = ns.load(out)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in loaded.modules())
    assert (tmp_path / "r.json").is_file() and "merge" in capsys.readouterr().out


def test_merge_models_averages_saved_models(tmp_path):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        ns.save(build_builtin("digits-mlp"), tmp_path / f"m{seed}")
        paths.append(str(tmp_path / f"m{seed}"))
    out = tmp_path / "soup"
    assert main(["merge-models", *paths, "-o", str(out)]) == 0
    a, b, soup = ns.load(paths[0]), ns.load(paths[1]), ns.load(out)
    assert torch.allclose(soup[0].weight, (a[0].weight + b[0].weight) / 2)


def test_merge_models_mismatch_exits_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "soup"
    assert main(["merge-models", "digits-mlp", "seed-mlp", "-o", str(out)]) == 2
    assert "0.weight" in capsys.readouterr().err and not out.exists()
