//! [`LocalAdapter`]: what one node does with its own sockets — the room index and
//! socket.io-adapter's in-memory `Adapter` (`apply`, `broadcast`, `broadcastWithAck`,
//! `addSockets`, …). It is the embedded default adapter, and the node-local half of
//! every adapter that leaves the process.

use super::emitter::{AckEvent, AckSink, RemoteSocket, ServerAck, SocketEmitter};
use super::recovery::{next_offset, RecoveryLog};
use super::rooms::{RoomIndex, RoomListener};
use super::{
    Adapter, BroadcastOptions, BroadcastPacket, PersistedSession, RecoveredSession, Resume,
};
use crate::server::Room;
use crate::sid::Sid;
use crate::sync::RwLockExt as _;
use crate::transport::Frame;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

/// This node's sockets and rooms of one namespace.
pub struct LocalAdapter {
    sockets: Weak<dyn SocketEmitter>,
    rooms: RoomIndex,
    /// With connection state recovery kept in this process: the replay log and sessions.
    recovery: Option<RecoveryLog>,
    /// With a replay log: broadcasts hold it shared from logging to sending, a restored
    /// socket's attach holds it alone, so each packet reaches that socket exactly once.
    gate: RwLock<()>,
}

impl LocalAdapter {
    pub fn new(sockets: Weak<dyn SocketEmitter>) -> Self {
        LocalAdapter {
            sockets,
            rooms: RoomIndex::default(),
            recovery: None,
            gate: RwLock::new(()),
        }
    }

    /// An adapter whose room changes are reported to `listener` (see [`RoomListener`]).
    pub fn with_room_listener(sockets: Weak<dyn SocketEmitter>, listener: RoomListener) -> Self {
        LocalAdapter {
            sockets,
            rooms: RoomIndex::with_listener(listener),
            recovery: None,
            gate: RwLock::new(()),
        }
    }

    /// Recovers sessions in this process: every replayable broadcast is stamped with an
    /// offset and kept in `log`, and disconnected sessions are kept there too.
    pub fn with_recovery(mut self, log: RecoveryLog) -> Self {
        self.recovery = Some(log);
        self
    }

    /// The replay log, when this adapter keeps one.
    pub fn recovery(&self) -> Option<&RecoveryLog> {
        self.recovery.as_ref()
    }

    /// The namespace's sockets; None only while it is being built or torn down.
    pub fn sockets(&self) -> Option<Arc<dyn SocketEmitter>> {
        self.sockets.upgrade()
    }

    pub fn add_all(&self, sid: Sid, rooms: &[Room]) {
        for room in rooms {
            self.rooms.add(room, sid);
        }
    }

    pub fn del(&self, sid: Sid, room: &str) {
        self.rooms.remove(room, sid);
    }

    /// Rooms with their member counts (own-id rooms are not listed).
    pub fn rooms(&self) -> Vec<(Room, usize)> {
        self.rooms.list()
    }

    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Changes of the rooms so far: unchanged means [`Self::rooms`] is unchanged.
    pub fn rooms_version(&self) -> u64 {
        self.rooms.version()
    }

    /// Whether `room` has members here; a socket id is the room of that socket
    /// (the adapter's `hasRoom`, which sees Node's own-id rooms).
    pub fn has_room(&self, room: &str) -> bool {
        if self.rooms.with_members(room, |m| m.is_some()) {
            return true;
        }
        match (Sid::parse(room), self.sockets()) {
            (Some(sid), Some(sockets)) => sockets.has_socket(&sid),
            _ => false,
        }
    }

    /// Room names as Node's `this.rooms.keys()` lists them: joined rooms and socket ids.
    pub fn all_rooms(&self) -> Vec<Room> {
        let mut rooms: Vec<Room> = self.rooms.list().into_iter().map(|(r, _)| r).collect();
        if let Some(sockets) = self.sockets() {
            rooms.extend(sockets.socket_ids().iter().map(|s| Room::from(s.as_str())));
        }
        rooms
    }

    fn members_into(&self, sockets: &dyn SocketEmitter, room: &str, out: &mut HashSet<Sid>) {
        let found = self
            .rooms
            .with_members(room, |m| m.map(|m| out.extend(m.iter().copied())).is_some());
        // A socket id is a room holding just that socket.
        if !found {
            if let Some(sid) = Sid::parse(room).filter(|s| sockets.has_socket(s)) {
                out.insert(sid);
            }
        }
    }

    /// The socket ids `opts` targets on this node (socket.io-adapter's `apply`).
    pub fn socket_ids(&self, opts: &BroadcastOptions) -> HashSet<Sid> {
        match self.sockets() {
            Some(sockets) => self.targets(&*sockets, opts),
            None => HashSet::new(),
        }
    }

    fn targets(&self, sockets: &dyn SocketEmitter, opts: &BroadcastOptions) -> HashSet<Sid> {
        let mut excluded = HashSet::new();
        for room in &opts.except {
            self.members_into(sockets, room, &mut excluded);
        }
        let mut targets = HashSet::new();
        if opts.rooms.is_empty() {
            targets.extend(sockets.socket_ids());
        } else {
            for room in &opts.rooms {
                self.members_into(sockets, room, &mut targets);
            }
        }
        targets.retain(|s| !excluded.contains(s));
        targets
    }

    /// Sends to every local target; the packet is encoded once. Returns how many
    /// sockets it was queued for. With a replay log, a packet that is not volatile is
    /// stamped with a fresh offset (its last argument) and kept, whoever receives it: a
    /// packet for a socket that is away right now is exactly what it will miss.
    pub fn broadcast(&self, mut packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        let Some(sockets) = self.sockets() else {
            return 0;
        };
        let offset = match &self.recovery {
            Some(_) if !opts.flags.volatile => {
                let offset = next_offset();
                packet.push_arg(serde_json::Value::String(offset.clone()));
                Some(offset)
            }
            _ => None,
        };
        let watched = sockets.is_watched().then(|| packet.data.clone());
        let frames = packet.into_frames(sockets.nsp(), None);
        let _logged_to_sent = self.recovery.as_ref().map(|_| self.gate.read_unpoisoned());
        if let (Some(log), Some(offset)) = (&self.recovery, offset) {
            log.record(offset, opts, frames.clone());
        }
        let targets = self.targets(&*sockets, opts);
        if let Some(data) = &watched {
            sockets.observe_sent(&targets, data);
        }
        sockets.send_many(&targets, &frames)
    }

    /// See [`super::Adapter::attach_restored`].
    pub fn attach_restored(
        &self,
        rooms: &[Room],
        resume: Option<Resume>,
        attach: &mut dyn FnMut(),
    ) -> Vec<Vec<Frame>> {
        let (Some(log), Some(Resume::Log(seq))) = (&self.recovery, resume) else {
            attach();
            return Vec::new();
        };
        let _alone = self.gate.write_unpoisoned();
        attach();
        log.since(seq, rooms)
    }

    /// Keeps `session` in the replay log, when there is one.
    pub fn persist_session(&self, session: PersistedSession) {
        if let Some(log) = &self.recovery {
            log.persist(session);
        }
    }

    /// Takes the session of `pid` and what it missed since `offset`, from the replay log.
    pub fn restore_session(&self, pid: &str, offset: &str) -> Option<RecoveredSession> {
        self.recovery.as_ref()?.restore(pid, offset)
    }

    /// Sends with an ack id to every local target; reports the count, then each answer.
    pub fn broadcast_with_ack(
        &self,
        packet: &BroadcastPacket,
        opts: &BroadcastOptions,
        timeout: Duration,
        sink: AckSink,
    ) {
        let answers = match self.sockets() {
            Some(sockets) => {
                sockets.send_many_with_ack(&self.targets(&*sockets, opts), packet, timeout)
            }
            None => Vec::new(),
        };
        let _ = sink.send(AckEvent::ClientCount(answers.len()));
        for answer in answers {
            let sink = sink.clone();
            tokio::spawn(async move {
                if let Ok(payload) = answer.await {
                    let _ = sink.send(AckEvent::Ack(payload));
                }
            });
        }
    }

    pub fn add_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        if let Some(sockets) = self.sockets() {
            sockets.join_many(&self.targets(&*sockets, opts), rooms);
        }
    }

    pub fn del_sockets(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        if let Some(sockets) = self.sockets() {
            sockets.leave_many(&self.targets(&*sockets, opts), rooms);
        }
    }

    pub fn disconnect_sockets(&self, opts: &BroadcastOptions, close: bool) {
        if let Some(sockets) = self.sockets() {
            sockets.disconnect_many(&self.targets(&*sockets, opts), close);
        }
    }

    pub fn fetch_sockets(&self, opts: &BroadcastOptions) -> Vec<RemoteSocket> {
        match self.sockets() {
            Some(sockets) => sockets.remote_sockets(&self.targets(&*sockets, opts)),
            None => Vec::new(),
        }
    }

    /// Hands a server-side event from another node to the namespace's handler.
    pub fn server_event(&self, data: Vec<Value>, ack: Option<ServerAck>) {
        if let Some(sockets) = self.sockets() {
            sockets.server_event(data, ack);
        }
    }
}

/// The embedded default: one node, nothing leaves the process.
impl Adapter for LocalAdapter {
    fn local(&self) -> &LocalAdapter {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::adapter::{AckEvent, AckFuture, RoomEvent};
    use crate::server::Payload;
    use crate::transport::Frame;
    use serde_json::json;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A namespace stand-in: records what the adapter asks of its sockets.
    #[derive(Default)]
    struct Sockets {
        ids: Vec<Sid>,
        received: Mutex<HashMap<Sid, Vec<Frame>>>,
        disconnected: Mutex<Vec<Sid>>,
    }

    impl SocketEmitter for Sockets {
        fn nsp(&self) -> &str {
            "/chat"
        }
        fn has_socket(&self, sid: &Sid) -> bool {
            self.ids.contains(sid)
        }
        fn socket_ids(&self) -> Vec<Sid> {
            self.ids.clone()
        }
        fn send_many(&self, sids: &HashSet<Sid>, frames: &[Frame]) -> usize {
            let mut received = self.received.lock().unwrap();
            for sid in sids {
                received.entry(*sid).or_default().extend_from_slice(frames);
            }
            sids.len()
        }
        fn send_many_with_ack(
            &self,
            sids: &HashSet<Sid>,
            _: &BroadcastPacket,
            _: Duration,
        ) -> Vec<AckFuture> {
            sids.iter()
                .map(|sid| {
                    let answer = Payload::new(vec![json!(sid.as_str())]);
                    Box::pin(async move { Ok(answer) }) as AckFuture
                })
                .collect()
        }
        fn join_many(&self, _: &HashSet<Sid>, _: &[Room]) {}
        fn leave_many(&self, _: &HashSet<Sid>, _: &[Room]) {}
        fn disconnect_many(&self, sids: &HashSet<Sid>, _: bool) {
            self.disconnected.lock().unwrap().extend(sids);
        }
        fn remote_sockets(&self, _: &HashSet<Sid>) -> Vec<RemoteSocket> {
            Vec::new()
        }
        fn server_event(&self, _: Vec<Value>, _: Option<ServerAck>) {}
    }

    fn adapter_with(n: usize) -> (Arc<Sockets>, LocalAdapter, Vec<Sid>) {
        let ids: Vec<Sid> = (0..n).map(|_| Sid::new()).collect();
        let sockets = Arc::new(Sockets {
            ids: ids.clone(),
            ..Default::default()
        });
        let weak: Weak<dyn SocketEmitter> = Arc::downgrade(&sockets) as _;
        (sockets, LocalAdapter::new(weak), ids)
    }

    #[test]
    fn a_broadcast_reaches_room_members_minus_except_encoded_once() {
        let (sockets, adapter, ids) = adapter_with(4);
        let room: Room = "r".into();
        for sid in &ids[..3] {
            adapter.add_all(*sid, std::slice::from_ref(&room));
        }
        let opts = BroadcastOptions {
            rooms: vec![room.clone(), Room::from(ids[3].as_str())], // a socket id is a room
            except: vec![Room::from(ids[1].as_str())],
            ..Default::default()
        };
        let sent = adapter.broadcast(BroadcastPacket::event("m", json!(1).into()), &opts);
        assert_eq!(sent, 3);
        let received = sockets.received.lock().unwrap();
        let expected = vec![Frame::text(r#"42/chat,["m",1]"#)];
        for sid in [ids[0], ids[2], ids[3]] {
            assert_eq!(received[&sid], expected);
        }
        assert!(!received.contains_key(&ids[1]));
    }

    #[test]
    fn no_rooms_means_the_whole_namespace() {
        let (sockets, adapter, ids) = adapter_with(3);
        adapter.disconnect_sockets(&BroadcastOptions::default(), false);
        let mut gone = sockets.disconnected.lock().unwrap().clone();
        let mut all = ids.clone();
        gone.sort_by_key(|s| s.as_str().to_owned());
        all.sort_by_key(|s| s.as_str().to_owned());
        assert_eq!(gone, all);
        assert_eq!(adapter.all_rooms().len(), 3); // each socket id is a room
        assert!(adapter.has_room(ids[0].as_str()));
        assert!(!adapter.has_room("nobody-here"));
    }

    #[tokio::test]
    async fn acks_report_the_count_then_each_answer() {
        let (_sockets, adapter, ids) = adapter_with(2);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let packet = BroadcastPacket::event("q", Payload::default());
        adapter.broadcast_with_ack(
            &packet,
            &BroadcastOptions::default(),
            Duration::from_secs(1),
            tx,
        );
        assert_eq!(rx.recv().await, Some(AckEvent::ClientCount(2)));
        let mut answered = Vec::new();
        for _ in 0..2 {
            match rx.recv().await {
                Some(AckEvent::Ack(p)) => answered.push(p.args[0].as_str().unwrap().to_owned()),
                other => panic!("expected an answer, got {other:?}"),
            }
        }
        answered.sort();
        let mut expected: Vec<String> = ids.iter().map(|s| s.as_str().to_owned()).collect();
        expected.sort();
        assert_eq!(answered, expected);
    }

    #[test]
    fn room_changes_reach_the_listener() {
        let sockets: Arc<dyn SocketEmitter> = Arc::new(Sockets::default());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let adapter = LocalAdapter::with_room_listener(
            Arc::downgrade(&sockets),
            Box::new(move |e| {
                if let RoomEvent::Created(r) | RoomEvent::Deleted(r) = e {
                    log.lock().unwrap().push(r.to_string());
                }
            }),
        );
        let sid = Sid::new();
        adapter.add_all(sid, &["a".into(), "b".into()]);
        adapter.del(sid, "a");
        assert_eq!(*seen.lock().unwrap(), ["a", "b", "a"]);
    }

    /// The frames' text, for assertions.
    fn texts(frames: &[Frame]) -> Vec<String> {
        frames
            .iter()
            .map(|f| match f {
                Frame::Text(t) => t.as_str().to_owned(),
                Frame::Binary(_) | Frame::Framed(_) => "<binary>".into(),
            })
            .collect()
    }

    /// A broadcast between a restore and the socket's attach is neither in what the
    /// restore returned nor delivered live: the attach's catch-up hands it over, once.
    #[test]
    fn a_restored_socket_gets_each_packet_once_replayed_or_live() {
        use crate::server::adapter::recovery::RecoveryOptions;
        let (sockets, adapter, _) = adapter_with(0);
        let adapter = adapter.with_recovery(RecoveryLog::new(RecoveryOptions::default()));
        let (sid, room): (Sid, Room) = (Sid::new(), "r".into());
        let rooms = vec![Room::from(sid.as_str()), room.clone()];
        let to_r = BroadcastOptions {
            rooms: vec![room.clone()],
            ..Default::default()
        };
        let log = adapter.recovery().unwrap();
        log.record("o1".into(), &to_r, vec![Frame::text("seen")]);
        let session = PersistedSession {
            sid,
            pid: Sid::new(),
            rooms: rooms.clone(),
            data: Value::Null,
            expires_at: None,
        };
        adapter.persist_session(session.clone());
        let event = |name: &str| BroadcastPacket::event(name, Payload::default());
        adapter.broadcast(event("before-restore"), &to_r);
        let found = adapter.restore_session(session.pid.as_str(), "o1").unwrap();
        assert_eq!(found.missed.len(), 1);
        assert!(texts(&found.missed[0])[0].contains("before-restore"));

        adapter.broadcast(event("between"), &to_r);
        let late = adapter.attach_restored(&rooms, found.resume, &mut || {
            adapter.add_all(sid, &rooms);
        });
        assert_eq!(late.len(), 1, "{late:?}");
        assert!(texts(&late[0])[0].contains("between"));
        adapter.broadcast(event("after"), &to_r);
        let received = sockets.received.lock().unwrap();
        let live = texts(&received[&sid]);
        assert_eq!(live.len(), 1, "{live:?}");
        assert!(live[0].contains("after"));
    }
}
