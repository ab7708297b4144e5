//! TCP connections from a chosen loopback source address.
//!
//! Each (source address, destination) pair has ~28,000 ephemeral ports here
//! (32768–60999). Binding the source address before `connect` normally reserves a port
//! for the address alone, which caps ALL destinations together at those 28,000;
//! `IP_BIND_ADDRESS_NO_PORT` defers the port choice to `connect`, so the kernel can reuse
//! a port towards different destinations and 127.0.0.1–127.0.0.N multiply the total.

use super::ClientError;
use std::net::{IpAddr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// Connects to `addr`, from `source` when given and `addr` is a loopback address (port
/// chosen at connect time). The sources are 127.0.0.x, which only reach loopback: a
/// worker loading nodes on other machines connects from its own address.
pub async fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let source = source.filter(|_| addr.ip().is_loopback());
    let err = |source| ClientError::Connect { addr, source };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(err)?;
    if let Some(ip) = source {
        bind_address_no_port(&socket).map_err(err)?;
        socket.bind(SocketAddr::new(ip, 0)).map_err(err)?;
    }
    let stream = socket.connect(addr).await.map_err(err)?;
    stream.set_nodelay(true).map_err(err)?;
    Ok(stream)
}

#[cfg(target_os = "linux")]
fn bind_address_no_port(socket: &TcpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd owned by `socket`, a pointer to a c_int that outlives
    // the call and its exact size; setsockopt does not retain the pointer.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn bind_address_no_port(_socket: &TcpSocket) -> std::io::Result<()> {
    Ok(())
}

/// Raises this process's open-files soft limit to its hard limit; returns (soft, hard)
/// after the change. The loadtest needs one descriptor per client.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read the struct we own, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_from_a_chosen_loopback_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let src: IpAddr = "127.0.0.3".parse().unwrap();
        let client = connect(addr, Some(src)).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), src);
        assert_eq!(client.local_addr().unwrap().ip(), src);
    }

    #[test]
    fn nofile_limit_reaches_the_hard_limit() {
        let (soft, hard) = raise_nofile_limit().unwrap();
        assert_eq!(soft, hard);
    }
}
