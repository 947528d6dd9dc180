import subprocess
import sys

import pytest
import torch

from netsculpt.cli import main


def test_prune_builtin_writes_a_model_that_reloads(tmp_path, capsys):
    import netsculpt as ns
    from netsculpt.io import resolve_model

    out = tmp_path / "pruned"
    assert (
        main(
            [
                "prune",
                "digits-mlp",
                "--amount",
                "0.5",
                "--importance",
                "l2",
                "-o",
                str(out),
                "--report",
                str(tmp_path / "r.json"),
            ]
        )
        == 0
    )
    assert "saved to" in capsys.readouterr().out
    model = ns.load(out)
    assert model[0].out_features == 32
    fresh, x, _ = resolve_model("digits-mlp")
    assert ns.load(out, model=fresh)(x).shape == (1, 10)
    assert (tmp_path / "r.json").exists()


def test_unstructured_and_data_driven_options(tmp_path):
    assert main(["prune", "digits-mlp", "--threshold", "0.01", "-o", str(tmp_path / "a")]) == 0
    assert (
        main(
            [
                "prune",
                "digits-mlp",
                "--amount",
                "0.3",
                "--importance",
                "taylor",
                "--data",
                "digits",
                "-o",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )


def test_analyze_lists_groups(capsys):
    assert main(["analyze", "digits-cnn"]) == 0
    out = capsys.readouterr().out
    assert "prunable groups" in out and "coupled" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", "digits-mlp", "--amount", "1.5"], "amount must be in"),
        (["prune", "digits-mlp", "--amount", "0.5", "--importance", "nope"], "unknown importance"),
        (["prune", "no-such-model", "--amount", "0.5"], "no-such-model"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    assert main([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_not_a_model_file_and_a_pickle_with_code_are_refused(tmp_path, capsys):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    assert main(["prune", str(text), "--amount", "0.5", "-o", str(tmp_path / "o")]) == 2
    assert "notes.pt" in capsys.readouterr().err

    evil = tmp_path / "evil.pt"
    torch.save({"f": subprocess.call}, evil)  # unpickling would import code
    assert main(["prune", str(evil), "--amount", "0.5", "-o", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "evil.pt" in err and not (tmp_path / "o2").exists()


def test_console_script_is_installed():
    r = subprocess.run(
        [sys.executable, "-m", "netsculpt.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for cmd in ("prune", "analyze", "demo", "cut", "grow", "merge", "heal", "evaluate", "run"):
        assert cmd in r.stdout
