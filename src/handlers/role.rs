//! Service roles from one binary (the requirements' SR-7: a Chat Service and a
//! Notification Service behind the Next.js gateway): which of the app's namespaces a node
//! serves and which API routes it answers. A node of one role answers the other role's
//! route with 404 and a body naming the role that serves it, so a gateway pointed at the
//! wrong service says so at once.

/// What a node serves (`--role`, `ROLE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Every namespace and route (one service, the default).
    #[default]
    All,
    /// `/chat` and `POST /api/chat/send`.
    Chat,
    /// `/notifications` and `POST /api/notifications`.
    Notifications,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Chat => "chat",
            Role::Notifications => "notifications",
        }
    }

    /// The role that owns an app namespace or API route (`/chat`, `/api/chat/send`, …);
    /// `None` for anything else (`/`, custom namespaces), which every role serves.
    pub fn owner_of(path: &str) -> Option<Role> {
        match path {
            "/chat" | "/api/chat/send" => Some(Role::Chat),
            "/notifications" | "/api/notifications" => Some(Role::Notifications),
            _ => None,
        }
    }

    /// Whether this role serves the namespace or route `path`.
    pub fn serves(self, path: &str) -> bool {
        self == Role::All || Role::owner_of(path).is_none_or(|owner| owner == self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_serves_its_own_and_the_shared_paths() {
        for path in ["/", "/custom", "/chat", "/notifications", "/api/chat/send"] {
            assert!(Role::All.serves(path), "{path}");
        }
        assert!(Role::Chat.serves("/chat") && Role::Chat.serves("/api/chat/send"));
        assert!(!Role::Chat.serves("/notifications") && !Role::Chat.serves("/api/notifications"));
        assert!(Role::Notifications.serves("/api/notifications"));
        assert!(!Role::Notifications.serves("/chat"));
        assert!(Role::Chat.serves("/") && Role::Notifications.serves("/custom"));
    }
}
