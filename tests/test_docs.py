"""The pages a newcomer reads hold together: README.md stays a short product page (at most 300 lines, issue 45),
and every relative link in it and in docs/ reaches a file, and an anchor on that page where it names one."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def anchors(page: Path) -> set[str]:
    """The ids a link can name on a page: explicit `<a id>` anchors and GitHub's heading slugs."""
    text = FENCE.sub("", page.read_text())
    ids = set(re.findall(r'<a id="([^"]+)"', text))
    ids |= {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in re.findall(r"^#+\s+(.*)$", text, re.M)}
    return ids


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no anchor {anchor!r} on {dest.name}")
    return broken


def test_the_readme_is_a_short_page():
    lines = (REPO / "README.md").read_text().count("\n")
    assert lines <= 300, f"README.md has {lines} lines: move reference and results to docs/"


def test_every_link_in_the_readme_and_docs_resolves():
    broken = {page.relative_to(REPO).as_posix(): found for page in pages() if (found := broken_links(page))}
    assert not broken, broken


def test_a_broken_link_is_found(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title here\n[ok](#title-here) [gone](missing.md) [no anchor](page.md#nope)\n"
                    "```\n[in code](ignored.md)\n```\n")
    assert broken_links(page) == ["missing.md: no such file", "page.md#nope: no anchor 'nope' on page.md"]
