//! Requests that wait for every other node's answer (fetchSockets, allRooms,
//! serverSideEmit with acks): count the other nodes, send, gather until each answered or
//! the request timeout passed — one sequence for all three.

use super::{random_id, RedisAdapter};
use crate::protocol::cluster::{Request, RequestType, Response};
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
    kind: RequestType,
    expected: usize,
    received: usize,
    items: Vec<Value>,
    done: Option<oneshot::Sender<Vec<Value>>>,
}

pub(super) type Requests = Arc<Mutex<HashMap<String, Pending>>>;

/// Node's name of a request (in timeout errors) and our metric label for it.
fn names(kind: RequestType) -> (&'static str, &'static str) {
    match kind {
        RequestType::RemoteFetch => ("fetchSockets", "fetch_sockets"),
        RequestType::AllRooms => ("allRooms", "all_rooms"),
        _ => ("serverSideEmit", "server_side_emit"),
    }
}

impl RedisAdapter {
    /// How many nodes listen on the namespace's request channel (`PUBSUB NUMSUB`).
    pub(super) fn num_sub(&self) -> BoxFuture<Result<usize, AdapterError>> {
        let f = self.driver.num_sub(self.channels.request.clone());
        Box::pin(async move {
            f.await
                .map_err(|e| AdapterError::Backend(format!("redis: {e}")))
        })
    }

    /// Sends the request `build` makes (given a fresh request id) to the other nodes and
    /// gathers their answers' items. With no other node, nothing is sent.
    pub(super) fn ask_others(
        &self,
        kind: RequestType,
        build: impl FnOnce(String) -> Request,
    ) -> BoxFuture<Result<Vec<Value>, AdapterError>> {
        let request_id = random_id();
        let bytes = build(request_id.clone()).encode();
        let num_sub = self.num_sub();
        let driver = self.driver.clone();
        let channel = self.channels.request.clone();
        let requests = self.requests.clone();
        let timeout = self.options.requests_timeout;
        Box::pin(async move {
            // Every node, this one included, listens on the request channel.
            let expected = num_sub.await?.saturating_sub(1);
            if expected == 0 {
                return Ok(Vec::new());
            }
            let (tx, rx) = oneshot::channel();
            requests.lock_unpoisoned().insert(
                request_id.clone(),
                Pending {
                    kind,
                    expected,
                    received: 0,
                    items: Vec::new(),
                    done: Some(tx),
                },
            );
            let started = Instant::now();
            driver.publish(channel, bytes);
            let answer = tokio::time::timeout(timeout, rx).await;
            finish(
                kind,
                &requests,
                &request_id,
                expected,
                started.elapsed(),
                answer,
            )
        })
    }

    /// An answer to one of our requests: its items are kept; the request completes when
    /// every node answered.
    pub(super) fn on_request_answer(&self, response: Response) {
        let mut requests = self.requests.lock_unpoisoned();
        let Some(pending) = requests.get_mut(&response.request_id) else {
            return;
        };
        match pending.kind {
            RequestType::RemoteFetch | RequestType::Sockets => {
                let Some(sockets) = response.sockets else {
                    return;
                };
                pending.items.extend(sockets);
            }
            RequestType::AllRooms => {
                let Some(rooms) = response.rooms else { return };
                pending.items.extend(rooms.into_iter().map(Value::String));
            }
            RequestType::ServerSideEmit => {
                pending.items.push(response.data.unwrap_or(Value::Null));
            }
            _ => {}
        }
        pending.received += 1;
        if pending.received >= pending.expected {
            if let Some(mut p) = requests.remove(&response.request_id) {
                if let Some(done) = p.done.take() {
                    let _ = done.send(std::mem::take(&mut p.items));
                }
            }
        }
    }

    /// Whether `request_id` is a request of ours still waiting (our own request echoed
    /// back by Redis is not answered).
    pub(super) fn is_own_request(&self, request_id: &str) -> bool {
        self.requests.lock_unpoisoned().contains_key(request_id)
    }
}

/// Records the request's duration and outcome; on timeout, forgets it and says how many
/// nodes answered.
fn finish(
    kind: RequestType,
    requests: &Requests,
    request_id: &str,
    expected: usize,
    took: Duration,
    answer: Result<Result<Vec<Value>, oneshot::error::RecvError>, tokio::time::error::Elapsed>,
) -> Result<Vec<Value>, AdapterError> {
    let (what, metric) = names(kind);
    crate::metrics::cluster().request(metric, took, !matches!(answer, Ok(Ok(_))));
    match answer {
        Ok(Ok(items)) => Ok(items),
        _ => {
            let received = requests
                .lock_unpoisoned()
                .remove(request_id)
                .map_or(0, |p| p.received);
            Err(AdapterError::Timeout {
                what,
                received,
                expected,
            })
        }
    }
}
