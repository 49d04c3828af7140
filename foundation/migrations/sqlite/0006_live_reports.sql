-- Watch time per viewer and room (hub, stored as increments) and the report of each live
-- session (commerce). Keep in step with the other engine's 0006_live_reports.sql.

CREATE TABLE room_viewers (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    watch_ms BIGINT NOT NULL DEFAULT 0,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (room_id, account_id)
);

-- One per live session (a room's started_at); `report` is the JSON of commerce's LiveReport.
CREATE TABLE live_reports (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    class_id BIGINT NOT NULL REFERENCES classes(id),
    host_id BIGINT NOT NULL REFERENCES accounts(id),
    started_at BIGINT NOT NULL,
    ended_at BIGINT NOT NULL,
    report TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (room_id, started_at)
);
CREATE INDEX live_reports_class ON live_reports(class_id);
