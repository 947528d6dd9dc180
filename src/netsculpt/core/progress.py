"""One progress system for every long step (capture, scoring, calibration, surgery, heal,
export, shard I/O).

* On a terminal (stderr is a TTY): a live rich display — spinner, bar, count, elapsed time —
  that disappears when the work is done; a step that took longer than :data:`MIN_SECONDS`
  leaves one line saying how long.
* In a pipe or a log file: plain lines and never a carriage return — at most one line per step
  (when it ends) and one per 10 % of a loop, and only for work that has run longer than
  :data:`MIN_SECONDS`.
* Quiet (``-q``): nothing. Verbose (``-v``): a line when every step starts and ends, and the
  progress bars and warnings of transformers / huggingface_hub are left on (otherwise off).

The level comes from :func:`set_level` or the ``NETSCULPT_VERBOSITY`` environment variable
(``quiet`` / ``normal`` / ``verbose``, or 0 / 1 / 2), so child processes inherit it. This
module imports nothing of netsculpt and imports rich only when a terminal display is shown.

>>> from netsculpt.core import progress
>>> with progress.step("capture"):
...     pass
>>> sum(progress.track(range(4), "sum"))
6
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "NETSCULPT_VERBOSITY"
QUIET, NORMAL, VERBOSE = 0, 1, 2
MIN_SECONDS = 2.0  # work shorter than this writes no line to a log
MIN_SECONDS_ENV = "NETSCULPT_PROGRESS_MIN_SECONDS"  # overrides MIN_SECONDS (tests, CI logs)
_NAMES = {"quiet": QUIET, "normal": NORMAL, "verbose": VERBOSE}
_LIBRARY_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}

_state: dict[str, Any] = {"level": None, "live": None, "users": 0, "set_env": {}}


# -- level ----------------------------------------------------------------------------------
def level() -> int:
    """The current level: :data:`QUIET` (0), :data:`NORMAL` (1) or :data:`VERBOSE` (2)."""
    if _state["level"] is not None:
        return _state["level"]
    return _parse(os.environ.get(ENV, ""), NORMAL)


def _parse(value: Any, default: int) -> int:
    if isinstance(value, int):
        return max(QUIET, min(VERBOSE, value))
    text = str(value).strip().lower()
    if text in _NAMES:
        return _NAMES[text]
    try:
        return max(QUIET, min(VERBOSE, int(text)))
    except ValueError:
        return default


def set_level(value: int | str | None) -> int:
    """Set the level for this process and its children (``None``: undo, back to the level the
    environment gave before).

    >>> _ = set_level("quiet"); level()
    0
    >>> set_level(None) in (0, 1, 2)
    True
    """
    if "env_before" not in _state:
        _state["env_before"] = os.environ.get(ENV)
    if value is None:
        _state["level"] = None
        before = _state.pop("env_before")
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
    else:
        _state["level"] = _parse(value, NORMAL)
        os.environ[ENV] = str(_state["level"])
    quiet_libraries()
    return level()


def quiet_libraries() -> None:
    """Turn the progress bars and info logs of transformers / huggingface_hub off below
    :data:`VERBOSE`, back on at it. Works before and after those libraries are imported."""
    quiet = level() < VERBOSE
    ours = _state["set_env"]
    for key, value in _LIBRARY_ENV.items():
        if quiet and key not in os.environ:
            os.environ[key] = ours[key] = value
        elif not quiet and key in ours and os.environ.get(key) == ours.pop(key):
            del os.environ[key]
    if "huggingface_hub" in sys.modules:
        from huggingface_hub import utils as hub

        (hub.disable_progress_bars if quiet else hub.enable_progress_bars)()
    if "transformers" in sys.modules:
        from transformers.utils import logging as tf_logging

        if quiet:
            tf_logging.disable_progress_bar()
            tf_logging.set_verbosity_error()
        else:
            tf_logging.enable_progress_bar()
            tf_logging.set_verbosity_warning()


def tqdm_disabled() -> bool:
    """``disable=`` for a third-party tqdm bar netsculpt starts: on only when verbose."""
    return level() < VERBOSE


# -- output ---------------------------------------------------------------------------------
def _tty() -> bool:
    isatty = getattr(sys.stderr, "isatty", None)
    try:
        return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
    except ValueError:  # a closed stream
        return False


def _line(text: str) -> None:
    """One plain line on stderr (never a carriage return)."""
    try:
        sys.stderr.write(f"netsculpt: {text}\n")
        sys.stderr.flush()
    except (ValueError, OSError):
        pass


def _min_seconds() -> float:
    try:
        return float(os.environ[MIN_SECONDS_ENV])
    except (KeyError, ValueError):
        return MIN_SECONDS


def _seconds(t: float) -> str:
    return f"{t:.1f} s" if t < 120 else f"{int(t // 60)} min {t % 60:.0f} s"


def _acquire() -> Any:
    """The shared live rich display (started by the first user, stopped by the last)."""
    if _state["live"] is None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        live = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=24),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=True,
        )
        live.start()
        _state["live"] = live
    _state["users"] += 1
    return _state["live"]


def _release() -> None:
    _state["users"] -= 1
    if _state["users"] <= 0 and _state["live"] is not None:
        _state["live"].stop()
        _state["live"], _state["users"] = None, 0


def _done(label: str, elapsed: float, extra: str = "", failed: bool = False) -> None:
    what = "failed after" if failed else "done in"
    text = f"{label}: {what} {_seconds(elapsed)}{extra}"
    live = _state["live"]
    if live is not None:
        live.console.print(f"[dim]netsculpt: {text}[/dim]", highlight=False)
    else:
        _line(text)


# -- the public API -------------------------------------------------------------------------
class Bar:
    """A loop's progress; made by :func:`bar` (use :meth:`advance` once per item)."""

    def __init__(self, label: str, total: int | None, enabled: bool = True) -> None:
        self.label, self.total, self.done = label, total, 0
        self.level = level() if enabled else QUIET
        self.start = time.perf_counter()
        self.info = ""
        self._decile = 0
        self._live = _acquire() if self.level and _tty() else None
        self._task = None
        if self._live is not None:
            self._task = self._live.add_task(label, total=total, count=self._count(), info="")

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else (str(self.done) if self.done else "")

    def advance(self, n: int = 1, **info: Any) -> None:
        """``n`` more items done; ``info`` (``loss=0.12``) is shown beside the bar."""
        self.done += n
        if info:
            self.info = " ".join(f"{k}={v}" for k, v in info.items())
        if self.level == QUIET:
            return
        if self._live is not None:
            self._live.update(self._task, completed=self.done, count=self._count(), info=self.info)
            return
        if not self.total:
            return
        decile = min(10, self.done * 10 // self.total)
        if decile <= self._decile:
            return
        self._decile = decile
        elapsed = time.perf_counter() - self.start
        if decile < 10 and (elapsed >= _min_seconds() or self.level >= VERBOSE):
            tail = f" {self.info}" if self.info else ""
            _line(f"{self.label}: {self._count()} ({decile * 10}%) {_seconds(elapsed)}{tail}")

    def close(self, failed: bool = False) -> None:
        if self.level == QUIET:
            return
        elapsed = time.perf_counter() - self.start
        if self._live is not None:
            self._live.remove_task(self._task)
        # a failure is the error message's to tell (one line); -v still shows the step's end
        if (elapsed >= _min_seconds() and not failed) or self.level >= VERBOSE:
            count = f", {self._count()}" if self.done else ""
            _done(self.label, elapsed, count + (f" {self.info}" if self.info else ""), failed)
        if self._live is not None:
            self._live = None
            _release()


@contextmanager
def bar(label: str, total: int | None = None, *, enabled: bool = True) -> Iterator[Bar]:
    """A progress bar for a loop the caller drives (``with bar("heal", 300) as b: b.advance()``).

    ``enabled=False`` shows nothing (a caller's own ``progress=False``)."""
    b = Bar(label, total, enabled)
    try:
        yield b
    except GeneratorExit:  # a track() whose consumer stopped early: not a failure
        b.close()
        raise
    except BaseException:
        b.close(failed=True)
        raise
    b.close()


def track(
    iterable: Iterable[T], label: str, total: int | None = None, *, enabled: bool = True
) -> Iterator[T]:
    """``iterable``'s items, with a progress bar labelled ``label`` while they are consumed.

    >>> [x * 2 for x in track([1, 2], "double")]
    [2, 4]
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with bar(label, total, enabled=enabled) as b:
        for item in iterable:
            yield item
            b.advance()


@contextmanager
def step(label: str, *, enabled: bool = True) -> Iterator[None]:
    """One step of work with no count (an export, a capture, a whole op): a spinner on a
    terminal; in a log one line when it ends, if it took longer than :data:`MIN_SECONDS`."""
    lvl = level() if enabled else QUIET
    if lvl == QUIET:
        yield
        return
    start = time.perf_counter()
    live = _acquire() if _tty() else None
    task = live.add_task(label, total=None, count="", info="") if live is not None else None
    if live is None and lvl >= VERBOSE:
        _line(f"{label}: started")
    failed = True
    try:
        yield
        failed = False
    finally:
        elapsed = time.perf_counter() - start
        if live is not None:
            live.remove_task(task)
        if (elapsed >= _min_seconds() and not failed) or lvl >= VERBOSE:
            _done(label, elapsed, failed=failed)
        if live is not None:
            _release()
