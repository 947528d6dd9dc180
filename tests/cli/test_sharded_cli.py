"""``netsculpt prune HF_DIR --sharded -o OUT``: a checkpoint folder pruned shard by shard."""

from __future__ import annotations

import json

import pytest
import torch

from netsculpt.cli import main

transformers = pytest.importorskip("transformers")


@pytest.fixture
def checkpoint(tmp_path):
    torch.set_num_threads(1)
    cfg = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).save_pretrained(tmp_path / "src", max_shard_size="50KB")
    return tmp_path / "src"


def test_sharded_prune_writes_a_folder_from_pretrained_loads(checkpoint, tmp_path, capsys):
    out, report = tmp_path / "out", tmp_path / "r.json"
    argv = ["prune", str(checkpoint), "--sharded", "--amount", "0.5", "--targets", "mlp",
            "--importance", "l1", "-o", str(out), "--report", str(report)]  # fmt: skip
    assert main(argv) == 0
    assert "saved to" in capsys.readouterr().out
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["intermediate_size"] == 64 and cfg["num_attention_heads"] == 4
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert model(torch.tensor([[3, 4, 5]])).logits.shape == (1, 3, 128)
    assert json.loads(report.read_text())["config"]["mode"] == "hf-sharded"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--importance", "activation"], "needs calibration data: --data"),
        (["--sparsity", "0.5"], "not with --sparsity"),
        (["--amount", "1.5"], "amount must be in"),
    ],
)
def test_sharded_bad_input_exits_2_with_one_line(checkpoint, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert main(["prune", str(checkpoint), "--sharded", *extra, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_sharded_needs_an_output_folder(checkpoint, capsys):
    assert main(["prune", str(checkpoint), "--sharded"]) == 2
    assert "-o OUT" in capsys.readouterr().err
