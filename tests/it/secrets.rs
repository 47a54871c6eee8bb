//! Secrets never leak: a run of the built binary with known provider keys, virtual keys and
//! an MCP header token, trace logging and API dumps on; afterwards the whole log, every
//! file of the database, the dumps, the metrics and every response body are searched.

use std::path::Path;
use std::time::Duration;

use mock_upstream::MockUpstream;
use serde_json::json;

use crate::support::binary::Served;

const ANTHROPIC_KEY: &str = "sk-ant-api03-PROVIDERSECRET-0123456789abcdef";
const OPENAI_KEY: &str = "sk-proj-OPENAISECRET-0123456789abcdef";
const ALICE_KEY: &str = "vk-alice-VIRTUALSECRET-0123456789";
const WRONG_KEY: &str = "vk-wrong-WRONGSECRET-0123456789";
const MCP_TOKEN: &str = "mcp-tok-MCPSECRET-0123456789abcdef";
/// What must appear nowhere: each secret's distinctive middle.
const NEEDLES: [&str; 5] = [
    "PROVIDERSECRET",
    "OPENAISECRET",
    "VIRTUALSECRET",
    "WRONGSECRET",
    "MCPSECRET",
];

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for needle in NEEDLES {
        assert!(!text.contains(needle), "{what} contains {needle}");
    }
}

fn files_under(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn keys_and_tokens_appear_in_no_log_record_dump_metric_or_error() {
    let mock = MockUpstream::start().await;
    let mcp = test_mcp::serve_http("127.0.0.1:0".parse().unwrap(), test_mcp::Options::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dumps = dir.path().join("dumps");
    let db_path = dir.path().join("audit.db");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{db}?mode=rwc\"\n\
         [recording]\nspool_dir = \"{spool}\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\nbase_url = \"{up}\"\napi_key_env = \"UP_ANTHROPIC\"\n\
         [[providers]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{up}/v1\"\napi_key_env = \"UP_OPENAI\"\n\
         [[auth.keys]]\nactor_id = \"alice\"\nkey_env = \"ALICE_KEY\"\n\
         [[mcp.servers]]\nname = \"test\"\nurl = \"{mcp}\"\nheaders = {{ Authorization = \"Bearer ${{MCP_TOKEN}}\" }}\n",
        db = db_path.display(),
        spool = dir.path().display(),
        up = mock.url(),
        mcp = mcp.url(),
    );
    let mut served = Served::start(
        dir.path(),
        &config,
        &[
            ("UP_ANTHROPIC", ANTHROPIC_KEY),
            ("UP_OPENAI", OPENAI_KEY),
            ("ALICE_KEY", ALICE_KEY),
            ("MCP_TOKEN", MCP_TOKEN),
            ("AIBRIDGE_LOG", "trace"),
            ("AIBRIDGE_DUMP_DIR", dumps.to_str().unwrap()),
        ],
    );
    let http = reqwest::Client::new();
    let url = served.url.clone();
    for _ in 0..200 {
        let ready = http.get(format!("{url}/readyz")).send().await.unwrap();
        if ready.status() == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut bodies = Vec::new();
    let messages = |key: &'static str, prompt: &str, stream: bool| {
        http.post(format!("{url}/anthropic/v1/messages"))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
            .json(
                &json!({"model": "claude-s", "max_tokens": 64, "stream": stream,
                "messages": [{"role": "user", "content": prompt}]}),
            )
            .send()
    };
    for (key, prompt, stream, status) in [
        (ALICE_KEY, "hello", false, 200),
        (
            ALICE_KEY,
            r#"[[tool:bmcp_test_echo {"text": "x"}]]"#,
            false,
            200,
        ),
        (ALICE_KEY, "hello", true, 200),
        (WRONG_KEY, "hello", false, 401),
        (ALICE_KEY, "[[status:429]]", false, 429),
    ] {
        let resp = messages(key, prompt, stream).await.unwrap();
        assert_eq!(resp.status(), status, "{prompt}");
        bodies.push(resp.text().await.unwrap());
    }
    assert!(bodies[1].contains("Tool result"), "{}", bodies[1]);
    let chat = http
        .post(format!("{url}/openai/v1/chat/completions"))
        .bearer_auth(ALICE_KEY)
        .json(&json!({"model": "gpt-s", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(chat.status(), 200);
    bodies.push(chat.text().await.unwrap());
    let models = http
        .get(format!("{url}/anthropic/v1/models"))
        .header("x-api-key", ALICE_KEY)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 200);
    bodies.push(models.text().await.unwrap());
    let metrics = http.get(format!("{url}/metrics")).send().await.unwrap();
    let page = metrics.text().await.unwrap();
    // The bridge, MCP and pipeline metrics share one `aibridge_` prefix, never doubled.
    for name in [
        "aibridge_interceptions_total{",
        "aibridge_injected_tool_invocations_total{",
        "aibridge_mcp_servers_connected ",
        "aibridge_record_queue_depth ",
        "# TYPE aibridge_records counter",
    ] {
        assert!(page.contains(name), "{name} missing from /metrics:\n{page}");
    }
    assert!(!page.contains("aibridge_aibridge_"), "{page}");
    bodies.push(page);

    // The keys did reach the upstream, where they belong.
    let got = mock.requests();
    assert!(
        got.iter()
            .any(|r| r.header("x-api-key") == Some(ANTHROPIC_KEY))
    );
    assert!(
        got.iter()
            .any(|r| r.header("authorization") == Some(&format!("Bearer {OPENAI_KEY}")))
    );

    served.terminate();
    assert_eq!(served.wait(Duration::from_secs(30)).await, Some(0));
    for (i, body) in bodies.iter().enumerate() {
        assert_clean(&format!("response body {i}"), body.as_bytes());
    }
    let logs = served.logs();
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert_clean("the log", logs.as_bytes());

    let mut files = Vec::new();
    files_under(dir.path(), &mut files);
    let dumped: Vec<_> = files.iter().filter(|p| p.starts_with(&dumps)).collect();
    assert!(dumped.len() >= 5, "{files:?}");
    let mut hints = 0;
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        assert_clean(&path.display().to_string(), &bytes);
        hints += usize::from(String::from_utf8_lossy(&bytes).contains("sk-a…cdef"));
    }
    // The database and the dumps keep the masked hint of the key used.
    assert!(hints >= 2, "{hints}");
}
