"""The enrichment answer contract: what the LLM may put into the item table."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from recsys.enrichment import Enrichment, Taxonomy, enrichment_prompt
from recsys.enrichment.schema import enrichment_schema
from recsys.enrichment.taxonomy import DEFAULT_TAGS, normalise_tag

TAXONOMY = Taxonomy()
GOOD = {
    "summary": "A crew meets a creature in deep space.",
    "themes": ["isolation", "survival"],
    "mood": "tense",
    "audience": "adults",
    "tags": ["horror", "Sci-Fi", "space", "horror"],
}


def validate(data: dict[str, object], taxonomy: Taxonomy | None = TAXONOMY) -> Enrichment:
    context = {"taxonomy": taxonomy} if taxonomy is not None else None
    return Enrichment.model_validate(data, context=context)


def test_a_good_answer_validates_and_tags_are_normalised() -> None:
    e = validate(GOOD)
    assert e.tags == ["horror", "sci-fi", "space"]
    assert e.summary == GOOD["summary"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"summary": " ".join(["word"] * 81)}, "81 words, at most 80"),
        ({"tags": ["horror", "free-money"]}, "outside the taxonomy"),
        ({"confidence": 0.9}, "Extra inputs are not permitted"),
        ({"audience": "everyone"}, "audience"),
        ({"summary": ""}, "summary"),
        ({"themes": ["x"] * 7}, "themes"),
    ],
)
def test_bad_answers_are_rejected_with_the_reason(change: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        validate(GOOD | change)


def test_a_missing_field_is_rejected() -> None:
    data = dict(GOOD)
    del data["mood"]
    with pytest.raises(ValidationError, match="mood"):
        validate(data)


def test_tags_cannot_be_validated_without_a_taxonomy() -> None:
    with pytest.raises(ValidationError, match="no taxonomy"):
        validate(GOOD, taxonomy=None)


def test_exactly_80_words_is_fine() -> None:
    assert len(validate(GOOD | {"summary": " ".join(["w"] * 80)}).summary.split()) == 80


def test_taxonomy_from_the_setting_or_the_default() -> None:
    assert Taxonomy.from_setting(None).tags == tuple(normalise_tag(t) for t in DEFAULT_TAGS)
    custom = Taxonomy.from_setting(("Film Noir", "film-noir", "Cozy"))
    assert custom.tags == ("film-noir", "cozy") and "FILM NOIR" in custom and "horror" not in custom
    with pytest.raises(ValueError, match="empty"):
        Taxonomy([" ", "--"])
    with pytest.raises(ValidationError, match="outside the taxonomy"):
        validate(GOOD, taxonomy=custom)


def test_the_schema_lists_the_taxonomy_and_the_prompt_version_follows_it() -> None:
    schema = enrichment_schema(TAXONOMY)
    assert schema["properties"]["tags"]["items"]["enum"] == list(TAXONOMY.tags)
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(Enrichment.model_fields)
    small = Taxonomy(["horror", "space"])
    assert enrichment_prompt(TAXONOMY).version == enrichment_prompt(Taxonomy()).version
    assert enrichment_prompt(small).version != enrichment_prompt(TAXONOMY).version
