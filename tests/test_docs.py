"""The README and the manual in docs/: every relative link leads to a file (and a heading) that
exists, so pages can move without leaving dead links behind, and the README stays a short guide."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text: str) -> str:
    """Markdown without fenced code blocks, where brackets are not links."""
    return _FENCE.sub("", text)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower-cased, punctuation dropped except `-`
    and `_`, spaces turned into hyphens, and `-1`, `-2`, ... on repeats."""
    seen: dict[str, int] = {}
    result = set()
    for heading in _HEADING.findall(_prose(text)):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of `page` whose file is missing (and not pending) or outside `root`,
    or whose `#anchor` names no heading of its page."""
    root = root.resolve()
    text = page.read_text("utf-8")
    broken = []
    for target in _LINK.findall(_CODE_SPAN.sub("", _prose(text))):
        if _SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(root):
            broken.append(f"{target} (outside the repository)")
            continue
        if not file.exists():
            broken.append(f"{target} (no such file)")
            continue
        if anchor and file.suffix == ".md" and anchor not in anchors(file.read_text("utf-8")):
            broken.append(f"{target} (no heading #{anchor})")
    return broken


def test_readme_is_a_short_guide():
    lines = (ROOT / "README.md").read_text("utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(ROOT)))
def test_relative_links_lead_somewhere(page):
    assert broken_links(page) == []


def test_the_manual_has_its_pages():
    names = {page.name for page in pages()}
    manual = {"data", "training", "decoding", "serving", "deployment", "performance", "reliability"}
    assert {f"{name}.md" for name in manual} <= names


def test_broken_links_are_found(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n"
        "[ok](other.md#a-code-heading) [here](#title) [web](https://example.com)\n"
        "`[not a link](missing.md)`\n\n"
        "```\n[also not a link](missing.md)\n```\n\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [here too](#nope) [out](../x.md)\n"
    )
    assert broken_links(page, tmp_path) == [
        "missing.md (no such file)",
        "other.md#nope (no heading #nope)",
        "#nope (no heading #nope)",
        "../x.md (outside the repository)",
    ]
