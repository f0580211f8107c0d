-- The item store's two write modes (docs/workers/enrich.md, "Backfill"):
--
-- * online   — the default: every row write also inserts into both HNSW indexes, so an
--              item is searchable the moment its write commits;
-- * backfill — a catalog loaded into an empty store: the rows are written with no vector
--              index and each index is built once at the end. Building an HNSW graph over
--              n rows costs a fraction of n graph inserts made row by row through the
--              buffer manager and the WAL (measured: ≈ 5× less Postgres CPU), and those
--              inserts cost more than embedding the item on a small machine.
--
-- The mode is stored here, not held in a process, so that a crash at any point leaves a
-- state the next start can finish: rows already written stay (writes are versioned, so
-- the replay of what was not committed changes nothing twice), the indexes are built by
-- whoever starts next. The worker runs no DDL of its own: it calls the two functions
-- below, which drop and build exactly the HNSW indexes 0100_items.sql creates. A later
-- migration that changes those indexes must replace these functions too
-- (tests/integration/test_item_backfill.py compares the rebuilt definitions with the
-- migrated ones).
CREATE TABLE item_store_mode (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mode       text NOT NULL DEFAULT 'online' CHECK (mode IN ('online', 'backfill')),
    changed_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO item_store_mode DEFAULT VALUES;

-- Enter backfill mode: true when the store is now in it (it was empty, or an interrupted
-- backfill is being resumed), false when it holds items and stays online (a backfill is
-- only for an empty store: dropping the indexes of a store being served would turn every
-- kNN into a sequential scan).
CREATE FUNCTION items_begin_backfill() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    SELECT mode INTO current FROM item_store_mode FOR UPDATE;
    IF current = 'backfill' THEN
        RETURN true;
    END IF;
    -- no write may land between the emptiness check and the drop
    LOCK TABLE items IN ACCESS EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM items) THEN
        RETURN false;
    END IF;
    DROP INDEX IF EXISTS items_raw_embedding_hnsw;
    DROP INDEX IF EXISTS items_enriched_embedding_hnsw;
    UPDATE item_store_mode SET mode = 'backfill', changed_at = now();
    RETURN true;
END
$$;

-- Leave backfill mode: build the HNSW indexes of 0100_items.sql (those missing) and
-- record 'online', in the caller's transaction, so a crash mid-build leaves the store in
-- backfill mode for the next start to finish. True when a backfill was finished now.
-- The build's memory and parallelism are the caller's session settings
-- (maintenance_work_mem: the graph must fit in it, or the build slows down several-fold).
CREATE FUNCTION items_finish_backfill() RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    SELECT mode INTO current FROM item_store_mode FOR UPDATE;
    CREATE INDEX IF NOT EXISTS items_raw_embedding_hnsw
        ON items USING hnsw (raw_embedding vector_cosine_ops);
    CREATE INDEX IF NOT EXISTS items_enriched_embedding_hnsw
        ON items USING hnsw (enriched_embedding vector_cosine_ops);
    UPDATE item_store_mode SET mode = 'online', changed_at = now() WHERE mode <> 'online';
    RETURN current = 'backfill';
END
$$;
