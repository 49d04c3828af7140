//! Keyframe requests to one publisher, coalesced (sans IO): subscribers joining or losing
//! pictures ask for a keyframe, but the publisher gets at most one request (PLI) per interval;
//! a request inside the interval is kept and sent when the interval ends, so nobody waits for
//! a keyframe longer than that.

use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct KeyframeGate {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: bool,
}

impl KeyframeGate {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            last_sent: None,
            pending: false,
        }
    }

    /// Someone wants a keyframe; true when a request should go to the publisher now.
    pub(crate) fn request(&mut self, now: Instant) -> bool {
        self.pending = true;
        self.poll(now)
    }

    /// True when a kept request is due now (call on every tick).
    pub(crate) fn poll(&mut self, now: Instant) -> bool {
        let open = self
            .last_sent
            .is_none_or(|last| now.duration_since(last) >= self.interval);
        if self.pending && open {
            self.pending = false;
            self.last_sent = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_one_request_per_interval_and_none_lost() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut gate = KeyframeGate::new(Duration::from_secs(1));
        assert!(gate.request(at(0)), "the first request goes out at once");
        // A burst of subscribers joining within the second: no further requests…
        let mut sent = 0;
        for ms in (10..1000).step_by(10) {
            sent += usize::from(gate.request(at(ms)));
        }
        assert_eq!(sent, 0);
        assert!(!gate.poll(at(999)));
        // … but the kept one goes out when the interval ends.
        assert!(gate.poll(at(1000)));
        assert!(!gate.poll(at(1500)), "nothing pending any more");
        assert!(!gate.poll(at(5000)));
        // After a quiet period a request goes out immediately again.
        assert!(gate.request(at(6000)));
    }

    #[test]
    fn sent_requests_are_a_second_apart_under_a_storm() {
        let start = Instant::now();
        let mut gate = KeyframeGate::new(Duration::from_secs(1));
        let mut sent_at = Vec::new();
        for ms in 0..10_000u64 {
            let now = start + Duration::from_millis(ms);
            if gate.request(now) {
                sent_at.push(ms);
            }
        }
        assert_eq!(sent_at.len(), 10);
        assert!(
            sent_at.windows(2).all(|w| w[1] - w[0] >= 1000),
            "{sent_at:?}"
        );
    }
}
