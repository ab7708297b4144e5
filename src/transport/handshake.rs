//! Everything about an incoming Engine.IO HTTP request before a session handles it: the
//! query parameters, the checks Node's engine.io makes (`verify()`), the error bodies it
//! answers with, and CORS.
//!
//! All HTTP errors of the engine are mapped to status codes here, in one place.

use crate::protocol::engineio::TransportKind;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use std::net::SocketAddr;
use std::time::SystemTime;

pub type Body = Full<Bytes>;

/// What the layers above may want to know about the request that opened a session
/// (Socket.IO exposes it as `socket.handshake`; auth reads its headers and cookies).
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub transport: TransportKind,
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub remote_addr: SocketAddr,
    /// The client's address: `remote_addr`, or `X-Forwarded-For`'s from a trusted proxy.
    pub client_ip: std::net::IpAddr,
    /// The session's place in its address's count (`--max-connections-per-ip`), given
    /// back when the last copy of this is dropped with the session.
    pub slot: Option<std::sync::Arc<super::ip_limit::IpSlot>>,
    pub issued: SystemTime,
}

impl RequestInfo {
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Engine.IO request errors, with the codes and messages Node's engine.io uses
/// (`Server.errors`), so clients and proxies see the same bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    #[error("Transport unknown")]
    UnknownTransport,
    #[error("Session ID unknown")]
    UnknownSid,
    #[error("Bad handshake method")]
    BadHandshakeMethod,
    #[error("Bad request")]
    BadRequest,
    #[error("Forbidden")]
    Forbidden,
    #[error("Unsupported protocol version")]
    UnsupportedProtocolVersion,
    #[error("Payload too large")]
    PayloadTooLarge,
    #[error("Server is shutting down")]
    Draining,
    #[error("Too many connections from this address")]
    TooManySessions,
}

impl EngineError {
    /// The numeric `code` of Node's error body.
    pub fn code(self) -> u8 {
        match self {
            Self::UnknownTransport => 0,
            Self::UnknownSid => 1,
            Self::BadHandshakeMethod => 2,
            Self::BadRequest | Self::PayloadTooLarge | Self::Draining => 3,
            Self::Forbidden | Self::TooManySessions => 4,
            Self::UnsupportedProtocolVersion => 5,
        }
    }

    /// The `reason` label of `realtime_engine_request_errors_total`: one fixed snake_case
    /// name per variant. It lives with the error so that a new variant gets its label
    /// here, where the compiler asks for it, and the metrics module need not know this
    /// type.
    /// Every variant, for declaring their metric series at zero.
    pub const ALL: [EngineError; 9] = [
        Self::UnknownTransport,
        Self::UnknownSid,
        Self::BadHandshakeMethod,
        Self::BadRequest,
        Self::Forbidden,
        Self::UnsupportedProtocolVersion,
        Self::PayloadTooLarge,
        Self::Draining,
        Self::TooManySessions,
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownTransport => "unknown_transport",
            Self::UnknownSid => "unknown_sid",
            Self::BadHandshakeMethod => "bad_handshake_method",
            Self::BadRequest => "bad_request",
            Self::Forbidden => "forbidden",
            Self::UnsupportedProtocolVersion => "unsupported_protocol_version",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Draining => "draining",
            Self::TooManySessions => "too_many_sessions",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Draining => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManySessions => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// `{"code":N,"message":"…"}` with the matching status.
    pub fn response(self) -> Response<Body> {
        let body = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
        *res.status_mut() = self.status();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

/// Headers that only mattered for the handshake itself; not kept with the session.
const HANDSHAKE_ONLY_HEADERS: &[header::HeaderName] = &[
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_EXTENSIONS,
    header::CONTENT_LENGTH,
    header::CONTENT_TYPE,
    header::ACCEPT_ENCODING,
    header::CACHE_CONTROL,
    header::PRAGMA,
];

/// The request headers a session keeps (auth reads cookies and `Authorization` when a
/// namespace connects, which is after the handshake).
///
/// Values are copied, not shared: hyper parses headers as slices of its 8 KiB read
/// buffer, so keeping the original values would keep that whole buffer alive for as long
/// as the connection lives (measured: 8 KiB of the 11.6 KiB an idle WebSocket cost).
pub fn retained_headers(headers: &HeaderMap) -> HeaderMap {
    // Sized to what is kept: a map sized to the request held room for the dropped
    // headers too (≈100 bytes each, for the connection's whole life).
    let retained = |name: &header::HeaderName| !HANDSHAKE_ONLY_HEADERS.contains(name);
    let mut kept = HeaderMap::with_capacity(headers.keys().filter(|n| retained(n)).count());
    for (name, value) in headers {
        if !retained(name) {
            continue;
        }
        let mut copy = HeaderValue::from_bytes(value.as_bytes())
            .expect("a header value that parsed once is still valid");
        copy.set_sensitive(value.is_sensitive());
        kept.append(name.clone(), copy);
    }
    kept
}

/// The query parameters the engine itself reads.
#[derive(Debug, Default)]
pub struct EngineQuery {
    pub eio: Option<String>,
    pub transport: Option<String>,
    pub sid: Option<String>,
    pub all: Vec<(String, String)>,
}

impl EngineQuery {
    pub fn parse(query: Option<&str>) -> Self {
        let mut q = EngineQuery::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "EIO" => q.eio = Some(v.to_string()),
                "transport" => q.transport = Some(v.to_string()),
                "sid" => q.sid = Some(v.to_string()),
                _ => {}
            }
            q.all.push((k.into_owned(), v.into_owned()));
        }
        q
    }

    /// The parameters the application added (`io(url, { query })`), without the
    /// engine's own (`EIO`, `transport`, `sid`, `t`).
    pub fn user_params(&self) -> Vec<(String, String)> {
        self.all
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "EIO" | "transport" | "sid" | "t" | "b64" | "j"))
            .cloned()
            .collect()
    }

    /// Node's order of checks: transport first, then the protocol version on a handshake.
    pub fn transport(&self, allowed: &[TransportKind]) -> Result<TransportKind, EngineError> {
        self.transport
            .as_deref()
            .and_then(TransportKind::parse)
            .filter(|t| allowed.contains(t))
            .ok_or(EngineError::UnknownTransport)
    }

    /// Only Engine.IO v4 is spoken; a missing or other `EIO` is refused, as Node does with
    /// `allowEIO3: false`.
    pub fn check_protocol(&self) -> Result<(), EngineError> {
        match self.eio.as_deref() {
            Some("4") => Ok(()),
            _ => Err(EngineError::UnsupportedProtocolVersion),
        }
    }
}

/// Which origins may talk to the server from a browser.
#[derive(Debug, Clone)]
pub enum Cors {
    /// `*`: any origin, without credentials (browsers refuse `*` with credentials).
    Any,
    /// An explicit list: the origin is echoed back with `Allow-Credentials: true`.
    List(Vec<String>),
}

impl Cors {
    pub fn from_list(origins: &[String]) -> Self {
        if origins.iter().any(|o| o == "*") {
            Cors::Any
        } else {
            Cors::List(origins.to_vec())
        }
    }

    /// Whether a request carrying this `Origin` may proceed. Requests without an
    /// `Origin` (servers, native clients) always may: CORS protects browsers only.
    /// Refusing foreign origins here also blocks cross-site WebSocket hijacking, which
    /// browsers do not guard against by themselves.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        self.allows_origin(headers.get(header::ORIGIN))
    }

    /// [`Self::allows`], given the request's `Origin` header.
    pub fn allows_origin(&self, origin: Option<&HeaderValue>) -> bool {
        match (self, origin) {
            (_, None) | (Cors::Any, _) => true,
            (Cors::List(list), Some(origin)) => {
                list.iter().any(|o| o.as_bytes() == origin.as_bytes())
            }
        }
    }

    /// Adds the CORS response headers for an allowed request, given its `Origin` (none
    /// for a refused origin: echoing it back would tell the browser to trust it).
    pub fn apply(&self, origin: Option<&HeaderValue>, res: &mut Response<Body>) {
        let Some(origin) = origin else {
            return;
        };
        if !self.allows_origin(Some(origin)) {
            return;
        }
        let h = res.headers_mut();
        match self {
            Cors::Any => {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_ORIGIN,
                    HeaderValue::from_static("*"),
                );
            }
            Cors::List(_) => {
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
    }

    /// The answer to a preflight `OPTIONS` request.
    pub fn preflight(&self, req_headers: &HeaderMap) -> Response<Body> {
        if !self.allows(req_headers) {
            return EngineError::Forbidden.response();
        }
        let mut res = Response::new(Body::default());
        *res.status_mut() = StatusCode::NO_CONTENT;
        self.apply(req_headers.get(header::ORIGIN), &mut res);
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET,POST"),
        );
        if let Some(req) = req_headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, req.clone());
            h.append(
                header::VARY,
                HeaderValue::from_static("Access-Control-Request-Headers"),
            );
        }
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        res
    }
}

/// A plain-text 200 response (poll payloads, `ok` for posts).
pub fn text_response(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET
        && headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics module pre-creates the byte counters of the transports it knows by
    /// name; they must be the names this layer records under.
    #[test]
    fn metrics_know_every_transport_by_its_label() {
        let ours = [TransportKind::Polling, TransportKind::Websocket].map(TransportKind::as_str);
        assert_eq!(crate::metrics::TRANSPORTS, ours);
    }

    #[test]
    fn every_engine_error_has_its_own_reason_label() {
        let all = [
            EngineError::UnknownTransport,
            EngineError::UnknownSid,
            EngineError::BadHandshakeMethod,
            EngineError::BadRequest,
            EngineError::Forbidden,
            EngineError::UnsupportedProtocolVersion,
            EngineError::PayloadTooLarge,
            EngineError::Draining,
        ];
        let reasons: std::collections::HashSet<_> = all.iter().map(EngineError::reason).collect();
        assert_eq!(reasons.len(), all.len());
        assert!(reasons
            .iter()
            .all(|r| r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')));
    }

    #[test]
    fn query_parsing_and_checks_follow_node() {
        let q = EngineQuery::parse(Some("EIO=4&transport=polling&t=abc&x=a%20b"));
        assert_eq!(q.check_protocol(), Ok(()));
        assert_eq!(
            q.transport(&[TransportKind::Polling, TransportKind::Websocket]),
            Ok(TransportKind::Polling)
        );
        assert_eq!(q.user_params(), vec![("x".to_owned(), "a b".to_owned())]);
        assert_eq!(
            q.transport(&[TransportKind::Websocket]),
            Err(EngineError::UnknownTransport)
        );
        for bad in [None, Some("EIO=3&transport=polling"), Some("EIO=abc")] {
            assert_eq!(
                EngineQuery::parse(bad).check_protocol(),
                Err(EngineError::UnsupportedProtocolVersion)
            );
        }
        assert_eq!(
            EngineQuery::parse(Some("EIO=4&transport=abc")).transport(&[TransportKind::Polling]),
            Err(EngineError::UnknownTransport)
        );
    }

    #[test]
    fn error_bodies_match_node() {
        let res = EngineError::UnknownSid.response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert_eq!(EngineError::UnknownSid.code(), 1);
        assert_eq!(EngineError::PayloadTooLarge.status(), 413);
        assert_eq!(EngineError::Forbidden.status(), 403);
    }

    #[test]
    fn cors_echoes_listed_origins_only() {
        let cors = Cors::from_list(&["http://localhost:3000".into()]);
        let mut h = HeaderMap::new();
        assert!(cors.allows(&h), "no Origin: not a browser");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://localhost:3000"),
        );
        assert!(cors.allows(&h));
        let mut res = text_response("ok", "text/html");
        cors.apply(h.get(header::ORIGIN), &mut res);
        assert_eq!(
            res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "http://localhost:3000"
        );
        assert_eq!(
            res.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS],
            "true"
        );
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!cors.allows(&h));
        assert_eq!(cors.preflight(&h).status(), 403);
        assert!(Cors::from_list(&["*".into()]).allows(&h));
    }
}
