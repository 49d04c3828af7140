-- Return requests (退货退款) and after-sale deadlines (commerce::orders, docs/commerce.md "The
-- state machine"): the statuses return_requested, return_approved and return_shipped need no
-- schema change (status is TEXT). Keep in step with the other engine's 0010_order_returns.sql.

-- The tracking number of the goods the buyer sent back.
ALTER TABLE orders ADD COLUMN return_tracking_no TEXT;
-- When the order was shipped and completed: the automatic confirmation of receipt counts from
-- shipping, and a completed order's after-sale window from completion, whatever happened since.
ALTER TABLE orders ADD COLUMN shipped_at BIGINT;
ALTER TABLE orders ADD COLUMN completed_at BIGINT;
UPDATE orders SET shipped_at = (SELECT MIN(e.at) FROM order_events e WHERE e.order_id = orders.id AND e.action = 'ship');
UPDATE orders SET completed_at = (SELECT MIN(e.at) FROM order_events e WHERE e.order_id = orders.id AND e.action = 'confirm_receipt');

-- The sweeper acts on orders left too long in one status (commerce::orders::DEADLINES).
CREATE INDEX orders_status_updated ON orders(status, updated_at);

-- A refund clawback may leave a merchant owing the platform (a negative balance, as merchant
-- accounts on real platforms do) rather than leave the buyer's refund stuck; every other
-- movement still needs the balance to cover it (commerce::wallet).
ALTER TABLE wallets DROP CONSTRAINT wallets_balance_cents_check;
