//! Which services a deployment runs and how a proxy routes to them.
//!
//! Socket.IO multiplexes namespaces inside one Engine.IO connection, so a proxy cannot
//! route one `/socket.io/` path by namespace: when the chat and notification roles run as
//! separate services behind one host, each needs its own Engine.IO path, and the browser
//! opens one manager per service. This module decides those paths and routes once, for
//! every generator (`rtctl gen nginx`, `rtctl gen k8s`).

use crate::handlers::role::Role;
use serde::Serialize;

/// Engine.IO path of a single service serving every role (socket.io's default).
pub const DEFAULT_PATH: &str = "/socket.io/";
/// Default Engine.IO path of the chat service when the roles are split.
pub const DEFAULT_CHAT_PATH: &str = "/chat-io/";
/// Default Engine.IO path of the notification service when the roles are split.
pub const DEFAULT_NOTIFICATIONS_PATH: &str = "/notifications-io/";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    #[error("role `all` serves everything and cannot be combined with `chat` or `notifications`; pass either `--role all` or `--role chat,notifications`")]
    AllWithOthers,
    #[error("role `{0}` is listed twice; list each role once")]
    Duplicate(&'static str),
    #[error("no role given; pass `--role all`, or `--role chat,notifications` for two services")]
    Empty,
    #[error("Engine.IO path {path:?} ({setting}) must start and end with '/' and contain no spaces, quotes or ';'")]
    BadPath { setting: &'static str, path: String },
    #[error("the chat and notification services both use Engine.IO path {0:?}; behind one host each needs its own (--chat-path, --notifications-path)")]
    SamePath(String),
}

/// The Engine.IO paths chosen by the user (flags), before validation.
#[derive(Debug, Clone)]
pub struct Paths {
    pub all: String,
    pub chat: String,
    pub notifications: String,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            all: DEFAULT_PATH.into(),
            chat: DEFAULT_CHAT_PATH.into(),
            notifications: DEFAULT_NOTIFICATIONS_PATH.into(),
        }
    }
}

/// One service of the deployment: the nodes of one role.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Service {
    /// `all`, `chat` or `notifications` (the nodes' `ROLE`).
    pub role: &'static str,
    /// Name of the service's objects: `realtime`, `realtime-chat`, `realtime-notifications`.
    pub name: String,
    /// The nodes' `SOCKETIO_PATH`, and the proxy location that reaches them.
    pub socket_path: String,
    /// The app namespace its browsers connect to (`None` for `all`: both).
    pub namespace: Option<&'static str>,
    /// HTTP API path prefixes the service answers (the gateway's calls).
    pub api_prefixes: Vec<&'static str>,
}

/// The services for `roles` (one per role), named after `base` (`realtime`).
pub fn services(base: &str, roles: &[Role], paths: &Paths) -> Result<Vec<Service>, LayoutError> {
    if roles.is_empty() {
        return Err(LayoutError::Empty);
    }
    if roles.contains(&Role::All) && roles.len() > 1 {
        return Err(match roles.iter().filter(|r| **r == Role::All).count() {
            1 => LayoutError::AllWithOthers,
            _ => LayoutError::Duplicate("all"),
        });
    }
    for (i, role) in roles.iter().enumerate() {
        if roles[..i].contains(role) {
            return Err(LayoutError::Duplicate(role.as_str()));
        }
    }
    let services: Vec<Service> = roles
        .iter()
        .map(|&role| service(base, role, paths))
        .collect::<Result<_, _>>()?;
    if let [a, b] = services.as_slice() {
        if a.socket_path == b.socket_path {
            return Err(LayoutError::SamePath(a.socket_path.clone()));
        }
    }
    Ok(services)
}

fn service(base: &str, role: Role, paths: &Paths) -> Result<Service, LayoutError> {
    let (path, setting, namespace, api_prefixes) = match role {
        Role::All => (&paths.all, "--path", None, vec!["/api/"]),
        Role::Chat => (
            &paths.chat,
            "--chat-path",
            Some("/chat"),
            vec!["/api/chat/"],
        ),
        Role::Notifications => (
            &paths.notifications,
            "--notifications-path",
            Some("/notifications"),
            vec!["/api/notifications"],
        ),
    };
    Ok(Service {
        role: role.as_str(),
        name: match role {
            Role::All => base.to_owned(),
            _ => format!("{base}-{}", role.as_str()),
        },
        socket_path: checked_path(setting, path)?,
        namespace,
        api_prefixes,
    })
}

/// A path a proxy location and `SOCKETIO_PATH` can both take verbatim.
fn checked_path(setting: &'static str, path: &str) -> Result<String, LayoutError> {
    let ok = path.len() > 1
        && path.starts_with('/')
        && path.ends_with('/')
        && !path.contains(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ';' | '{' | '}'));
    if ok {
        Ok(path.to_owned())
    } else {
        Err(LayoutError::BadPath {
            setting,
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_service_by_default_two_when_split() {
        let all = services("realtime", &[Role::All], &Paths::default()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].socket_path.as_str()),
            ("realtime", "/socket.io/")
        );
        assert_eq!(all[0].api_prefixes, ["/api/"]);

        let split = services("rt", &[Role::Chat, Role::Notifications], &Paths::default()).unwrap();
        let names: Vec<_> = split
            .iter()
            .map(|s| (s.name.as_str(), s.socket_path.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                ("rt-chat", "/chat-io/"),
                ("rt-notifications", "/notifications-io/")
            ]
        );
        assert_eq!(split[0].namespace, Some("/chat"));
        assert_eq!(split[1].api_prefixes, ["/api/notifications"]);
    }

    #[test]
    fn every_route_of_a_role_is_under_its_prefixes() {
        // The prefixes must cover the routes the role's nodes answer, or a proxy would
        // send the gateway's calls to a node that returns wrong_service.
        for (role, route) in [
            (Role::Chat, "/api/chat/send"),
            (Role::Notifications, "/api/notifications"),
        ] {
            let s = service("r", role, &Paths::default()).unwrap();
            assert!(
                s.api_prefixes.iter().any(|p| route.starts_with(p)),
                "{route}"
            );
            assert_eq!(Role::owner_of(route), Some(role));
        }
    }

    #[test]
    fn inconsistent_roles_and_paths_are_refused() {
        let p = Paths::default();
        assert_eq!(services("r", &[], &p), Err(LayoutError::Empty));
        assert_eq!(
            services("r", &[Role::All, Role::Chat], &p),
            Err(LayoutError::AllWithOthers)
        );
        assert_eq!(
            services("r", &[Role::Chat, Role::Chat], &p),
            Err(LayoutError::Duplicate("chat"))
        );
        let same = Paths {
            chat: "/io/".into(),
            notifications: "/io/".into(),
            ..Paths::default()
        };
        assert_eq!(
            services("r", &[Role::Chat, Role::Notifications], &same),
            Err(LayoutError::SamePath("/io/".into()))
        );
        for bad in ["chat-io/", "/chat-io", "/", "/a b/", "/a;b/"] {
            let paths = Paths {
                chat: bad.into(),
                ..Paths::default()
            };
            assert!(
                matches!(
                    services("r", &[Role::Chat], &paths),
                    Err(LayoutError::BadPath { .. })
                ),
                "{bad}"
            );
        }
    }
}
