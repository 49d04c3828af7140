-- Recordings of published media and their packaged replays (media crate).
-- Keep in step with the other engine's 0003_replays.sql.

CREATE TABLE replays (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    class_id BIGINT NOT NULL REFERENCES classes(id),
    publisher_id BIGINT NOT NULL REFERENCES accounts(id),
    -- recording | packaging | ready | failed
    status TEXT NOT NULL,
    recording_dir TEXT NOT NULL,
    file_path TEXT,
    content_type TEXT,
    duration_ms BIGINT,
    bytes BIGINT,
    error TEXT,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    ready_at BIGINT
);
CREATE INDEX replays_room ON replays(room_id);
CREATE INDEX replays_class ON replays(class_id);
