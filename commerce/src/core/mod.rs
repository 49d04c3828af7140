//! The commerce rules, pure: money splitting, draws, coupon pricing, order states, stock gates.
//! Every function takes what it needs (including `now` and randomness) as arguments.

pub mod coupon;
pub mod diagnosis;
pub mod lucky_bag;
pub mod order;
pub mod red_packet;
pub mod stock;
