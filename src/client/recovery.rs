//! Connection state recovery on the client side, as socket.io-client 4.8 does it for one
//! namespace socket (its `Socket`'s `_pid`, `_lastOffset`, `receiveBuffer` and
//! `recovered`), so the load generator's clients come back exactly as browsers do:
//!
//! - the CONNECT reply `{sid, pid}` gives the socket a private session id to keep;
//! - each event delivered while a pid is known whose last argument is a string leaves
//!   that string as the last offset (the server appends one to every replayable event;
//!   the client cannot tell it from an ordinary string argument, and neither can we);
//! - every later CONNECT on that socket sends `auth` = `{pid, offset, ...auth}` (pid and
//!   offset first, as `Object.assign({pid, offset}, auth)`; no `offset` key until one
//!   was kept — then the server does not try to recover);
//! - events that arrive before the CONNECT reply (a recovered socket's missed events,
//!   which the server writes before its reply) wait in a buffer and are delivered, in
//!   order, when the reply comes — like live ones, and they update the offset too;
//! - the socket was recovered when the reply's pid is the one kept.
//!
//! Nothing here does I/O: the caller feeds it parsed packets ([`super::frames`]).

use super::frames;
use serde_json::{Map, Value};

/// An event from the server: its name, its arguments (the offset, when there is one,
/// stays the last of them: socket.io-client does not strip it) and its ack id.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    pub id: Option<u64>,
}

/// What one namespace socket keeps across its connections. See the module docs.
#[derive(Debug, Default)]
pub struct SocketState {
    pid: Option<String>,
    offset: Option<String>,
    connected: bool,
    buffered: Vec<Event>,
}

/// The CONNECT reply, as the socket took it.
#[derive(Debug, PartialEq)]
pub struct Connected {
    pub sid: Option<String>,
    /// The server restored the socket kept under our pid (socket.io's `recovered`).
    pub recovered: bool,
    /// Events that arrived before the reply, now delivered, in arrival order.
    pub missed: Vec<Event>,
}

impl SocketState {
    /// The `auth` of the next CONNECT: `auth`'s keys after `pid` and `offset` once a pid
    /// is kept (an `auth` key of the same name wins, as in `Object.assign`).
    pub fn auth(&self, auth: &Value) -> Value {
        let Some(pid) = &self.pid else {
            return auth.clone();
        };
        let mut out = Map::new();
        out.insert("pid".into(), Value::String(pid.clone()));
        if let Some(offset) = &self.offset {
            out.insert("offset".into(), Value::String(offset.clone()));
        }
        if let Value::Object(keys) = auth {
            for (k, v) in keys {
                out.insert(k.clone(), v.clone());
            }
        }
        Value::Object(out)
    }

    /// The CONNECT packet for namespace `nsp`, with [`SocketState::auth`].
    pub fn connect_packet(&self, nsp: &str, auth: &Value) -> String {
        frames::connect(nsp, &self.auth(auth))
    }

    /// The CONNECT reply (`onconnect`): recovered when its pid is the one kept; the new
    /// pid is kept (none when the server has recovery off); the buffered events are
    /// delivered.
    pub fn on_connected(&mut self, sid: Option<String>, pid: Option<String>) -> Connected {
        let recovered = pid.is_some() && self.pid == pid;
        self.pid = pid;
        self.connected = true;
        let missed = std::mem::take(&mut self.buffered);
        for e in &missed {
            self.keep_offset(e);
        }
        Connected {
            sid,
            recovered,
            missed,
        }
    }

    /// An event (`onevent`): delivered now (returned) when connected, else kept until
    /// the CONNECT reply.
    pub fn on_event(&mut self, event: Event) -> Option<Event> {
        if !self.connected {
            self.buffered.push(event);
            return None;
        }
        self.keep_offset(&event);
        Some(event)
    }

    /// The connection is gone: pid and offset stay for the next CONNECT (and so do
    /// events buffered for a reply that never came, as in socket.io-client).
    pub fn on_close(&mut self) {
        self.connected = false;
    }

    pub fn pid(&self) -> Option<&str> {
        self.pid.as_deref()
    }

    pub fn offset(&self) -> Option<&str> {
        self.offset.as_deref()
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// `emitEvent`: with a pid, the last of `[name, ...args]` is the offset when it is a
    /// string; an event with an ack id ends with the ack callback, never a string.
    fn keep_offset(&mut self, e: &Event) {
        if self.pid.is_none() || e.id.is_some() {
            return;
        }
        let last = match e.args.last() {
            Some(v) => v.as_str(),
            None => Some(e.name.as_str()),
        };
        // Reuses the kept string: one allocation per socket, not one per event.
        match (last, &mut self.offset) {
            (Some(s), Some(kept)) => {
                kept.clear();
                kept.push_str(s);
            }
            (Some(s), None) => self.offset = Some(s.to_owned()),
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::frames::{parse, Incoming};
    use serde_json::json;

    /// Feeds one raw Engine.IO text frame to `s`, as a load-test client does: the events
    /// delivered now, and the CONNECT reply when it is one.
    fn feed(s: &mut SocketState, frame: &str) -> (Vec<Event>, Option<Connected>) {
        match parse(frame).unwrap() {
            Incoming::Connected { sid, pid, .. } => (Vec::new(), Some(s.on_connected(sid, pid))),
            Incoming::Event { name, args, id, .. } => {
                let e = Event { name, args, id };
                (s.on_event(e).into_iter().collect(), None)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    fn names(events: &[Event]) -> Vec<&str> {
        events.iter().map(|e| e.name.as_str()).collect()
    }

    #[test]
    fn keeps_pid_and_last_offset_and_sends_them_first_on_reconnect() {
        let mut s = SocketState::default();
        let token = json!({"token": "t"});
        assert_eq!(
            s.connect_packet("/bench", &token),
            r#"40/bench,{"token":"t"}"#
        );
        let (_, c) = feed(&mut s, r#"40/bench,{"sid":"S1","pid":"P1"}"#);
        let c = c.unwrap();
        assert_eq!((c.sid.as_deref(), c.recovered), (Some("S1"), false));
        // A pid but no event yet: no offset key, so the server cannot recover.
        assert_eq!(
            s.connect_packet("/bench", &token),
            r#"40/bench,{"pid":"P1","token":"t"}"#
        );
        feed(&mut s, r#"42/bench,["message",{"seq":1},"Q8tgPWu"]"#);
        feed(&mut s, r#"42/bench,["message",{"seq":2},"Q8tgPWu.0"]"#);
        // An event with an ack id ends with the ack callback: no offset taken from it.
        feed(&mut s, r#"42/bench,7["ask","not-an-offset"]"#);
        assert_eq!(s.offset(), Some("Q8tgPWu.0"));
        s.on_close();
        assert_eq!(
            s.connect_packet("/bench", &token),
            r#"40/bench,{"pid":"P1","offset":"Q8tgPWu.0","token":"t"}"#
        );
    }

    #[test]
    fn events_replayed_before_the_reply_are_delivered_with_it_in_order() {
        let mut s = SocketState::default();
        feed(&mut s, r#"40{"sid":"S1","pid":"P1"}"#);
        feed(&mut s, r#"42["m",1,"o1"]"#);
        s.on_close();
        // The server replays what was missed, then replies with the same sid and pid.
        let (now, _) = feed(&mut s, r#"42["m",2,"o2"]"#);
        assert!(now.is_empty(), "held until the CONNECT reply");
        feed(&mut s, r#"42["m",3,"o3"]"#);
        assert!(!s.is_connected());
        let (_, c) = feed(&mut s, r#"40{"sid":"S1","pid":"P1"}"#);
        let c = c.unwrap();
        assert!(c.recovered);
        assert_eq!(names(&c.missed), ["m", "m"]);
        assert_eq!(c.missed[0].args, vec![json!(2), json!("o2")]);
        assert_eq!(c.missed[1].args, vec![json!(3), json!("o3")]);
        assert_eq!(s.offset(), Some("o3"));
        // Live again: delivered at once.
        let (now, _) = feed(&mut s, r#"42["m",4,"o4"]"#);
        assert_eq!(now.len(), 1);
    }

    #[test]
    fn a_new_pid_is_a_fresh_socket_and_recovery_off_keeps_no_offset() {
        let mut s = SocketState::default();
        feed(&mut s, r#"40{"sid":"S1","pid":"P1"}"#);
        feed(&mut s, r#"42["m",1,"o1"]"#);
        s.on_close();
        let (_, c) = feed(&mut s, r#"40{"sid":"S2","pid":"P2"}"#);
        assert!(!c.unwrap().recovered);
        // The old offset stays (socket.io-client never resets it); the new pid is used.
        assert_eq!(
            s.connect_packet("/", &json!({})),
            r#"40{"pid":"P2","offset":"o1"}"#
        );

        let mut off = SocketState::default();
        feed(&mut off, r#"40{"sid":"S1"}"#);
        feed(&mut off, r#"42["m",1,"looks-like-an-offset"]"#);
        assert_eq!((off.pid(), off.offset()), (None, None));
        off.on_close();
        let (_, c) = feed(&mut off, r#"40{"sid":"S2"}"#);
        assert!(!c.unwrap().recovered, "no pid: never recovered");
        assert_eq!(
            off.connect_packet("/", &json!({"token": "t"})),
            r#"40{"token":"t"}"#
        );
    }

    #[test]
    fn the_last_of_name_and_arguments_is_taken_as_socket_io_client_does() {
        let mut s = SocketState::default();
        feed(&mut s, r#"40{"sid":"S1","pid":"P1"}"#);
        // Only a name: the name is the last element of the event's data.
        feed(&mut s, r#"42["ping-like"]"#);
        assert_eq!(s.offset(), Some("ping-like"));
        // An object last: the offset stays.
        feed(&mut s, r#"42["x",{"a":1}]"#);
        assert_eq!(s.offset(), Some("ping-like"));
        // A key named like ours in the caller's auth wins, as with Object.assign.
        assert_eq!(
            s.auth(&json!({"pid": "mine"})),
            json!({"pid": "mine", "offset": "ping-like"})
        );
    }
}
