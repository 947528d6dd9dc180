"""Build the original architecture named by a manifest's ``source`` (no weights, no network)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

from netsculpt.core.errors import InputError, ManifestError
from netsculpt.io.manifest import _from_json, _import_class, _numel, construct


def _meta_size(build, limit: int, what: str) -> None:
    """Build on the meta device and refuse more than ``limit`` elements."""
    import torch

    try:
        with torch.device("meta"):
            probe = build()
    except InputError:
        raise
    except Exception:  # noqa: BLE001 - the real build reports what is wrong
        return
    if _numel(probe) > limit:
        raise ManifestError(
            f"load: manifest.json: {what} would build {_numel(probe):,} parameters, far more "
            "than the weights file holds"
        )


# how much larger than its saved weights the original architecture may be (a model pruned to
# 1% of its size still loads; a manifest whose config asks for a trillion parameters does not)
GROWTH = 100
SLACK = 10**7


def build_from_source(manifest: dict[str, Any], budget: int | None = None) -> nn.Module:
    """A fresh, randomly initialized model of the saved architecture.

    Sources: ``torchvision:<name>``, ``builtin:<name>``, ``hf`` (config in the manifest),
    ``netsculpt`` (a netsculpt class and its ``init`` kwargs). With ``budget`` (the element
    count of the weights file), an architecture built from manifest numbers (``hf``,
    ``netsculpt``) is first built on the meta device and refused if it is far larger.

    >>> build_from_source({"source": "builtin:digits-mlp"})  # doctest: +SKIP
    """
    source = manifest.get("source")
    kind, _, name = (source or "").partition(":")
    if kind == "torchvision":
        from netsculpt.data.names import torchvision_model

        return torchvision_model(name)
    if kind == "builtin":
        from netsculpt.data.models import build_builtin

        return build_builtin(name)
    limit = None if budget is None else GROWTH * budget + SLACK
    if kind == "hf":
        if limit is not None:
            _meta_size(lambda: _build_hf(manifest), limit, "config")
        return _build_hf(manifest)
    if kind == "netsculpt":
        cls = _import_class(manifest["class"])
        init = {k: _from_json(v) for k, v in (manifest.get("init") or {}).items()}
        return construct(cls, init, "manifest.json: init", budget, GROWTH)
    raise InputError(
        f"manifest.json: source {source!r} does not say how to build {manifest.get('class')}; "
        "pass a fresh instance: netsculpt.load(folder, model)"
    )


def _build_hf(manifest: dict[str, Any]) -> nn.Module:
    config_dict = manifest.get("config")
    if not config_dict:
        raise InputError("manifest.json: source 'hf' but no 'config' recorded")
    import transformers

    from netsculpt.hf.io import depth_for_manifest

    # build as deep as the manifest's layer references need; the saved depth is set back later
    config_dict = depth_for_manifest(config_dict, manifest.get("modules", []))
    class_name = manifest.get("class", "")
    cls = None
    if class_name.startswith("transformers."):
        cls = getattr(transformers, class_name.rpartition(".")[2], None)
    if cls is None:
        archs = config_dict.get("architectures") or []
        cls = getattr(transformers, archs[0], None) if archs else None
    try:
        if cls is None:
            config = transformers.AutoConfig.for_model(**config_dict)
            return transformers.AutoModel.from_config(config)
        try:
            config = cls.config_class.from_dict(config_dict)
        except Exception:  # noqa: BLE001 - huggingface_hub's validation error is its own class
            # a family validator (e.g. LLaMA's hidden_size % heads == 0) may reject widths that
            # surgery made and an explicit head_dim builds fine; the manifest checks every shape
            with _validators_off(cls.config_class):
                config = cls.config_class.from_dict(config_dict)
        return cls._from_config(config)
    except Exception as exc:  # noqa: BLE001 - a hand-edited config fails in many ways
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ManifestError(
            f"load: manifest.json: config: cannot build the model ({first})"
        ) from exc


@contextmanager
def _validators_off(config_cls: type) -> Iterator[None]:
    """Suspend the class validators of a strict-dataclass config class while it is built."""
    saved = {k: vars(k)["__class_validators__"] for k in config_cls.__mro__
             if "__class_validators__" in vars(k)}  # fmt: skip
    try:
        for k in saved:
            k.__class_validators__ = []
        yield
    finally:
        for k, v in saved.items():
            k.__class_validators__ = v
