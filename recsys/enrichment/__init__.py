"""Nearline catalog enrichment: LLM reading of item text (validated against a schema and a
tag taxonomy, cached, with fallback to raw text), two embeddings per item, versioned
writes into the item store. No Kafka here: the enrich worker feeds it decoded changes."""

from recsys.enrichment.cache import CacheKey, InMemoryEnrichmentCache, PgEnrichmentCache
from recsys.enrichment.enricher import Enricher, EnrichOutcome
from recsys.enrichment.pipeline import EnrichmentPipeline
from recsys.enrichment.schema import Enrichment, enrichment_prompt
from recsys.enrichment.taxonomy import DEFAULT_TAGS, Taxonomy
from recsys.enrichment.text import content_hash, enriched_text, raw_text

__all__ = [
    "DEFAULT_TAGS",
    "CacheKey",
    "EnrichOutcome",
    "Enricher",
    "Enrichment",
    "EnrichmentPipeline",
    "InMemoryEnrichmentCache",
    "PgEnrichmentCache",
    "Taxonomy",
    "content_hash",
    "enriched_text",
    "enrichment_prompt",
    "raw_text",
]
