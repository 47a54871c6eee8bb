//! What the mock model says: the prompt's directives turned into an API-neutral plan.

use serde_json::Value;

/// The longest prompt quoted back in `Mock answer: …`, in characters.
const PROMPT_QUOTE_CHARS: usize = 200;
/// Thinking and tool arguments always stream in this many deltas.
pub(crate) const FIXED_DELTAS: usize = 2;

/// What triggered this turn: a user prompt, or the results of the model's tool calls.
#[derive(Debug)]
pub(crate) enum Trigger {
    Prompt(String),
    ToolResults(Vec<String>),
}

impl Trigger {
    fn text(&self) -> String {
        match self {
            Trigger::Prompt(p) => p.clone(),
            Trigger::ToolResults(r) => r.join(" | "),
        }
    }
}

/// A tool the client declared: its name and whether it is a freeform (`custom`) tool.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToolDecl<'a> {
    pub name: &'a str,
    pub custom: bool,
}

/// One tool call the mock model makes.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub name: String,
    pub input: Value,
    /// The arguments as streamed: compact JSON, or a custom tool's raw input text.
    pub arguments: String,
    pub custom: bool,
}

/// A failure the prompt asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// A provider-shaped error in the middle of the stream (blocking: 529 / 500).
    Overloaded,
    /// Responses only: `response.failed`.
    Failed,
    /// An HTTP error status with the provider's error body.
    Status(u16),
}

/// The planned answer, before any wire format.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub thinking: Option<String>,
    pub text: Option<String>,
    pub calls: Vec<Call>,
    pub cached: u64,
    pub fault: Option<Fault>,
}

impl Plan {
    /// Plans the answer to `trigger`, given the tools the request declares.
    pub(crate) fn new(trigger: &Trigger, tools: &[ToolDecl<'_>]) -> Plan {
        let source = trigger.text();
        let mut plan = Plan::default();
        let mut text_first = false;
        for directive in directives(&source) {
            match directive {
                Directive::Thinking => {
                    plan.thinking = Some(format!(
                        "Mock thinking about: {}",
                        cut(&source, PROMPT_QUOTE_CHARS / 2)
                    ));
                }
                Directive::Cached(n) => plan.cached = n,
                Directive::Error(kind) => {
                    plan.fault = Some(if kind == "failed" {
                        Fault::Failed
                    } else {
                        Fault::Overloaded
                    });
                }
                Directive::Status(code) => plan.fault = Some(Fault::Status(code)),
                Directive::Tool { name, input, text } => {
                    if let Some(decl) = tools.iter().find(|t| t.name == name) {
                        text_first |= text;
                        plan.calls.push(call(decl, input));
                    }
                }
            }
        }
        plan.text = if text_first {
            let names: Vec<&str> = plan.calls.iter().map(|c| c.name.as_str()).collect();
            Some(format!("Calling {}.", names.join(", ")))
        } else if plan.calls.is_empty() {
            Some(match trigger {
                Trigger::Prompt(p) => format!("Mock answer: {}", cut(p, PROMPT_QUOTE_CHARS)),
                Trigger::ToolResults(r) => format!("Tool result: {}", r.join(" | ")),
            })
        } else {
            None
        };
        plan
    }

    /// Keeps the first call only, as a model told `parallel_tool_calls: false` does.
    pub(crate) fn single_call(&mut self) {
        if self.calls.len() > 1 {
            self.calls.truncate(1);
            if self.text.is_some() {
                self.text = Some(format!("Calling {}.", self.calls[0].name));
            }
        }
    }

    /// The deterministic output token count (see the crate docs).
    pub(crate) fn output_tokens(&self, text_deltas: usize) -> u64 {
        let text = self
            .text
            .as_deref()
            .map_or(0, |t| pieces(t, text_deltas).len());
        let thinking = self
            .thinking
            .as_deref()
            .map_or(0, |t| pieces(t, FIXED_DELTAS).len());
        (1 + text + thinking + FIXED_DELTAS * self.calls.len()) as u64
    }

    /// Reasoning tokens (Responses): the thinking deltas.
    pub(crate) fn reasoning_tokens(&self) -> u64 {
        self.thinking
            .as_deref()
            .map_or(0, |t| pieces(t, FIXED_DELTAS).len()) as u64
    }

    /// How many deltas a stream of this plan carries (for the slow mode's delays).
    pub(crate) fn delta_count(&self, text_deltas: usize) -> u32 {
        u32::try_from(self.output_tokens(text_deltas) - 1).unwrap_or(u32::MAX)
    }
}

/// The deterministic input token count: 10 + number of messages.
pub(crate) fn input_tokens(messages: usize) -> u64 {
    10 + messages as u64
}

fn call(decl: &ToolDecl<'_>, input: Value) -> Call {
    let arguments = match (&input, decl.custom) {
        (Value::String(s), true) => s.clone(),
        _ => input.to_string(),
    };
    Call {
        name: decl.name.to_owned(),
        input,
        arguments,
        custom: decl.custom,
    }
}

/// The first `max` characters of `s`.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Splits `s` into `n` pieces of near-equal character counts (fewer if `s` is shorter).
pub(crate) fn pieces(s: &str, n: usize) -> Vec<&str> {
    let chars = s.chars().count();
    let n = n.max(1).min(chars);
    let mut out = Vec::with_capacity(n);
    let mut bounds = s
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(s.len()));
    let mut start = 0;
    let mut taken = 0;
    for k in 1..=n {
        let upto = chars * k / n;
        let end = bounds.nth(upto - taken).unwrap_or(s.len());
        // `nth` consumed the boundary at `upto`; the next piece starts there.
        taken = upto + 1;
        out.push(&s[start..end]);
        start = end;
    }
    out
}

#[derive(Debug, PartialEq)]
enum Directive {
    Thinking,
    Cached(u64),
    Error(String),
    Status(u16),
    Tool {
        name: String,
        input: Value,
        text: bool,
    },
}

/// All `[[…]]` directives in `text`, in order; malformed ones are ignored.
fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("[[") {
        rest = &rest[i + 2..];
        if let Some((directive, used)) = directive(rest) {
            out.push(directive);
            rest = &rest[used..];
        }
    }
    out
}

fn directive(s: &str) -> Option<(Directive, usize)> {
    if s.starts_with("thinking]]") {
        return Some((Directive::Thinking, "thinking]]".len()));
    }
    let (kind, after) = s.split_once(':')?;
    let offset = kind.len() + 1;
    match kind {
        "tool" | "text-then-tool" => {
            let name_len = after
                .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
                .unwrap_or(after.len());
            let name = &after[..name_len];
            let tail = &after[name_len..];
            let trimmed = tail.trim_start();
            let mut used = offset + name_len + (tail.len() - trimmed.len());
            let input = if trimmed.starts_with("]]") {
                Value::Object(serde_json::Map::new())
            } else {
                let mut values = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
                let value = values.next()?.ok()?;
                let end = values.byte_offset();
                let after_json = &trimmed[end..];
                used += end + (after_json.len() - after_json.trim_start().len());
                value
            };
            let close = &s[used..];
            if name.is_empty() || !close.starts_with("]]") {
                return None;
            }
            let directive = Directive::Tool {
                name: name.to_owned(),
                input,
                text: kind == "text-then-tool",
            };
            Some((directive, used + 2))
        }
        "cached" | "status" | "error" => {
            let (arg, _) = after.split_once("]]")?;
            let used = offset + arg.len() + 2;
            let directive = match kind {
                "cached" => Directive::Cached(arg.trim().parse().ok()?),
                "status" => Directive::Status(arg.trim().parse().ok()?),
                _ => Directive::Error(arg.trim().to_owned()),
            };
            Some((directive, used))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pieces_cover_the_text_exactly() {
        assert_eq!(pieces("abcdefgh", 4), vec!["ab", "cd", "ef", "gh"]);
        assert_eq!(pieces("abc", 4), vec!["a", "b", "c"]);
        assert_eq!(pieces("{}", 2), vec!["{", "}"]);
        assert_eq!(pieces("héllo wörld", 3).concat(), "héllo wörld");
        assert!(pieces("", 4).is_empty());
    }

    #[test]
    fn parses_directives_with_nested_json() {
        let d = directives(r#"hi [[tool:get_x {"a":[[1]],"b":"]]"}]] [[thinking]] [[status:429]]"#);
        assert_eq!(
            d,
            vec![
                Directive::Tool {
                    name: "get_x".into(),
                    input: json!({"a":[[1]],"b":"]]"}),
                    text: false
                },
                Directive::Thinking,
                Directive::Status(429),
            ]
        );
        assert_eq!(
            directives("[[text-then-tool:t]] [[cached:7]] [[tool: bad]] [[nope]]"),
            vec![
                Directive::Tool {
                    name: "t".into(),
                    input: json!({}),
                    text: true
                },
                Directive::Cached(7),
            ]
        );
    }

    #[test]
    fn plans_calls_only_for_declared_tools() {
        let tools = [ToolDecl {
            name: "get_weather",
            custom: false,
        }];
        let trigger =
            Trigger::Prompt(r#"[[tool:get_weather {"city":"Paris"}]] [[tool:other]]"#.into());
        let plan = Plan::new(&trigger, &tools);
        assert_eq!(plan.calls.len(), 1);
        assert_eq!(plan.calls[0].arguments, r#"{"city":"Paris"}"#);
        assert!(plan.text.is_none());
        assert_eq!(plan.output_tokens(4), 3);
    }

    #[test]
    fn plain_prompt_and_tool_results_answer_text() {
        let plan = Plan::new(&Trigger::Prompt("hello".into()), &[]);
        assert_eq!(plan.text.as_deref(), Some("Mock answer: hello"));
        assert_eq!(plan.output_tokens(4), 5);
        let plan = Plan::new(&Trigger::ToolResults(vec!["a".into(), "b".into()]), &[]);
        assert_eq!(plan.text.as_deref(), Some("Tool result: a | b"));
        let long = "x".repeat(500);
        let plan = Plan::new(&Trigger::Prompt(long), &[]);
        assert_eq!(
            plan.text.map(|t| t.len()),
            Some("Mock answer: ".len() + 200)
        );
    }
}
