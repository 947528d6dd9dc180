"""Every command against the table of bad inputs in ``cli_cases.py``: exit status 2, one line
on stderr, no traceback, the temp folder unchanged, no embedded code run."""

from __future__ import annotations

import pytest

from .cli_cases import CASES, problems, run_case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(case, tmp_path):
    result = run_case(case, tmp_path)
    if "skip" in result:
        pytest.skip(result["skip"])
    assert problems(case, result) == [], result["lines"]
