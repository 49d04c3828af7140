-- Live commerce (commerce crate): simulated wallets, shops, products and SKUs, orders, flash
-- sales, coupons, red packets, lucky bags. Money is BIGINT cents everywhere.
-- Keep in step with the other engine's 0004_commerce.sql.

-- Every account's simulated balance; every change is a ledger entry written in the same
-- transaction, so balance = the sum of its entries.
CREATE TABLE wallets (
    account_id BIGINT PRIMARY KEY REFERENCES accounts(id),
    balance_cents BIGINT NOT NULL CHECK (balance_cents >= 0),
    updated_at BIGINT NOT NULL
);
CREATE TABLE wallet_entries (
    id INTEGER PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    delta_cents BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    -- opening | order_payment | order_income | refund | refund_clawback | red_packet_send | red_packet_grab | red_packet_return
    reason TEXT NOT NULL,
    ref_id BIGINT,
    at BIGINT NOT NULL
);
CREATE INDEX wallet_entries_account ON wallet_entries(account_id, id);

CREATE TABLE shops (
    id INTEGER PRIMARY KEY,
    owner_id BIGINT NOT NULL UNIQUE REFERENCES accounts(id),
    class_id BIGINT NOT NULL REFERENCES classes(id),
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    logo_url TEXT,
    description TEXT NOT NULL DEFAULT '',
    -- open | closed
    status TEXT NOT NULL DEFAULT 'open',
    -- JSON array of customer-service quick replies (客服快捷回复)
    quick_replies TEXT NOT NULL DEFAULT '[]',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX shops_class ON shops(class_id);

CREATE TABLE products (
    id INTEGER PRIMARY KEY,
    shop_id BIGINT NOT NULL REFERENCES shops(id),
    title TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    -- JSON array of image URLs
    images TEXT NOT NULL DEFAULT '[]',
    -- draft | listed | delisted
    status TEXT NOT NULL DEFAULT 'draft',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX products_shop ON products(shop_id);

CREATE TABLE skus (
    id INTEGER PRIMARY KEY,
    product_id BIGINT NOT NULL REFERENCES products(id),
    spec TEXT NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    -- what can still be ordered (flash-sale stock is carved out of it while the sale runs)
    stock BIGINT NOT NULL CHECK (stock >= 0),
    sold BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    UNIQUE (product_id, spec)
);

-- Every stock movement: manual adjustments, orders, cancellations, refunds, flash-sale carve-outs.
CREATE TABLE stock_changes (
    id INTEGER PRIMARY KEY,
    sku_id BIGINT NOT NULL REFERENCES skus(id),
    delta BIGINT NOT NULL,
    stock_after BIGINT NOT NULL,
    reason TEXT NOT NULL,
    ref_id BIGINT,
    actor_id BIGINT,
    note TEXT NOT NULL DEFAULT '',
    at BIGINT NOT NULL
);
CREATE INDEX stock_changes_sku ON stock_changes(sku_id, id);

CREATE TABLE flash_sales (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    shop_id BIGINT NOT NULL REFERENCES shops(id),
    sku_id BIGINT NOT NULL REFERENCES skus(id),
    price_cents BIGINT NOT NULL CHECK (price_cents > 0),
    stock BIGINT NOT NULL CHECK (stock > 0),
    per_user_limit BIGINT NOT NULL CHECK (per_user_limit > 0),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    pay_seconds BIGINT NOT NULL,
    -- units in orders not cancelled; the database's own guard against overselling
    sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0 AND sold <= stock),
    -- running | closed (unsold stock returned to the SKU)
    status TEXT NOT NULL DEFAULT 'running',
    returned BIGINT NOT NULL DEFAULT 0,
    created_by BIGINT NOT NULL REFERENCES accounts(id),
    created_at BIGINT NOT NULL
);
CREATE INDEX flash_sales_room ON flash_sales(room_id);

CREATE TABLE coupons (
    id INTEGER PRIMARY KEY,
    shop_id BIGINT NOT NULL REFERENCES shops(id),
    room_id BIGINT REFERENCES rooms(id),
    title TEXT NOT NULL,
    threshold_cents BIGINT NOT NULL,
    discount_cents BIGINT NOT NULL,
    valid_from BIGINT NOT NULL,
    valid_until BIGINT NOT NULL,
    total_quota BIGINT NOT NULL,
    per_user_limit BIGINT NOT NULL,
    claimed BIGINT NOT NULL DEFAULT 0 CHECK (claimed <= total_quota),
    created_at BIGINT NOT NULL
);
CREATE INDEX coupons_shop ON coupons(shop_id);
CREATE INDEX coupons_room ON coupons(room_id);

CREATE TABLE coupon_claims (
    id INTEGER PRIMARY KEY,
    coupon_id BIGINT NOT NULL REFERENCES coupons(id),
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    claimed_at BIGINT NOT NULL,
    used_order_id BIGINT,
    used_at BIGINT
);
CREATE INDEX coupon_claims_owner ON coupon_claims(account_id, coupon_id);

CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    buyer_id BIGINT NOT NULL REFERENCES accounts(id),
    shop_id BIGINT NOT NULL REFERENCES shops(id),
    sku_id BIGINT NOT NULL REFERENCES skus(id),
    room_id BIGINT REFERENCES rooms(id),
    flash_sale_id BIGINT REFERENCES flash_sales(id),
    coupon_claim_id BIGINT REFERENCES coupon_claims(id),
    product_title TEXT NOT NULL,
    sku_spec TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL,
    subtotal_cents BIGINT NOT NULL,
    discount_cents BIGINT NOT NULL DEFAULT 0,
    total_cents BIGINT NOT NULL CHECK (total_cents > 0),
    -- core::order::OrderStatus
    status TEXT NOT NULL,
    refund_from TEXT,
    refund_reason TEXT,
    tracking_no TEXT,
    address TEXT NOT NULL DEFAULT '',
    pay_deadline BIGINT NOT NULL,
    idempotency_key TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (buyer_id, idempotency_key)
);
CREATE INDEX orders_buyer ON orders(buyer_id, id);
CREATE INDEX orders_shop ON orders(shop_id, id);
CREATE INDEX orders_sale ON orders(flash_sale_id);
CREATE INDEX orders_pending ON orders(status, pay_deadline);
CREATE INDEX orders_room ON orders(room_id);

-- Every state change of an order.
CREATE TABLE order_events (
    id INTEGER PRIMARY KEY,
    order_id BIGINT NOT NULL REFERENCES orders(id),
    from_status TEXT,
    to_status TEXT NOT NULL,
    action TEXT NOT NULL,
    actor_id BIGINT,
    note TEXT NOT NULL DEFAULT '',
    at BIGINT NOT NULL
);
CREATE INDEX order_events_order ON order_events(order_id, id);

CREATE TABLE red_packets (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    sender_id BIGINT NOT NULL REFERENCES accounts(id),
    total_cents BIGINT NOT NULL,
    count BIGINT NOT NULL,
    greeting TEXT NOT NULL DEFAULT '',
    expires_at BIGINT NOT NULL,
    grabbed_count BIGINT NOT NULL DEFAULT 0,
    grabbed_cents BIGINT NOT NULL DEFAULT 0,
    -- active | finished (all grabbed) | expired (the rest returned to the sender)
    status TEXT NOT NULL DEFAULT 'active',
    returned_cents BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);
CREATE INDEX red_packets_room ON red_packets(room_id);

-- The shares, split when the packet is sent (core::red_packet), taken in idx order.
CREATE TABLE red_packet_shares (
    red_packet_id BIGINT NOT NULL REFERENCES red_packets(id),
    idx BIGINT NOT NULL,
    amount_cents BIGINT NOT NULL CHECK (amount_cents >= 1),
    grabbed_by BIGINT REFERENCES accounts(id),
    grabbed_at BIGINT,
    PRIMARY KEY (red_packet_id, idx),
    UNIQUE (red_packet_id, grabbed_by)
);

CREATE TABLE lucky_bags (
    id INTEGER PRIMARY KEY,
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    host_id BIGINT NOT NULL REFERENCES accounts(id),
    prize TEXT NOT NULL,
    winners BIGINT NOT NULL,
    -- comment (send `keyword` in the chat) | join (tap to take part)
    task TEXT NOT NULL,
    keyword TEXT,
    starts_at BIGINT NOT NULL,
    draws_at BIGINT NOT NULL,
    -- SHA-256 of the seed, published at launch; the seed is revealed at the draw
    commitment TEXT NOT NULL,
    seed TEXT NOT NULL,
    -- open | drawn
    status TEXT NOT NULL DEFAULT 'open',
    -- JSON: entrants and winners, as drawn
    entrants TEXT,
    result TEXT,
    drawn_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX lucky_bags_room ON lucky_bags(room_id);

CREATE TABLE lucky_bag_entries (
    lucky_bag_id BIGINT NOT NULL REFERENCES lucky_bags(id),
    account_id BIGINT NOT NULL REFERENCES accounts(id),
    entered_at BIGINT NOT NULL,
    PRIMARY KEY (lucky_bag_id, account_id)
);

-- The product a room's host is explaining now (讲解中) and the room's shelf (小黄车).
CREATE TABLE room_products (
    room_id BIGINT NOT NULL REFERENCES rooms(id),
    product_id BIGINT NOT NULL REFERENCES products(id),
    position BIGINT NOT NULL,
    pinned_at BIGINT,
    PRIMARY KEY (room_id, product_id)
);
