//! `aibridge audit …` over a real SQLite file and a real PostgreSQL database.

use aibridge::audit::{
    AuditCommand, AuditError, Filters, GroupBy, InterceptionsArgs, PromptsArgs, ShowArgs,
    ToolsArgs, UsageArgs, run,
};
use aibridge::record::{Record, Recorder};
use serde_json::Value;

use crate::testdb::{TestDb, on_both_backends, sample};

on_both_backends!(
    interceptions_are_listed_newest_first_in_pages,
    filters_narrow_the_listing,
    show_prints_everything_recorded,
    usage_sums_tokens_by_group,
    tools_are_counted_by_kind_with_errors,
    prompts_are_searched_case_insensitively,
);

const DAY: i64 = 86_400;

/// Three interceptions of alice (Anthropic) on day 0, two of bob (OpenAI, one failing
/// injected tool and one client tool) on day 1. Returns the ids, oldest first.
async fn populate(db: &TestDb) -> Vec<String> {
    let recorder = db.recorder().await;
    let mut ids = Vec::new();
    let mut all = Vec::new();
    for i in 0..3 {
        let records = sample::interception("alice", "claude-sonnet-4-5", i * 10);
        ids.push(sample::id_of(&records).to_string());
        all.extend(records);
    }
    for i in 0..2 {
        let mut records = sample::interception("bob", "gpt-5", DAY + i * 10);
        for r in &mut records {
            match r {
                Record::Interception(r) => {
                    r.provider = "openai".into();
                    r.provider_name = "openai".into();
                    r.api = "responses".into();
                    r.client = "codex".into();
                }
                Record::ToolUsage(t) if i == 0 => {
                    t.invocation_error = Some("MCP server timed out".into());
                }
                Record::ToolUsage(t) => {
                    t.injected = false;
                    t.server_url = None;
                    t.tool = "shell".into();
                }
                _ => {}
            }
        }
        ids.push(sample::id_of(&records).to_string());
        all.extend(records);
    }
    recorder.record_batch(&all).await.unwrap();
    ids
}

async fn output(db: &TestDb, cmd: AuditCommand) -> String {
    let mut out = Vec::new();
    run(cmd, &db.url, &mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn json(db: &TestDb, cmd: AuditCommand) -> Value {
    serde_json::from_str(&output(db, cmd).await).unwrap()
}

fn list(filters: Filters, limit: u64, cursor: Option<String>, json: bool) -> AuditCommand {
    AuditCommand::Interceptions(InterceptionsArgs {
        filters,
        limit,
        cursor,
        json,
    })
}

fn ids_of(page: &Value) -> Vec<String> {
    page["interceptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn interceptions_are_listed_newest_first_in_pages(db: TestDb) {
    let mut ids = populate(&db).await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = json(&db, list(Filters::default(), 2, cursor, true)).await;
        seen.extend(ids_of(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids);

    let page = json(&db, list(Filters::default(), 50, None, true)).await;
    let newest = &page["interceptions"][0];
    assert_eq!(newest["initiator_id"], "bob");
    assert_eq!(newest["input_tokens"], 1200);
    assert_eq!(newest["output_tokens"], 340);
    assert_eq!(newest["outcome"], "completed");
    let started = newest["started_at"].as_str().unwrap();
    assert!(started.ends_with('Z'), "{started}");
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(started).unwrap(),
        sample::at(DAY + 10)
    );

    let table = output(&db, list(Filters::default(), 2, None, false)).await;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("STARTED"), "{table}");
    assert!(
        lines[1].contains(&ids[0]) && lines[1].contains("gpt-5"),
        "{table}"
    );
    assert_eq!(lines[3], format!("next page: --cursor {}", ids[1]));
}

async fn filters_narrow_the_listing(db: TestDb) {
    let ids = populate(&db).await;
    let count = |filters: Filters| {
        let db = &db;
        async move { ids_of(&json(db, list(filters, 50, None, true)).await).len() }
    };
    let f = Filters::default;
    assert_eq!(
        count(Filters {
            actor: Some("alice".into()),
            ..f()
        })
        .await,
        3
    );
    assert_eq!(
        count(Filters {
            model: Some("gpt-5".into()),
            ..f()
        })
        .await,
        2
    );
    assert_eq!(
        count(Filters {
            provider: Some("openai".into()),
            ..f()
        })
        .await,
        2
    );
    assert_eq!(
        count(Filters {
            client: Some("codex".into()),
            ..f()
        })
        .await,
        2
    );
    assert_eq!(
        count(Filters {
            client: Some("cursor".into()),
            ..f()
        })
        .await,
        0
    );
    let day1 = sample::at(DAY).to_rfc3339();
    assert_eq!(
        count(Filters {
            since: Some(day1.clone()),
            ..f()
        })
        .await,
        2
    );
    assert_eq!(
        count(Filters {
            until: Some(day1),
            ..f()
        })
        .await,
        3
    );
    let page = json(
        &db,
        list(
            Filters {
                since: Some(sample::at(10).to_rfc3339()),
                until: Some(sample::at(20).to_rfc3339()),
                ..f()
            },
            50,
            None,
            true,
        ),
    )
    .await;
    assert_eq!(ids_of(&page), vec![ids[1].clone()]);

    let mut out = Vec::new();
    let err = run(
        list(
            Filters {
                since: Some("last tuesday".into()),
                ..f()
            },
            50,
            None,
            true,
        ),
        &db.url,
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuditError::InvalidTime(_)), "{err}");
}

async fn show_prints_everything_recorded(db: TestDb) {
    let ids = populate(&db).await;
    let detail = json(
        &db,
        AuditCommand::Show(ShowArgs {
            id: ids[3].clone(),
            json: true,
        }),
    )
    .await;
    assert_eq!(detail["interception"]["id"], ids[3].as_str());
    assert_eq!(detail["interception"]["api"], "responses");
    assert_eq!(
        detail["interception"]["ended_metadata"]["tool_loop_iterations"],
        1
    );
    assert_eq!(
        detail["prompts"][0]["prompt"],
        "refactor the parser for bob — ünïcode ✓"
    );
    assert_eq!(detail["token_usages"][0]["cache_read_input_tokens"], 5000);
    assert_eq!(
        detail["token_usages"][0]["metadata"]["ephemeral_5m_input_tokens"],
        80
    );
    assert_eq!(
        detail["tool_usages"][0]["invocation_error"],
        "MCP server timed out"
    );
    assert_eq!(detail["tool_usages"][0]["input"]["timezone"], "UTC");
    assert_eq!(detail["thoughts"][0]["metadata"]["source"], "thinking");

    let text = output(
        &db,
        AuditCommand::Show(ShowArgs {
            id: ids[0].clone(),
            json: false,
        }),
    )
    .await;
    for expected in [
        "actor            alice",
        "refactor the parser for alice",
        "bmcp_time_get_current_time",
        "stdio:mcp-server-time",
        "[thinking] The parser has two entry points.",
        "outcome          completed",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} missing from:\n{text}"
        );
    }

    let mut out = Vec::new();
    let err = run(
        AuditCommand::Show(ShowArgs {
            id: "no-such-id".into(),
            json: false,
        }),
        &db.url,
        &mut out,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuditError::NotFound(_)), "{err}");
}

fn usage(group_by: GroupBy) -> AuditCommand {
    AuditCommand::Usage(UsageArgs {
        filters: Filters::default(),
        group_by,
        json: true,
    })
}

async fn usage_sums_tokens_by_group(db: TestDb) {
    populate(&db).await;
    let per_interception = 1200 + 340 + 5000 + 80;

    let by_actor = json(&db, usage(GroupBy::Actor)).await;
    assert_eq!(by_actor["group_by"], "actor");
    let rows = by_actor["usage"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["key"], "alice");
    assert_eq!(rows[0]["interceptions"], 3);
    assert_eq!(rows[0]["input_tokens"], 3 * 1200);
    assert_eq!(rows[0]["total_tokens"], 3 * per_interception);
    assert_eq!(rows[1]["key"], "bob");
    assert_eq!(rows[1]["total_tokens"], 2 * per_interception);

    let by_day = json(&db, usage(GroupBy::Day)).await;
    let days: Vec<&str> = by_day["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    let day0 = sample::at(2).format("%Y-%m-%d").to_string();
    let day1 = sample::at(DAY + 2).format("%Y-%m-%d").to_string();
    assert_eq!(days, vec![day0.as_str(), day1.as_str()]);

    let by_provider = json(&db, usage(GroupBy::Provider)).await;
    assert_eq!(by_provider["usage"][0]["key"], "anthropic");
    assert_eq!(by_provider["usage"][1]["key"], "openai");
    let by_model = json(&db, usage(GroupBy::Model)).await;
    assert_eq!(by_model["usage"][1]["key"], "gpt-5");

    let text = output(
        &db,
        AuditCommand::Usage(UsageArgs {
            filters: Filters {
                actor: Some("bob".into()),
                ..Filters::default()
            },
            group_by: GroupBy::Model,
            json: false,
        }),
    )
    .await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("MODEL"));
    assert!(
        lines[1].starts_with("gpt-5") && lines[1].ends_with(&(2 * per_interception).to_string())
    );
}

async fn tools_are_counted_by_kind_with_errors(db: TestDb) {
    populate(&db).await;
    let tools = json(
        &db,
        AuditCommand::Tools(ToolsArgs {
            filters: Filters::default(),
            json: true,
        }),
    )
    .await;
    let rows = tools["tools"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{tools}");
    assert_eq!(rows[0]["tool"], "bmcp_time_get_current_time");
    assert_eq!(rows[0]["injected"], true);
    assert_eq!(rows[0]["server_url"], "stdio:mcp-server-time");
    assert_eq!(rows[0]["calls"], 4);
    assert_eq!(rows[0]["errors"], 1);
    assert_eq!(rows[1]["tool"], "shell");
    assert_eq!(rows[1]["injected"], false);
    assert_eq!(rows[1]["calls"], 1);
    assert_eq!(rows[1]["errors"], 0);

    let text = output(
        &db,
        AuditCommand::Tools(ToolsArgs {
            filters: Filters::default(),
            json: false,
        }),
    )
    .await;
    assert!(
        text.contains("injected") && text.contains("client"),
        "{text}"
    );
}

fn prompts(grep: &str) -> AuditCommand {
    AuditCommand::Prompts(PromptsArgs {
        filters: Filters::default(),
        grep: Some(grep.into()),
        limit: 50,
        json: true,
    })
}

async fn prompts_are_searched_case_insensitively(db: TestDb) {
    let ids = populate(&db).await;
    let found = |v: Value| v["prompts"].as_array().unwrap().len();
    assert_eq!(found(json(&db, prompts("REFACTOR")).await), 5);
    assert_eq!(found(json(&db, prompts("for bob")).await), 2);
    assert_eq!(found(json(&db, prompts("%")).await), 0);
    assert_eq!(found(json(&db, prompts("_")).await), 0);
    let newest = json(&db, prompts("parser")).await;
    assert_eq!(newest["prompts"][0]["interception_id"], ids[4].as_str());
    assert_eq!(newest["prompts"][0]["initiator_id"], "bob");
}
