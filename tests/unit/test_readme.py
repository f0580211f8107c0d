from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.settings_doc import settings_markdown

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SETTINGS_PAGE = REPO / "docs" / "settings.md"
#: Markdown links and images: [text](target) — the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def _pages() -> list[Path]:
    return [README, *sorted((REPO / "docs").rglob("*.md")), *sorted(REPO.glob("*/README.md"))]


def test_settings_page_is_generated_from_the_settings_class() -> None:
    assert SETTINGS_PAGE.read_text() == settings_markdown(), (
        "docs/settings.md is stale: run `streamrec settings --markdown > docs/settings.md`"
    )


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head and "make test" in head


def test_readme_is_a_door_not_a_notebook() -> None:
    assert len(README.read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            broken.append(f"{target} (links outside the repository)")
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif not resolved.is_relative_to(REPO):
            broken.append(f"{target} (outside the repository)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor})")
    assert broken == []


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            out.add(text.replace(" ", "-"))
    return out
