"""`streamrec ab-enrich`: raw vs LLM-enriched embeddings on a frozen MovieLens query set.

Thin: choose the LLM honestly (``--llm auto`` = the configured endpoint if any, else
none; ``simulated`` only when asked, and labelled), build the query set and run
:func:`recsys.evaluation.enrich_ab.run_enrichment_ab` with a progress callback, then
write JSON / HTML; the CLI prints the tables.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from recsys.exceptions import ConfigurationError, DataNotFound

if TYPE_CHECKING:
    from recsys.evaluation.enrich_ab import AbLlm
    from recsys.evaluation.enrich_ab.run import Progress
    from streams.settings import Settings

__all__ = ["LLM_CHOICES", "AbCommandOptions", "SimulatedServerFactory", "ab_llm", "run_ab_enrich"]

LLM_CHOICES = ("auto", "endpoint", "local", "simulated", "none")


class LlmEndpoint(Protocol):
    """A running OpenAI-compatible server (the simulated one, in tests and demos)."""

    @property
    def base_url(self) -> str:
        """Its ``/v1`` URL."""

    @property
    def model(self) -> str:
        """The model name it answers as."""


#: Starts a simulated LLM server for ``--llm simulated`` (the CLI passes testkit's).
SimulatedServerFactory = Callable[[], AbstractContextManager[LlmEndpoint]]


@dataclass(frozen=True)
class AbCommandOptions:
    """Everything `ab-enrich` takes."""

    movielens: Path | None = None
    llm: str = "auto"
    judge: bool = True
    judge_model: str | None = None
    judge_queries: int = 40
    judge_top: int = 3
    k: int = 5
    seed: int = 7
    tag_queries: int = 200
    conversations: int = 100
    catalog: str = "tagged"
    max_items: int | None = None
    resamples: int = 2000
    json_out: Path | None = None
    html: Path | None = None
    queries_out: Path | None = None
    cache: bool = True
    cache_file: Path | None = None


def _check(opts: AbCommandOptions) -> None:
    if opts.llm not in LLM_CHOICES:
        raise ConfigurationError(f"--llm must be one of {', '.join(LLM_CHOICES)}, not {opts.llm!r}")
    if opts.catalog not in ("tagged", "all"):
        raise ConfigurationError(f"--catalog must be tagged or all, not {opts.catalog!r}")
    for name, value, least in (
        ("--k", opts.k, 1),
        ("--judge-top", opts.judge_top, 1),
        ("--judge-queries", opts.judge_queries, 0),
        ("--tag-queries", opts.tag_queries, 0),
        ("--conversations", opts.conversations, 0),
        ("--bootstrap", opts.resamples, 100),
    ):
        if value < least:
            raise ConfigurationError(f"{name} must be at least {least}, got {value}")
    if opts.tag_queries + opts.conversations == 0:
        raise ConfigurationError("--tag-queries and --conversations are both 0: no queries")


@contextlib.contextmanager
def ab_llm(
    settings: Settings, opts: AbCommandOptions, simulated: SimulatedServerFactory | None = None
) -> Iterator[AbLlm]:
    """The LLM of the run (clients for enrichment and the judge), honestly described.

    Raises:
        ConfigurationError: ``endpoint`` without one configured, or ``simulated``
            without a simulated server to start.
    """
    from recsys.enrichment import Taxonomy
    from recsys.evaluation.enrich_ab import AbLlm
    from recsys.llm.client import LlmClient

    taxonomy = Taxonomy.from_setting(settings.tag_taxonomy)
    choice = opts.llm
    if choice == "auto":
        choice = "endpoint" if settings.llm_enabled else "none"
    if choice == "none":
        reason = (
            "LLM switched off (--llm none)"
            if opts.llm == "none"
            else "no LLM endpoint configured (set STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL)"
        )
        yield AbLlm(off_reason=reason, taxonomy=taxonomy)
        return
    judge_off = None if opts.judge else "judge switched off (--no-judge)"
    cache: dict[str, Any] = {}
    if opts.cache:
        from recsys.evaluation.enrich_ab.cache import JsonlEnrichmentCache

        path = opts.cache_file or settings.home / "ab-enrich" / "enrichment-cache.jsonl"
        cache = {"cache": JsonlEnrichmentCache(path), "cache_description": str(path)}
    if choice == "endpoint":
        if not settings.llm_enabled:
            raise ConfigurationError(
                "--llm endpoint needs STREAMREC_LLM_BASE_URL and STREAMREC_LLM_MODEL"
            )
        client = LlmClient.from_settings(settings.llm)
        judge = (
            LlmClient.from_settings(settings.llm, model=opts.judge_model or client.model)
            if opts.judge
            else None
        )
        yield AbLlm(
            client,
            judge,
            simulated=False,
            judge_off_reason=judge_off,
            taxonomy=taxonomy,
            **cache,
        )
        return
    if choice == "local":
        from stack.local_llm.wiring import embedded_llm, local_llm_overrides

        with embedded_llm(settings) as local:
            s = settings.with_overrides(**local_llm_overrides(settings, local))
            yield AbLlm(
                LlmClient.from_settings(s.llm),
                None,
                simulated=False,
                judge_off_reason="no judge: a 135M local model cannot judge relevance",
                taxonomy=taxonomy,
                prompt_style=s.prompt_style,
                **cache,
            )
        return
    if simulated is None:
        raise ConfigurationError(
            "--llm simulated needs the simulated LLM, a test double shipped in a checkout's "
            "dev install (package testkit); use --llm endpoint or --llm none"
        )
    with simulated() as server:
        model = opts.judge_model or server.model
        client = LlmClient(base_url=server.base_url, model=server.model, max_concurrency=8)
        judge = LlmClient(base_url=server.base_url, model=model) if opts.judge else None
        yield AbLlm(
            client,
            judge,
            simulated=True,
            judge_off_reason=judge_off,
            taxonomy=taxonomy,
            **cache,
        )


def _movielens_path(settings: Settings, opts: AbCommandOptions) -> Path:
    return (opts.movielens or settings.movielens_path).expanduser().resolve()


def run_ab_enrich(
    settings: Settings,
    opts: AbCommandOptions,
    progress: Progress | None = None,
    simulated: SimulatedServerFactory | None = None,
) -> dict[str, Any]:
    """Build the query set, run the A/B, write the outputs asked for; return the report."""
    from recsys.embedding import SentenceTransformerEmbedder
    from recsys.evaluation.enrich_ab import AbOptions, QuerySetConfig, load_query_set
    from recsys.evaluation.enrich_ab.html import render_ab_html
    from recsys.movielens import MovieLens

    _check(opts)
    path = _movielens_path(settings, opts)
    if not MovieLens.available(path):
        raise DataNotFound(
            f"no MovieLens data at {path} (movies.csv, ratings.csv, tags.csv of "
            "ml-latest-small): pass --movielens DIR or set STREAMREC_MOVIELENS_PATH"
        )
    movielens = MovieLens(path)
    qs = load_query_set(
        movielens,
        QuerySetConfig(
            seed=opts.seed,
            max_tag_queries=opts.tag_queries,
            max_conversations=opts.conversations,
            catalog="all" if opts.catalog == "all" else "tagged",
            max_items=opts.max_items,
        ),
    )
    if opts.queries_out is not None:
        opts.queries_out.parent.mkdir(parents=True, exist_ok=True)
        opts.queries_out.write_text(json.dumps(qs.to_json(), indent=2, ensure_ascii=False))
    embedder = SentenceTransformerEmbedder(
        settings.embedding_model, settings.embedding_device, settings.embedding_batch_size
    )
    ab_opts = AbOptions(
        k=opts.k,
        judge_queries=opts.judge_queries,
        judge_top=opts.judge_top,
        resamples=opts.resamples,
        # a CPU model needs seconds per item: each item gets the local call timeout
        enrich_deadline_s=(
            max(settings.enrich_deadline_s, settings.llm_local_timeout_s)
            if opts.llm == "local"
            else settings.enrich_deadline_s
        ),
    )
    from recsys.evaluation.enrich_ab import run_enrichment_ab

    with ab_llm(settings, opts, simulated) as llm:
        try:
            report = run_enrichment_ab(qs, embedder, llm, ab_opts, progress)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    report["movielens"] = str(movielens.path)
    if opts.json_out is not None and str(opts.json_out) != "-":
        opts.json_out.parent.mkdir(parents=True, exist_ok=True)
        opts.json_out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if opts.html is not None:
        opts.html.parent.mkdir(parents=True, exist_ok=True)
        opts.html.write_text(render_ab_html(report), encoding="utf-8")
    return report
