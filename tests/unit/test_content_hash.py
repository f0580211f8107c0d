"""The content hash decides whether an upsert costs an LLM call and embeddings."""

from __future__ import annotations

from recsys.enrichment import content_hash, enriched_text, raw_text
from recsys.records import CatalogChange

BASE = CatalogChange(
    item_id="i1",
    version=1,
    title="Heat (1995)",
    categories=["Crime", "Thriller"],
    description="A heist crew and a detective.",
    attributes={"year": "1995", "language": "en"},
)


def changed(**fields: object) -> CatalogChange:
    return BASE.model_copy(update=fields)


def test_cosmetic_differences_and_non_content_fields_do_not_change_the_hash() -> None:
    h = content_hash(BASE)
    assert len(h) == 64
    assert content_hash(changed(title="  Heat   (1995) ")) == h
    assert content_hash(changed(categories=["Thriller", "Crime"])) == h
    assert content_hash(changed(attributes={"language": "en", "year": "1995"})) == h
    assert content_hash(changed(version=9, available=False, change_id="other", item_id="i2")) == h


def test_content_changes_change_the_hash() -> None:
    h = content_hash(BASE)
    assert content_hash(changed(title="Heat")) != h
    assert content_hash(changed(categories=["Crime"])) != h
    assert content_hash(changed(description="A heist crew.")) != h
    assert content_hash(changed(attributes={"year": "1996", "language": "en"})) != h


def test_the_embedded_texts() -> None:
    assert (
        raw_text(BASE.title, BASE.categories, BASE.description)
        == "Heat (1995). Crime, Thriller. A heist crew and a detective."
    )
    assert raw_text("Only a title", [], "") == "Only a title."
    text = enriched_text(
        "Heat", ["Crime"], "Cops and robbers.", ["heist"], "tense", "adults", ["crime"]
    )
    assert (
        text == "Heat. Crime. Cops and robbers. Themes: heist. Mood: tense. Audience: adults. "
        "Tags: crime."
    )
