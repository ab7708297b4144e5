//! What the chat and notification handlers share: the authenticated user on a socket,
//! the application state, and the error acks clients receive.

use crate::cache::UnreadCache;
use crate::ratelimit::{Decision, RateLimiter};
use crate::server::{AckSender, Event, NamespaceBuilder, Socket, SocketRef};
use crate::store::{Store, StoreError};
use crate::sync::MutexExt as _;
use crate::telemetry::LogThrottle;
use serde_json::{json, Value};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// The user a socket authenticated as; put in `socket.extensions` by the auth middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
}

impl User {
    /// The user of a socket. Every namespace runs the auth middleware, so a socket that
    /// reached a handler has one.
    pub fn of(socket: &Socket) -> Option<User> {
        socket.extensions.lock_unpoisoned().get::<User>().cloned()
    }
}

/// Services the handlers use.
pub struct AppState {
    pub store: Store,
    pub limiter: RateLimiter,
    pub unread: UnreadCache,
}

pub type State = Arc<AppState>;

/// A failed request, as the client sees it in the ack: `{"error": code, "message": …}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: &'static str,
    pub message: String,
    pub retry_after_ms: Option<u64>,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new("invalid_input", message)
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({ "error": self.code, "message": self.message });
        if let Some(ms) = self.retry_after_ms {
            v["retryAfterMs"] = json!(ms);
        }
        v
    }

    /// The HTTP status for the same failure (the server-to-server API).
    pub fn status(&self) -> u16 {
        match self.code {
            "invalid_input" => 400,
            "unauthorized" => 401,
            "forbidden" => 403,
            "not_found" => 404,
            "payload_too_large" => 413,
            "rate_limited" => 429,
            "db_unavailable" => 503,
            _ => 500,
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        // The database error itself (with its cause) goes to the log, not to the client;
        // during an outage one line a second, with how many were held back.
        static THROTTLE: LogThrottle = LogThrottle::new(Duration::from_secs(1));
        if let Some(held_back) = THROTTLE.allow() {
            tracing::warn!(error = ?e, code = e.code(), held_back, "store operation failed");
        }
        match e {
            StoreError::NotFound => Failure::new("not_found", "no such record"),
            e if e.is_transient() => Failure::new(
                "db_unavailable",
                "the database is unavailable; try again shortly",
            ),
            StoreError::InvalidInput(m) => Failure::invalid(m),
            _ => Failure::new("internal", "the operation failed; nothing was stored"),
        }
    }
}

/// Answers an ack with the result: the value, or `{"error": …}`.
pub fn reply(ack: Option<AckSender>, result: Result<Value, Failure>) {
    if let Some(ack) = ack {
        ack.send(match result {
            Ok(v) => v,
            Err(f) => f.to_json(),
        });
    }
}

/// Registers the handler of an acknowledged request: `handler(state, socket, user,
/// event)` runs for a signed-in socket and its result is the ack (a [`Failure`] as its
/// `{error, message}` JSON). A socket without a user gets `unauthorized` without the
/// handler running. This is every `/chat` and `/notifications` request's frame.
pub fn on_request<F, Fut>(ns: &mut NamespaceBuilder, state: &State, event: &str, handler: F)
where
    F: Fn(State, SocketRef, User, Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Failure>> + Send + 'static,
{
    let state = state.clone();
    ns.on(event, move |socket, event, ack| {
        let run = User::of(&socket).map(|user| handler(state.clone(), socket, user, event));
        async move {
            let result = match run {
                Some(run) => run.await,
                None => Err(Failure::new("unauthorized", "not authenticated")),
            };
            reply(ack, result);
        }
    });
}

/// Consumes one point of `event` for the user, or says when to retry.
pub async fn check_rate(state: &AppState, event: &str, user: &str) -> Result<(), Failure> {
    match state.limiter.consume(event, user).await {
        Decision::Allowed { .. } => Ok(()),
        Decision::Limited { retry_after } => {
            crate::metrics::rate_limited(event);
            Err(Failure {
                code: "rate_limited",
                message: format!("too many {event} requests; retry later"),
                retry_after_ms: Some(retry_after.as_millis() as u64),
            })
        }
    }
}

/// Refuses strings with NUL characters: PostgreSQL cannot store them (SQLite can), so
/// they are refused up front, the same on every backend.
pub fn no_nul<'a>(field: &str, s: &'a str) -> Result<&'a str, Failure> {
    if s.contains('\0') {
        return Err(Failure::invalid(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(s)
}

/// [`no_nul`] for every string inside a JSON value (keys included).
pub fn no_nul_in(field: &str, v: &Value) -> Result<(), Failure> {
    match v {
        Value::String(s) => no_nul(field, s).map(|_| ()),
        Value::Array(a) => a.iter().try_for_each(|x| no_nul_in(field, x)),
        Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            no_nul(field, k)?;
            no_nul_in(field, x)
        }),
        _ => Ok(()),
    }
}

/// The first argument of an event as an object, or a clear error.
pub fn object_arg(args: &[Value]) -> Result<&serde_json::Map<String, Value>, Failure> {
    args.first()
        .and_then(Value::as_object)
        .ok_or_else(|| Failure::invalid("expected an object argument"))
}

/// A required integer id field.
pub fn id_field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<i64, Failure> {
    match obj.get(name) {
        Some(Value::Number(n)) => n.as_i64().filter(|v| *v > 0),
        Some(Value::String(s)) => s.parse::<i64>().ok().filter(|v| *v > 0),
        _ => None,
    }
    .ok_or_else(|| Failure::invalid(format!("{name} must be a positive integer id")))
}

/// An optional limit field within 1..=max (default `default`).
pub fn limit_field(
    obj: &serde_json::Map<String, Value>,
    max: u32,
    default: u32,
) -> Result<u32, Failure> {
    match obj.get("limit") {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=max as u64).contains(n))
            .map(|n| n as u32)
            .ok_or_else(|| Failure::invalid(format!("limit must be between 1 and {max}"))),
    }
}
