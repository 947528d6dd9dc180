"""The schema of ``manifest.json``, checked before anything is built from it.

A manifest is data that rebuilds code objects (modules, their sizes, their attributes), so a
hand-edited or hostile one is refused field by field with one line that names the field:

* containers have the types below, unknown keys are errors;
* sizes are integers in ``[0, 2**31)`` (shapes) or ``[1, 2**31)`` (structural attributes);
* module paths are dotted names without dunder parts (``__class__`` is never a path);
* module types come from ``torch.nn`` or ``netsculpt`` only (checked again on import);
* constructor kwargs are JSON scalars or lists of them, floats finite.

What needs the model (paths that exist, attributes the module has, shapes that match the
weights file) is checked while loading, in :mod:`netsculpt.io.loading`.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from netsculpt.core.errors import ManifestError

MAX_DIM = 2**31 - 1
MASK_PREFIX = "__mask__."  # keys of the weights file that hold pruning masks
BUFFER_PREFIX = "__buffer__."  # non-persistent buffers (not in state_dict, may have new shapes)
# constructor arguments that are sizes: integers >= 1 (None where the layer allows it)
SIZE_KWARGS = (
    "in_features", "out_features", "in_channels", "out_channels", "num_features",
    "num_groups", "num_channels", "embedding_dim", "num_embeddings", "embed_dim", "num_heads",
    "inner_dim", "kdim", "vdim", "hidden_dim", "groups", "channels",
)  # fmt: skip
_PART = r"[A-Za-z0-9_\-]+"
PATH_RE = re.compile(rf"^{_PART}(\.{_PART})*$")
TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
SOURCE_RE = re.compile(r"^[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-/]+)?$")  # e.g. torchvision:resnet50
ALLOWED_PREFIXES = ("torch.nn.", "netsculpt.")

Dim = Annotated[StrictInt, Field(ge=0, le=MAX_DIM)]
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr | None


def check_path(path: str, *, empty: bool = False) -> str:
    """A dotted module / tensor path with no dunder part (``""`` only when ``empty``)."""
    if path == "" and empty:
        return path
    if not PATH_RE.match(path) or any(part.startswith("__") for part in path.split(".")):
        raise ValueError(f"{path!r} is not a module path (dotted names, no dunder parts)")
    return path


def check_value(value: Any, depth: int = 0) -> Any:
    """A JSON scalar, or a (nested, shallow) list of them; floats finite, ints bounded."""
    if isinstance(value, list):
        if depth >= 3 or len(value) > 64:
            raise ValueError("lists nest at most 3 deep and hold at most 64 items")
        return [check_value(v, depth + 1) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > MAX_DIM:
            raise ValueError(f"{value} is out of range (|value| < 2**31)")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        return value
    if isinstance(value, str):
        if len(value) > 256:
            raise ValueError("strings are at most 256 characters")
        return value
    raise ValueError(f"a {type(value).__name__} is not a plain JSON value")


class Spec(BaseModel):
    """How to rebuild one module: a reference, a copy, or a type with kwargs (and children)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: StrictStr | None = None
    ref: StrictStr | None = None
    copy_: StrictStr | None = Field(default=None, alias="copy")
    type: StrictStr | None = None
    kwargs: dict[StrictStr, Any] = Field(default_factory=dict)
    children: list[tuple[StrictStr, Spec]] | None = None

    @field_validator("path", "ref", "copy_")
    @classmethod
    def _paths(cls, v: str | None) -> str | None:
        return None if v is None else check_path(v)

    @field_validator("type")
    @classmethod
    def _type(cls, v: str | None) -> str | None:
        if v is not None and not (TYPE_RE.match(v) and v.startswith(ALLOWED_PREFIXES)):
            raise ValueError(f"{v!r}: only torch.nn and netsculpt classes are rebuilt")
        if v is not None and any(p.startswith("_") for p in v.split(".")[2:]):
            raise ValueError(f"{v!r}: private classes are not rebuilt")
        return v

    @field_validator("kwargs")
    @classmethod
    def _kwargs(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if not key.isidentifier() or key.startswith("__"):
                raise ValueError(f"{key!r} is not a constructor argument name")
            try:
                check_value(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
            bad_size = type(value) is not int or not 1 <= value <= MAX_DIM
            if key in SIZE_KWARGS and value is not None and bad_size:
                raise ValueError(f"{key} must be an integer in [1, 2**31), got {value!r}")
        return v

    @field_validator("children")
    @classmethod
    def _children(cls, v: list | None) -> list | None:
        for name, _ in v or []:
            if not re.match(rf"^{_PART}$", name) or name.startswith("__"):
                raise ValueError(f"child name {name!r} is not a plain module name")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> Spec:
        kinds = [k for k in ("ref", "copy_", "type") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("a module spec has exactly one of 'ref', 'copy', 'type'")
        if self.type is None and (self.kwargs or self.children is not None):
            raise ValueError("'kwargs' / 'children' go with 'type' only")
        return self


class Manifest(BaseModel):
    """``manifest.json`` as :func:`netsculpt.io.saving.build_manifest` writes it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    format: Literal["netsculpt/1"]
    class_: StrictStr = Field(alias="class")
    source: StrictStr | None = None
    shapes: dict[StrictStr, list[Dim]] = Field(default_factory=dict)
    aliases: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    attrs: dict[StrictStr, dict[StrictStr, Any]] = Field(default_factory=dict)
    modules: list[Spec] = Field(default_factory=list)
    config: dict[StrictStr, Any] | None = None
    masks: list[StrictStr] = Field(default_factory=list)
    init: dict[StrictStr, Any] | None = None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is not None and not SOURCE_RE.match(v):
            raise ValueError(f"{v!r} is not a source such as torchvision:NAME or builtin:NAME")
        return v

    @field_validator("class_")
    @classmethod
    def _class(cls, v: str) -> str:
        if len(v) > 500:  # a label (only a netsculpt source imports it, after its own checks)
            raise ValueError("at most 500 characters")
        return v

    @field_validator("shapes", "aliases")
    @classmethod
    def _tensor_names(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            check_path(key)
            if isinstance(value, str):
                check_path(value)
            elif len(value) > 8:
                raise ValueError(f"{key}: a tensor has at most 8 dimensions")
        return v

    @field_validator("attrs")
    @classmethod
    def _attrs(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for path, values in v.items():
            check_path(path, empty=True)
            for name, value in values.items():
                if not name.isidentifier() or name.startswith("__"):
                    raise ValueError(f"{path!r}: {name!r} is not an attribute name")
                try:
                    check_value(value)
                except ValueError as exc:
                    raise ValueError(f"{path!r}.{name}: {exc}") from None
        return v

    @field_validator("init")
    @classmethod
    def _init(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, value in (v or {}).items():
            try:
                check_value(value)
            except ValueError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return v

    @model_validator(mode="after")
    def _spec_paths(self) -> Manifest:
        for i, spec in enumerate(self.modules):
            if spec.path is None:
                raise ValueError(f"modules[{i}] has no 'path'")
        return self


_MAPS = ("shapes", "aliases", "attrs", "kwargs", "config", "init")  # keys shown as ['key']


def _loc(loc: tuple) -> str:
    out, prev = "", None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif prev in _MAPS:
            out += f"[{part!r}]"
        elif part in ("function-after", "function-before") or "[" in str(part):
            continue  # pydantic's names for validator steps and union members
        else:
            out += f".{'class' if part == 'class_' else 'copy' if part == 'copy_' else part}"
        prev = part
    return out.lstrip(".") or "(top level)"


def validate_manifest(data: Any, where: str) -> Manifest:
    """The parsed manifest, or ManifestError naming the first bad field in one line."""
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise ManifestError(f"load: {where}: {_loc(tuple(err['loc']))}: {msg}") from None
