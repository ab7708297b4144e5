//! The chat scenario's end check: every message whose sender had its ack is in the
//! database exactly once. A node that acks before its INSERT commits, or an INSERT that
//! a database restart rolls back after the ack, shows up as *missing*; a write retried
//! below the handler as *duplicated*. Rows whose sender never had the ack (its node died
//! after the INSERT) are counted apart: a real client would send those again.
//!
//! Each loadtest chat message's body carries its sender (`from`, a global client index)
//! and its schedule index (`k`, unique per worker and so per sender), which key the
//! rows; the run's users share an id prefix (`lt-<run>-`), which selects them.

use crate::store::{Store, StoreArgs};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// What the database holds of the run's chat messages.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StoredCheck {
    /// Messages whose sender had its ack.
    pub acked: u64,
    /// … of which stored exactly once,
    pub stored_once: u64,
    /// … not stored at all,
    pub missing: u64,
    /// … stored more than once.
    pub duplicated: u64,
    /// Stored messages whose sender never had its ack.
    pub stored_unacked: u64,
    /// Rows whose body is not a loadtest message (should be 0).
    pub unreadable: u64,
}

impl StoredCheck {
    pub fn holds(&self) -> bool {
        self.acked > 0 && self.missing == 0 && self.duplicated == 0
    }
}

/// Reads the run's messages from `url` (the database the nodes shared) and tallies them
/// against the acknowledged `(from, k)` pairs.
pub(super) async fn check(
    url: &str,
    user_prefix: &str,
    acked: &[[u64; 2]],
) -> Result<StoredCheck, String> {
    let store = Store::connect(&StoreArgs::with_url(url))
        .await
        .map_err(|e| {
            format!("cannot open the nodes' database to check the stored messages: {e}")
        })?;
    let bodies = store.message_bodies_from(user_prefix).await;
    store.close().await;
    let bodies = bodies.map_err(|e| format!("reading the stored messages: {e}"))?;
    Ok(tally(&bodies, acked))
}

/// The check, from the stored bodies and the acknowledged pairs.
fn tally(bodies: &[String], acked: &[[u64; 2]]) -> StoredCheck {
    let mut out = StoredCheck::default();
    let mut rows: HashMap<[u64; 2], u64> = HashMap::new();
    for body in bodies {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        match (v["from"].as_u64(), v["k"].as_u64()) {
            (Some(from), Some(k)) => *rows.entry([from, k]).or_default() += 1,
            _ => out.unreadable += 1,
        }
    }
    let acked: HashSet<[u64; 2]> = acked.iter().copied().collect();
    out.acked = acked.len() as u64;
    for key in &acked {
        match rows.get(key).copied().unwrap_or(0) {
            0 => out.missing += 1,
            1 => out.stored_once += 1,
            _ => out.duplicated += 1,
        }
    }
    out.stored_unacked = rows.keys().filter(|k| !acked.contains(*k)).count() as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(from: u64, k: u64) -> String {
        serde_json::json!({ "seq": 1, "sentAt": 0.0, "from": from, "k": k }).to_string()
    }

    #[test]
    fn each_acked_message_is_found_once_missing_or_doubled() {
        let bodies = [
            body(1, 10),
            body(1, 11),
            body(1, 11),
            body(2, 10),
            body(3, 99),
            "hello".to_owned(),
        ];
        let acked = [[1, 10], [1, 11], [2, 10], [2, 12]];
        let c = tally(&bodies, &acked);
        assert_eq!(
            c,
            StoredCheck {
                acked: 4,
                stored_once: 2,
                missing: 1,
                duplicated: 1,
                stored_unacked: 1,
                unreadable: 1,
            }
        );
        assert!(!c.holds());
        let clean = tally(&bodies[..2], &[[1, 10]]);
        assert_eq!((clean.stored_once, clean.stored_unacked), (1, 1));
        assert!(clean.holds());
        assert!(!tally(&[], &[]).holds(), "nothing acked: nothing checked");
    }
}
