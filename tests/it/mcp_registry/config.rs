//! Validation of `[mcp]`, and secrets kept out of Debug output, errors and reports.

use std::time::Duration;

use aibridge::mcp::{McpReportError, McpTransport, tools_report};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn error(toml_text: &str) -> String {
    try_config(toml_text, &[("TOKEN", "s3cr3t-token-value")]).unwrap_err()
}

#[test]
fn defaults() {
    let config = config("[mcp]\n[[mcp.servers]]\nname = \"t\"\ncommand = \"mcp-server-time\"\n");
    assert_eq!(config.max_loop_iterations, 10);
    let server = &config.servers[0];
    assert_eq!(server.call_timeout, Duration::from_secs(60));
    assert_eq!(server.connect_timeout, Duration::from_secs(10));
    assert_eq!(server.location(), "stdio:mcp-server-time");
    assert!(server.filter.permits("anything"));
    let empty = super::config("[mcp]\n");
    assert!(empty.servers.is_empty());
}

#[test]
fn durations_and_loop_cap() {
    let config = config(
        r#"
        [mcp]
        max_loop_iterations = 3
        [[mcp.servers]]
        name = "t"
        url = "http://127.0.0.1:1/mcp"
        call_timeout = "500ms"
        connect_timeout = "2m"
        "#,
    );
    assert_eq!(config.max_loop_iterations, 3);
    assert_eq!(config.servers[0].call_timeout, Duration::from_millis(500));
    assert_eq!(config.servers[0].connect_timeout, Duration::from_secs(120));
}

#[test]
fn errors_name_the_path() {
    let two = |second: &str| {
        format!(
            "[mcp]\n[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\n[[mcp.servers]]\n{second}\n"
        )
    };
    let cases = [
        (
            two("name = \"b\"\ncommand = \"x\"\nallow = [\"(\"]"),
            "mcp.servers[1].allow[0]: invalid regex `(`",
        ),
        (
            two("name = \"b\"\ncommand = \"x\"\ndeny = [\"ok\", \"[z-a]\"]"),
            "mcp.servers[1].deny[1]: invalid regex",
        ),
        (
            two("name = \"a\"\ncommand = \"x\""),
            "mcp.servers[1].name: duplicate server name `a`",
        ),
        (
            two("name = \"b c\"\ncommand = \"x\""),
            "mcp.servers[1].name: `b c` must be",
        ),
        (
            two("name = \"b\"\ncommand = \"x\"\nurl = \"http://h/mcp\""),
            "mcp.servers[1]: set either `url` or `command`",
        ),
        (
            two("name = \"b\""),
            "mcp.servers[1]: set `url` (HTTP) or `command`",
        ),
        (
            two("name = \"b\"\nurl = \"ftp://h/mcp\""),
            "mcp.servers[1].url: the scheme must be http or https",
        ),
        (
            two("name = \"b\"\nurl = \"not a url\""),
            "mcp.servers[1].url: invalid URL",
        ),
        (
            two("name = \"b\"\ncommand = \"x\"\ncall_timeout = \"soon\""),
            "mcp.servers[1].call_timeout: invalid duration `soon`",
        ),
        (
            two("name = \"b\"\ncommand = \"x\"\ncall_timeout = \"0s\""),
            "mcp.servers[1].call_timeout: must be greater than zero",
        ),
        (
            two(
                "name = \"b\"\nurl = \"http://h/mcp\"\nheaders = { Authorization = \"Bearer ${GITHUB_TOKEN}\" }",
            ),
            "mcp.servers[1].headers.Authorization: environment variable `GITHUB_TOKEN` is not set",
        ),
        (
            two("name = \"b\"\ncommand = \"x\"\nenv = { KEY = \"${MISSING}\" }"),
            "mcp.servers[1].env.KEY: environment variable `MISSING` is not set",
        ),
        (
            two("name = \"b\"\nurl = \"http://h/mcp\"\nargs = [\"x\"]"),
            "mcp.servers[1]: `args` and `env` apply only to `command` servers",
        ),
        (
            "[mcp]\nmax_loop_iterations = 0\n".to_owned(),
            "mcp.max_loop_iterations: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let got = error(&text);
        assert!(
            got.starts_with(expected),
            "expected `{expected}…`, got `{got}`"
        );
    }
}

#[test]
fn unknown_fields_are_rejected() {
    let got = error("[mcp]\n[[mcp.servers]]\nname = \"a\"\ncommand = \"x\"\nalow = [\"x\"]\n");
    assert!(got.contains("unknown field `alow`"), "{got}");
}

const SECRET: &str = "s3cr3t-token-value";

#[test]
fn header_values_expand_and_stay_out_of_debug() {
    let config = try_config(
        r#"
        [mcp]
        [[mcp.servers]]
        name = "gh"
        url = "https://mcp.example.com/mcp"
        headers = { Authorization = "Bearer ${TOKEN}" }
        [[mcp.servers]]
        name = "local"
        command = "server"
        env = { API_KEY = "${TOKEN}" }
        "#,
        &[("TOKEN", SECRET)],
    )
    .unwrap();
    let McpTransport::Http { headers, .. } = &config.servers[0].transport else {
        panic!("expected an HTTP server");
    };
    assert_eq!(headers[0].0, "Authorization");
    assert_eq!(headers[0].1.expose(), format!("Bearer {SECRET}"));
    let debug = format!("{config:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("Authorization") && debug.contains("API_KEY"));

    #[derive(serde::Deserialize, Debug)]
    struct File {
        #[allow(dead_code, reason = "only printed")]
        mcp: RawMcpConfig,
    }
    let raw: File = toml::from_str(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"x\"\nurl = \"http://h/mcp\"\nheaders = {{ Authorization = \"{SECRET}\" }}\n"
    ))
    .unwrap();
    let debug = format!("{raw:?}");
    assert!(!debug.contains(SECRET), "{debug}");
}

/// A server that records the request head it receives, then closes the connection.
async fn recording_server() -> (SocketAddr, tokio::task::JoinHandle<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let _ = stream
            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, task)
}

#[tokio::test]
async fn headers_are_sent_but_never_reported() {
    let (addr, request) = recording_server().await;
    let config = try_config(
        &format!(
            r#"
            [mcp]
            [[mcp.servers]]
            name = "gh"
            url = "http://{addr}/mcp"
            headers = {{ Authorization = "Bearer ${{TOKEN}}", X-Team = "platform" }}
            connect_timeout = "3s"
            "#
        ),
        &[("TOKEN", SECRET)],
    )
    .unwrap();
    let mut out = Vec::new();
    let report = tools_report(&config, &mut out).await;
    let head = request.await.unwrap().to_ascii_lowercase();
    assert!(
        head.contains(&format!("authorization: bearer {SECRET}")),
        "{head}"
    );
    assert!(head.contains("x-team: platform"), "{head}");

    let Err(McpReportError::Unreachable(servers)) = report else {
        panic!("expected the server to be unreachable: {report:?}");
    };
    assert_eq!(servers, ["gh"]);
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("server gh (http://"), "{out}");
    assert!(out.contains("UNREACHABLE"), "{out}");
    assert!(!out.contains(SECRET), "{out}");

    let registry = ToolRegistry::start(&config, None);
    registry.wait_ready(EVENTUALLY).await;
    let status = format!("{:?} {:?}", registry.servers(), registry);
    assert!(!status.contains(SECRET), "{status}");
    let call = registry.call("bmcp_gh_anything", None).await;
    assert!(!format!("{call:?}").contains(SECRET));
    registry.shutdown().await;
}

#[tokio::test]
async fn the_report_lists_tools_with_their_server() {
    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    let config = config(&format!(
        "[mcp]\n[[mcp.servers]]\nname = \"t\"\nurl = \"{}\"\nallow = [\"^(echo|add)$\"]\n",
        server.url()
    ));
    let mut out = Vec::new();
    tools_report(&config, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TOOL"), "{out}");
    assert!(
        lines[1].starts_with("bmcp_t_add  ") && lines[1].contains(" t "),
        "{out}"
    );
    assert!(
        lines[2].starts_with("bmcp_t_echo ") && lines[2].contains("Returns its text."),
        "{out}"
    );
    assert!(
        out.contains(&format!("server t ({}): 2 tool(s)", server.url())),
        "{out}"
    );
}

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_never_show_header_values() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // The current-thread test runtime runs the registry's tasks on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    // Other tests run at the same time without a subscriber; a callsite they registered
    // first may have cached "not interested".
    tracing::callsite::rebuild_interest_cache();

    let server = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), Default::default())
        .await
        .unwrap();
    // Bound but never accepting: the handshake times out, and no other test can take the port.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap();
    let config = try_config(
        &format!(
            r#"
            [mcp]
            [[mcp.servers]]
            name = "live"
            url = "{}"
            headers = {{ Authorization = "Bearer ${{TOKEN}}" }}
            [[mcp.servers]]
            name = "dead"
            url = "http://{dead}/mcp"
            headers = {{ Authorization = "Bearer ${{TOKEN}}" }}
            connect_timeout = "1s"
            "#,
            server.url()
        ),
        &[("TOKEN", SECRET)],
    )
    .unwrap();
    let registry = started(&config).await;
    let echo = registry
        .call("bmcp_live_echo", args(serde_json::json!({"text": "x"})))
        .await;
    assert_eq!(first_text(&echo), "x");
    registry.call("bmcp_dead_echo", None).await;
    registry.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // Which events reach a thread-local subscriber while other tests run is up to tracing's
    // global callsite cache, so only require that the HTTP exchange was traced at all.
    assert!(text.contains("127.0.0.1"), "no logs captured:\n{text}");
    assert!(
        !text.contains(SECRET),
        "a header value leaked into the logs"
    );
}
