from __future__ import annotations

from pathlib import Path

from workers.settings_doc import BEGIN, END, settings_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_generated_from_the_settings_class() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end].strip() == settings_markdown().strip(), (
        "README settings table is stale: run `streamrec settings --markdown` and paste it"
    )


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text()[:1500]
    assert "make demo" in head and "make test" in head
