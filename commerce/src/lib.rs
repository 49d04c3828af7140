//! Live commerce: shops, products, orders, flash sales, red packets, lucky bags, coupons,
//! dashboards, buyer bots, AI live scripts and short videos.
//!
//! Not built yet: issue 5 ("Live commerce engine") fills this crate.
