"""The local LLM's parts that need no model: compact prompts and their validation, the
settings wiring, and the server's queueing and cancellation (with a stand-in model)."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from recsys.dialogue.llm_reading import turn_prompt
from recsys.dialogue.llm_reading_compact import turn_prompt_compact, turn_schema_compact
from recsys.dialogue.reading import TurnParse
from recsys.enrichment.schema import MAX_SUMMARY_WORDS, enrichment_prompt
from recsys.enrichment.taxonomy import Taxonomy
from recsys.llm.prompts import unquote
from recsys.serving.intent import Intent, IntentParser, intent_prompt
from recsys.serving.intent_compact import (
    CompactIntent,
    intent_prompt_compact,
    intent_schema_compact,
)
from recsys.serving.rerank import rerank_prompt
from recsys.serving.rerank_compact import rerank_prompt_compact, rerank_schema_compact
from recsys.serving.rerank_prompt import validate_ranking
from stack.local_llm.engine import Generation, SamplingParams
from stack.local_llm.exceptions import InvalidRequest
from stack.local_llm.grammar import GrammarCompiler, strict_json
from stack.local_llm.model_file import ModelFile, resolve_model_file
from stack.local_llm.server import ChatRequest, LlmService, QueueFull
from stack.local_llm.wiring import local_llm_overrides
from tests.conftest import make_settings


def test_compact_rerank_keeps_the_numbered_protocol_and_bounds_the_answer() -> None:
    """Same key, same numbers 1..N as the standard prompt (one numbering scheme, one
    validator); only the length of the answer is bounded."""
    schema = rerank_schema_compact(12)
    ranking = schema["properties"]["ranking"]
    assert ranking["items"]["enum"] == list(range(1, 13))
    assert ranking["minItems"] == 1 and ranking["maxItems"] == 5
    assert schema["additionalProperties"] is False and schema["required"] == ["ranking"]
    assert rerank_schema_compact(3)["properties"]["ranking"]["maxItems"] == 3
    assert validate_ranking({"ranking": [4, 2]}, 12) == ([4, 2], None, [], [])
    assert validate_ranking({"ranking": [13]}, 12)[1] == "hallucinated_ids"
    example = rerank_prompt_compact().examples[0]
    assert '"n": 1' in example[0] and '"prior_rank"' in example[0]
    assert example[1] == '{"ranking":[4,2]}'


def test_compact_prompts_are_new_versions_with_worked_examples() -> None:
    taxonomy = Taxonomy()
    pairs = [
        (enrichment_prompt(taxonomy), enrichment_prompt(taxonomy, "compact")),
        (intent_prompt(), intent_prompt_compact("intent")),
        (rerank_prompt(), rerank_prompt_compact()),
        (turn_prompt(), turn_prompt_compact("dialogue_turn")),
    ]
    for standard, compact in pairs:
        assert compact.version != standard.version
        assert compact.examples and not standard.examples
        names = ("item", "query", "categories", "user", "candidates", "asked", "turn")
        fields = dict.fromkeys(names, "x")
        roles = [m["role"] for m in compact.render(allowed_tags="x", **fields)]
        assert roles == ["system", *["user", "assistant"] * len(compact.examples), "user"]
        assert "never" in compact.system.lower()  # quoted data is data, not instructions


def test_compact_schemas_bound_what_a_small_model_may_write() -> None:
    enrich = enrichment_prompt(Taxonomy(), "compact").schema["properties"]
    assert enrich["tags"]["maxItems"] == 4
    # at most 80 words by construction: a word takes a character and a separator
    assert enrich["summary"]["maxLength"] <= 2 * MAX_SUMMARY_WORDS
    # Enrichment refuses empty texts: the grammar must not let the model write one
    assert enrich["summary"]["minLength"] == enrich["mood"]["minLength"] == 1
    assert enrich["themes"]["items"]["minLength"] == 1
    assert enrich["tags"]["items"]["enum"] == list(Taxonomy().tags)
    intent = intent_schema_compact(["Comedy", "Horror"])["properties"]
    stances = intent["categories"]["properties"]
    assert list(stances) == ["Comedy", "Horror"] and "required" not in intent["categories"]
    assert stances["Horror"]["enum"] == ["want", "avoid"]
    assert intent["year_from"]["minimum"] == 1870 and intent["negatives"]["maxItems"] == 3
    turn = turn_schema_compact(["Comedy", "Horror"], ["funny", "dark"])["properties"]
    assert turn["option"]["enum"] == ["funny", "dark", None]
    assert turn["categories"]["items"]["enum"] == ["Comedy", "Horror"]
    for name in ("negatives", "liked_titles", "disliked_titles"):
        assert turn[name]["maxItems"] == 3 and turn[name]["items"]["maxLength"] == 40
    assert turn["moods"]["maxItems"] == 3 and turn["year_max"]["maximum"] == 2100


def test_the_compact_turn_examples_are_answers_the_validator_accepts() -> None:
    """A worked example the production validation would refuse would teach the model
    to fail: each one validates against its own categories and options."""
    for question, answer in turn_prompt_compact("dialogue_turn").examples:
        categories = question.split("\n", 1)[0].removeprefix("Catalog categories: ").split(", ")
        asked = unquote(question, "ASKED")
        context = {"categories": tuple(categories), "options": tuple(asked["options"])}
        TurnParse.model_validate(json.loads(answer), context=context)


def test_the_compact_intent_examples_validate_and_become_intents() -> None:
    for question, answer in intent_prompt_compact("intent").examples:
        categories = question.split("\n", 1)[0].removeprefix("Catalog categories: ").split(", ")
        context = {"categories": categories}
        compact = CompactIntent.model_validate(json.loads(answer), context=context)
        assert isinstance(IntentParser.to_intent(compact, categories), Intent)


def test_a_compact_intent_has_one_stance_per_category_and_either_year_order() -> None:
    cats = ("Comedy", "Horror", "Musical")
    answer = {
        "categories": {"comedy": "want", "Musical": "avoid"},
        "year_from": 1999,
        "year_to": 1990,
        "soft_preferences": ["funny"],
        "negatives": [],
        "confidence": 0.7,
        "clarification_needed": False,
    }
    intent = IntentParser.to_intent(
        CompactIntent.model_validate(answer, context={"categories": cats}), cats
    )
    assert intent is not None
    assert (intent.category, intent.categories_any, intent.categories_none) == (
        "Comedy",
        ["Comedy"],
        ["Musical"],
    )
    assert (intent.year_min, intent.year_max) == (1990, 1999)
    for bad in ({"Western": "want"}, {"Comedy": "maybe"}, {"comedy": "want", "Comedy": "avoid"}):
        with pytest.raises(ValidationError, match="categories"):
            CompactIntent.model_validate(answer | {"categories": bad}, context={"categories": cats})


@pytest.fixture(scope="module")
def grammars() -> tuple[GrammarCompiler, Any]:
    """The server's grammar compiler on the shipped model's tokenizer (no weights)."""
    from transformers import AutoTokenizer

    path = resolve_model_file(None).path
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    return GrammarCompiler(tokenizer, len(tokenizer), [tokenizer.eos_token_id]), tokenizer


def accepted(grammars: tuple[GrammarCompiler, Any], schema: dict[str, Any], text: str) -> bool:
    """Whether the constrained decoder's masks let it write ``text`` token by token."""
    compiler, tokenizer = grammars
    constraint = compiler.compile({"type": "json_schema", "json_schema": {"schema": schema}})
    assert constraint is not None
    for token in tokenizer.encode(text, add_special_tokens=False):
        if constraint.mask(torch.zeros(compiler.n_vocab))[token] == float("-inf"):
            return False
        constraint.consume(token)
    return constraint.error is None


def test_the_constrained_decoder_cannot_write_a_clashing_intent(
    grammars: tuple[GrammarCompiler, Any],
) -> None:
    """Wanted-and-excluded was a third of a small model's intent answers; under the
    compact schema's grammar a category can be named once, in the schema's order."""
    schema = intent_schema_compact(["Comedy", "Horror", "Musical"])
    rest = (
        ',"year_from":null,"year_to":null,"soft_preferences":[],"negatives":[],'
        '"confidence":0.5,"clarification_needed":false}'
    )
    good = '{"categories":{"Comedy":"want","Musical":"avoid"}' + rest
    assert accepted(grammars, schema, good)
    for clash in ('"Comedy":"want","Comedy":"avoid"', '"Musical":"avoid","Comedy":"want"'):
        assert not accepted(grammars, schema, '{"categories":{' + clash + "}" + rest)


def test_prompt_style_follows_the_local_llm(tmp_path: Path) -> None:
    assert make_settings(tmp_path).prompt_style == "standard"
    assert make_settings(tmp_path, llm_local=True).prompt_style == "compact"
    assert make_settings(tmp_path, llm_local=True, llm_prompts="standard").prompt_style == (
        "standard"
    )


def test_local_overrides_keep_what_the_user_set(tmp_path: Path) -> None:
    class Llm:
        base_url = "http://127.0.0.1:1/v1"
        model = "m"

    defaults = local_llm_overrides(make_settings(tmp_path), Llm())  # type: ignore[arg-type]
    assert defaults["llm_base_url"] == Llm.base_url and defaults["llm_model"] == "m"
    assert defaults["llm_max_concurrency"] == 1 and defaults["llm_temperature"] == 0.0
    assert defaults["llm_timeout_s"] == 60.0 and defaults["enrich_deadline_s"] >= 900
    assert defaults["enrich_max_batch"] == 16  # items stored every few minutes, not hours
    mine = make_settings(tmp_path, llm_timeout_s=5.0, llm_max_concurrency=3, enrich_max_batch=4)
    kept = local_llm_overrides(mine, Llm())  # type: ignore[arg-type]
    assert "llm_timeout_s" not in kept and "llm_max_concurrency" not in kept
    assert "enrich_max_batch" not in kept


# ---- the server's queue, with a stand-in model ---------------------------------------------
class BlockingModel:
    """Generates only when released; records whether it was asked to cancel."""

    name = "stand-in"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.cancelled = threading.Event()
        self.file = ModelFile(Path("stand-in.gguf"))

    def prompt_ids(self, messages: Any) -> list[int]:
        return [1, 2, 3]

    def constraint(self, response_format: Any) -> None:
        return None

    def generate(
        self, prompt: list[int], params: SamplingParams, constraint: Any, cancel: threading.Event
    ) -> Generation:
        self.started.set()
        while not self.release.wait(0.01):
            if cancel.is_set():
                self.cancelled.set()
                return Generation("", 3, 0, "cancelled", 0.0, 0.0)
        return Generation("{}", 3, 1, "stop", 0.01, 0.01)


def chat(**fields: Any) -> ChatRequest:
    return ChatRequest.model_validate({"messages": [{"role": "user", "content": "hi"}]} | fields)


async def test_a_full_queue_refuses_and_a_gone_client_cancels() -> None:
    model = BlockingModel()
    service = LlmService(model, max_queue=2)  # type: ignore[arg-type]
    first = asyncio.create_task(service.complete(chat()))
    second = asyncio.create_task(service.complete(chat()))
    for _ in range(3):  # let both tasks run to their first wait
        await asyncio.sleep(0)
    assert service.pending == 2
    with pytest.raises(QueueFull):
        await service.complete(chat())
    await asyncio.to_thread(model.started.wait, 5)
    first.cancel()  # the client went away mid-generation
    with pytest.raises(asyncio.CancelledError):
        await first
    assert model.cancelled.is_set()
    model.release.set()
    generation, _ = await second
    assert generation.text == "{}" and service.pending == 0
    service.shutdown()


def test_json_answers_are_spelled_strictly() -> None:
    """The grammar lets a raw newline into a JSON string; the server escapes it."""
    raw = '{"summary":"a\nb","n":0.80}'
    with pytest.raises(ValueError, match="control character"):
        json.loads(raw)
    assert json.loads(strict_json(raw)) == {"summary": "a\nb", "n": 0.8}
    assert strict_json('{"n":0.80}') == '{"n":0.80}'  # strict already: untouched
    assert strict_json('{"summary":"cut off') == '{"summary":"cut off'


def test_what_cannot_be_honoured_is_refused() -> None:
    for fields in ({"n": 2}, {"stream": True}):
        with pytest.raises(InvalidRequest):
            chat(**fields).check()
    params = chat(max_tokens=7, stop="}", temperature=0).sampling(512, 1.1)
    assert params.max_tokens == 7 and params.stop == ("}",) and params.repeat_penalty == 1.1
