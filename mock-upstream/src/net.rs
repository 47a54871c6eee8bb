//! The mock's listener, and a check of any listener's queue that the bridge's tests share.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// How many connections the kernel queues before the mock accepts them: as many as the
/// bridge's listener takes, so a burst of clients that the bridge holds is not refused by
/// its baseline (with std's 128, a quarter of a 1,000-connection burst waited a second for
/// the SYN retransmit). The kernel caps it at `net.core.somaxconn`.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Listens on `addr` (a socket address, or a name that resolves to one) with a queue of
/// [`LISTEN_BACKLOG`] connections.
///
/// # Errors
/// When the name does not resolve, or no address it resolves to can be bound.
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(addr).await? {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
    }))
}

/// Opens a burst of connections to a listener that accepts none of them, each allowed
/// `within`: the kernel completes each handshake into the listen queue, so every connection
/// the queue has room for connects at once, and one past it loses its SYN and waits a
/// second for the retransmit. The burst is twice std's 128 (few enough file descriptors
/// beside other tests), or the kernel's cap `net.core.somaxconn` if that is lower (128
/// before Linux 5.4, where 128 is all any listener gets). Returns the open connections.
///
/// # Errors
/// Which connection waited longer than `within`, or failed.
pub async fn connect_burst(addr: SocketAddr, within: Duration) -> Result<Vec<TcpStream>, String> {
    let cap = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(128);
    let burst = cap.min(256);
    let mut held = Vec::with_capacity(burst);
    for n in 1..=burst {
        match tokio::time::timeout(within, TcpStream::connect(addr)).await {
            Ok(Ok(conn)) => held.push(conn),
            Ok(Err(err)) => return Err(format!("connection {n} failed: {err}")),
            Err(_) => return Err(format!("connection {n} waited: the listen queue is full")),
        }
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{connect_burst, listen};

    /// Nothing accepts here; with std's queue of 128 the 130th connection waited.
    #[tokio::test]
    async fn the_listen_queue_holds_a_burst_of_connections() {
        let listener = listen("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        if let Err(e) = connect_burst(addr, Duration::from_millis(500)).await {
            panic!("{e}");
        }
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_an_error() {
        assert!(listen("no-such-host.invalid:0").await.is_err());
    }
}
