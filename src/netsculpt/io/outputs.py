"""Where netsculpt writes: output checks, atomic writes, and what an interrupted save left.

The rules (also in ``docs/safety.md``):

* A save folder belongs to netsculpt only while it holds nothing but netsculpt's files
  (:data:`OWN_FILES`, and the ``report.json`` / ``report.html`` that a recipe run wrote there).
  Saving onto a folder that holds anything else is refused; nothing the user put there is ever
  deleted.
* Bad targets are refused before any work: a dangling symlink, a path under a file, a folder
  that cannot be written.
* Files are written under a temporary name and renamed into place; the save folder is swapped
  as a whole (``OUT`` → ``.OUT.old-PID``, ``.OUT.tmp-PID-*`` → ``OUT``). If the process dies
  between the two renames, the next save puts the old copy back before it starts, and
  ``netsculpt.load`` says where it is. Stale temporary folders of dead processes are removed.
* Files and folders get the permissions the umask allows (0644 / 0755 under umask 022).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

from netsculpt.core.errors import InputError
from netsculpt.core.files import current_umask, dir_mode, file_mode, write_text_atomic  # noqa: F401

WEIGHTS = "model.safetensors"
MANIFEST = "manifest.json"
OWN_FILES = (MANIFEST, WEIGHTS)
REPORTS = ("report.json", "report.html")  # written next to the model by ``netsculpt run``


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder entry list) to disk; best effort where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _nearest_existing(path: Path, what: str) -> Path:
    anc = path.parent
    while not anc.exists():
        if anc.is_symlink():
            raise InputError(f"{what} {path}: {anc} is a dangling symbolic link")
        if anc == anc.parent:
            break
        anc = anc.parent
    return anc


def check_location(path: Path, what: str = "output") -> None:
    """Refuse ``path`` when it cannot be created: under a file, a dangling link, read-only."""
    anc = _nearest_existing(path, what)
    if not anc.is_dir():
        raise InputError(f"{what} {path}: {anc} is a file, not a folder")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: {anc} is read-only for this user")


def check_file_target(path: str | os.PathLike, suffixes: Iterable[str] = (), what="output") -> Path:
    """Refuse a file output (a report, a plot) before any work is done."""
    p = Path(path)
    suffixes = tuple(suffixes)
    if suffixes and p.suffix not in suffixes:
        raise InputError(f"{what} {p} must end in {' or '.join(suffixes)}")
    if p.is_symlink() and not p.exists():
        raise InputError(f"{what} {p} is a dangling symbolic link")
    if p.is_dir():
        raise InputError(f"{what} {p} is a folder; give a file name")
    check_location(p, what)
    return p


def _wrote_report(entry: Path) -> bool:
    """A ``report.json`` / ``report.html`` with the content netsculpt writes."""
    try:
        head = entry.read_text(encoding="utf-8", errors="replace")[:100_000]
    except OSError:
        return False
    if entry.name == "report.json":
        try:
            data = json.loads(head)
        except ValueError:
            return False
        return isinstance(data, dict) and {"op", "before", "after"} <= set(data)
    return "<h1>netsculpt " in head


def is_own(entry: Path) -> bool:
    """Did netsculpt write this entry of a save folder?"""
    if entry.is_symlink() or not entry.is_file():
        return False
    return entry.name in OWN_FILES or (entry.name in REPORTS and _wrote_report(entry))


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that netsculpt did not write."""
    return sorted(e.name + ("/" if e.is_dir() else "") for e in folder.iterdir() if not is_own(e))


def check_save_target(target: str | os.PathLike, what: str = "save:") -> Path:
    """Refuse a save folder before any work is done (see the module docstring for the rules)."""
    p = Path(target)
    if p.is_symlink():
        state = "a dangling symbolic link" if not p.exists() else "a symbolic link"
        raise InputError(f"{what} {p} is {state}; give a real folder")
    if p.exists() and not p.is_dir():
        raise InputError(f"{what} {p} exists and is not a directory")
    if p.is_dir():
        entries = list(p.iterdir())
        if entries and not (p / MANIFEST).is_file():
            raise InputError(
                f"{what} {p} is not empty and not a netsculpt folder; refusing to overwrite"
            )
        foreign = foreign_entries(p)
        if foreign:
            shown = ", ".join(foreign[:4]) + (f" (+{len(foreign) - 4} more)" if foreign[4:] else "")
            raise InputError(
                f"{what} {p} holds files netsculpt did not write ({shown}); netsculpt replaces "
                f"a folder only when it holds nothing but {MANIFEST} and {WEIGHTS}: move them "
                "or save elsewhere"
            )
        if not os.access(p.parent, os.W_OK | os.X_OK):
            raise InputError(f"{what} {p}: {p.parent} is read-only for this user")
    else:
        check_location(p, what.rstrip(":"))
    return p


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?P<kind>old|tmp)-(?P<pid>\d+)(-.*)?$")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is not saving there right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def leftovers(target: Path) -> dict[str, list[Path]]:
    """``{"old": [...], "tmp": [...]}``: what interrupted saves of dead processes left next to
    ``target``, newest first."""
    out: dict[str, list[Path]] = {"old": [], "tmp": []}
    parent = target.parent if str(target.parent) else Path(".")
    try:
        entries = list(parent.iterdir())
    except OSError:
        return out
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if not (m and m["name"] == target.name and entry.is_dir()) or entry.is_symlink():
            continue
        if not _alive(int(m["pid"])):
            out[m["kind"]].append(entry)
    for kind in out:
        out[kind].sort(key=lambda e: e.stat().st_mtime, reverse=True)
    return out


def remove_own(folder: Path) -> bool:
    """Delete netsculpt's files in ``folder`` and the folder if that empties it; True if gone."""
    for entry in folder.iterdir():
        if is_own(entry):
            entry.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        return False
    return True


def recover(target: Path) -> None:
    """Undo what a killed save left: the previous copy goes back to ``target`` when that is
    missing; stale copies and temporary folders are removed (or named, if they hold files that
    netsculpt did not write)."""
    found = leftovers(target)
    if not target.exists() and not target.is_symlink():
        for old in found["old"]:
            if (old / MANIFEST).is_file():
                old.rename(target)
                found["old"].remove(old)
                warnings.warn(
                    f"save: put back {target} from {old.name}, left by an interrupted save",
                    stacklevel=3,
                )
                break
    for stale in found["old"] + found["tmp"]:
        if not remove_own(stale):
            warnings.warn(
                f"save: {stale} was left by an interrupted save and holds other files; "
                "remove it yourself",
                stacklevel=3,
            )


def interrupted_message(target: Path) -> str | None:
    """For ``load``: where the previous copy of a missing save folder is, if anywhere."""
    found = leftovers(target)
    for old in found["old"]:
        if (old / MANIFEST).is_file():
            return (
                f"load: {target} is missing; an interrupted save left the previous copy in "
                f"{old}: rename it back to {target.name} (the next netsculpt.save does this)"
            )
    for tmp in found["tmp"]:
        return f"load: {target} is missing; an interrupted save left {tmp} (possibly incomplete)"
    return None
