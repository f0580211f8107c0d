-- Validated LLM enrichments keyed by what produced them: the same content under the same
-- prompt version and model never costs a second LLM call.
CREATE TABLE enrichment_cache (
    content_hash   text NOT NULL,
    prompt_version text NOT NULL,
    llm_model      text NOT NULL,
    enrichment     jsonb NOT NULL,
    tokens_in      integer NOT NULL DEFAULT 0,
    tokens_out     integer NOT NULL DEFAULT 0,
    cost_usd       double precision NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (content_hash, prompt_version, llm_model)
);
