-- Serving policies (`streamrec learn-policy`, recsys/policy): one row per version with
-- its definition (route, fusion weights and LLM rerank per warmth bucket and query / no
-- query, exploration rate per bucket) and what justified it. At most one version is
-- active; serve workers poll the active version (an index-only read) and switch to a
-- new one without a restart. Without an active row, serving follows the settings.
CREATE TABLE serving_policies (
    version         text PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    definition      jsonb NOT NULL,
    fingerprint     text NOT NULL,             -- hash of the definition
    source          text NOT NULL,             -- 'learn-policy', 'settings', 'manual'
    parent_version  text,                      -- the version active when it was made
    report          jsonb NOT NULL DEFAULT '{}'::jsonb,  -- estimates behind the choice
    active          boolean NOT NULL DEFAULT false,
    activated_at    timestamptz
);
CREATE UNIQUE INDEX serving_policies_one_active ON serving_policies ((true)) WHERE active;
CREATE INDEX serving_policies_created ON serving_policies (created_at);
