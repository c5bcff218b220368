//! Stuck detection: the same tool call failing the same way again and again.

use std::collections::VecDeque;

/// How many identical failing steps in a row count as stuck.
pub const STUCK_REPEATS: usize = 3;

#[derive(Debug, Default)]
pub struct StuckDetector {
    recent: VecDeque<(String, String)>,
}

impl StuckDetector {
    /// Records a step (`call` = tool name + arguments, `result` = what came back, `failed` =
    /// whether it was an error). Returns true when the last [`STUCK_REPEATS`] steps were the
    /// same failing call with the same result.
    pub fn record(&mut self, call: &str, result: &str, failed: bool) -> bool {
        if !failed {
            self.recent.clear();
            return false;
        }
        self.recent
            .push_back((call.to_string(), result.to_string()));
        while self.recent.len() > STUCK_REPEATS {
            self.recent.pop_front();
        }
        self.recent.len() == STUCK_REPEATS && self.recent.iter().all(|step| *step == self.recent[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_identical_failures_are_stuck() {
        let mut d = StuckDetector::default();
        assert!(!d.record("ls x", "no such file", true));
        assert!(!d.record("ls x", "no such file", true));
        assert!(d.record("ls x", "no such file", true));
    }

    #[test]
    fn success_or_variation_resets() {
        let mut d = StuckDetector::default();
        d.record("a", "err", true);
        d.record("a", "err", true);
        assert!(!d.record("a", "ok", false));
        assert!(!d.record("a", "err", true));
        assert!(!d.record("b", "err", true));
    }
}
