"""The README's rendered blocks match the results files they are rendered from (benchmarks/render.py): a number
there is never typed by hand, and a results file re-run without re-rendering fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _render():
    spec = importlib.util.spec_from_file_location("render", REPO / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_blocks_are_what_the_results_say():
    render = _render()
    text = (REPO / "README.md").read_text()
    _, changed = render.render(text)
    assert not changed, f"run python benchmarks/render.py: {changed} differ from benchmarks/results"


def test_a_block_out_of_date_is_named_and_an_unknown_one_refused():
    render = _render()
    text = (REPO / "README.md").read_text()
    if "<!-- render: real-summary -->" not in text:
        pytest.skip("the README has no real-summary block yet")
    stale = text.replace("<!-- render: real-summary -->\n", "<!-- render: real-summary -->\n| 9.999 |\n", 1)
    assert render.render(stale)[1] == ["real-summary"]
    with pytest.raises(KeyError, match="no renderer for block 'nope'"):
        render.render("<!-- render: nope -->\nx\n<!-- /render -->")
