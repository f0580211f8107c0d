-- Every accepted user event (worker `users`), one row per event_id: the store that
-- batch CF trains on, that serving asks "has this user consumed that item?", and
-- that makes Postgres-side effects idempotent (an insert that conflicts on event_id
-- is a redelivery, and the effects derived from it are skipped).
-- positive: CLICK, CART, PURCHASE, or RATING >= 4 (on the 0-10 scale of UserEvent,
-- MovieLens's 0.5-5 stars included); weight: the implicit-feedback confidence of it.
CREATE TABLE user_events (
    event_id        text PRIMARY KEY,
    user_id         text NOT NULL,
    item_id         text,
    event_type      text NOT NULL,
    rating          double precision,
    query           text,
    session_id      text,
    rec_request_id  text,
    occurred_at     timestamptz NOT NULL,
    positive        boolean NOT NULL,
    weight          real NOT NULL DEFAULT 1,
    kafka_partition integer,
    kafka_offset    bigint,
    stored_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_events_user_time ON user_events (user_id, occurred_at DESC);
CREATE INDEX user_events_item_positive ON user_events (item_id, occurred_at) WHERE positive;
CREATE INDEX user_events_stored ON user_events (stored_at);
