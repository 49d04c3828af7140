//! The commerce rules, pure: money splitting, draws, coupon pricing, order states, stock gates,
//! the behaviour of simulated buyers.
//! Every function takes what it needs (including `now` and randomness) as arguments.

pub mod bots;
pub mod coupon;
pub mod diagnosis;
pub mod lucky_bag;
pub mod order;
pub mod red_packet;
pub mod stock;
