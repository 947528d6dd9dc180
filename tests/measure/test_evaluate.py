from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from netsculpt.errors import InputError
from netsculpt.measure.evaluate import embed, evaluate


class TinyLM(nn.Module):
    def __init__(self, vocab: int = 11, dim: int = 8) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, vocab)

    def forward(self, input_ids, attention_mask=None):
        return {"logits": self.head(self.emb(input_ids)), "last_hidden_state": self.emb(input_ids)}


def _classification():
    torch.manual_seed(0)
    x = torch.randn(40, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[-10.0, 0, 0, 0], [10.0, 0, 0, 0]]))
        model.bias.zero_()
    return model, x, y


def test_accuracy_and_loss_on_dataset_and_batches():
    model, x, y = _classification()
    res = evaluate(model, TensorDataset(x, y))
    assert res["accuracy"] == 1.0 and res["samples"] == 40 and res["loss"] < 0.1
    batches = [(x[:20], y[:20]), (x[20:], y[20:])]
    res2 = evaluate(model, batches, metric="loss")
    assert res2["loss"] == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-5)
    assert "accuracy" not in res2 and res2["params"] == 10


def test_perplexity_is_token_weighted_and_ignores_padding():
    torch.manual_seed(0)
    lm = TinyLM()
    ids = torch.randint(0, 11, (3, 6))
    mask = torch.ones_like(ids)
    mask[0, 3:] = 0
    res = evaluate(lm, [{"input_ids": ids, "attention_mask": mask}], metric="perplexity")
    logits = lm(ids)["logits"][:, :-1]
    labels = ids.masked_fill(mask == 0, -100)[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    assert res["samples"] == int((labels != -100).sum())
    assert res["perplexity"] == pytest.approx(math.exp(nll.item()), rel=1e-5)


def test_fidelity_is_one_against_itself_and_lower_for_another_model():
    torch.manual_seed(0)
    lm, other = TinyLM(), TinyLM()
    data = [{"input_ids": torch.randint(0, 11, (4, 5))} for _ in range(2)]
    assert evaluate(lm, data, metric="fidelity", reference=lm)["fidelity"] == pytest.approx(1.0)
    assert evaluate(other, data, metric="fidelity", reference=lm)["fidelity"] < 0.9


def test_embed_masks_padding():
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    out = embed({"last_hidden_state": h}, torch.tensor([[1, 1, 0]]))
    assert out.item() == pytest.approx(2.0)


def test_size_and_cost_with_example_inputs_and_training_flag_restored():
    model, x, y = _classification()
    model.train()
    res = evaluate(model, [(x, y)], example_inputs=(x[:1],))
    assert res["macs"] == 8 and res["params"] == 10 and res["size_bytes"] > 0
    assert model.training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"metric": "bleu"}, "metric='bleu'"),
        ({"metric": "fidelity"}, "reference"),
        ({"task": "vision"}, "task='vision'"),
    ],
)
def test_bad_options_raise_input_error(kwargs, match):
    model, x, y = _classification()
    with pytest.raises(InputError, match=match):
        evaluate(model, [(x, y)], **kwargs)


def test_classification_without_labels_is_refused():
    model, x, _ = _classification()
    with pytest.raises(InputError, match="no target"):
        evaluate(model, [x])


def test_lm_pairs_are_already_shifted():
    torch.manual_seed(0)
    lm = TinyLM()
    ids = torch.randint(0, 11, (2, 5))
    x, y = ids[:, :-1], ids[:, 1:]

    class Plain(nn.Module):  # tensor in, logits out
        def forward(self, x):
            return lm(x)["logits"]

    res = evaluate(Plain(), [(x, y)], metric="perplexity")
    nll = F.cross_entropy(lm(x)["logits"].reshape(-1, 11), y.reshape(-1))
    assert res["samples"] == 8 and res["perplexity"] == pytest.approx(
        math.exp(nll.item()), rel=1e-5
    )
