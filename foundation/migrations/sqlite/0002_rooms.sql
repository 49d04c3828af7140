-- Live rooms of the hub (signaling): live commerce, live classes, proctoring.
-- Keep in step with the other engine's 0002_rooms.sql.

CREATE TABLE rooms (
    id INTEGER PRIMARY KEY,
    class_id BIGINT NOT NULL REFERENCES classes(id),
    kind TEXT NOT NULL,
    title TEXT NOT NULL,
    host_id BIGINT NOT NULL REFERENCES accounts(id),
    status TEXT NOT NULL DEFAULT 'idle',
    peak_viewers BIGINT NOT NULL DEFAULT 0,
    likes BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    ended_at BIGINT
);
CREATE INDEX rooms_class ON rooms(class_id);
CREATE INDEX rooms_status ON rooms(status);

-- Every chat message, for the post-live report. (room_id, seq) is unique: a room's seq only grows.
CREATE TABLE room_messages (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    seq BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    text TEXT NOT NULL,
    at BIGINT NOT NULL,
    removed BIGINT NOT NULL DEFAULT 0,
    UNIQUE (room_id, seq)
);

-- The editable sensitive-word list: action 'mask' or 'block'.
CREATE TABLE sensitive_words (
    id INTEGER PRIMARY KEY,
    word TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
