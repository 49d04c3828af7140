-- Simulated buyer traffic (commerce::bots, docs/commerce.md §16): bot buyers are accounts, so
-- they own orders, wallets and chat like anyone, but they are not people. Keep in step with the
-- other engine's 0008_buyer_bots.sql.

-- 1 for a bot: it never logs in (its password hash matches nothing and login refuses it), and
-- rosters, statistics and administration lists leave it out.
ALTER TABLE accounts ADD COLUMN is_bot BIGINT NOT NULL DEFAULT 0;

-- Each class's pool of bots, created on demand and reused by every room and live of the class:
-- slot n of a class is always the same account (name, wallet, orders).
CREATE TABLE bot_accounts (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id),
    class_id BIGINT NOT NULL REFERENCES classes(id),
    slot BIGINT NOT NULL CHECK (slot >= 0),
    UNIQUE (class_id, slot)
);

-- A room's bot crowd: what the host set, whether it runs, and which node runs it. A node runs a
-- crowd while it holds the lease (runner, lease_until) and renews it every few seconds; a crowd
-- whose lease ran out (its node stopped) is taken over by another node or after a restart.
-- version grows with every change of the settings, so the runner notices changes made on
-- other nodes.
CREATE TABLE room_bots (
    room_id BIGINT PRIMARY KEY REFERENCES rooms(id),
    class_id BIGINT NOT NULL REFERENCES classes(id),
    bot_count BIGINT NOT NULL CHECK (bot_count BETWEEN 1 AND 500),
    arrivals_per_minute BIGINT NOT NULL CHECK (arrivals_per_minute BETWEEN 1 AND 600),
    -- probabilities per visit, in per mille
    like_permille BIGINT NOT NULL CHECK (like_permille BETWEEN 0 AND 1000),
    comment_permille BIGINT NOT NULL CHECK (comment_permille BETWEEN 0 AND 1000),
    buy_permille BIGINT NOT NULL CHECK (buy_permille BETWEEN 0 AND 1000),
    stay_minutes BIGINT NOT NULL CHECK (stay_minutes BETWEEN 1 AND 240),
    active BIGINT NOT NULL DEFAULT 1,
    version BIGINT NOT NULL DEFAULT 1,
    started_by BIGINT NOT NULL REFERENCES accounts(id),
    started_at BIGINT NOT NULL,
    -- removed | live_ended, once it stopped
    stop_reason TEXT,
    stopped_at BIGINT,
    runner TEXT,
    lease_until BIGINT,
    -- as last reported by the runner: bots in the room, likes sent since started_at
    present BIGINT NOT NULL DEFAULT 0,
    likes BIGINT NOT NULL DEFAULT 0,
    updated_at BIGINT NOT NULL
);
CREATE INDEX room_bots_active ON room_bots(active);
