-- Stream keys: what OBS Studio (or any WHIP encoder) sends as its Bearer Token to publish into
-- one room without a login session, which a new login of the host would end
-- (signaling::stream_keys, docs/media.md "OBS Studio"). Keep in step with the other engine's
-- 0012_stream_keys.sql.
--
-- One active key per room: creating a new one replaces the row (the old key stops working),
-- revoking deletes it. Only the SHA-256 of the key is stored (hex): the key is 256 random bits,
-- shown once to the person who created it. A key publishes as `account_id` (the room's host,
-- or in a live class the instructor who created it), re-checked on every use.
CREATE TABLE stream_keys (
    room_id BIGINT PRIMARY KEY REFERENCES rooms(id),
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    key_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
