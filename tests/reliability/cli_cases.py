"""The table of bad command lines: every command against missing files, bad names and numbers,
bad output targets, corrupt manifests and hostile files.

Each case must end with exit status 2, one line on stderr (usage errors included), no
traceback, and the temp folder exactly as it was (types, sizes, modes, mtimes). ``run_case``
runs one case in-process and describes what happened; it needs nothing newer than the CLI's
``main``, so ``python -m tests.reliability.cli_cases`` scores any version of netsculpt
(on a92cc1e: 46 of the 92 cases failed, 28 of them with a raw traceback).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cli_setups import (
    IDENT,
    LINEAR,
    MARKER,
    SEQ,
    _attr,
    _bad_json,
    _bad_recipe,
    _corrupt_weights,
    _dangling,
    _evil_pt,
    _evil_pt2,
    _evil_weight_pt2,
    _file,
    _hf_bin,
    _hf_bin_code,
    _interrupted,
    _module,
    _ns_folder_with_user_files,
    _plain_dir,
    _readonly_out,
    _recipe,
    _saved,
    _set,
    _shape,
    _weights_symlink,
)
from .helpers import tree_state


@dataclass
class Case:
    id: str
    argv: list[str]  # "{t}" is the temp folder
    setup: Callable[[Path], None] | None = None
    match: str = ""  # expected in the error line
    usage: bool = False  # an argparse usage error (its message is argparse's own)


P = ["prune", "digits-mlp", "--amount", "0.5"]
UNDER_FILE = "{t}/notes.txt/out"

CASES = [
    # missing files and unknown model names
    Case("prune-missing-pt2", ["prune", "{t}/nothing.pt2", "--amount", "0.5", "-o", "{t}/out"],
         match="nothing.pt2"),
    Case("prune-unknown-name", ["prune", "no-such-model", "--amount", "0.5", "-o", "{t}/out"],
         match="no-such-model"),
    Case("analyze-unknown-name", ["analyze", "resnet9000"], match="resnet9000"),
    Case("cut-unknown-name", ["cut", "no-such-model", "--count", "1", "-o", "{t}/out"],
         match="no-such-model"),
    Case("merge-unknown-name", ["merge", "no-such-model", "-o", "{t}/out"], match="no-such-model"),
    Case("grow-unknown-name", ["grow", "no-such-model", "-o", "{t}/out"], match="no-such-model"),
    Case("heal-unknown-name", ["heal", "no-such-model", "--data", "digits", "-o", "{t}/out"],
         match="no-such-model"),
    Case("evaluate-unknown-name", ["evaluate", "no-such-model", "--data", "digits"],
         match="no-such-model"),
    Case("merge-models-missing", ["merge-models", "{t}/a", "{t}/b", "-o", "{t}/out"], match="a"),
    Case("run-missing-recipe", ["run", "{t}/missing.yaml"], match="missing.yaml"),
    Case("heal-unknown-teacher",
         ["heal", "digits-mlp", "--data", "digits", "--teacher", "nope", "-o", "{t}/out"],
         match="nope"),
    Case("evaluate-unknown-reference",
         ["evaluate", "digits-mlp", "--data", "digits", "--reference", "nope"], match="nope"),
    Case("prune-text-as-pt", ["prune", "{t}/notes.pt", "--amount", "0.5", "-o", "{t}/out"],
         _file("notes.pt"), match="notes.pt"),
    Case("prune-empty-folder", ["prune", "{t}/plain", "--amount", "0.5", "-o", "{t}/out"],
         lambda t: (t / "plain").mkdir(), match="manifest.json"),
    # bad numbers
    Case("prune-amount-nan", [*P[:3], "nan", "-o", "{t}/out"], match="amount"),
    Case("prune-amount-inf", [*P[:3], "inf", "-o", "{t}/out"], match="amount"),
    Case("prune-amount-negative", [*P[:3], "-1", "-o", "{t}/out"], match="amount"),
    Case("prune-amount-two", [*P[:3], "2", "-o", "{t}/out"], match="amount"),
    Case("prune-round-to-float", [*P, "--round-to", "2.5", "-o", "{t}/out"], usage=True,
         match="--round-to"),
    Case("prune-sparsity-nan", ["prune", "digits-mlp", "--sparsity", "nan", "-o", "{t}/out"],
         match="sparsity"),
    Case("cut-threshold-nan", ["cut", "digits-mlp", "--threshold", "nan", "-o", "{t}/out"],
         match="threshold"),
    Case("grow-factor-nan",
         ["grow", "digits-mlp", "--kind", "wider", "--factor", "nan", "-o", "{t}/out"],
         match="factor"),
    Case("heal-lr-nan",
         ["heal", "digits-mlp", "--data", "digits", "--lr", "nan", "--steps", "1", "-o",
          "{t}/out"], match="lr"),
    Case("merge-threshold-inf",
         ["merge", "digits-mlp", "--neurons", "--threshold", "inf", "-o", "{t}/out"],
         match="threshold"),
    Case("merge-models-lam-nan",
         ["merge-models", "digits-mlp", "digits-mlp", "--lam", "nan", "-o", "{t}/out"],
         match="lam"),
    # calibration data that does not exist
    Case("prune-missing-data",
         [*P, "--importance", "taylor", "--data", "nope", "-o", "{t}/out"], match="nope"),
    Case("analyze-missing-data", ["analyze", "digits-mlp", "--data", "nope"], match="nope"),
    Case("cut-missing-data",
         ["cut", "digits-mlp", "--data", "nope", "--count", "1", "-o", "{t}/out"], match="nope"),
    Case("grow-missing-data", ["grow", "digits-mlp", "--data", "nope", "-o", "{t}/out"],
         match="nope"),
    Case("heal-missing-data", ["heal", "digits-mlp", "--data", "nope", "-o", "{t}/out"],
         match="nope"),
    Case("evaluate-missing-data", ["evaluate", "digits-mlp", "--data", "nope"], match="nope"),
    # bad -o targets
    Case("prune-out-dangling-symlink", [*P, "-o", "{t}/link"], _dangling, match="link"),
    Case("prune-out-under-file", [*P, "-o", UNDER_FILE], _file("notes.txt"), match="notes.txt"),
    Case("prune-out-is-file", [*P, "-o", "{t}/notes.txt"], _file("notes.txt"), match="notes.txt"),
    Case("prune-out-foreign-folder", [*P, "-o", "{t}/out"], _plain_dir, match="out"),
    Case("prune-out-user-files", [*P, "-o", "{t}/out"], _ns_folder_with_user_files,
         match="notes.txt"),
    Case("prune-out-readonly", P, match="out"),  # -o filled in by run_case
    Case("cut-out-under-file", ["cut", "digits-mlp", "--count", "1", "-o", UNDER_FILE],
         _file("notes.txt"), match="notes.txt"),
    Case("merge-out-dangling-symlink", ["merge", "digits-mlp", "-o", "{t}/link"], _dangling,
         match="link"),
    Case("grow-out-is-file", ["grow", "digits-mlp", "-o", "{t}/notes.txt"], _file("notes.txt"),
         match="notes.txt"),
    Case("heal-out-under-file",
         ["heal", "digits-mlp", "--data", "digits", "--steps", "1", "-o", UNDER_FILE],
         _file("notes.txt"), match="notes.txt"),
    Case("merge-models-out-under-file",
         ["merge-models", "digits-mlp", "digits-mlp", "-o", UNDER_FILE], _file("notes.txt"),
         match="notes.txt"),
    Case("run-out-under-file", ["run", "{t}/r.yaml", "-q", "-o", UNDER_FILE],
         lambda t: (_recipe(t), _file("notes.txt")(t)), match="notes.txt"),
    Case("demo-out-under-file", ["demo", "--epochs", "1", "-o", UNDER_FILE], _file("notes.txt"),
         match="notes.txt"),
    # bad --report / --json / --plot targets
    Case("prune-report-suffix", [*P, "-o", "{t}/out", "--report", "{t}/r.txt"], match="r.txt"),
    Case("cut-report-suffix",
         ["cut", "digits-mlp", "--count", "1", "-o", "{t}/out", "--report", "{t}/r.txt"],
         match="r.txt"),
    Case("merge-report-suffix", ["merge", "digits-mlp", "-o", "{t}/out", "--report", "{t}/r.csv"],
         match="r.csv"),
    Case("grow-report-suffix", ["grow", "digits-mlp", "-o", "{t}/out", "--report", "{t}/r"],
         match="r"),
    Case("heal-report-suffix",
         ["heal", "digits-mlp", "--data", "digits", "--steps", "1", "-o", "{t}/out", "--report",
          "{t}/r.txt"], match="r.txt"),
    Case("analyze-report-suffix", ["analyze", "digits-mlp", "--report", "{t}/r.txt"],
         match="r.txt"),
    Case("prune-report-under-file", [*P, "-o", "{t}/out", "--report", "{t}/notes.txt/r.json"],
         _file("notes.txt"), match="notes.txt"),
    Case("prune-report-is-folder", [*P, "-o", "{t}/out", "--report", "{t}/r.json"],
         lambda t: (t / "r.json").mkdir(), match="r.json"),
    Case("evaluate-json-under-file",
         ["evaluate", "digits-mlp", "--data", "digits", "--json", "{t}/notes.txt/r.json"],
         _file("notes.txt"), match="notes.txt"),
    Case("analyze-plot-under-file",
         ["analyze", "digits-mlp", "--blocks", "--plot", "{t}/notes.txt/p.png"],
         _file("notes.txt"), match="notes.txt"),
    # hand-edited or damaged save folders
    Case("manifest-not-json", ["prune", "{t}/m", "--amount", "0.5", "-o", "{t}/out"], _bad_json,
         match="manifest.json"),
    Case("manifest-no-format", ["analyze", "{t}/m"], _saved(lambda m: m.pop("format")),
         match="format"),
    Case("manifest-modules-not-list", ["analyze", "{t}/m"], _saved(_set("modules", {})),
         match="modules"),
    Case("manifest-shapes-not-dict", ["analyze", "{t}/m"], _saved(_set("shapes", [1, 2])),
         match="shapes"),
    Case("manifest-attrs-not-dict", ["analyze", "{t}/m"], _saved(_set("attrs", "x")),
         match="attrs"),
    Case("manifest-negative-in-features", ["analyze", "{t}/m"],
         _saved(_attr("0", "in_features", -7)), match="in_features"),
    Case("manifest-float-in-features", ["analyze", "{t}/m"],
         _saved(_attr("0", "in_features", 2.5)), match="in_features"),
    Case("manifest-wrong-in-features", ["analyze", "{t}/m"],
         _saved(_attr("0", "in_features", 5)), match="in_features"),
    Case("manifest-unknown-attr", ["analyze", "{t}/m"], _saved(_attr("0", "forward", 1)),
         match="forward"),
    Case("manifest-dunder-attr", ["analyze", "{t}/m"], _saved(_attr("0", "__class__", 1)),
         match="__class__"),
    Case("manifest-attrs-no-module", ["analyze", "{t}/m"],
         _saved(_attr("nope", "in_features", 3)), match="nope"),
    Case("manifest-new-child-evil", ["analyze", "{t}/m"],
         _saved(_module({"path": "evil", "type": IDENT, "kwargs": {}})), match="evil"),
    Case("manifest-child-dunder-class", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "type": SEQ, "kwargs": {},
                         "children": [["__class__", {"type": IDENT, "kwargs": {}}]]})),
         match="__class__"),
    Case("manifest-ref-no-module", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "ref": "nope"})), match="nope"),
    Case("manifest-foreign-type", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "type": "os.system", "kwargs": {}})), match="os.system"),
    Case("manifest-kwargs-negative", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "type": LINEAR,
                         "kwargs": {"in_features": -7, "out_features": 3}})),
         match="in_features"),
    Case("manifest-kwargs-huge", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "type": LINEAR,
                         "kwargs": {"in_features": 10**7, "out_features": 10**7}})),
         match="kwargs"),
    Case("manifest-kwargs-string", ["analyze", "{t}/m"],
         _saved(_module({"path": "1", "type": LINEAR,
                         "kwargs": {"in_features": "64", "out_features": 3}})),
         match="in_features"),
    Case("manifest-shape-huge", ["analyze", "{t}/m"], _saved(_shape("0.weight", [10**7, 10**7])),
         match="0.weight"),
    Case("manifest-shape-negative", ["analyze", "{t}/m"], _saved(_shape("0.weight", [-1, 64])),
         match="0.weight"),
    Case("manifest-shape-float", ["analyze", "{t}/m"], _saved(_shape("0.weight", [64.5, 64])),
         match="0.weight"),
    Case("manifest-shape-no-param", ["analyze", "{t}/m"], _saved(_shape("9.weight", [3, 3])),
         match="9.weight"),
    Case("manifest-source-bad", ["analyze", "{t}/m"], _saved(_set("source", 7)), match="source"),
    Case("weights-symlink-outside", ["analyze", "{t}/m"], _weights_symlink,
         match="model.safetensors"),
    Case("weights-corrupt", ["analyze", "{t}/m"], _corrupt_weights, match="model.safetensors"),
    Case("interrupted-save", ["analyze", "{t}/m"], _interrupted, match=".m.old-"),
    # pickles: refused, never run
    Case("hf-bin-folder", ["prune", "{t}/hf", "--amount", "0.5", "-o", "{t}/out"], _hf_bin,
         match="pytorch_model.bin"),
    Case("hf-bin-folder-with-code", ["analyze", "{t}/hf"], _hf_bin_code,
         match="pytorch_model.bin"),
    Case("pt2-pickled-sample-inputs", ["prune", "{t}/evil.pt2", "--amount", "0.5", "-o",
                                       "{t}/out"], _evil_pt2, match="evil.pt2"),
    Case("pt2-pickled-weight", ["analyze", "{t}/evil.pt2"], _evil_weight_pt2, match="evil.pt2"),
    Case("pt2-evil-evaluate", ["evaluate", "{t}/evil.pt2", "--data", "digits"], _evil_pt2,
         match="evil.pt2"),
    Case("pt2-not-a-zip", ["analyze", "{t}/notes.pt2"], _file("notes.pt2"), match="notes.pt2"),
    Case("pt-with-code", ["prune", "{t}/evil.pt", "--amount", "0.5", "-o", "{t}/out"], _evil_pt,
         match="evil.pt"),
    Case("recipe-bad-yaml", ["run", "{t}/r.yaml"], _bad_recipe, match="r.yaml"),
    # argparse usage errors
    Case("no-command", [], usage=True),
    Case("unknown-command", ["sculpt"], usage=True, match="sculpt"),
    Case("prune-no-model", ["prune"], usage=True, match="model"),
    Case("grow-bad-kind", ["grow", "digits-mlp", "--kind", "taller", "-o", "{t}/out"],
         usage=True, match="taller"),
]  # fmt: skip


def run_case(case: Case, tmp: Path) -> dict:
    """Run ``case`` in ``tmp`` (also the working directory) with the in-process CLI."""
    from netsculpt.cli import main

    if case.setup is not None:
        case.setup(tmp)
    argv = [a.replace("{t}", str(tmp)) for a in case.argv]
    if case.id == "prune-out-readonly":
        extra = _readonly_out(tmp)
        if not extra:
            return {"skip": "no read-only folder on this machine"}
        argv += extra
    before = tree_state(tmp)
    err, escaped = io.StringIO(), None
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main(argv)
            except SystemExit as e:
                rc = e.code
            except Exception as e:  # escaped the CLI: a terminal would show a traceback
                rc, escaped = 1, e
    finally:
        os.chdir(cwd)
    after = tree_state(tmp)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
    return {
        "rc": rc,
        "lines": lines,
        "escaped": escaped,
        "traceback": escaped is not None or any("Traceback" in ln for ln in lines),
        "changed": changed,
        "ran_code": (tmp / MARKER).exists(),
    }


def problems(case: Case, r: dict) -> list[str]:
    """What is wrong with the outcome ``r`` of ``case`` (empty: all good)."""
    out = []
    if r["traceback"]:
        out.append(f"traceback ({type(r['escaped']).__name__ if r['escaped'] else 'printed'})")
    if r["rc"] != 2:
        out.append(f"exit status {r['rc']}")
    if len(r["lines"]) != 1:
        out.append(f"{len(r['lines'])} stderr lines")
    elif not r["lines"][0].startswith("netsculpt") or case.match not in r["lines"][0]:
        out.append(f"message {r['lines'][0]!r} lacks {case.match!r}")
    if r["changed"]:
        out.append(f"files changed: {', '.join(r['changed'][:4])}")
    if r["ran_code"]:
        out.append("EMBEDDED CODE RAN")
    return out


def summary(results: dict[str, tuple[Case, dict]]) -> dict:
    """Counts by kind of failure (for the record of how the original code behaved)."""
    tally = {"cases": len(results), "traceback": 0, "wrong_exit": 0, "multiline": 0,
             "files_changed": 0, "code_ran": 0, "any": 0}  # fmt: skip
    for case, r in results.values():
        if "skip" in r:
            tally["cases"] -= 1
            continue
        tally["traceback"] += r["traceback"]
        tally["wrong_exit"] += r["rc"] != 2
        tally["multiline"] += len(r["lines"]) > 1
        tally["files_changed"] += bool(r["changed"])
        tally["code_ran"] += r["ran_code"]
        tally["any"] += bool(problems(case, r))
    return tally


if __name__ == "__main__":  # python -m tests.reliability.cli_cases: the table's scorecard
    import sys
    import tempfile

    results = {}
    for case in CASES:
        with tempfile.TemporaryDirectory() as d:
            results[case.id] = (case, run_case(case, Path(d)))
        case_, r = results[case.id]
        print(case.id, "SKIP" if "skip" in r else (problems(case, r) or "ok"), file=sys.stderr)
    print(json.dumps(summary(results)))
