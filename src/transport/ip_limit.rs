//! The per-address session limit: one address (a client, or a script flooding
//! handshakes) may hold at most N Engine.IO sessions at once. Off by default — behind a
//! proxy every client shares the proxy's address — and then the client's address comes
//! from `X-Forwarded-For`, believed only when the connection comes from a trusted proxy
//! (else any client could name any address).
//!
//! A session holds an [`IpSlot`] from its handshake until it is gone, so a handshake
//! that fails half-way (a WebSocket upgrade the client abandons) gives its slot back.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use crate::sync::MutexExt as _;

/// An address range, `10.0.0.0/8` or a single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let usage = || format!("{s:?} is not an address or range like 10.0.0.0/8 or ::1");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| usage())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(usage)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let ((net, net_len), (addr, addr_len)) = (bits(self.addr), bits(ip));
        if net_len != addr_len {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == addr & mask
    }
}

/// The client's address: the peer's, or — when the peer is a trusted proxy — the last
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(remote: SocketAddr, headers: &http::HeaderMap, trusted: &[Cidr]) -> IpAddr {
    let peer = remote.ip();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    forwarded
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(*ip))
        .unwrap_or(peer)
}

/// Sessions per address, against the limit.
#[derive(Debug)]
pub struct IpLimiter {
    limit: u32,
    counts: Mutex<HashMap<IpAddr, u32>>,
}

/// One session's place in its address's count; given back when dropped.
#[derive(Debug)]
pub struct IpSlot {
    limiter: Arc<IpLimiter>,
    ip: IpAddr,
}

impl IpLimiter {
    /// `limit` sessions per address; 0 is no limit.
    pub fn new(limit: u32) -> Arc<IpLimiter> {
        Arc::new(IpLimiter {
            limit,
            counts: Mutex::default(),
        })
    }

    /// A slot for one more session from `ip`; `None` when the address is at its limit.
    /// Without a limit every session gets a slot (nothing is counted).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Option<Arc<IpSlot>>> {
        if self.limit == 0 {
            return Some(None);
        }
        let mut counts = self.counts.lock_unpoisoned();
        let n = counts.entry(ip).or_default();
        if *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Some(Arc::new(IpSlot {
            limiter: self.clone(),
            ip,
        })))
    }

    /// Sessions counted for `ip` now.
    pub fn count(&self, ip: IpAddr) -> u32 {
        self.counts.lock_unpoisoned().get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut counts = self.limiter.counts.lock_unpoisoned();
        if let Some(n) = counts.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_their_addresses() {
        let net = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6");
        assert!(Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.1")));
        assert!(!Cidr::parse("127.0.0.1").unwrap().contains(ip("127.0.0.2")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("fd12::1")));
        assert!(!Cidr::parse("fd00::/8").unwrap().contains(ip("10.0.0.1")));
        for bad in ["", "10.0.0.0/33", "::/129", "localhost", "10.0.0/8"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap()];
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "1.2.3.4, 10.0.0.7".parse().unwrap());
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let stranger: SocketAddr = "5.6.7.8:4000".parse().unwrap();
        assert_eq!(client_ip(proxy, &headers, &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(stranger, &headers, &trusted), ip("5.6.7.8"));
        assert_eq!(client_ip(proxy, &headers, &[]), ip("10.0.0.5"));
        // A client's own forged entry sits left of the real one: not taken.
        headers.insert("x-forwarded-for", "9.9.9.9, 1.2.3.4".parse().unwrap());
        assert_eq!(client_ip(proxy, &headers, &trusted), ip("1.2.3.4"));
        assert_eq!(
            client_ip(proxy, &http::HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_slots_come_back() {
        let limiter = IpLimiter::new(2);
        let a = ip("1.1.1.1");
        let first = limiter.admit(a).unwrap();
        let second = limiter.admit(a).unwrap();
        assert!(limiter.admit(a).is_none(), "third refused");
        assert!(limiter.admit(ip("2.2.2.2")).is_some(), "others unaffected");
        drop(first);
        assert_eq!(limiter.count(a), 1);
        assert!(limiter.admit(a).is_some());
        drop(second);
        assert_eq!(limiter.count(a), 0);
        let off = IpLimiter::new(0);
        assert!((0..100).all(|_| matches!(off.admit(a), Some(None))));
    }
}
