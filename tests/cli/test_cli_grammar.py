"""One CLI grammar: every flag has a help text naming its choices, the shared flags have the same
names in every command, ``--version``, and errors in CLI terms."""

from __future__ import annotations

import argparse

import pytest

import netsculpt
from netsculpt.cli import build_parser, cli_terms, main
from netsculpt.data.datasets import DATASETS, SAMPLE_SHAPES, load_dataset


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _flags(p: argparse.ArgumentParser) -> set[str]:
    return set(p._option_string_actions)


COMMANDS = sorted(_commands())
MODEL_OPS = ("prune", "optimize", "cut", "merge", "grow", "heal")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_of_every_command_has_a_help_text_naming_its_choices(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([name, "--help"])
    assert exit_.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    for action in _commands()[name]._actions:
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {label}: no help"
        for choice in action.choices or ():
            assert str(choice) in action.help, f"{name} {label}: help does not name {choice}"
        for flag in action.option_strings:
            assert flag in shown


def test_data_help_names_every_built_in_data_set():
    for name, p in _commands().items():
        action = p._option_string_actions.get("--data")
        if action is not None:
            assert all(d in action.help for d in DATASETS), name


def test_shared_flags_have_the_same_names_everywhere():
    cmds = _commands()
    for name in MODEL_OPS:
        assert {"-o", "--output", "--seed", "--data"} <= _flags(cmds[name]), name
    for name in ("analyze", "prune", "optimize", "cut", "merge", "grow", "heal", "evaluate"):
        assert "--report" in _flags(cmds[name]), name
    for name in ("prune", "optimize", "cut", "merge", "grow"):
        assert "--ignore" in _flags(cmds[name]), name
    for name in ("analyze", "prune", "optimize", "cut", "grow"):
        assert "--importance" in _flags(cmds[name]), name
    for name in COMMANDS:
        assert {"-q", "-v", "--debug"} <= _flags(cmds[name]), name


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"netsculpt {netsculpt.__version__} ")


def test_sample_shapes_table_matches_the_data_sets():
    for name in DATASETS:
        x = load_dataset(name, "val").tensors[0]
        kind = "float" if x.is_floating_point() else "int"
        assert SAMPLE_SHAPES[name] == (tuple(x.shape[1:]), kind), name


def test_data_that_does_not_fit_the_model_names_the_one_that_does(capsys):
    assert main(["analyze", "digits-cnn", "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--data digits gives" in err and "use --data digits-image" in err


def test_errors_name_flags_not_keyword_arguments(capsys):
    assert main(["prune", "digits-mlp", "--importance", "activation", "--amount", "0.5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--data" in err and "data=" not in err and len(err.splitlines()) == 1


def test_cli_terms_rewrites_only_the_flags_a_command_has():
    flags = {"--amount", "--sparsity"}
    said = cli_terms("pass amount=0.5 or sparsity=; shape=(1, 2) stays", flags)
    assert said == "pass --amount 0.5 or --sparsity; shape=(1, 2) stays"
    assert cli_terms("pass ignore=['fc', 'head.*'] to keep them") == (
        "pass --ignore fc head.* to keep them"
    )


def test_cut_takes_importance_and_ignore(tmp_path, capsys):
    base = ["cut", "digits-cnn", "--count", "1", "--importance", "angular", "--seed", "1"]
    assert main([*base, "-o", str(tmp_path / "a")]) == 0
    assert "block: removed" in capsys.readouterr().out  # the least important block
    assert main([*base, "--ignore", "block", "-o", str(tmp_path / "b")]) == 0
    text = capsys.readouterr().out
    assert "block: removed" not in text and "saved to" in text  # ignored: another one goes
