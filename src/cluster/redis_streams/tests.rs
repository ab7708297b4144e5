//! The adapter's logic on in-memory Redis ([`MemoryBus`] for pub/sub, [`MemoryStreams`]
//! for streams and keys) with stand-in namespaces that record what reaches their
//! sockets. Real Redis and real Node peers are in tests/it/streams.rs.

use super::store::MemoryStreams;
use super::*;
use crate::cluster::driver::MemoryBus;
use crate::protocol::cluster_streams::Body;
use crate::server::adapter::{
    AckFuture, BroadcastOptions, BroadcastPacket, PersistedSession, RemoteSocket, ServerAck,
};
use crate::server::{Io, Payload, Room, ServerOptions};
use crate::sid::Sid;
use crate::transport::Frame;
use serde_json::{json, Value};
use std::collections::HashSet;

/// A namespace stand-in with fixed sockets: records the text frames each receives.
struct Sockets {
    ids: Vec<Sid>,
    received: Mutex<Vec<(Sid, String)>>,
    joined: Mutex<Vec<(Sid, Room)>>,
}

impl Sockets {
    fn new(n: usize) -> Arc<Self> {
        Arc::new(Sockets {
            ids: (0..n).map(|_| Sid::new()).collect(),
            received: Mutex::default(),
            joined: Mutex::default(),
        })
    }

    fn texts(&self) -> Vec<String> {
        let mut seen: Vec<String> = Vec::new();
        for (_, t) in self.received.lock_unpoisoned().iter() {
            if seen.last() != Some(t) {
                seen.push(t.clone());
            }
        }
        seen
    }
}

impl SocketEmitter for Sockets {
    fn nsp(&self) -> &str {
        "/"
    }
    fn has_socket(&self, sid: &Sid) -> bool {
        self.ids.contains(sid)
    }
    fn socket_ids(&self) -> Vec<Sid> {
        self.ids.clone()
    }
    fn send_many(&self, sids: &HashSet<Sid>, frames: &[Frame]) -> usize {
        let mut received = self.received.lock_unpoisoned();
        for sid in sids {
            for f in frames {
                if let Frame::Text(t) = f {
                    received.push((*sid, t.to_string()));
                }
            }
        }
        sids.len()
    }
    fn send_many_with_ack(
        &self,
        _: &HashSet<Sid>,
        _: &BroadcastPacket,
        _: Duration,
    ) -> Vec<AckFuture> {
        Vec::new()
    }
    fn join_many(&self, sids: &HashSet<Sid>, rooms: &[Room]) {
        let mut joined = self.joined.lock_unpoisoned();
        for sid in sids {
            joined.extend(rooms.iter().map(|r| (*sid, r.clone())));
        }
    }
    fn leave_many(&self, _: &HashSet<Sid>, _: &[Room]) {}
    fn disconnect_many(&self, _: &HashSet<Sid>, _: bool) {}
    fn remote_sockets(&self, _: &HashSet<Sid>) -> Vec<RemoteSocket> {
        Vec::new()
    }
    fn server_event(&self, _: Vec<Value>, _: Option<ServerAck>) {}
}

struct Node {
    _factory: RedisStreamsFactory,
    adapter: Arc<dyn Adapter>,
    sockets: Arc<Sockets>,
}

fn node(bus: &MemoryBus, streams: &MemoryStreams, recovery: bool) -> Node {
    let factory = RedisStreamsFactory::new(
        bus.driver(),
        Arc::new(streams.clone()),
        RedisStreamsOptions {
            recovery: recovery.then_some(Duration::from_secs(60)),
            block_time: Duration::from_millis(200),
            ..Default::default()
        },
    );
    let sockets = Sockets::new(2);
    let weak: Weak<dyn SocketEmitter> = Arc::downgrade(&sockets) as _;
    let adapter = factory.create(weak, "/");
    Node {
        _factory: factory,
        adapter,
        sockets,
    }
}

fn event(name: &str, arg: Value) -> BroadcastPacket {
    BroadcastPacket::event(name, Payload::new(vec![arg]))
}

fn volatile() -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    opts.flags.volatile = true;
    opts
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

/// Lets the readers find where the stream ends before anything is written.
async fn readers_started() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test]
async fn with_recovery_broadcasts_carry_their_entry_id_here_and_on_other_nodes() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, true);
    let b = node(&bus, &streams, true);
    readers_started().await;
    a.adapter
        .broadcast(event("m1", json!(1)), &BroadcastOptions::default());
    a.adapter.broadcast(event("m2", json!(2)), &volatile());
    a.adapter
        .broadcast(event("m3", json!("x")), &BroadcastOptions::default());
    eventually("three entries", || streams.entries("socket.io").len() == 3).await;
    let ids: Vec<String> = streams
        .entries("socket.io")
        .into_iter()
        .map(|e| e.id)
        .collect();
    let want = vec![
        format!(r#"42["m1",1,"{}"]"#, ids[0]),
        r#"42["m2",2]"#.to_owned(),
        format!(r#"42["m3","x","{}"]"#, ids[2]),
    ];
    eventually("A delivers in XADD order", || a.sockets.texts() == want).await;
    eventually("B delivers what it read", || b.sockets.texts() == want).await;
    // The stream holds the packets without offsets, as the package writes them.
    let first = Message::from_entry(&streams.entries("socket.io")[0]).unwrap();
    assert_eq!(first.uid, a.adapter_uid());
    assert!(
        matches!(first.body, Body::Broadcast { ref packet, .. } if packet == &json!(["m1", 1]))
    );
}

impl Node {
    fn adapter_uid(&self) -> String {
        let routes = self._factory.shared.routes.read_unpoisoned();
        routes["/"].upgrade().unwrap().uid.clone()
    }
}

#[tokio::test]
async fn without_recovery_local_sockets_are_served_at_once_and_nothing_is_stamped() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, false);
    let b = node(&bus, &streams, false);
    readers_started().await;
    let sent = a
        .adapter
        .broadcast(event("m", json!(1)), &BroadcastOptions::default());
    assert_eq!(sent, 2);
    assert_eq!(a.sockets.texts(), [r#"42["m",1]"#]);
    eventually("B gets it", || b.sockets.texts() == [r#"42["m",1]"#]).await;
    // Joins travel through the stream too, and apply here at once.
    let room: Room = "r".into();
    a.adapter
        .add_sockets(&BroadcastOptions::default(), std::slice::from_ref(&room));
    assert_eq!(a.sockets.joined.lock_unpoisoned().len(), 2);
    eventually("B's sockets join", || {
        b.sockets.joined.lock_unpoisoned().len() == 2
    })
    .await;
    let types: Vec<String> = streams
        .entries("socket.io")
        .iter()
        .map(|e| e.field("type").unwrap().to_owned())
        .collect();
    assert_eq!(types, ["3", "4"]);
}

#[tokio::test]
async fn a_redis_outage_never_holds_back_local_delivery_and_loses_nothing_for_the_others() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, true);
    let b = node(&bus, &streams, true);
    readers_started().await;
    streams.set_up(false);
    for i in 0..3 {
        a.adapter
            .broadcast(event("during", json!(i)), &BroadcastOptions::default());
    }
    eventually("delivered here without offsets", || {
        a.sockets.texts().len() == 3
    })
    .await;
    assert_eq!(a.sockets.texts()[2], r#"42["during",2]"#);
    a.adapter
        .broadcast(event("queued", json!(3)), &BroadcastOptions::default());
    eventually("served here behind the held writes", || {
        a.sockets.texts().len() == 4
    })
    .await;
    assert!(b.sockets.texts().is_empty());
    streams.set_up(true);
    // Held and retried: B gets every write, in order, once Redis is back.
    let expected = [
        r#"42["during",0]"#,
        r#"42["during",1]"#,
        r#"42["during",2]"#,
        r#"42["queued",3]"#,
    ];
    eventually("B gets what was written during the outage", || {
        b.sockets.texts().len() == 4
    })
    .await;
    // Each carries its entry id (the recovery offset) after the arguments.
    let texts = b.sockets.texts();
    for (text, want) in texts.iter().zip(expected) {
        assert!(text.starts_with(want.trim_end_matches(']')), "{texts:?}");
    }
}

/// The private id of the test sessions.
const PID: &str = "pidpidpidpidpidpid01";

fn session(sid: Sid, rooms: &[&str]) -> PersistedSession {
    PersistedSession {
        sid,
        pid: Sid::parse(PID).unwrap(),
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        data: json!({"user": "alice"}),
        expires_at: None,
    }
}

#[tokio::test]
async fn a_session_restores_once_with_what_its_rooms_missed() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, true);
    let b = node(&bus, &streams, true);
    let sid = Sid::new();
    let to = |rooms: &[&str], except: &[&str]| BroadcastOptions {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        except: except.iter().map(|r| Room::from(*r)).collect(),
        ..Default::default()
    };
    a.adapter.broadcast(event("seen", json!(0)), &to(&[], &[]));
    eventually("first entry", || streams.entries("socket.io").len() == 1).await;
    let offset = streams.entries("socket.io")[0].id.clone();
    a.adapter
        .persist_session(session(sid, &[sid.as_str(), "room1"]));
    a.adapter.broadcast(event("all", json!(1)), &to(&[], &[]));
    a.adapter
        .broadcast(event("room1", json!(2)), &to(&["room1"], &[]));
    a.adapter
        .broadcast(event("other", json!(3)), &to(&["room2"], &[]));
    a.adapter
        .broadcast(event("not-me", json!(4)), &to(&[], &[sid.as_str()]));
    a.adapter.add_sockets(&to(&[], &[]), &["x".into()]);
    eventually("all written", || streams.entries("socket.io").len() == 6).await;
    let ids: Vec<String> = streams
        .entries("socket.io")
        .into_iter()
        .map(|e| e.id)
        .collect();

    // Another node restores it, with the packets it missed, offsets appended.
    assert_eq!(
        b.adapter.restore_session(PID, "not-an-offset").await,
        Ok(None)
    );
    let found = b
        .adapter
        .restore_session(PID, &offset)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session, session(sid, &[sid.as_str(), "room1"]));
    let missed: Vec<Vec<Frame>> = [("all", 1, &ids[1]), ("room1", 2, &ids[2])]
        .iter()
        .map(|(name, n, id)| vec![Frame::text(format!(r#"42["{name}",{n},"{id}"]"#))])
        .collect();
    assert_eq!(found.missed, missed);
    // Taken: a second restore gets a fresh socket.
    assert_eq!(b.adapter.restore_session(PID, &offset).await, Ok(None));

    // An offset no longer in the stream: no restore (and the session is gone too).
    a.adapter.persist_session(session(sid, &[]));
    eventually("kept", || !streams.entries("socket.io").is_empty()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(b.adapter.restore_session(PID, "1-0").await, Ok(None));
    assert_eq!(b.adapter.restore_session(PID, &offset).await, Ok(None));
}

#[tokio::test]
async fn requests_reach_every_other_node_and_come_back() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let io = |bus: &MemoryBus| {
        let factory = RedisStreamsFactory::new(
            bus.driver(),
            Arc::new(streams.clone()),
            RedisStreamsOptions {
                requests_timeout: Duration::from_secs(2),
                ..Default::default()
            },
        );
        Io::builder(ServerOptions::default())
            .adapter(Arc::new(factory))
            .namespace("/", |ns| {
                ns.on_server_event("ping", |args, ack| {
                    if let Some(ack) = ack {
                        ack(json!({ "pong": args }));
                    }
                });
            })
            .build()
    };
    let (a, _b, _c) = (io(&bus), io(&bus), io(&bus));
    let ns = a.of("/").unwrap();
    assert_eq!(ns.server_count().await, 3);
    let answers = ns
        .server_side_emit_with_ack("ping", vec![json!(1)])
        .await
        .unwrap();
    assert_eq!(answers, vec![json!({"pong": [1]}), json!({"pong": [1]})]);
    assert!(ns.fetch_sockets().await.unwrap().is_empty());
}

#[test]
fn defaults_are_the_package_defaults() {
    let o = RedisStreamsOptions::default();
    assert_eq!(
        (
            o.stream_name.as_str(),
            o.stream_count,
            o.channel_prefix.as_str()
        ),
        ("socket.io", 1, "socket.io")
    );
    assert_eq!((o.max_len, o.read_count), (10_000, 100));
    assert_eq!(o.block_time, Duration::from_millis(5_000));
    assert_eq!(o.session_key_prefix, "sio:session:");
    assert_eq!(o.recovery, None);
}

#[tokio::test]
async fn a_session_keeps_its_credentials_expiry_for_the_server_to_check() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, true);
    a.adapter
        .broadcast(event("seen", json!(0)), &BroadcastOptions::default());
    eventually("an entry", || streams.entries("socket.io").len() == 1).await;
    let offset = streams.entries("socket.io")[0].id.clone();
    // Milliseconds survive the trip (expiresAt is ms since the epoch).
    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_900_000_000_123);
    let mut kept = session(Sid::new(), &[]);
    kept.expires_at = Some(at);
    a.adapter.persist_session(kept.clone());
    eventually("kept", || streams.has_key(&format!("sio:session:{PID}"))).await;
    let found = a.adapter.restore_session(PID, &offset).await.unwrap();
    assert_eq!(found.map(|f| f.session), Some(kept));
}

#[tokio::test]
async fn flush_returns_once_persisted_sessions_and_queued_writes_are_in_redis() {
    let (bus, streams) = (MemoryBus::new(), MemoryStreams::new());
    let a = node(&bus, &streams, true);
    a.adapter
        .broadcast(event("queued", json!(1)), &BroadcastOptions::default());
    a.adapter.persist_session(session(Sid::new(), &[]));
    // Nothing ran yet on this single-threaded runtime: the XADD is queued.
    assert!(streams.entries("socket.io").is_empty());
    tokio::time::timeout(Duration::from_secs(5), a.adapter.flush())
        .await
        .expect("flush returns");
    assert!(streams.has_key(&format!("sio:session:{PID}")));
    assert_eq!(streams.entries("socket.io").len(), 1);
}
