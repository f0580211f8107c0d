-- Co-visitation stored once per unordered pair (worker `users`, recsys/cf/pg_covisit.py).
--
-- A co-visit adds the same weight to (a, b) and (b, a), so `covisit` held every sum twice:
-- with a user's 20 recent items, one visit upserted ~40 rows, each maintaining two indexes,
-- and that was most of what Postgres did per event (docs/workers/users.md has the figures).
-- Now one row per pair, item_a < item_b in byte order (COLLATE "C": the order Python's str
-- comparison gives, so the worker and SQL agree on which half is stored and on the order
-- rows are locked in). Each side keeps an index by weight, so "the strongest neighbours of
-- x" stays an ordered index scan (two, merged). `covisit` becomes a view with both
-- directions, the shape readers knew.
CREATE TABLE covisit_pair (
    item_a      text COLLATE "C" NOT NULL,
    item_b      text COLLATE "C" NOT NULL,
    log2_weight double precision NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (item_a, item_b),
    CHECK (item_a < item_b)
);

INSERT INTO covisit_pair (item_a, item_b, log2_weight, updated_at)
SELECT item_id, other_id, log2_weight, updated_at
FROM covisit
WHERE item_id COLLATE "C" < other_id COLLATE "C";

DROP TABLE covisit;

CREATE INDEX covisit_pair_a_top ON covisit_pair (item_a, log2_weight DESC);
CREATE INDEX covisit_pair_b_top ON covisit_pair (item_b, log2_weight DESC);

CREATE VIEW covisit AS
SELECT item_a AS item_id, item_b AS other_id, log2_weight, updated_at FROM covisit_pair
UNION ALL
SELECT item_b, item_a, log2_weight, updated_at FROM covisit_pair;
