//! The SFU: WebRTC publish and play over one UDP port for every peer, announced through WHIP
//! (`POST /whip/{room}`) and WHEP (`POST /whep/{room}`).
//!
//! One task, the [`endpoint`], owns the UDP socket and every peer connection (the sans-IO `rtc`
//! crate): it routes each datagram to its peer by ICE username, then by remote address, feeds it
//! in, and forwards the publisher's RTP to the room's subscribers, each packet rewritten for the
//! subscriber's negotiated SSRC and payload type. HTTP handlers talk to it through a command
//! channel ([`Media`]); who may publish or play is decided outside, by a [`RoomAccess`].
//!
//! Besides the live path: [`package`] turns a recording into a replay, and [`transcode`] turns an
//! uploaded clip into a streamable H.264/AAC MP4 with a cover (commerce's short videos).

pub mod access;
pub mod endpoint;
pub mod http;
mod keyframe;
pub mod package;
mod peer;
pub mod recording;
pub mod replays;
mod retransmit;
pub mod transcode;

pub use access::{Intent, RoomAccess, RoomInfo};
pub use endpoint::{Media, MediaConfig, MediaEvent, MediaStats, SessionKind, TrackInfo};
pub use http::router;
pub use replays::Replays;
