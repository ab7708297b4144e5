//! The sending side of a worker: the room messages and API requests it owns, each sent at
//! its scheduled time (open model), stamped with that time so latency includes any lag.

use super::state::{bits, Fanout, Pending, Shared, BENCH, CHAT, READY};
use crate::client::frames;
use crate::client::http::HttpPool;
use crate::loadtest::schedule::Schedule;
use crate::loadtest::stats::H;
use crate::loadtest::Scenario;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Sends the worker's messages on schedule until `end`.
pub(super) async fn message_schedule(shared: Arc<Shared>, start: Instant, end: Instant) {
    let cfg = &shared.cfg;
    let s = shared.schedule;
    let count = s.count(end - start);
    for k in 0..count {
        let due = start + s.due(k);
        tokio::time::sleep_until(due.into()).await;
        let lag = Instant::now().saturating_duration_since(due);
        let slot = s.slot(k);
        let members = cfg.room_members(slot.room);
        let size = members.end - members.start;
        let mut m = shared.m();
        m.h.record(H::SenderLag, lag.as_secs_f64() * 1000.0);
        if size < 2 {
            continue;
        }
        let sender = members.start + Schedule::sender(&slot, size);
        if shared.state(sender) != READY {
            m.c.messages_skipped += 1;
            continue;
        }
        // Under the lock the churn takes to drop a client: a receiver it dropped is
        // still in session (expected), and a sender with a publish out is not dropped.
        let receivers = members
            .clone()
            .filter(|r| *r != sender && shared.in_session(*r));
        let missing = bits(receivers.clone().map(|r| r - members.start));
        let expected = receivers.count() as u64;
        let sent_ms = shared.clock.at_ms(due);
        shared.members[sender as usize]
            .publishing
            .fetch_add(1, Ordering::AcqRel);
        m.c.messages_sent += 1;
        m.c.expected += expected;
        m.awaiting_ack.insert(k);
        if expected > 0 {
            m.fanout.insert(
                k,
                Fanout {
                    remaining: expected,
                    sent_ms,
                    acked: false,
                    room_start: members.start,
                    missing,
                },
            );
        }
        drop(m);
        let fields = json!({
            "seq": slot.seq,
            "sentAt": sent_ms,
            "from": cfg.first_client + sender,
            "k": k,
        });
        let packet = if cfg.scenario == Scenario::Chat {
            let room_id = shared.chat_rooms[slot.room as usize].load(Ordering::Acquire);
            let arg = json!({ "roomId": room_id, "text": fields.to_string() });
            frames::event(CHAT, "message:send", arg, Some(k + 1))
        } else {
            let mut arg = fields;
            arg["room"] = json!(cfg.room_name(slot.room));
            frames::event(BENCH, "publish", arg, Some(k + 1))
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = shared.send(sender, packet).await {
                shared.members[sender as usize]
                    .publishing
                    .fetch_sub(1, Ordering::AcqRel);
                let mut m = shared.m();
                m.c.send_failed += 1;
                m.c.messages_sent -= 1;
                m.c.expected -= expected;
                m.fanout.remove(&k);
                m.awaiting_ack.remove(&k);
                m.error(format!("publish: {e}"));
            }
        });
    }
}

/// Makes the worker's API requests on schedule until `end`: each notifies one connected
/// client (round-robin over the worker's clients and over the nodes).
pub(super) async fn api_schedule(shared: Arc<Shared>, start: Instant, end: Instant) {
    let cfg = &shared.cfg;
    if !cfg.scenario.notifications() || cfg.api_rate <= 0.0 || cfg.clients == 0 {
        return;
    }
    let Some(token) = cfg.service_token.clone() else {
        return;
    };
    let pools: Arc<Vec<HttpPool>> = Arc::new(
        cfg.nodes
            .iter()
            .map(|n| HttpPool::new(n.addr, None, n.authority.clone()))
            .collect(),
    );
    let s = Schedule {
        rate: cfg.api_rate,
        rooms: 1,
    };
    let count = s.count(end - start);
    for j in 0..count {
        let due = start + s.due(j);
        tokio::time::sleep_until(due.into()).await;
        let i = j % cfg.clients;
        let c = cfg.first_client + i;
        let sent_ms = shared.clock.at_ms(due);
        // `seq` is unique per worker: the worker index in the high bits.
        let seq = (u64::from(cfg.worker) << 40) | j;
        let body = json!({
            "userId": cfg.user_of(c),
            "type": "loadtest",
            "title": "loadtest",
            "body": "",
            "data": { "sentAt": sent_ms, "seq": seq },
        });
        {
            // The state is read under the lock the churn drops clients under: a client
            // with a notification on its way is not dropped.
            let mut m = shared.m();
            if shared.state(i) != READY {
                m.c.api_skipped += 1;
                continue;
            }
            m.c.api_sent += 1;
            let pending = Pending {
                answered_ok: false,
                target: i,
                sent_ms,
            };
            m.notifications.insert(seq, pending);
        }
        let shared = shared.clone();
        let pools = pools.clone();
        let token = token.clone();
        let node = (j as usize) % pools.len();
        tokio::spawn(async move {
            let res = pools[node]
                .request(
                    http::Method::POST,
                    "/api/notifications",
                    &[
                        (http::header::AUTHORIZATION, format!("Bearer {token}")),
                        (http::header::CONTENT_TYPE, "application/json".to_owned()),
                    ],
                    bytes::Bytes::from(body.to_string()),
                )
                .await;
            let now = shared.clock.now_ms();
            // A request in flight when a drill began (its node killed under it) fails
            // inside the window, though it was sent just before.
            let in_drill = shared.in_drill(sent_ms) || shared.in_drill(now);
            let mut m = shared.m();
            if in_drill && !matches!(&res, Ok(r) if r.status == 201) {
                m.c.api_failed_in_drill += 1;
            }
            match res {
                Ok(r) if r.status == 201 => {
                    m.c.api_ok += 1;
                    let h = if in_drill { H::ApiDrill } else { H::Api };
                    m.h.record(h, now - sent_ms);
                    if let Some(p) = m.notifications.get_mut(&seq) {
                        p.answered_ok = true;
                    }
                }
                Ok(r) => {
                    m.c.api_errors += 1;
                    m.notifications.remove(&seq);
                    let body = String::from_utf8_lossy(&r.body)
                        .chars()
                        .take(200)
                        .collect::<String>();
                    m.error(format!(
                        "POST /api/notifications: HTTP {}: {body}",
                        r.status
                    ));
                }
                Err(e) => {
                    m.c.api_errors += 1;
                    m.notifications.remove(&seq);
                    m.error(format!("POST /api/notifications: {e}"));
                }
            }
        });
    }
}
