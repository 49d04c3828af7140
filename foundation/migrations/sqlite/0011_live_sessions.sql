-- The numbers of each live session (a room's live from `started_at` to `ended_at`), so that
-- the dashboard and the report of a room that goes live again show only their own session
-- (signaling::store, commerce::dashboard, docs/commerce.md §14). Keep in step with the other
-- engine's 0011_live_sessions.sql.
--
-- `rooms.peak_viewers`, `rooms.likes` and `room_viewers` stay as they are: room totals over all
-- its lives (the live room's counters and the lucky bags' watch task read them). The hub writes
-- both, the room and the session, in the same transaction.

-- One per live session, keyed like `live_reports` by (room_id, started_at): `started_at` is the
-- time of the `live_started` event (every node of a cluster knows it), `ended_at` NULL while
-- live. `peak_viewers` is raised (MAX) and `likes` added to (increments, one per node and save)
-- by the hub; only likes taken while the live runs count.
CREATE TABLE live_sessions (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    peak_viewers BIGINT NOT NULL DEFAULT 0,
    likes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, started_at)
);
-- The sweeper looks for recently ended sessions without a report (commerce::dashboard).
CREATE INDEX live_sessions_ended ON live_sessions(ended_at);

-- Watch time per viewer and session, stored as increments like `room_viewers` (several nodes
-- and reloads of a room add up). No foreign key to `live_sessions`: a node's watch batch may
-- reach the database before the node that started the live has written the session's row.
CREATE TABLE live_session_viewers (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    started_at BIGINT NOT NULL,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    watch_ms BIGINT NOT NULL DEFAULT 0,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, started_at, account_id)
);

-- Old data: the last session of every room that went live before this migration gets the
-- numbers its dashboard showed until now, the room's totals and its viewers seen during that
-- session (cumulative over the room's lives, as before), so its report (if still to be written)
-- and a live that is running during the upgrade stay sensible; from here on the hub adds
-- per-session increments. Earlier sessions' reports are already stored in `live_reports`.
INSERT INTO live_sessions (room_id, started_at, ended_at, peak_viewers, likes)
SELECT id, started_at, ended_at, peak_viewers, likes FROM rooms WHERE started_at IS NOT NULL;

INSERT INTO live_session_viewers (room_id, started_at, account_id, watch_ms, first_seen_at, last_seen_at)
SELECT v.room_id, r.started_at, v.account_id, v.watch_ms, v.first_seen_at, v.last_seen_at
FROM room_viewers v JOIN rooms r ON r.id = v.room_id
WHERE r.started_at IS NOT NULL AND v.last_seen_at >= r.started_at
  AND (r.ended_at IS NULL OR v.first_seen_at <= r.ended_at);
