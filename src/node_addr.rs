//! Where a node is, as an operator writes it: the one parser behind every ops tool that
//! names nodes (`rtctl health URL…`, `rtctl loadtest --url`, `rtctl gen nginx
//! --upstream`, `rtctl gen prometheus --target`).
//!
//! Two shapes, one grammar:
//! - [`NodeAddr`]: `HOST:PORT`, the port required (what nginx and Prometheus are given);
//! - [`NodeUrl`]: `[http://|ws://]HOST[:PORT][/PATH]`, the port defaulting to 80 and the
//!   path left to the caller (health asks `/api/health`, loadtest `/socket.io/`).
//!
//! HOST is a name or IPv4 address (letters, digits, `-`, `.`, `_`) or an IPv6 address in
//! brackets (`[::1]:3001`). The text is kept as written, so a generated nginx.conf or the
//! `Host` header shows exactly what the operator typed. `https://` is refused on
//! purpose: TLS ends at nginx, which balances and would hide which node answered.

use std::net::SocketAddr;

/// Why a node address was refused, each saying what is expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeAddrError {
    #[error("{input:?} is not HOST:PORT")]
    NoPort { input: String },
    #[error(
        "{input:?} has no valid host (a name, an IPv4 address, or an IPv6 address in \
         brackets like [::1]:3001)"
    )]
    BadHost { input: String },
    #[error("{input:?} has no valid port (1-65535)")]
    BadPort { input: String },
    #[error(
        "{input:?}: https is not supported; ask each node on its own http:// port \
         (TLS ends at nginx, which would hide which node answers)"
    )]
    Https { input: String },
    #[error("{input:?}: unsupported scheme {scheme:?} (use http://HOST:PORT)")]
    Scheme { input: String, scheme: String },
}

/// `HOST:PORT` of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// As written (brackets kept for IPv6): the `Host` header and generated configs.
    authority: String,
    /// Without brackets: what to resolve.
    host: String,
    port: u16,
}

impl NodeAddr {
    /// Parses `HOST:PORT` (surrounding whitespace ignored); the port is required.
    pub fn parse(s: &str) -> Result<NodeAddr, NodeAddrError> {
        parse_authority(s, s.trim(), None)
    }

    /// The address as written, e.g. `10.0.0.1:3001` or `[::1]:9`.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The host without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket addresses the host resolves to (DNS for names), in resolver order.
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect())
    }
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.authority)
    }
}

/// `http://HOST[:PORT][/PATH]` of one node (the scheme may be left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUrl {
    addr: NodeAddr,
    /// `None` when the URL has no path (or just `/`): the caller's default applies.
    path: Option<String>,
}

impl NodeUrl {
    /// Parses a node URL: `http://` or `ws://` (both the node's plain port) or none; the
    /// port defaults to 80.
    pub fn parse(s: &str) -> Result<NodeUrl, NodeAddrError> {
        let input = s.trim();
        let rest = match input.split_once("://") {
            None => input,
            Some((scheme, rest))
                if scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("ws") =>
            {
                rest
            }
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(NodeAddrError::Https {
                    input: input.to_owned(),
                })
            }
            Some((scheme, _)) => {
                return Err(NodeAddrError::Scheme {
                    input: input.to_owned(),
                    scheme: scheme.to_owned(),
                })
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let addr = parse_authority(input, authority, Some(80))?;
        let path = (!matches!(path, "" | "/")).then(|| path.to_owned());
        Ok(NodeUrl { addr, path })
    }

    pub fn addr(&self) -> &NodeAddr {
        &self.addr
    }

    /// The URL's path, or `default` when it has none.
    pub fn path_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.path.as_deref().unwrap_or(default)
    }
}

/// `http://HOST:PORT[/PATH]`, as the operator wrote the host and port.
impl std::fmt::Display for NodeUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "http://{}{}",
            self.addr,
            self.path.as_deref().unwrap_or("")
        )
    }
}

/// Splits and checks `HOST[:PORT]`; `default_port` applies when there is no port (none:
/// the port is required). `input` is the whole argument, for the error.
fn parse_authority(
    input: &str,
    authority: &str,
    default_port: Option<u16>,
) -> Result<NodeAddr, NodeAddrError> {
    let err_host = || NodeAddrError::BadHost {
        input: input.to_owned(),
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(err_host)?;
        let ipv6 = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_hexdigit() || ":.".contains(c));
        if !ipv6 {
            return Err(err_host());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(err_host)?),
        };
        (host, port)
    } else {
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let name = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !name {
            return Err(err_host());
        }
        (host, port)
    };
    let port = match (port, default_port) {
        (Some(p), _) => {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| NodeAddrError::BadPort {
                    input: input.to_owned(),
                })?
        }
        (None, Some(default)) => default,
        (None, None) => {
            return Err(NodeAddrError::NoPort {
                input: input.to_owned(),
            })
        }
    };
    Ok(NodeAddr {
        authority: authority.to_owned(),
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_kept_as_written() {
        let a = NodeAddr::parse(" 10.0.0.1:3001 ").unwrap();
        assert_eq!((a.host(), a.port()), ("10.0.0.1", 3001));
        assert_eq!(a.to_string(), "10.0.0.1:3001");
        let a = NodeAddr::parse("node-a.internal_1:80").unwrap();
        assert_eq!(a.host(), "node-a.internal_1");
        let a = NodeAddr::parse("[::1]:9").unwrap();
        assert_eq!((a.host(), a.port(), a.authority()), ("::1", 9, "[::1]:9"));
    }

    #[test]
    fn bad_addresses_say_what_is_wrong() {
        for (bad, want) in [
            ("nohost", "is not HOST:PORT"),
            ("[::1]", "is not HOST:PORT"),
            (":80", "no valid host"),
            ("a b:80", "no valid host"),
            ("a\":1", "no valid host"),
            ("a;b:1", "no valid host"),
            ("::1:9", "no valid host"),
            ("[zz]:1", "no valid host"),
            ("[::1]x", "no valid host"),
            ("a:0", "no valid port"),
            ("a:x", "no valid port"),
            ("a:", "no valid port"),
            ("a:99999", "no valid port"),
        ] {
            let e = NodeAddr::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_take_http_or_ws_or_nothing_and_default_to_port_80() {
        let u = NodeUrl::parse("127.0.0.1:3001").unwrap();
        assert_eq!((u.addr().host(), u.addr().port()), ("127.0.0.1", 3001));
        assert_eq!(u.path_or("/api/health"), "/api/health");
        assert_eq!(u.to_string(), "http://127.0.0.1:3001");
        let u = NodeUrl::parse("http://node-a/").unwrap();
        assert_eq!((u.addr().authority(), u.addr().port()), ("node-a", 80));
        assert_eq!(u.path_or("/socket.io/"), "/socket.io/");
        let u = NodeUrl::parse("ws://[::1]:9/api/health/ready").unwrap();
        assert_eq!((u.addr().host(), u.addr().port()), ("::1", 9));
        assert_eq!(u.path_or("/x"), "/api/health/ready");
        let u = NodeUrl::parse("HTTP://a:1/engine.io/").unwrap();
        assert_eq!(u.path_or("/socket.io/"), "/engine.io/");
    }

    #[test]
    fn bad_urls_are_refused_with_a_reason() {
        for (bad, want) in [
            ("https://a:1", "https is not supported"),
            ("ftp://a", "unsupported scheme \"ftp\""),
            ("a:0", "no valid port"),
            ("a:x", "no valid port"),
            ("http://:1", "no valid host"),
            ("a b:1", "no valid host"),
            ("http://", "no valid host"),
        ] {
            let e = NodeUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }

    #[tokio::test]
    async fn addresses_resolve() {
        let a = NodeAddr::parse("127.0.0.1:3001").unwrap();
        assert_eq!(
            a.resolve().await.unwrap(),
            vec!["127.0.0.1:3001".parse::<SocketAddr>().unwrap()]
        );
    }
}
