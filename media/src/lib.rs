//! The SFU: WebRTC publish/subscribe on one UDP port, WHIP/WHEP, recording and replay packaging.
//!
//! Not built yet: issue 4 ("SFU media core") fills this crate. It exists now so the workspace has
//! the shape of the design card and the binary's wiring has its place.
