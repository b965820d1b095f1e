"""No number in README.md or docs/ is typed by hand (benchmarks/render.py): every measured number sits in a block
rendered from `benchmarks/results/`, a results file re-run without re-rendering fails here, and a figure typed into
the prose fails here too."""

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


def test_every_page_has_docs_and_blocks():
    render = _render()
    names = [p.relative_to(REPO).as_posix() for p in render.pages()]
    assert "README.md" in names and any(n.startswith("docs/benchmarks/") for n in names), names


@pytest.mark.parametrize("page", [p.relative_to(REPO).as_posix() for p in _render().pages()])
def test_the_blocks_are_what_the_results_say_and_no_number_is_typed_by_hand(page):
    render = _render()
    text = (REPO / page).read_text()
    _, changed = render.render(text)
    assert not changed, f"run python benchmarks/render.py: {changed} differ from benchmarks/results"
    typed = render.handwritten_numbers(text)
    assert not typed, f"{page}: numbers typed by hand (render them from a results file): {typed[:20]}"


def test_a_block_out_of_date_is_named_an_unknown_one_refused_and_a_typed_number_found():
    render = _render()
    block = "<!-- render: real-summary -->\n| 9.999 |\n<!-- /render -->\n"
    assert render.render(block)[1] == ["real-summary"]
    with pytest.raises(KeyError, match="no renderer for block 'nope'"):
        render.render("<!-- render: nope -->\nx\n<!-- /render -->")
    text = ("Mined beat random by 0.12 on Python 3.11.\n```\ndataengine mine --budget 30\n```\n"
            "Set `--k 20`; see [the page](docs/a1.md).\n1. first\n" + render.render(block)[0])
    assert render.handwritten_numbers(text) == ["line 1: 0.12"]
    assert render.handwritten_numbers("a gain of −0.5 ± 0.2 (12 %)\n") == ["line 1: −0.5", "line 1: 0.2",
                                                                             "line 1: 12"]


def test_every_renderer_renders_its_results():
    render = _render()
    for name, (source, renderer) in render.RENDERERS.items():
        body = renderer(render.load(source))
        assert body.strip() and body.endswith("\n"), name
