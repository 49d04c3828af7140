//! Simulcast (sans IO): which of a publisher's video layers each subscriber gets, and the
//! rewriting that makes a change of layer invisible to it.
//!
//! A publisher sends up to three encodings of its camera, each on its own SSRC with its own
//! sequence numbers and timestamps. A subscriber asks for a [`Quality`] (the proctoring wall
//! asks for `low`); its [`LayerSelector`] picks the active layer that fits and moves to another
//! only at a keyframe of that layer, rewriting sequence numbers and timestamps so that what the
//! subscriber receives stays one continuous stream. Layers are ranked by the bitrate they carry,
//! so the names the client gave them (`rid`) do not matter.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::retransmit::seq_after;

/// A layer that has sent nothing this long is taken as stopped (a browser pauses its upper
/// layers when its uplink is short).
pub(crate) const LAYER_IDLE: Duration = Duration::from_secs(1);
/// The RTP clock of video.
const VIDEO_CLOCK: u64 = 90_000;

/// What a subscriber asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    /// The lowest layer: a wall of many small pictures.
    Low,
    /// The middle one: a phone.
    Medium,
    /// The best there is.
    #[default]
    High,
}

/// The active layers of a publisher's video, lowest first: which SSRC a quality maps to.
pub(crate) fn pick(want: Quality, active: &[u32]) -> Option<u32> {
    let last = active.len().checked_sub(1)?;
    let index = match want {
        Quality::Low => 0,
        Quality::Medium => active.len() / 2,
        Quality::High => last,
    };
    active.get(index.min(last)).copied()
}

/// What to do with one packet of the publisher's video for one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not for this subscriber (another layer, or the layer it waits for has no keyframe yet).
    Drop,
    /// Send it with these numbers.
    Forward { seq: u16, ts: u32 },
}

/// One subscriber's view of a publisher's simulcast video.
#[derive(Debug)]
pub(crate) struct LayerSelector {
    want: Quality,
    /// The layer being forwarded.
    current: Option<u32>,
    /// The layer to move to at its next keyframe.
    target: Option<u32>,
    seq_offset: u16,
    ts_offset: u32,
    /// The last packet sent: its numbers and when.
    last_out: Option<(u16, u32, Instant)>,
    /// How many sequence numbers the current layer has covered up to the last one sent (at
    /// most half the 16-bit space): what a NACK may still ask for, and what a late packet from
    /// before a switch would collide with.
    span: u32,
}

impl LayerSelector {
    pub(crate) fn new(want: Quality) -> Self {
        Self {
            want,
            current: None,
            target: None,
            seq_offset: 0,
            ts_offset: 0,
            last_out: None,
            span: 0,
        }
    }

    /// The layer whose packets are forwarded now.
    #[cfg(test)]
    pub(crate) fn current(&self) -> Option<u32> {
        self.current
    }

    /// The layer a keyframe is wanted of: the one waited for, or else the current one.
    pub(crate) fn wanted(&self) -> Option<u32> {
        self.target.or(self.current)
    }

    /// The layer the subscriber should be on, given the active ones (lowest first). Returns
    /// the layer that needs a keyframe when that is a change, so the caller asks for one.
    pub(crate) fn retarget(&mut self, active: &[u32]) -> Option<u32> {
        let best = pick(self.want, active);
        if best == self.current {
            self.target = None;
            return None;
        }
        if best == self.target {
            return None; // already asked for
        }
        self.target = best;
        best
    }

    /// Starts on `layer` at once (a new subscriber given the kept keyframe): the packets that
    /// follow keep the publisher's numbers.
    pub(crate) fn start_on(&mut self, layer: u32) {
        if self.current.is_none() {
            self.current = Some(layer);
            self.target = None;
        }
    }

    /// A packet of `layer`: forward it (with the numbers to send) or drop it.
    pub(crate) fn packet(
        &mut self,
        now: Instant,
        layer: u32,
        seq: u16,
        ts: u32,
        starts_keyframe: bool,
    ) -> Verdict {
        if self.target == Some(layer) && starts_keyframe && self.current != Some(layer) {
            self.switch_to(now, layer, seq, ts);
        }
        if self.current != Some(layer) {
            return Verdict::Drop;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        match self.last_out {
            // The first packet sent (also after `start_on`).
            None => {
                self.span = 1;
                self.last_out = Some((out_seq, out_ts, now));
            }
            Some((last, _, _)) if seq_after(out_seq, last) => {
                let ahead = u32::from(out_seq.wrapping_sub(last));
                self.span = (self.span + ahead).min(0x8000);
                self.last_out = Some((out_seq, out_ts, now));
            }
            // A late packet: fine when it is of the current layer's run (a reordering or a
            // retransmission); one from before the switch would take a number already used.
            Some((last, _, _)) if u32::from(last.wrapping_sub(out_seq)) >= self.span => {
                return Verdict::Drop;
            }
            Some(_) => {}
        }
        Verdict::Forward {
            seq: out_seq,
            ts: out_ts,
        }
    }

    fn switch_to(&mut self, now: Instant, layer: u32, seq: u16, ts: u32) {
        match self.last_out {
            // The first layer keeps the publisher's numbers.
            None => {
                self.seq_offset = 0;
                self.ts_offset = 0;
            }
            // Continue right after the last packet sent, the timestamp advanced by the time
            // that passed (at least one tick, so frames stay in order).
            Some((last_seq, last_ts, at)) => {
                let elapsed = now.saturating_duration_since(at);
                let ticks = (elapsed.as_micros() as u64 * VIDEO_CLOCK / 1_000_000).max(1);
                self.seq_offset = last_seq.wrapping_add(1).wrapping_sub(seq);
                self.ts_offset = last_ts.wrapping_add(ticks as u32).wrapping_sub(ts);
            }
        }
        self.current = Some(layer);
        self.target = None;
        // The switching packet, sent right after the last one, opens the new run.
        self.span = 0;
    }

    /// For a sequence number the subscriber asks again for (NACK): the publisher's number on
    /// the current layer, when it was sent since the last change of layer.
    pub(crate) fn original(&self, out_seq: u16) -> Option<(u32, u16)> {
        let layer = self.current?;
        let (last, _, _) = self.last_out?;
        let back = last.wrapping_sub(out_seq);
        // Sent (not ahead of the last one), and on this run of the current layer.
        (back < 0x8000 && u32::from(back) < self.span)
            .then(|| (layer, out_seq.wrapping_sub(self.seq_offset)))
    }

    /// The timestamp to send for a publisher timestamp of the current layer.
    pub(crate) fn timestamp(&self, ts: u32) -> u32 {
        ts.wrapping_add(self.ts_offset)
    }
}

/// Ranks a publisher's video layers, lowest first. Layers named by one of the usual `rid`
/// schemes (`q`/`h`/`f`, `l`/`m`/`h`, `low`/`mid`/`high`, `0`/`1`/`2`) rank by name; any other
/// names by the bytes each carried in the last window. A layer that sent no media for
/// [`LAYER_IDLE`] is not active: a browser pausing a layer still sends padding on it, which
/// does not count.
#[derive(Debug, Default)]
pub(crate) struct LayerRanking {
    layers: Vec<RankedLayer>,
    window_started: Option<Instant>,
}

#[derive(Debug)]
struct RankedLayer {
    ssrc: u32,
    rid: Option<String>,
    bytes: u64,
    last_window_bytes: u64,
    last_media: Option<Instant>,
}

/// How long a bitrate window is.
const RANK_WINDOW: Duration = Duration::from_millis(500);

/// The usual rid schemes, each lowest first.
const RID_SCHEMES: [&[&str]; 5] = [
    &["q", "h", "f"],
    &["l", "m", "h"],
    &["low", "mid", "high"],
    &["low", "medium", "high"],
    &["0", "1", "2"],
];

impl LayerRanking {
    pub(crate) fn add(&mut self, ssrc: u32, rid: Option<&str>) {
        if !self.layers.iter().any(|l| l.ssrc == ssrc) {
            self.layers.push(RankedLayer {
                ssrc,
                rid: rid.map(str::to_owned),
                bytes: 0,
                last_window_bytes: 0,
                last_media: None,
            });
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.layers.len()
    }

    /// A packet of `bytes` of payload on `ssrc` (0 for padding: not a sign of life).
    pub(crate) fn packet(&mut self, now: Instant, ssrc: u32, bytes: usize) {
        if bytes == 0 {
            return;
        }
        if let Some(layer) = self.layers.iter_mut().find(|l| l.ssrc == ssrc) {
            layer.bytes += bytes as u64;
            layer.last_media = Some(now);
        }
        self.window_started.get_or_insert(now);
    }

    /// Where each layer ranks by name, when all of them follow one scheme.
    fn by_name(&self) -> Option<Vec<usize>> {
        let scheme = RID_SCHEMES.iter().find(|scheme| {
            self.layers
                .iter()
                .all(|l| l.rid.as_deref().is_some_and(|rid| scheme.contains(&rid)))
        })?;
        self.layers
            .iter()
            .map(|l| scheme.iter().position(|s| Some(*s) == l.rid.as_deref()))
            .collect()
    }

    /// The active layers, lowest first. Rolls the bitrate window over when it is due.
    pub(crate) fn active(&mut self, now: Instant) -> Vec<u32> {
        if let Some(started) = self.window_started
            && now.saturating_duration_since(started) >= RANK_WINDOW
        {
            for layer in &mut self.layers {
                layer.last_window_bytes = std::mem::take(&mut layer.bytes);
            }
            self.window_started = Some(now);
        }
        let names = self.by_name();
        let mut active: Vec<(u64, u32)> = self
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                l.last_media
                    .is_some_and(|at| now.saturating_duration_since(at) < LAYER_IDLE)
            })
            .map(|(i, l)| {
                let rank = match &names {
                    Some(names) => names[i] as u64,
                    // A layer without a full window yet ranks by what it sent so far.
                    None => l.last_window_bytes.max(l.bytes),
                };
                (rank, l.ssrc)
            })
            .collect();
        active.sort_by_key(|(rank, _)| *rank);
        active.into_iter().map(|(_, ssrc)| ssrc).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: u32 = 10;
    const H: u32 = 20;
    const F: u32 = 30;

    #[test]
    fn a_quality_maps_to_an_active_layer() {
        assert_eq!(pick(Quality::Low, &[Q, H, F]), Some(Q));
        assert_eq!(pick(Quality::Medium, &[Q, H, F]), Some(H));
        assert_eq!(pick(Quality::High, &[Q, H, F]), Some(F));
        // Two layers: medium takes the upper one; one layer serves everyone.
        assert_eq!(pick(Quality::Medium, &[Q, F]), Some(F));
        assert_eq!(pick(Quality::Low, &[F]), Some(F));
        assert_eq!(pick(Quality::High, &[]), None);
    }

    /// Feeds one frame of `layer` (`packets` packets, the first a keyframe start when `key`).
    fn frame(
        selector: &mut LayerSelector,
        now: Instant,
        layer: u32,
        seq: &mut u16,
        ts: u32,
        key: bool,
    ) -> Vec<Verdict> {
        (0..3)
            .map(|i| {
                let verdict = selector.packet(now, layer, *seq, ts, key && i == 0);
                *seq = seq.wrapping_add(1);
                verdict
            })
            .collect()
    }

    #[test]
    fn waits_for_a_keyframe_then_forwards_one_continuous_stream_across_a_switch() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut selector = LayerSelector::new(Quality::High);
        assert_eq!(selector.retarget(&[Q, F]), Some(F), "ask F for a keyframe");
        assert_eq!(selector.retarget(&[Q, F]), None, "asked once");
        // F's packets are dropped until its keyframe; Q's always.
        let (mut q_seq, mut f_seq) = (100u16, 65_534u16);
        assert!(
            frame(&mut selector, at(0), F, &mut f_seq, 9_000, false)
                .iter()
                .all(|v| *v == Verdict::Drop)
        );
        assert!(
            frame(&mut selector, at(0), Q, &mut q_seq, 1_000, true)
                .iter()
                .all(|v| *v == Verdict::Drop)
        );
        let sent = frame(&mut selector, at(33), F, &mut f_seq, 12_000, true);
        // The first layer keeps the publisher's numbers, across the 16-bit wrap.
        assert_eq!(
            sent,
            vec![
                Verdict::Forward { seq: 1, ts: 12_000 },
                Verdict::Forward { seq: 2, ts: 12_000 },
                Verdict::Forward { seq: 3, ts: 12_000 },
            ]
        );
        // F stops (the publisher's uplink dropped it): move to Q at its next keyframe.
        assert_eq!(selector.retarget(&[Q]), Some(Q));
        assert!(
            frame(&mut selector, at(50), Q, &mut q_seq, 5_000, false)
                .iter()
                .all(|v| *v == Verdict::Drop),
            "no switch before Q's keyframe"
        );
        let sent = frame(&mut selector, at(133), Q, &mut q_seq, 8_000, true);
        // Sequence numbers go on where F's ended; the timestamp moved by the 100 ms between.
        assert_eq!(
            sent[0],
            Verdict::Forward {
                seq: 4,
                ts: 12_000 + 9_000
            }
        );
        assert_eq!(
            sent[2],
            Verdict::Forward {
                seq: 6,
                ts: 12_000 + 9_000
            }
        );
        assert_eq!(selector.current(), Some(Q));
        assert_eq!(
            selector.packet(at(150), F, f_seq, 20_000, true),
            Verdict::Drop,
            "F is not wanted while not active"
        );
        // A NACK of a number sent on Q maps back to Q's own number; one from before the
        // switch (F's) or one never sent maps to nothing.
        assert_eq!(selector.original(5), Some((Q, q_seq.wrapping_sub(2))));
        assert_eq!(selector.original(2), None);
        assert_eq!(selector.original(7), None);
        assert_eq!(selector.timestamp(8_000), 21_000);
    }

    #[test]
    fn a_subscriber_started_on_a_kept_keyframe_keeps_the_numbers() {
        let now = Instant::now();
        let mut selector = LayerSelector::new(Quality::Low);
        selector.retarget(&[Q, H, F]);
        selector.start_on(Q);
        // Above 32,768: NACKs must count from the first packet sent, not from 0.
        assert_eq!(
            selector.packet(now, Q, 40_000, 7_000, false),
            Verdict::Forward {
                seq: 40_000,
                ts: 7_000
            }
        );
        selector.packet(now, Q, 40_001, 7_000, false);
        assert_eq!(selector.original(40_000), Some((Q, 40_000)));
        assert_eq!(selector.original(40_001), Some((Q, 40_001)));
        assert_eq!(selector.original(39_999), None, "never sent");
        assert_eq!(
            selector.retarget(&[Q, H, F]),
            None,
            "already on the right layer"
        );
    }

    #[test]
    fn layers_rank_by_bitrate_and_idle_ones_drop_out() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut ranking = LayerRanking::default();
        // Names no scheme knows: ranked by bitrate.
        for (ssrc, rid) in [(F, "c"), (Q, "a"), (H, "b")] {
            ranking.add(ssrc, Some(rid));
        }
        for ms in 0..600u64 {
            ranking.packet(at(ms), F, 1_200);
            if ms % 4 == 0 {
                ranking.packet(at(ms), H, 1_000);
            }
            if ms % 10 == 0 {
                ranking.packet(at(ms), Q, 800);
            }
        }
        assert_eq!(ranking.active(at(600)), vec![Q, H, F]);
        // F stops: after a second it is no longer active.
        for ms in 600..1700u64 {
            if ms % 4 == 0 {
                ranking.packet(at(ms), H, 1_000);
            }
            if ms % 10 == 0 {
                ranking.packet(at(ms), Q, 800);
            }
        }
        assert_eq!(ranking.active(at(1700)), vec![Q, H]);
        assert_eq!(ranking.len(), 3);
    }

    #[test]
    fn known_rids_rank_by_name_and_padding_is_no_sign_of_life() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut ranking = LayerRanking::default();
        for (ssrc, rid) in [(F, "f"), (Q, "q"), (H, "h")] {
            ranking.add(ssrc, Some(rid));
        }
        // F just resumed and sent little so far: by name it still ranks highest.
        ranking.packet(at(0), Q, 800);
        ranking.packet(at(0), H, 1_000);
        ranking.packet(at(0), F, 10);
        assert_eq!(ranking.active(at(1)), vec![Q, H, F]);
        // F paused: only padding for over a second, so it is no longer active.
        for ms in 1..1200u64 {
            ranking.packet(at(ms), Q, 800);
            ranking.packet(at(ms), H, 1_000);
            ranking.packet(at(ms), F, 0);
        }
        assert_eq!(ranking.active(at(1200)), vec![Q, H]);
    }

    #[test]
    fn nacks_stay_answerable_on_a_long_run_and_late_packets_from_before_a_switch_drop() {
        let now = Instant::now();
        let mut selector = LayerSelector::new(Quality::High);
        selector.retarget(&[Q]);
        // 70,000 packets on one layer, across the 16-bit wrap more than once.
        let mut seq = 1_000u16;
        assert!(matches!(
            selector.packet(now, Q, seq, 0, true),
            Verdict::Forward { .. }
        ));
        for _ in 0..70_000 {
            seq = seq.wrapping_add(1);
            selector.packet(now, Q, seq, 0, false);
        }
        assert_eq!(selector.original(seq), Some((Q, seq)));
        assert_eq!(
            selector.original(seq.wrapping_sub(1_000)),
            Some((Q, seq.wrapping_sub(1_000)))
        );
        // Switch to H at its keyframe; H's packet from just before that keyframe comes late.
        assert_eq!(selector.retarget(&[H]), Some(H));
        assert!(matches!(
            selector.packet(now, H, 5_000, 0, true),
            Verdict::Forward { .. }
        ));
        assert_eq!(selector.packet(now, H, 4_999, 0, false), Verdict::Drop);
        assert!(matches!(
            selector.packet(now, H, 5_001, 0, false),
            Verdict::Forward { .. }
        ));
        // A reordered packet of the run itself still goes.
        assert!(matches!(
            selector.packet(now, H, 5_003, 0, false),
            Verdict::Forward { .. }
        ));
        assert!(matches!(
            selector.packet(now, H, 5_002, 0, false),
            Verdict::Forward { .. }
        ));
    }
}
