-- Time-decayed popularity, materialised: `PgPopularity.refresh()` (and every
-- `streamrec train-cf`) rewrites it from the positive rows of user_events, so that the
-- request path reads a handful of rows by index instead of aggregating events.
-- score = Σ weight · 2^(−age / half-life) at refreshed_at.
CREATE TABLE cf_popularity (
    item_id      text PRIMARY KEY,
    score        double precision NOT NULL,
    events       integer NOT NULL,
    refreshed_at timestamptz NOT NULL
);
CREATE INDEX cf_popularity_score ON cf_popularity (score DESC, item_id);
