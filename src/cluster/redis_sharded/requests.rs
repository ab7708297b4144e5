//! Requests that wait for every other node's answer (fetchSockets, serverSideEmit with
//! acks), as `ClusterAdapter` makes them: count the nodes (`PUBSUB SHARDNUMSUB` of the
//! namespace channel, minus this one), publish, gather answers from our response channel
//! until each node answered or the timeout passed.

use super::{random_id, RedisShardedAdapter};
use crate::protocol::cluster_adapter::Body;
use crate::server::adapter::AdapterError;
use crate::server::BoxFuture;
use crate::sync::MutexExt as _;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A request of ours waiting for other nodes' answers.
pub(super) struct Pending {
    expected: usize,
    received: usize,
    items: Vec<Value>,
    done: Option<oneshot::Sender<Vec<Value>>>,
}

pub(super) type Requests = Arc<Mutex<HashMap<String, Pending>>>;

/// What a request is, for timeout errors (Node's name) and metrics (our label).
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    FetchSockets,
    ServerSideEmit,
}

impl Kind {
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Kind::FetchSockets => ("fetchSockets", "fetch_sockets"),
            Kind::ServerSideEmit => ("serverSideEmit", "server_side_emit"),
        }
    }
}

impl RedisShardedAdapter {
    /// How many nodes serve this namespace, this one included (`serverCount()`).
    pub(super) fn shard_num_sub(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let f = self.driver.shard_num_sub(self.channels.main.clone());
        Box::pin(async move {
            f.await
                .map_err(|e| AdapterError::Backend(format!("redis: {e}")))
        })
    }

    /// Sends the request `build` makes (given a fresh request id) to the other nodes and
    /// gathers their answers' items, for at most `timeout`. With no other node, nothing
    /// is sent.
    pub(super) fn ask_others(
        &self,
        kind: Kind,
        timeout: Duration,
        build: impl FnOnce(String) -> Body,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        let request_id = random_id();
        let message = self.message(build(request_id.clone()), Vec::new());
        let bytes = message.encode_sharded();
        let channel = self.channels.for_message(&message);
        let num_sub = self.shard_num_sub();
        let driver = self.driver.clone();
        let requests = self.requests.clone();
        Box::pin(async move {
            let expected = num_sub.await?.saturating_sub(1);
            if expected == 0 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            let pending = Pending {
                expected,
                received: 0,
                items: Vec::new(),
                done: Some(tx),
            };
            requests
                .lock_unpoisoned()
                .insert(request_id.clone(), pending);
            let started = Instant::now();
            driver.spublish(channel, bytes, "request");
            let answer = tokio::time::timeout(timeout, rx).await;
            let (what, metric) = kind.names();
            let complete = matches!(answer, Ok(Ok(_)));
            crate::metrics::cluster().request(metric, started.elapsed(), !complete);
            match answer {
                Ok(Ok(items)) => Ok(items),
                _ => {
                    let received = requests
                        .lock_unpoisoned()
                        .remove(&request_id)
                        .map_or(0, |p| p.received);
                    Err(AdapterError::Timeout {
                        what,
                        received,
                        expected,
                    })
                }
            }
        })
    }

    /// One node's answer to request `id`: its items are kept; the request completes
    /// when every node answered.
    pub(super) fn on_answer(&self, id: &str, items: Vec<Value>) {
        let mut requests = self.requests.lock_unpoisoned();
        let Some(pending) = requests.get_mut(id) else {
            return;
        };
        pending.items.extend(items);
        pending.received += 1;
        if pending.received >= pending.expected {
            if let Some(mut p) = requests.remove(id) {
                if let Some(done) = p.done.take() {
                    let _ = done.send(std::mem::take(&mut p.items));
                }
            }
        }
    }
}
