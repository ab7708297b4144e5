//! The UI's commands, as the package's `registerFeatureHandlers` maps them onto the
//! server: `filter` is a room (a socket's id targets that socket; none: the whole
//! namespace), and every operation goes through the adapter, so it reaches the sockets
//! on every node of the cluster. No acknowledgement: the UI sees the effect in the stats
//! (and, in development mode, in the live events).
//!
//! ```text
//! emit        (nsp, filter, event, ...args)
//! join        (nsp, room, filter?)
//! leave       (nsp, room, filter?)
//! _disconnect (nsp, close, filter?)   close: true ends the client's whole connection
//! ```

use super::AdminUi;
use crate::server::{BroadcastOperator, Event, NamespaceBuilder, Payload};
use serde_json::Value;
use std::sync::Arc;

/// The features the commands give (before `AGGREGATED_EVENTS` / `ALL_EVENTS`).
pub const FEATURES: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

/// A command the UI sent, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Emit {
        nsp: String,
        filter: Option<String>,
        event: String,
        args: Vec<Value>,
    },
    Join {
        nsp: String,
        room: String,
        filter: Option<String>,
    },
    Leave {
        nsp: String,
        room: String,
        filter: Option<String>,
    },
    Disconnect {
        nsp: String,
        close: bool,
        filter: Option<String>,
    },
}

impl Command {
    /// The command `name` with `args`, or `None` when the arguments are not what the
    /// package sends (ignored, as the package would fail on them).
    pub fn parse(name: &str, args: &[Value]) -> Option<Command> {
        let text = |i: usize| args.get(i).and_then(Value::as_str).map(str::to_owned);
        let filter = |i: usize| text(i).filter(|f| !f.is_empty());
        let nsp = text(0)?;
        Some(match name {
            "emit" => Command::Emit {
                nsp,
                filter: filter(1),
                event: text(2)?,
                args: args.get(3..).unwrap_or_default().to_vec(),
            },
            "join" => Command::Join {
                nsp,
                room: text(1)?,
                filter: filter(2),
            },
            "leave" => Command::Leave {
                nsp,
                room: text(1)?,
                filter: filter(2),
            },
            "_disconnect" => Command::Disconnect {
                nsp,
                close: args.get(1)?.as_bool()?,
                filter: filter(2),
            },
            _ => return None,
        })
    }

    fn nsp(&self) -> &str {
        match self {
            Command::Emit { nsp, .. }
            | Command::Join { nsp, .. }
            | Command::Leave { nsp, .. }
            | Command::Disconnect { nsp, .. } => nsp,
        }
    }

    fn filter(&self) -> Option<&str> {
        match self {
            Command::Emit { filter, .. }
            | Command::Join { filter, .. }
            | Command::Leave { filter, .. }
            | Command::Disconnect { filter, .. } => filter.as_deref(),
        }
    }
}

/// Declares the four commands on the UI's namespace.
pub fn register(ns: &mut NamespaceBuilder, admin: Arc<AdminUi>) {
    for name in ["emit", "join", "leave", "_disconnect"] {
        let admin = admin.clone();
        ns.on(name, move |_socket, event: Event, _ack| {
            let admin = admin.clone();
            async move {
                match Command::parse(&event.name, event.args()) {
                    Some(cmd) => admin.run(cmd),
                    None => {
                        tracing::debug!(event = %event.name, "admin UI: malformed command ignored")
                    }
                }
            }
        });
    }
}

impl AdminUi {
    /// Acts on the cluster. A namespace this node does not serve is ignored (the
    /// package would create it; here the set of namespaces is fixed).
    pub fn run(&self, cmd: Command) {
        let Some(ns) = self.io().and_then(|io| io.of(cmd.nsp())) else {
            tracing::debug!(
                nsp = cmd.nsp(),
                "admin UI: command for a namespace this node does not serve"
            );
            return;
        };
        // The whole namespace is the broadcast with no room and no exception.
        let target = match cmd.filter() {
            Some(room) => ns.to(room.to_owned()),
            None => BroadcastOperator::new(ns),
        };
        match cmd {
            Command::Emit { event, args, .. } => {
                target.emit(&event, Payload::new(args));
            }
            Command::Join { room, .. } => target.sockets_join(room),
            Command::Leave { room, .. } => target.sockets_leave(room),
            Command::Disconnect { close, .. } => target.disconnect_sockets(close),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn commands_parse_as_the_ui_sends_them() {
        let parse = |name: &str, args: Value| Command::parse(name, args.as_array().unwrap());
        assert_eq!(
            parse("join", json!(["/chat", "room1", "sid1"])),
            Some(Command::Join {
                nsp: "/chat".into(),
                room: "room1".into(),
                filter: Some("sid1".into())
            })
        );
        assert_eq!(
            parse("leave", json!(["/chat", "room1"])),
            Some(Command::Leave {
                nsp: "/chat".into(),
                room: "room1".into(),
                filter: None
            })
        );
        assert_eq!(
            parse("_disconnect", json!(["/", true, ""])),
            Some(Command::Disconnect {
                nsp: "/".into(),
                close: true,
                filter: None
            })
        );
        assert_eq!(
            parse("emit", json!(["/", null, "hello", 1, {"a": 2}])),
            Some(Command::Emit {
                nsp: "/".into(),
                filter: None,
                event: "hello".into(),
                args: vec![json!(1), json!({"a": 2})]
            })
        );
        assert_eq!(parse("join", json!(["/chat"])), None);
        assert_eq!(parse("_disconnect", json!(["/", "yes"])), None);
        assert_eq!(parse("emit", json!([])), None);
    }
}
