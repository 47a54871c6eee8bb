//! A tiny outbound proxy on 127.0.0.1:0: `CONNECT host:port` tunnels (bytes copied both
//! ways) and absolute-form `http://` requests (forwarded, one per connection), optionally
//! demanding `Proxy-Authorization`. It records the head of every request it got.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the proxy behaves.
#[derive(Clone, Default)]
pub struct ProxyOptions {
    /// The `Proxy-Authorization` value demanded; anything else gets a 407.
    pub require_auth: Option<String>,
    /// Where every tunnel and forwarded request goes instead of its own target, so that
    /// names that resolve nowhere (`upstream.test`) reach a local server.
    pub target: Option<SocketAddr>,
}

/// What the proxy got: one per connection.
#[derive(Clone, Debug)]
pub struct Seen {
    /// `CONNECT upstream.test:443 HTTP/1.1`, `POST http://127.0.0.1:9/v1/messages HTTP/1.1`.
    pub request_line: String,
    /// The `Proxy-Authorization` header, if any.
    pub proxy_authorization: Option<String>,
}

/// A running test proxy.
pub struct TestProxy {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    tunnels: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl TestProxy {
    /// Starts a proxy.
    pub async fn start(options: ProxyOptions) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tunnels = Arc::new(AtomicUsize::new(0));
        let task = {
            let (seen, tunnels) = (seen.clone(), tunnels.clone());
            tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    let (seen, tunnels, options) = (seen.clone(), tunnels.clone(), options.clone());
                    tokio::spawn(async move {
                        let _ = serve(socket, &options, &seen, &tunnels).await;
                    });
                }
            })
        };
        TestProxy {
            addr,
            seen,
            tunnels,
            _task: task,
        }
    }

    /// `http://127.0.0.1:PORT`, with `userinfo@` if given.
    pub fn url(&self, userinfo: Option<&str>) -> String {
        match userinfo {
            Some(user) => format!("http://{user}@{}", self.addr),
            None => format!("http://{}", self.addr),
        }
    }

    /// Every request head so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// How many tunnels were opened.
    pub fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut client: TcpStream,
    options: &ProxyOptions,
    seen: &Mutex<Vec<Seen>>,
    tunnels: &AtomicUsize,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if client.read(&mut byte).await? == 0 {
            return Ok(());
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let proxy_authorization = headers
        .iter()
        .find(|(k, _)| k == "proxy-authorization")
        .map(|(_, v)| v.clone());
    seen.lock().unwrap().push(Seen {
        request_line: request_line.clone(),
        proxy_authorization: proxy_authorization.clone(),
    });
    if let Some(required) = &options.require_auth
        && proxy_authorization.as_ref() != Some(required)
    {
        client
            .write_all(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n\
                  Proxy-Authenticate: Basic realm=\"test\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    }
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let mut upstream = match options.target {
            Some(addr) => TcpStream::connect(addr).await?,
            None => TcpStream::connect(target).await?,
        };
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
        tunnels.fetch_add(1, Ordering::SeqCst);
        tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        return Ok(());
    }
    // Absolute form: `http://host:port/path`.
    let Some(rest) = target.strip_prefix("http://") else {
        client
            .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            .await?;
        return Ok(());
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut upstream = match options.target {
        Some(addr) => TcpStream::connect(addr).await?,
        None => TcpStream::connect(authority).await?,
    };
    let version = parts.next().unwrap_or("HTTP/1.1");
    let path = if path.is_empty() { "/" } else { path };
    let mut forwarded = format!("{method} {path} {version}\r\n");
    for (name, value) in &headers {
        if !matches!(
            name.as_str(),
            "proxy-authorization" | "proxy-connection" | "connection"
        ) {
            forwarded.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    // One request per connection, so that every request is seen here.
    forwarded.push_str("connection: close\r\n\r\n");
    upstream.write_all(forwarded.as_bytes()).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}
