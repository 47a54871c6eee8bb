//! Output: aligned text tables for people, JSON for scripts.

use std::io::Write;

use serde::Serialize;

use super::AuditError;
use super::query::{InterceptionDetail, InterceptionPage, PromptRow, ToolRow, UsageRow};
use super::time::format_instant;

/// The widest a table cell gets before it is cut with `…`.
const MAX_CELL: usize = 72;

/// One JSON document, pretty-printed, newline-terminated.
pub(super) fn json(out: &mut dyn Write, value: &impl Serialize) -> Result<(), AuditError> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}

/// A text table with a header row.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(header: Vec<&'static str>) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| cell(&c)).collect());
    }

    fn write(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: Vec<&str>| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            padded.join("  ").trim_end().to_owned()
        };
        writeln!(out, "{}", line(self.header.clone()))?;
        for row in &self.rows {
            writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
        }
        Ok(())
    }
}

/// One line, at most `MAX_CELL` characters.
fn cell(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() > MAX_CELL {
        let cut: String = flat.chars().take(MAX_CELL - 1).collect();
        format!("{cut}…")
    } else {
        flat
    }
}

fn opt(value: &Option<impl ToString>) -> String {
    value
        .as_ref()
        .map_or_else(|| "-".to_owned(), ToString::to_string)
}

pub(super) fn interceptions(
    out: &mut dyn Write,
    page: &InterceptionPage,
) -> Result<(), AuditError> {
    let mut table = Table::new(vec![
        "STARTED",
        "ID",
        "ACTOR",
        "PROVIDER",
        "MODEL",
        "CLIENT",
        "STREAM",
        "OUTCOME",
        "STATUS",
        "IN",
        "OUT",
        "CACHE_READ",
    ]);
    for s in &page.interceptions {
        let i = &s.interception;
        table.row(vec![
            format_instant(&i.started_at),
            i.id.clone(),
            i.initiator_id.clone(),
            i.provider_name.clone(),
            i.model.clone(),
            i.client.clone(),
            if i.streaming { "yes" } else { "no" }.to_owned(),
            opt(&i.outcome),
            opt(&i.upstream_status),
            s.tokens.input_tokens.to_string(),
            s.tokens.output_tokens.to_string(),
            s.tokens.cache_read_input_tokens.to_string(),
        ]);
    }
    table.write(out)?;
    if let Some(cursor) = &page.next_cursor {
        writeln!(out, "next page: --cursor {cursor}")?;
    }
    Ok(())
}

pub(super) fn show(out: &mut dyn Write, d: &InterceptionDetail) -> Result<(), AuditError> {
    let i = &d.interception;
    let fields: [(&str, String); 16] = [
        ("id", i.id.clone()),
        ("actor", i.initiator_id.clone()),
        ("provider", format!("{} ({})", i.provider_name, i.provider)),
        ("api", i.api.clone()),
        ("model", i.model.clone()),
        ("client", i.client.clone()),
        ("user agent", opt(&i.user_agent)),
        ("session", opt(&i.client_session_id)),
        (
            "credential",
            format!("{} {}", i.credential_kind, opt(&i.credential_hint)),
        ),
        ("streaming", i.streaming.to_string()),
        ("started", format_instant(&i.started_at)),
        ("ended", opt(&i.ended_at.as_ref().map(format_instant))),
        ("outcome", opt(&i.outcome)),
        ("upstream status", opt(&i.upstream_status)),
        ("attempts", opt(&i.attempts)),
        ("metadata", i.metadata.to_string()),
    ];
    for (name, value) in fields {
        writeln!(out, "{name:<16} {}", cell(&value))?;
    }

    writeln!(out, "\nprompts ({})", d.prompts.len())?;
    for p in &d.prompts {
        writeln!(
            out,
            "  {}  {}",
            format_instant(&p.created_at),
            cell(&p.prompt)
        )?;
    }

    writeln!(out, "\ntoken usages ({})", d.token_usages.len())?;
    let mut table = Table::new(vec![
        "  RESPONSE",
        "IN",
        "OUT",
        "CACHE_READ",
        "CACHE_WRITE",
        "EXTRA",
    ]);
    for u in &d.token_usages {
        table.row(vec![
            format!("  {}", u.provider_response_id),
            u.input_tokens.to_string(),
            u.output_tokens.to_string(),
            u.cache_read_input_tokens.to_string(),
            u.cache_write_input_tokens.to_string(),
            u.metadata.to_string(),
        ]);
    }
    table.write(out)?;

    writeln!(out, "\ntool usages ({})", d.tool_usages.len())?;
    let mut table = Table::new(vec![
        "  TOOL", "INJECTED", "SERVER", "CALL", "INPUT", "ERROR",
    ]);
    for t in &d.tool_usages {
        table.row(vec![
            format!("  {}", t.tool),
            if t.injected { "yes" } else { "no" }.to_owned(),
            opt(&t.server_url),
            opt(&t.provider_tool_call_id),
            t.input.to_string(),
            opt(&t.invocation_error),
        ]);
    }
    table.write(out)?;

    writeln!(out, "\nthoughts ({})", d.thoughts.len())?;
    for t in &d.thoughts {
        let source = t
            .metadata
            .get("source")
            .and_then(|s| s.as_str())
            .unwrap_or("-");
        writeln!(out, "  [{source}] {}", cell(&t.content))?;
    }
    Ok(())
}

pub(super) fn usage(out: &mut dyn Write, group: &str, rows: &[UsageRow]) -> Result<(), AuditError> {
    let mut table = Table::new(vec![
        match group {
            "actor" => "ACTOR",
            "model" => "MODEL",
            "provider" => "PROVIDER",
            _ => "DAY",
        },
        "INTERCEPTIONS",
        "INPUT",
        "OUTPUT",
        "CACHE_READ",
        "CACHE_WRITE",
        "TOTAL",
    ]);
    for r in rows {
        table.row(vec![
            r.key.clone(),
            r.interceptions.to_string(),
            r.input_tokens.to_string(),
            r.output_tokens.to_string(),
            r.cache_read_input_tokens.to_string(),
            r.cache_write_input_tokens.to_string(),
            r.total_tokens.to_string(),
        ]);
    }
    Ok(table.write(out)?)
}

pub(super) fn tools(out: &mut dyn Write, rows: &[ToolRow]) -> Result<(), AuditError> {
    let mut table = Table::new(vec![
        "TOOL",
        "KIND",
        "SERVER",
        "CALLS",
        "ERRORS",
        "INTERCEPTIONS",
    ]);
    for r in rows {
        table.row(vec![
            r.tool.clone(),
            if r.injected { "injected" } else { "client" }.to_owned(),
            if r.server_url.is_empty() {
                "-".to_owned()
            } else {
                r.server_url.clone()
            },
            r.calls.to_string(),
            r.errors.to_string(),
            r.interceptions.to_string(),
        ]);
    }
    Ok(table.write(out)?)
}

pub(super) fn prompts(out: &mut dyn Write, rows: &[PromptRow]) -> Result<(), AuditError> {
    let mut table = Table::new(vec!["TIME", "INTERCEPTION", "ACTOR", "MODEL", "PROMPT"]);
    for r in rows {
        table.row(vec![
            format_instant(&r.created_at),
            r.interception_id.clone(),
            r.initiator_id.clone(),
            r.model.clone(),
            r.prompt.clone(),
        ]);
    }
    Ok(table.write(out)?)
}
