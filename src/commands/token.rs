//! `rtctl token`: mint a session token the Next.js app would accept, for tests, load tests
//! and poking at a running server (`io(url, { auth: { token } })`).

use crate::auth::{mint, session_claims, TokenFormat};
use anyhow::bail;
use std::fmt;
use std::io::Write as _;
use std::time::{Duration, SystemTime};

#[derive(clap::Args)]
#[command(after_help = "\
The token goes to stdout alone, so `TOKEN=$(rtctl token --user 42)` works.
Formats: v4 = NextAuth.js 4 (JWE A256GCM), v5 = Auth.js 5 (JWE A256CBC-HS512, salted for the
`authjs.session-token` cookie), hs256 = plain JWT signed with the secret.
Exit codes: 0 ok, 2 usage error (e.g. no secret).")]
pub struct TokenCommand {
    /// The user id: the token's `sub` claim.
    #[arg(long, value_name = "ID")]
    pub user: String,

    /// The `name` claim.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The `email` claim.
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,

    /// Which library the token is for.
    #[arg(long, value_enum, default_value_t = FormatArg::V4)]
    pub format: FormatArg,

    /// Lifetime: `exp` = now + SECONDS.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub ttl: u64,

    /// The app's secret [env: NEXTAUTH_SECRET, or AUTH_SECRET when that is unset].
    #[arg(
        long,
        value_name = "SECRET",
        env = "NEXTAUTH_SECRET",
        hide_env = true,
        hide_env_values = true
    )]
    pub secret: Option<String>,
}

/// `--format` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FormatArg {
    V4,
    V5,
    Hs256,
}

impl From<FormatArg> for TokenFormat {
    fn from(format: FormatArg) -> Self {
        match format {
            FormatArg::V4 => TokenFormat::V4,
            FormatArg::V5 => TokenFormat::V5,
            FormatArg::Hs256 => TokenFormat::Hs256,
        }
    }
}

/// Shows everything but the secret.
impl fmt::Debug for TokenCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCommand")
            .field("user", &self.user)
            .field("name", &self.name)
            .field("email", &self.email)
            .field("format", &self.format)
            .field("ttl", &self.ttl)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl TokenCommand {
    pub async fn run(self) -> anyhow::Result<()> {
        // clap reads one env var per flag; Auth.js v5 apps name the secret AUTH_SECRET.
        let secret = self
            .secret
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("AUTH_SECRET").ok().filter(|s| !s.is_empty()));
        let Some(secret) = secret else {
            bail!("no secret to seal the token with: pass --secret or set NEXTAUTH_SECRET (or AUTH_SECRET) to the Next.js app's secret");
        };
        if self.user.is_empty() {
            bail!("--user must not be empty: it becomes the token's `sub`, the user id");
        }
        let claims = session_claims(
            &self.user,
            self.name.as_deref(),
            self.email.as_deref(),
            SystemTime::now(),
            Duration::from_secs(self.ttl),
        );
        let token = mint(secret, self.format.into(), &claims);
        // A closed pipe (`rtctl token | head -c0`) is success, not an error.
        match writeln!(std::io::stdout().lock(), "{token}") {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        }
    }
}
