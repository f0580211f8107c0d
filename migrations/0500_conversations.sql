-- Conversations (serve worker, recsys/dialogue/store.py): one row per answered turn, written
-- once. The key is the user, the conversation (ids are scoped per user) and the turn number:
-- a redelivered or repeated turn conflicts and changes nothing, and its stored answer is
-- sent again. A conversation's state is the fold of its rows in turn order (never kept
-- beside them), so a restart rebuilds exactly the same state.
--   turn_record: the turn as read (recsys.dialogue.signals.StoredTurn): its redacted and
--                screened text, its preference signals in order (a JSON array keeps order),
--                what the reply asked;
--   response / llm_logs: the RecResponse and the rec.llm-log records emitted for the turn
--                (the array in emission order), re-sent as they were on a redelivery;
--   kafka_topic_id / kafka_partition / kafka_offset: where the request sat in rec.requests;
--                the offset is only meaningful with the incarnation of the topic (its Kafka
--                topic id): offsets restart at 0 when the topic is recreated, or when the
--                in-memory embedded broker starts again.
CREATE TABLE conversation_turns (
    user_id          text NOT NULL,
    conversation_id  text NOT NULL,
    turn             integer NOT NULL CHECK (turn >= 1),
    request_id       text NOT NULL,
    turn_record      jsonb NOT NULL,
    response         jsonb NOT NULL,
    llm_logs         jsonb NOT NULL DEFAULT '[]'::jsonb,
    kafka_topic_id   text,
    kafka_partition  integer,
    kafka_offset     bigint,
    stored_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, conversation_id, turn)
);
CREATE INDEX conversation_turns_stored_at ON conversation_turns (stored_at);
