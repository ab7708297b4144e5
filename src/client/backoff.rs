//! How long a client waits before each reconnection attempt: socket.io-client 4.8's
//! `Manager` with its `Backoff` (contrib/backo2), so churned load-test clients come back
//! at the pace browsers do.
//!
//! Attempt n (from 0) waits `delay · 2ⁿ`, moved by up to `randomization` of itself
//! (down or up, with one random draw deciding both, as backo2 does), capped at `max`.
//! With the client's defaults (`reconnectionDelay` 1 s, `reconnectionDelayMax` 5 s,
//! `randomizationFactor` 0.5) the first attempt comes 0.5–1.5 s after the drop, the
//! second 1–3 s after the first, then 2–5 s, then 5 s. The attempts restart from 0 after
//! a successful reconnection (`backoff.reset()` in `onreconnect`).

use std::time::Duration;

/// The reconnection delays (socket.io-client's Manager options).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Reconnection {
    /// `reconnectionDelay`: the first attempt's base delay.
    pub delay: Duration,
    /// `reconnectionDelayMax`: no attempt waits longer.
    pub delay_max: Duration,
    /// `randomizationFactor` (0–1).
    pub randomization: f64,
}

impl Default for Reconnection {
    /// socket.io-client's defaults: 1 s, 5 s, 0.5.
    fn default() -> Self {
        Reconnection {
            delay: Duration::from_millis(1000),
            delay_max: Duration::from_millis(5000),
            randomization: 0.5,
        }
    }
}

/// One client's attempts since its last successful connection.
#[derive(Debug, Clone)]
pub struct Backoff {
    settings: Reconnection,
    attempts: u32,
}

impl Backoff {
    pub fn new(settings: Reconnection) -> Backoff {
        Backoff {
            settings,
            attempts: 0,
        }
    }

    /// The wait before the next attempt (and counts it).
    pub fn next_delay(&mut self) -> Duration {
        let d = delay_for(&self.settings, self.attempts, rand::random::<f64>());
        self.attempts = self.attempts.saturating_add(1);
        d
    }

    /// How many attempts were made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Connected again: the next drop starts from the first delay.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

/// backo2's `duration()` for attempt `n` with the random draw `rand` in [0, 1).
fn delay_for(s: &Reconnection, n: u32, rand: f64) -> Duration {
    let base = s.delay.as_millis() as f64 * 2f64.powi(n.min(62) as i32);
    let jitter = if s.randomization > 0.0 && s.randomization <= 1.0 {
        s.randomization
    } else {
        0.0
    };
    let deviation = (rand * jitter * base).floor();
    let ms = if ((rand * 10.0).floor() as u64) & 1 == 0 {
        base - deviation
    } else {
        base + deviation
    };
    Duration::from_millis(ms.min(s.delay_max.as_millis() as f64).max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_backo2_with_the_socket_io_client_defaults() {
        let s = Reconnection::default();
        let ms = |n, r| delay_for(&s, n, r).as_millis();
        // rand 0.0: even tenth, minus nothing.
        assert_eq!(ms(0, 0.0), 1000);
        // rand 0.05: tenth 0 (even): 1000 - floor(0.05·0.5·1000) = 975.
        assert_eq!(ms(0, 0.05), 975);
        // rand 0.15: tenth 1 (odd): 1000 + 75.
        assert_eq!(ms(0, 0.15), 1075);
        // rand 0.99: tenth 9 (odd): the most, 1495; 0.89 → tenth 8 (even): 555.
        assert_eq!(ms(0, 0.99), 1495);
        assert_eq!(ms(0, 0.89), 555);
        // Doubling per attempt, capped at the max.
        assert_eq!(ms(1, 0.0), 2000);
        assert_eq!(ms(2, 0.0), 4000);
        assert_eq!(ms(2, 0.15), 4300);
        assert_eq!(ms(3, 0.0), 5000);
        assert_eq!(ms(40, 0.5), 5000);
        // Every first attempt lies in 0.5–1.5 s.
        for i in 0..1000 {
            let d = ms(0, f64::from(i) / 1000.0);
            assert!((500..=1500).contains(&d), "{d}");
        }
    }

    #[test]
    fn attempts_count_up_and_reset() {
        let mut b = Backoff::new(Reconnection {
            delay: Duration::from_millis(100),
            delay_max: Duration::from_millis(300),
            randomization: 0.0,
        });
        let got: Vec<u128> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 300, 300]);
        assert_eq!(b.attempts(), 4);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
