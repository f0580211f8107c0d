-- The item store: one row per catalog item, its latest version, both embeddings and
-- the provenance of each. Writes are versioned (applied only when newer); a delete keeps
-- the row (deleted = true) so audits and replays still see it.
CREATE TABLE items (
    item_id            text PRIMARY KEY,
    version            bigint NOT NULL CHECK (version >= 0),
    change_id          text NOT NULL,
    deleted            boolean NOT NULL DEFAULT false,
    available          boolean NOT NULL DEFAULT true,
    title              text NOT NULL DEFAULT '',
    categories         text[] NOT NULL DEFAULT '{}',
    category_keys      text[] NOT NULL DEFAULT '{}',   -- lower-cased, for filters
    description        text NOT NULL DEFAULT '',
    attributes         jsonb NOT NULL DEFAULT '{}'::jsonb,
    -- enrichment (NULL / empty when the LLM was off or failed)
    summary            text,
    themes             text[] NOT NULL DEFAULT '{}',
    mood               text,
    audience           text,
    tags               text[] NOT NULL DEFAULT '{}',
    -- vectors: raw text (title + categories + description) and enriched text
    content_hash       text NOT NULL,
    raw_embedding      vector(384),
    enriched_embedding vector(384),
    -- provenance
    embedding_model    text,
    embedding_dim      integer,
    prompt_version     text,
    llm_model          text,
    enrichment_status  text NOT NULL CHECK (enrichment_status IN
                         ('ENRICHED', 'CACHED', 'LLM_OFF', 'LLM_FAILED', 'UNCHANGED', 'DELETED')),
    enrichment_error   text,
    enriched_at        timestamptz,
    occurred_at        timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK ((raw_embedding IS NULL) = (enriched_embedding IS NULL)),
    CHECK ((raw_embedding IS NULL) = (embedding_model IS NULL))
);

CREATE INDEX items_raw_embedding_hnsw ON items USING hnsw (raw_embedding vector_cosine_ops);
CREATE INDEX items_enriched_embedding_hnsw ON items USING hnsw (enriched_embedding vector_cosine_ops);
CREATE INDEX items_category_keys ON items USING gin (category_keys);
CREATE INDEX items_attributes ON items USING gin (attributes jsonb_path_ops);
CREATE INDEX items_status ON items (enrichment_status);
