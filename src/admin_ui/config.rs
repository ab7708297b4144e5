//! The Admin UI's settings: flags with env twins, checked into an [`AdminUiConfig`].

/// `--admin-ui …` flags of `rtctl serve` / `realtime-server`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AdminUiArgs {
    /// Serve the Socket.IO Admin UI's protocol (`@socket.io/admin-ui`) on a namespace of
    /// this node, so the official UI can show and act on the cluster.
    #[arg(long, env = "ADMIN_UI")]
    pub admin_ui: bool,

    /// The Admin UI's namespace.
    #[arg(long, env = "ADMIN_UI_NAMESPACE", default_value = "/admin")]
    pub admin_ui_namespace: String,

    /// The Admin UI's login name.
    #[arg(long, env = "ADMIN_UI_USERNAME")]
    pub admin_ui_username: Option<String>,

    /// bcrypt hash of the Admin UI's password (`$2a$`/`$2b$`/`$2y$`, as the package
    /// takes; `echo PASSWORD | rtctl admin-ui --hash-password` makes one).
    #[arg(long, env = "ADMIN_UI_PASSWORD_HASH", hide_env_values = true)]
    pub admin_ui_password_hash: Option<String>,

    /// Run the Admin UI without a login (anyone who reaches the node can use it).
    #[arg(long, env = "ADMIN_UI_NO_AUTH")]
    pub admin_ui_no_auth: bool,

    /// Show only: the UI's join, leave, disconnect and emit commands are ignored.
    #[arg(long, env = "ADMIN_UI_READONLY")]
    pub admin_ui_readonly: bool,

    /// `development` also streams every socket's connections, rooms and events to the UI
    /// (a cost per event); `production` sends the 2-second statistics only.
    #[arg(long, env = "ADMIN_UI_MODE", default_value = "production", value_parser = ["production", "development"])]
    pub admin_ui_mode: String,

    /// The id this node shows as in the UI [default: the node id].
    #[arg(long, env = "ADMIN_UI_SERVER_ID")]
    pub admin_ui_server_id: Option<String>,
}

/// How the UI logs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// Anyone may connect (`--admin-ui-no-auth`).
    Open,
    /// `username` and a password matching the bcrypt `hash`.
    Basic { username: String, hash: String },
}

/// The checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUiConfig {
    pub namespace: String,
    pub login: Login,
    pub readonly: bool,
    pub development: bool,
    pub server_id: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminUiConfigError {
    #[error("--admin-ui needs a login: set --admin-ui-username and --admin-ui-password-hash (ADMIN_UI_USERNAME, ADMIN_UI_PASSWORD_HASH), or pass --admin-ui-no-auth to run it open")]
    NoCredentials,
    #[error("--admin-ui-username and --admin-ui-password-hash go together; set both")]
    HalfCredentials,
    #[error("--admin-ui-password-hash is not a bcrypt hash ($2a$, $2b$ or $2y$, 60 characters); make one with `echo PASSWORD | rtctl admin-ui --hash-password`")]
    NotBcrypt,
    #[error("--admin-ui-namespace {0:?} must start with '/'")]
    Namespace(String),
    #[error(
        "--admin-ui-namespace {0:?} is one of the app's namespaces; pick another (default /admin)"
    )]
    Taken(String),
}

impl AdminUiArgs {
    /// `None` when the UI is off; `app_namespaces` are the node's own, which the UI's
    /// namespace must not shadow.
    pub fn check(
        &self,
        node_id: &str,
        app_namespaces: &[String],
    ) -> Result<Option<AdminUiConfig>, AdminUiConfigError> {
        if !self.admin_ui {
            return Ok(None);
        }
        let ns = &self.admin_ui_namespace;
        if !ns.starts_with('/') {
            return Err(AdminUiConfigError::Namespace(ns.clone()));
        }
        if app_namespaces.contains(ns) || ns == "/" {
            return Err(AdminUiConfigError::Taken(ns.clone()));
        }
        let login = match (&self.admin_ui_username, &self.admin_ui_password_hash) {
            (Some(username), Some(hash)) => {
                if !is_bcrypt(hash) {
                    return Err(AdminUiConfigError::NotBcrypt);
                }
                Login::Basic {
                    username: username.clone(),
                    hash: hash.clone(),
                }
            }
            (None, None) if self.admin_ui_no_auth => Login::Open,
            (None, None) => return Err(AdminUiConfigError::NoCredentials),
            _ => return Err(AdminUiConfigError::HalfCredentials),
        };
        Ok(Some(AdminUiConfig {
            namespace: ns.clone(),
            login,
            readonly: self.admin_ui_readonly,
            development: self.admin_ui_mode == "development",
            server_id: self
                .admin_ui_server_id
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| node_id.to_owned()),
        }))
    }
}

/// A modular-crypt bcrypt hash of the revisions bcryptjs (the package's library)
/// accepts: `$2a$`, `$2b$`, `$2y$`, two cost digits, 53 characters of salt and hash.
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && hash.starts_with("$2")
        && matches!(b[2], b'a' | b'b' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package's own test vector: "changeit".
    pub const HASH: &str = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";

    fn args() -> AdminUiArgs {
        AdminUiArgs {
            admin_ui: true,
            admin_ui_namespace: "/admin".into(),
            admin_ui_mode: "production".into(),
            ..AdminUiArgs::default()
        }
    }

    #[test]
    fn off_unless_asked_and_never_open_by_accident() {
        let off = AdminUiArgs::default();
        assert_eq!(off.check("n1", &[]), Ok(None));
        assert_eq!(
            args().check("n1", &[]),
            Err(AdminUiConfigError::NoCredentials)
        );
        let open = AdminUiArgs {
            admin_ui_no_auth: true,
            ..args()
        };
        let cfg = open.check("n1", &[]).unwrap().unwrap();
        assert_eq!((cfg.login, cfg.server_id.as_str()), (Login::Open, "n1"));
    }

    #[test]
    fn credentials_must_be_complete_and_a_bcrypt_hash() {
        let half = AdminUiArgs {
            admin_ui_username: Some("admin".into()),
            ..args()
        };
        assert_eq!(
            half.check("n", &[]),
            Err(AdminUiConfigError::HalfCredentials)
        );
        for bad in [
            "changeit",
            "$2b$10$short",
            &HASH.replace("$2b$", "$2x$"),
            &format!("{HASH}x"),
        ] {
            let a = AdminUiArgs {
                admin_ui_username: Some("admin".into()),
                admin_ui_password_hash: Some(bad.into()),
                ..args()
            };
            assert_eq!(
                a.check("n", &[]),
                Err(AdminUiConfigError::NotBcrypt),
                "{bad}"
            );
        }
        for rev in ["$2a$", "$2b$", "$2y$"] {
            let a = AdminUiArgs {
                admin_ui_username: Some("admin".into()),
                admin_ui_password_hash: Some(HASH.replace("$2b$", rev)),
                admin_ui_mode: "development".into(),
                admin_ui_server_id: Some("eu-1".into()),
                ..args()
            };
            let cfg = a.check("n", &[]).unwrap().unwrap();
            assert!(cfg.development && cfg.server_id == "eu-1");
        }
    }

    #[test]
    fn the_namespace_is_its_own() {
        let taken = AdminUiArgs {
            admin_ui_no_auth: true,
            admin_ui_namespace: "/chat".into(),
            ..args()
        };
        assert_eq!(
            taken.check("n", &["/chat".into()]),
            Err(AdminUiConfigError::Taken("/chat".into()))
        );
        let bad = AdminUiArgs {
            admin_ui_no_auth: true,
            admin_ui_namespace: "admin".into(),
            ..args()
        };
        assert_eq!(
            bad.check("n", &[]),
            Err(AdminUiConfigError::Namespace("admin".into()))
        );
    }
}
