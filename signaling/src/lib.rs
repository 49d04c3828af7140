//! The live-room hub: the WebSocket channel of every room — presence, danmaku, likes, room
//! events, reconnect recovery — for live commerce, live classes and proctoring.
//!
//! - [`protocol`]: the wire protocol (one definition; TypeScript generated from it).
//! - [`room::core`]: one room's rules, sans IO, tested in virtual time; [`room::task`] runs it.
//! - [`queue`]: a connection's bounded outbound queue with delivery classes.
//! - [`hub`]: room lookup, authorisation, session ends, the per-socket loop.
//! - [`virtual_conn`]: in-process viewers without a socket (commerce's buyer bots).
//! - [`store`]: rooms, the chat log (batched writes), the word list.
//! - [`stage`]: the stage of a live class (trainees invited to publish next to the instructor).
//! - [`stream_keys`]: per-room stream keys for OBS Studio's WHIP output.
//! - [`words`]: the sensitive-word filter.
//! - [`http`]: `/ws`, the rooms API (with the stream-key routes), the word-list API.

pub mod http;
pub mod hub;
pub mod protocol;
pub mod queue;
pub mod room;
pub mod stage;
pub mod store;
pub mod stream_keys;
pub mod virtual_conn;
pub mod words;

pub use http::{SignalingApi, router};
pub use hub::Hub;
pub use virtual_conn::VirtualConn;
