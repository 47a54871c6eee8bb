//! The built binary's other subcommands: `migrate`, `audit`, `config check`, and
//! `serve --no-migrate`, configured by a file or `AIBRIDGE_CONFIG`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Output, Stdio};

use sea_orm::sqlx::{self, Connection};
use serde_json::{Value, json};

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    crate::support::binary::command(dir, args, env)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn tables(url: &str) -> Vec<String> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'aibridge_%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows.into_iter().map(|(n,)| n).collect()
}

const TABLES: [&str; 6] = [
    "aibridge_interceptions",
    "aibridge_model_thoughts",
    "aibridge_schema_migrations",
    "aibridge_token_usages",
    "aibridge_tool_usages",
    "aibridge_user_prompts",
];

/// A config whose provider key and virtual key name env vars that are not set: `serve`
/// cannot run on it, but `migrate` and `audit` only need its database URL.
fn config_with_unset_secrets(db_url: &str) -> String {
    format!(
        "database_url = \"{db_url}\"\n\
         [[providers]]\nname = \"anthropic\"\nkind = \"anthropic\"\napi_key_env = \"AIBRIDGE_T_UNSET_PROVIDER_KEY\"\n\
         [[auth.keys]]\nactor_id = \"alice\"\nkey_env = \"AIBRIDGE_T_UNSET_VIRTUAL_KEY\"\n"
    )
}

#[tokio::test]
async fn migrate_and_audit_need_only_the_database_url() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let config = dir.path().join("aibridge.toml");
    std::fs::write(&config, config_with_unset_secrets(&db_url)).unwrap();
    let config = config.to_str().unwrap();

    let out = run(dir.path(), &["migrate", "--config", config], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("migrations applied to {db_url}\n")
    );
    assert_eq!(tables(&db_url).await, TABLES);

    // The file named by AIBRIDGE_CONFIG, not by --config.
    let out = run(
        dir.path(),
        &["audit", "interceptions", "--json"],
        &[("AIBRIDGE_CONFIG", config)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, json!({"interceptions": [], "next_cursor": null}));

    // `serve` does need the keys, and says which one is missing.
    let out = run(dir.path(), &["serve", "--config", config], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains(
            "providers[0].api_key_env: environment variable AIBRIDGE_T_UNSET_PROVIDER_KEY is not set"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_check_names_the_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[providers]]\nname = \"a\"\nkind = \"anthropic\"\n\
         [[providers]]\nname = \"b\"\nkind = \"anthropix\"\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["config", "check", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("providers[1].kind: `anthropix` is not `anthropic` or `openai`"),
        "{}",
        text(&out.stderr)
    );

    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "listen = \"127.0.0.1:1\"\nlisten_port = 2\n").unwrap();
    let out = run(
        dir.path(),
        &["config", "check"],
        &[("AIBRIDGE_CONFIG", unknown.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(unknown.to_str().unwrap()) && stderr.contains("listen_port"),
        "{stderr}"
    );

    // A good file through AIBRIDGE_CONFIG: what it resolves to, the key masked.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "listen = \"127.0.0.1:9999\"\ndatabase_url = \"log\"\n\
         [[providers]]\nname = \"corp\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1/\"\n\
         api_key_env = \"AIBRIDGE_T_KEY\"\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &["config", "check"],
        &[
            ("AIBRIDGE_CONFIG", good.to_str().unwrap()),
            ("AIBRIDGE_T_KEY", "sk-proj-abcdefghijklmnop1234"),
            ("http_proxy", "http://u:pw-s3cret@corp-proxy:3128"),
            ("AIBRIDGE_THREADS", "3"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("abcdefghijklmnop"), "{stdout}");
    assert!(!stdout.contains("s3cret"), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[..3],
        ["config ok", "listen: 127.0.0.1:9999", "database_url: log"]
    );
    assert!(
        lines[3].starts_with("provider corp: kind=openai base_url=http://127.0.0.1:1/v1 key=")
            && lines[3].ends_with(" proxy=corp-proxy:3128"),
        "{stdout}"
    );
    assert_eq!(lines[4], "auth: 0 virtual key(s), trusted headers off");
    assert_eq!(lines.last(), Some(&"serving threads: 3"));
}

/// Starts `aibridge serve` with these arguments on a free port and returns it once it listens.
fn serve(dir: &Path, args: &[&str]) -> std::process::Child {
    let mut child =
        crate::support::binary::command(dir, args, &[("AIBRIDGE_LISTEN", "127.0.0.1:0")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("listening on http://127.0.0.1:"),
        "{line:?}"
    );
    child
}

fn stop(mut child: std::process::Child) {
    let _ = child.kill();
    child.wait().unwrap();
}

#[tokio::test]
async fn serve_migrates_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}?mode=rwc", dir.path().join("s.db").display());
    let config = dir.path().join("aibridge.toml");
    std::fs::write(&config, format!("database_url = \"{db_url}\"\n")).unwrap();
    let config = config.to_str().unwrap();

    let child = serve(dir.path(), &["serve", "--no-migrate", "--config", config]);
    assert_eq!(tables(&db_url).await, Vec::<String>::new());
    stop(child);

    let child = serve(dir.path(), &["serve", "--config", config]);
    assert_eq!(tables(&db_url).await, TABLES);
    stop(child);
}
