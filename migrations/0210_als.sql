-- Batch ALS models (`streamrec train-cf`): one row per trained version with what it was
-- trained on and how, and its item factors in pgvector. At most one version is active;
-- serving folds a user vector in from recent items (needs the model's regularisation,
-- alpha and YᵀY, stored here) and searches the active version's factors by inner product.
CREATE TABLE als_models (
    version          text PRIMARY KEY,
    trained_at       timestamptz NOT NULL DEFAULT now(),
    factors          integer NOT NULL CHECK (factors IN (16, 32, 64, 128, 256)),
    params           jsonb NOT NULL,            -- factors, iterations, regularization, alpha, seed, weights
    gramian          real[] NOT NULL,           -- YᵀY, factors × factors, row-major
    source           text NOT NULL,             -- 'postgres' or 'archive:<dir>'
    window_since     timestamptz,               -- requested bounds (NULL = open)
    window_until     timestamptz,
    first_event_at   timestamptz,               -- what the data actually spans
    last_event_at    timestamptz,
    n_events         bigint NOT NULL,
    n_users          integer NOT NULL,
    n_items          integer NOT NULL,
    n_interactions   bigint NOT NULL,
    metrics          jsonb NOT NULL DEFAULT '{}'::jsonb,  -- loss, seconds per phase
    active           boolean NOT NULL DEFAULT false,
    activated_at     timestamptz
);
CREATE UNIQUE INDEX als_models_one_active ON als_models ((true)) WHERE active;

CREATE TABLE als_item_factors (
    version  text NOT NULL REFERENCES als_models (version) ON DELETE CASCADE,
    item_id  text NOT NULL,
    dims     smallint NOT NULL,
    factor   vector NOT NULL CHECK (vector_dims(factor) = dims),
    PRIMARY KEY (version, item_id)
);
-- pgvector indexes need a fixed dimension: one partial expression index per supported
-- factor count (empty until a model of that size is written); queries cast to the same
-- vector(n) and repeat `dims = n`, and filter by version (iterative scan).
CREATE INDEX als_item_factors_ip_16 ON als_item_factors
    USING hnsw ((factor::vector(16)) vector_ip_ops) WHERE dims = 16;
CREATE INDEX als_item_factors_ip_32 ON als_item_factors
    USING hnsw ((factor::vector(32)) vector_ip_ops) WHERE dims = 32;
CREATE INDEX als_item_factors_ip_64 ON als_item_factors
    USING hnsw ((factor::vector(64)) vector_ip_ops) WHERE dims = 64;
CREATE INDEX als_item_factors_ip_128 ON als_item_factors
    USING hnsw ((factor::vector(128)) vector_ip_ops) WHERE dims = 128;
CREATE INDEX als_item_factors_ip_256 ON als_item_factors
    USING hnsw ((factor::vector(256)) vector_ip_ops) WHERE dims = 256;
