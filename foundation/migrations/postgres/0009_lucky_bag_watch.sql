-- The lucky bag task "watch N minutes" (commerce::lucky_bags, docs/commerce.md §10). Keep in
-- step with the other engine's 0009_lucky_bag_watch.sql.

-- Minutes a viewer must watch during the countdown (task = 'watch'); NULL for comment bags.
ALTER TABLE lucky_bags ADD COLUMN watch_minutes BIGINT;

-- Each viewer's stored watch time in the room (room_viewers.watch_ms) when a watch bag was
-- launched, taken in the launch's transaction: at the draw, what a viewer watched during the
-- countdown is the stored watch time then minus this (0 for a viewer without a row here).
CREATE TABLE lucky_bag_watch_base (
    lucky_bag_id BIGINT NOT NULL REFERENCES lucky_bags(id),
    account_id BIGINT NOT NULL,
    watch_ms BIGINT NOT NULL,
    PRIMARY KEY (lucky_bag_id, account_id)
);
