"""Shard-by-shard pruning and layer cuts of checkpoint folders: the result loads with
``from_pretrained`` and equals the in-memory path; bad input leaves nothing behind."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

import netsculpt.hf as nhf
from netsculpt.errors import InputError, VerificationError
from netsculpt.hf import sharded
from netsculpt.hf.layers import drop_layers

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

V = 128
GQA = dict(
    vocab_size=V, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
    bos_token_id=1, eos_token_id=2, pad_token_id=0,
)  # fmt: skip


def _config(family: str, **kw):
    t = transformers
    if family == "gpt2":
        return t.GPT2Config(vocab_size=V, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                            bos_token_id=1, eos_token_id=2, **kw)  # fmt: skip
    cls = {"llama": t.LlamaConfig, "qwen2": t.Qwen2Config, "mistral": t.MistralConfig}[family]
    return cls(**(GQA | kw))


def _checkpoint(path, family: str = "llama", **kw):
    """A seeded random model saved in several shards, with a stand-in tokenizer file."""
    cfg = _config(family, **kw)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    model.save_pretrained(path, max_shard_size="50KB")
    (path / "tokenizer.json").write_text('{"stand-in": true}')
    return path


def _inputs():
    g = torch.Generator().manual_seed(1)
    return {"input_ids": torch.randint(3, V, (2, 8), generator=g)}


def _load(path):
    model, info = transformers.AutoModelForCausalLM.from_pretrained(path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert not info["mismatched_keys"], info
    return model.eval()


def _logits(model, x):
    with torch.no_grad():
        return model(**x).logits


def _generates(model, x):
    out = model.generate(x["input_ids"], max_new_tokens=3, do_sample=False)
    assert out.shape == (2, 11)


def _shards(path):
    return sorted(p.name for p in path.glob("*.safetensors"))


CASES = [
    ("llama", {}, ("heads", "mlp"), "l2"),
    ("llama", {"tie_word_embeddings": True}, ("heads", "mlp", "hidden"), "l1"),
    ("qwen2", {}, ("heads", "mlp", "hidden"), "l2"),
    ("gpt2", {}, ("mlp",), "l2"),  # Conv1D: weights stored transposed
]


@pytest.mark.parametrize(("family", "kw", "targets", "importance"), CASES)
def test_sharded_prune_loads_and_equals_in_memory(tmp_path, family, kw, targets, importance):
    src = _checkpoint(tmp_path / "src", family, **kw)
    dst = tmp_path / "dst"
    assert len(_shards(src)) > 2
    rep = nhf.prune_pretrained(src, dst, amount=0.5, targets=targets, importance=importance)

    x = _inputs()
    ref = _load(src)
    nhf.prune(ref, x, amount=0.5, targets=targets, importance=importance, uniform=True)
    got = _load(dst)
    assert torch.allclose(_logits(got, x), _logits(ref, x), atol=1e-5, rtol=0)
    assert {k: v.shape for k, v in got.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    _generates(got, x)

    cfg = json.loads((dst / "config.json").read_text())
    if family == "gpt2":
        assert cfg["n_inner"] == 128 and cfg["n_embd"] == 64 and cfg["n_head"] == 4
    else:
        assert cfg["intermediate_size"] == 64
        assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (2, 1)
        assert cfg["hidden_size"] == (32 if "hidden" in targets else 64)
    assert cfg["architectures"] == json.loads((src / "config.json").read_text())["architectures"]
    assert rep.after.params < rep.before.params and rep.details["removed"]["mlp"] > 0
    # one output shard per source shard, an index, side files copied, no temp folder left
    assert len(_shards(dst)) == len(_shards(src)) == rep.details["shards"]
    assert (dst / "model.safetensors.index.json").is_file()
    assert (dst / "tokenizer.json").read_text() == '{"stand-in": true}'
    assert (dst / "generation_config.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]


def test_streamed_scores_equal_the_in_memory_estimator(tmp_path):
    from netsculpt.graph import build_graph
    from netsculpt.importance import score_groups

    src = _checkpoint(tmp_path / "src", tie_word_embeddings=True)
    model = _load(src)
    graph = build_graph(model, _inputs())
    groups = graph.prunable_groups()
    shards = sharded._shards(src)
    for name, p in (("l1", 1), ("l2", 2)):
        want = score_groups(name, model, graph, groups)
        got = sharded.streamed_scores(groups, shards, sharded._aliases(model), p)
        assert sorted(got) == sorted(want)
        for gid in want:
            assert (got[gid] == want[gid]).all(), graph.groups[gid].describe()


def test_max_shard_size_repacks_the_output(tmp_path):
    src = _checkpoint(tmp_path / "src")
    one = nhf.prune_pretrained(src, tmp_path / "one", amount=0.25, max_shard_size="10GB")
    assert _shards(tmp_path / "one") == ["model.safetensors"] and one.details["shards"] == 1
    assert not (tmp_path / "one" / "model.safetensors.index.json").exists()
    many = nhf.prune_pretrained(src, tmp_path / "many", amount=0.25, max_shard_size=20_000)
    assert many.details["shards"] > len(_shards(src))
    index = json.loads((tmp_path / "many" / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == many.details["bytes"]
    x = _inputs()
    assert torch.equal(_logits(_load(tmp_path / "one"), x), _logits(_load(tmp_path / "many"), x))


def _one_line_error(fn, *args, match: str, **kw):
    with pytest.raises(InputError, match=match) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)


def test_bad_input_is_refused_and_leaves_nothing(tmp_path):
    src = _checkpoint(tmp_path / "src", "gpt2")
    dst = tmp_path / "out" / "dst"
    _one_line_error(nhf.prune_pretrained, tmp_path / "nope", dst, match="does not exist")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "weights.npy").write_bytes(b"x")
    _one_line_error(nhf.prune_pretrained, plain, dst, match="no config.json")
    (plain / "config.json").write_text("{}")
    _one_line_error(nhf.prune_pretrained, plain, dst, match="safetensors")
    _one_line_error(nhf.prune_pretrained, src, dst, importance="activation", match="needs calib")
    _one_line_error(nhf.prune_pretrained, src, dst, importance="taylor", match="l2 or activation")
    _one_line_error(nhf.prune_pretrained, src, dst, amount=1.5, match="amount")
    _one_line_error(nhf.prune_pretrained, src, dst, targets=("ffn",), match="targets")
    _one_line_error(nhf.prune_pretrained, src, dst, max_shard_size="big", match="max_shard")
    # GPT-2 derives head_dim from hidden_size: pruned heads are not expressible in config.json
    _one_line_error(nhf.prune_pretrained, src, dst, targets=("heads",), match="ns.save")
    _one_line_error(nhf.cut_pretrained, src, dst, layers=[5], match="bad indices")
    _one_line_error(nhf.prune_pretrained, src, src, match="must differ")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    _one_line_error(nhf.prune_pretrained, src, taken, match="not an empty folder")
    assert [p.name for p in taken.iterdir()] == ["keep.txt"]


def test_failure_while_writing_leaves_no_output(tmp_path, monkeypatch):
    src = _checkpoint(tmp_path / "src")

    def broken(*a, **kw):
        raise VerificationError("simulated")

    monkeypatch.setattr(sharded, "_check_shards", broken)
    with pytest.raises(VerificationError, match="simulated"):
        nhf.prune_pretrained(src, tmp_path / "dst", amount=0.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_cut_pretrained_renumbers_layers_and_equals_in_memory(tmp_path):
    src = _checkpoint(tmp_path / "src", num_hidden_layers=4)
    dst = tmp_path / "dst"
    rep = nhf.cut_pretrained(src, dst, layers=[1, 2])
    assert rep.details["removed_layers"] == [1, 2] and rep.details["layers"] == 2
    x = _inputs()
    ref = _load(src)
    drop_layers(ref, [1, 2])
    got = _load(dst)
    assert torch.allclose(_logits(got, x), _logits(ref, x), atol=1e-5, rtol=0)
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 2 and len(cfg.get("layer_types") or [0, 0]) == 2
    index = json.loads((dst / "model.safetensors.index.json").read_text())["weight_map"]
    assert not any(k.startswith(("model.layers.2.", "model.layers.3.")) for k in index)
    _generates(got, x)


def test_config_transformers_refuses_is_reported_before_writing(tmp_path):
    # 4 heads -> 3: LlamaConfig wants hidden_size (64) divisible by num_attention_heads
    src = _checkpoint(tmp_path / "src", num_key_value_heads=4)
    _one_line_error(
        nhf.prune_pretrained, src, tmp_path / "dst", amount=0.25, targets=("heads",),
        match="multiple of the number of attention heads",
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_bf16_checkpoint_stays_bf16(tmp_path):
    from safetensors import safe_open

    cfg = _config("llama")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(tmp_path / "src", max_shard_size="30KB")
    nhf.prune_pretrained(tmp_path / "src", tmp_path / "dst", amount=0.5)
    for path in (tmp_path / "dst").glob("*.safetensors"):
        with safe_open(str(path), framework="pt") as f:
            assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118
    x = _inputs()
    ref = _load(tmp_path / "src")
    nhf.prune(ref, x, amount=0.5, targets=("heads", "mlp"), uniform=True)
    got = _load(tmp_path / "dst")
    assert got.dtype == torch.bfloat16
    assert torch.equal(_logits(got, x), _logits(ref, x))


def test_prune_pretrained_checks_only_the_written_config(tmp_path, monkeypatch):
    # one check: the written config.json is rebuilt on meta; the in-memory hf_compatible is not
    import netsculpt.hf.config

    def second_check(model):
        raise AssertionError("hf_compatible must not run: the written config is the check")

    monkeypatch.setattr(netsculpt.hf.config, "hf_compatible", second_check)
    built = []
    meta_model = sharded._meta_model

    def counted(folder):
        built.append(folder.name)
        return meta_model(folder)

    monkeypatch.setattr(sharded, "_meta_model", counted)
    src = _checkpoint(tmp_path / "src")
    nhf.prune_pretrained(src, tmp_path / "dst", amount=0.5)
    # the source, then the written config.json in the temporary folder: nothing else
    assert len(built) == 2 and built[0] == "src" and built[1].startswith(".dst.partial")


def test_written_config_that_builds_other_shapes_is_refused_before_writing(tmp_path, monkeypatch):
    # the config.json on disk is what from_pretrained reads: a field lost on the way (here the
    # new intermediate_size) is an InputError naming the tensor, with nothing left behind
    write_config = sharded._write_config

    def loses_a_field(src, dst, before, after):
        return write_config(
            src, dst, before, {k: v for k, v in after.items() if k != "intermediate_size"}
        )

    monkeypatch.setattr(sharded, "_write_config", loses_a_field)
    src = _checkpoint(tmp_path / "src")
    _one_line_error(
        nhf.prune_pretrained, src, tmp_path / "dst", amount=0.5, targets=("mlp",),
        match=r"cannot be described by config.json \(from_pretrained would build .*mlp",
    )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_hf_modules_import_no_private_names_of_other_modules():
    import ast
    import pkgutil

    import netsculpt.hf

    folder = Path(netsculpt.hf.__path__[0])
    for info in pkgutil.iter_modules([str(folder)]):
        tree = ast.parse((folder / f"{info.name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("netsculpt"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{info.name}.py imports {private} from {node.module}"
