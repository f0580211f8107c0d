-- Nearline item-to-item co-visitation (worker `users`, recsys/cf/pg_covisit.py), one row
-- per directed pair. Forward decay: a co-visit at time t adds 2^((t - t0)/half-life) with
-- t0 = 2000-01-01T00:00Z and the half-life of STREAMREC_COVISIT_HALF_LIFE_H, so a pair's
-- score at time T is that sum times 2^(-(T - t0)/half-life) and no row is ever rewritten
-- to decay it. The sum is stored as its base-2 logarithm (no overflow, whatever the era).
-- Rows change only in the transaction that inserts the events they come from into
-- user_events, so a redelivered event (a conflicting insert) never counts twice.
CREATE TABLE covisit (
    item_id     text NOT NULL,
    other_id    text NOT NULL,
    log2_weight double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_id, other_id)
);
CREATE INDEX covisit_top ON covisit (item_id, log2_weight DESC);
