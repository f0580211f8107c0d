-- The user state read model (worker `users`): one row per user, written in batches, read
-- by serving (recsys.users.store.PgUserStates). `state` is the whole UserState as JSON
-- (recsys/users/state.py) without its dedup window; the columns beside it are copies for
-- queries and dashboards. `version` counts the user's accepted events: an upsert only
-- lands when it is higher, so a redelivered or stale batch never moves a row backwards.
CREATE TABLE user_state (
    user_id        text PRIMARY KEY,
    version        bigint NOT NULL,
    warmth         text NOT NULL,
    positives      integer NOT NULL,
    engagement     double precision NOT NULL,
    engagement_at  timestamptz,
    session_id     text,
    last_event_at  timestamptz,
    state          jsonb NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX user_state_warmth ON user_state (warmth);
