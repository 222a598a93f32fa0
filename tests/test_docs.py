"""Links in the project's markdown lead somewhere: a moved report or a retitled docs section
otherwise leaves the README's pointers dangling without anyone noticing."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks (a '#' comment in a shell block is no heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: Counter[str] = Counter()
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if not seen[s] else f"{s}-{seen[s]}")  # repeated headings get -1, -2, ...
            seen[s] += 1
    return out


def _documents() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return docs + sorted((ROOT / "reports").glob("*/report.md"))


def test_slug_matches_githubs_rule():
    assert slug("Equal compute on eight EPYC seeds (`outer-loop-59tasks-compute-8seeds-amd`)") == \
        "equal-compute-on-eight-epyc-seeds-outer-loop-59tasks-compute-8seeds-amd"
    assert slug("The Xeon's eight seeds, replayed") == "the-xeons-eight-seeds-replayed"
    assert slug("GPU (issue 8)") == "gpu-issue-8"


@pytest.mark.parametrize("doc", _documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path):
    """Every relative link names a file that exists, and an anchor into markdown names a heading.
    Links that leave the repository (../shared/DESIGN.md) are not checked: a checkout need not
    sit beside that folder."""
    broken = []
    for line in _prose(doc.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto
            file, _, anchor = target.partition("#")
            dest = (doc.parent / file).resolve() if file else doc
            if not dest.is_relative_to(ROOT):
                continue
            if not dest.exists():
                broken.append(f"{target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{doc.relative_to(ROOT)}: " + "; ".join(broken)
