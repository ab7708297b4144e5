//! The open-model schedule: message `k` is due at `start + k / rate`, whatever happened
//! to earlier messages (a slow server does not slow the senders down, so latency is
//! measured from the intended send time — no coordinated omission).
//!
//! A worker's messages go round-robin over its rooms, and within a room round-robin over
//! its members: message `k` is the `k / rooms`-th message of room `k % rooms` (its room
//! sequence number), sent by that room's member `seq % size`.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Messages per second.
    pub rate: f64,
    /// How many rooms take turns.
    pub rooms: u64,
}

/// One scheduled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index in the worker's schedule.
    pub k: u64,
    /// The room (0-based, local to the worker).
    pub room: u64,
    /// The message's sequence number within its room.
    pub seq: u64,
}

impl Schedule {
    /// When message `k` is due, from the start.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_secs_f64(k as f64 / self.rate)
    }

    /// How many messages are due in a run of `duration` (those due before its end).
    pub fn count(&self, duration: Duration) -> u64 {
        if self.rate <= 0.0 || self.rooms == 0 {
            return 0;
        }
        (duration.as_secs_f64() * self.rate).ceil() as u64
    }

    pub fn slot(&self, k: u64) -> Slot {
        Slot {
            k,
            room: k % self.rooms,
            seq: k / self.rooms,
        }
    }

    /// The sender among `size` members.
    pub fn sender(slot: &Slot, size: u64) -> u64 {
        slot.seq % size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_evenly_spaced_from_the_start() {
        let s = Schedule {
            rate: 100.0,
            rooms: 3,
        };
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(10));
        assert_eq!(s.due(250), Duration::from_millis(2500));
        assert_eq!(s.count(Duration::from_secs(30)), 3000);
        assert_eq!(s.count(Duration::from_millis(15)), 2);
        assert_eq!(
            Schedule {
                rate: 0.0,
                rooms: 3
            }
            .count(Duration::from_secs(1)),
            0
        );
    }

    #[test]
    fn rooms_take_turns_and_members_rotate() {
        let s = Schedule {
            rate: 10.0,
            rooms: 3,
        };
        let slots: Vec<(u64, u64)> = (0..7).map(|k| (s.slot(k).room, s.slot(k).seq)).collect();
        assert_eq!(
            slots,
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]
        );
        // Each room's sequence numbers are consecutive, so every member sends in turn.
        let senders: Vec<u64> = (0..12)
            .map(|k| s.slot(k))
            .filter(|sl| sl.room == 1)
            .map(|sl| Schedule::sender(&sl, 3))
            .collect();
        assert_eq!(senders, [0, 1, 2, 0]);
    }
}
