-- Feedback join state (worker `feedback`): impressions waiting for their attribution
-- window to close, and recent outcome events. Primary keys make re-delivered messages
-- no-ops; emitted_at marks impressions whose examples were emitted.
CREATE TABLE feedback_impressions (
    request_id      text PRIMARY KEY,
    user_id         text NOT NULL,
    kafka_partition integer NOT NULL,
    impression_at   timestamptz NOT NULL,
    response        jsonb NOT NULL,
    stored_at       timestamptz NOT NULL DEFAULT now(),
    emitted_at      timestamptz
);
CREATE INDEX feedback_impressions_open
    ON feedback_impressions (kafka_partition, impression_at) WHERE emitted_at IS NULL;
CREATE INDEX feedback_impressions_emitted
    ON feedback_impressions (emitted_at) WHERE emitted_at IS NOT NULL;

CREATE TABLE feedback_events (
    user_id        text NOT NULL,
    event_id       text NOT NULL,
    item_id        text NOT NULL,
    event_type     text NOT NULL,
    rating         double precision,
    rec_request_id text,
    occurred_at    timestamptz NOT NULL,
    stored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, event_id)
);
CREATE INDEX feedback_events_user_time ON feedback_events (user_id, occurred_at);
CREATE INDEX feedback_events_stored ON feedback_events (stored_at);
