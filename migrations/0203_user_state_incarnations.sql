-- User state and user_events (worker `users`) as stored by earlier versions, in today's shape.
--
-- 1. The dedup window `state.seen` was a JSON object {event_id: occurred_at}. jsonb sorts
--    object keys (by length, then bytes), so the acceptance order that the window's pruning
--    relies on (drop the oldest first) was lost on every write, and the newest ids could be
--    pruned instead of the oldest: a redelivered event was then counted again. The window is
--    now an array of [event_id, occurred_at] pairs, oldest first. A window is always the
--    newest accepted events of its user, so it is rebuilt as the user's newest K events of
--    `user_events` in acceptance order (the batch's transaction time, then the Kafka offset;
--    a user's events share one partition), K being the size of the stored window: this also
--    restores the ids that the wrong pruning dropped. Users without rows in `user_events`
--    keep their stored ids, ordered by event time. Counts already doubled by the old pruning
--    are not undone here (only a refold from the log could).
-- 2. `state.last_position` was [partition, offset]; it is now [topic_id, partition, offset],
--    naming the incarnation of user.events it belongs to (offsets restart at 0 when the topic
--    is recreated, or when the in-memory embedded broker starts again). The incarnation of a
--    stored position is unknown: '' matches no real topic id, so after this migration the
--    next event of each user is checked by event id only, never skipped for its offset.
WITH legacy AS (
    SELECT us.user_id,
           us.state,
           (SELECT count(*) FROM jsonb_object_keys(us.state -> 'seen')) AS k
    FROM user_state AS us
    WHERE jsonb_typeof(us.state -> 'seen') = 'object'
), rebuilt AS (
    SELECT l.user_id,
           coalesce(
               (SELECT jsonb_agg(jsonb_build_array(r.event_id, r.occurred_at) ORDER BY r.rn DESC)
                FROM (SELECT ue.event_id,
                             ue.occurred_at,
                             row_number() OVER (
                                 ORDER BY ue.stored_at DESC, ue.kafka_offset DESC NULLS LAST,
                                          ue.occurred_at DESC, ue.event_id DESC
                             ) AS rn
                      FROM user_events AS ue
                      WHERE ue.user_id = l.user_id
                      ORDER BY rn
                      LIMIT l.k) AS r),
               (SELECT jsonb_agg(jsonb_build_array(s.key, s.value)
                                 ORDER BY (s.value #>> '{}')::timestamptz, s.key)
                FROM jsonb_each(l.state -> 'seen') AS s),
               '[]'::jsonb
           ) AS seen
    FROM legacy AS l
)
UPDATE user_state AS us
SET state = jsonb_set(us.state, '{seen}', rebuilt.seen)
FROM rebuilt
WHERE us.user_id = rebuilt.user_id;

UPDATE user_state
SET state = jsonb_set(
        state,
        '{last_position}',
        jsonb_build_array(''::text, state -> 'last_position' -> 0, state -> 'last_position' -> 1)
    )
WHERE jsonb_typeof(state -> 'last_position') = 'array'
  AND jsonb_array_length(state -> 'last_position') = 2;

-- 3. user_events keeps where each event sat in user.events; the offset is only meaningful
--    with the incarnation of the topic (its Kafka topic id; NULL for rows stored before).
ALTER TABLE user_events ADD COLUMN kafka_topic_id text;
