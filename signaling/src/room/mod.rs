//! Rooms: the sans-IO [`core`] with every rule, and the [`task`] that runs it.

pub mod core;
pub mod task;
