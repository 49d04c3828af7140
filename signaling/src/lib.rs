//! The live-room hub: WebSocket rooms, presence, danmaku, likes, room events, reconnect recovery
//! and the cross-node relay over the foundation's bus.
//!
//! Not built yet: issue 3 ("Live room hub") fills this crate.
