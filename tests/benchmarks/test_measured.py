"""README's measured list is what ``benchmarks/measured.py`` makes of RESULTS.md today: a
figure typed into README, or a RESULTS.md section re-run without regenerating README, fails."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import measured  # noqa: E402


def test_readme_measured_list_is_generated_from_results():
    readme, results = measured.README.read_text(), measured.RESULTS.read_text()
    assert measured.updated(readme, results) == readme, (
        "README.md's measured list is out of date: run python benchmarks/measured.py"
    )


def test_every_results_section_with_a_bullet_is_quoted():
    block = measured.render(measured.RESULTS.read_text())
    names = set(measured.sections(measured.RESULTS.read_text()))
    for name, _ in measured.BULLETS:
        assert (f"_[{name}, " in block) == (name in names), name


def test_a_figure_that_moved_is_an_error_naming_its_section():
    results = measured.RESULTS.read_text().replace("Families run: **", "Families: **")
    if "<!-- timm-zoo:begin -->" not in results:
        pytest.skip("no timm-zoo section")
    with pytest.raises(measured.Missing, match="timm-zoo"):
        measured.render(results)
