"""A text corpus present on every machine (the standard library's docstrings) and a byte tokenizer."""

from __future__ import annotations

import functools
import importlib
import inspect

import torch

VOCAB_SIZE = 256  # byte-level: every UTF-8 byte is a token

# fixed list, fixed order: the corpus is the same on every run of one Python version
STDLIB_MODULES = (
    "argparse", "bisect", "calendar", "collections", "contextlib", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "heapq", "inspect",
    "itertools", "json", "logging", "math", "os", "pathlib", "pprint", "random", "re", "shutil",
    "statistics", "string", "tempfile", "textwrap", "typing", "unittest", "zipfile",
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def text_corpus() -> str:
    """Docstrings of a fixed list of standard-library modules and their public members.

    >>> len(text_corpus()) > 100_000
    True
    """
    parts: list[str] = []
    seen: set[str] = set()
    for name in STDLIB_MODULES:
        module = importlib.import_module(name)
        members = [("", module)] + sorted(
            (k, v) for k, v in vars(module).items() if not k.startswith("_")
        )
        for _, obj in members:
            doc = inspect.getdoc(obj)
            if doc and doc not in seen:  # re-exported names would repeat the same text
                seen.add(doc)
                parts.append(doc)
    return "\n\n".join(parts)


def encode(text: str) -> torch.Tensor:
    """UTF-8 bytes of ``text`` as a LongTensor (vocab 256).

    >>> encode("hi").tolist()
    [104, 105]
    """
    return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)


def decode(tokens: torch.Tensor) -> str:
    """Inverse of :func:`encode` (invalid byte sequences become U+FFFD).

    >>> decode(encode("héllo"))
    'héllo'
    """
    return bytes(int(t) for t in tokens.flatten().tolist()).decode("utf-8", errors="replace")
