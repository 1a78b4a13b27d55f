//! A bound on repeated log events: a peer that can make the server log (a flood of
//! refused handshakes, connections over a limit) must not be able to fill the
//! operator's disk or drown other events. At most one event of a kind is logged per
//! [`WINDOW`]; the next one logged says how many were left out meanwhile, so nothing
//! is hidden, only counted.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The shortest time between two logged events of one kind.
pub const WINDOW: Duration = Duration::from_secs(1);

/// One kind of event's limit.
#[derive(Debug, Default)]
pub struct LogLimit {
    /// Milliseconds (since the process's first use of a limit) of the last event
    /// logged, plus one (0: none yet).
    last: AtomicU64,
    /// Events left out since the last one logged.
    suppressed: AtomicU64,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    u64::try_from(START.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl LogLimit {
    #[must_use]
    pub const fn new() -> LogLimit {
        LogLimit {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(left_out)` when an event may be logged now (with the number of events
    /// left out since the last one logged); `None` when it is to be left out.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(now_ms())
    }

    fn allow_at(&self, now: u64) -> Option<u64> {
        let stamp = now.saturating_add(1);
        let last = self.last.load(Ordering::Relaxed);
        let window = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || stamp >= last.saturating_add(window))
            && self
                .last
                .compare_exchange(last, stamp, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_per_window_is_logged_and_the_next_counts_those_left_out() {
        let l = LogLimit::new();
        assert_eq!(l.allow_at(5), Some(0), "the first is logged");
        for t in 6..500 {
            assert_eq!(l.allow_at(t), None, "within the window");
        }
        assert_eq!(
            l.allow_at(1_005),
            Some(494),
            "after the window, with the count"
        );
        assert_eq!(l.allow_at(1_006), None);
        assert_eq!(l.allow_at(5_000), Some(1));
    }
}
