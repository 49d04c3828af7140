//! The SFU: WebRTC publish and play over one UDP port for every peer, announced through WHIP
//! (`POST /whip/{room}`) and WHEP (`POST /whep/{room}`).
//!
//! One task, the [`endpoint`], owns the UDP socket and every peer connection (the sans-IO `rtc`
//! crate): it routes each datagram to its peer by ICE username, then by remote address, feeds it
//! in, and forwards the publisher's RTP to the room's subscribers, each packet rewritten for the
//! subscriber's negotiated SSRC and payload type. HTTP handlers talk to it through a command
//! channel ([`Media`]); who may publish or play is decided outside, by a [`RoomAccess`].
//!
//! Besides the live path: [`package`] turns a recording into a replay (VP8 into WebM, H.264
//! into MP4), and [`transcode`] turns an uploaded clip into a streamable H.264/AAC MP4 with a
//! cover (commerce's short videos).

pub mod access;
mod codec;
pub mod endpoint;
mod feedback;
pub mod http;
mod keyframe;
pub mod package;
mod package_h264;
mod peer;
pub mod recording;
pub mod replays;
mod retransmit;
pub mod simulcast;
pub mod transcode;

pub use access::{Intent, RoomAccess, RoomInfo};
pub use endpoint::{
    Media, MediaConfig, MediaEvent, MediaStats, OpenRequest, PublishAs, SessionKind, TrackInfo,
};
pub use http::router;
pub use replays::Replays;
pub use simulcast::Quality;
