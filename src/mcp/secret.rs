//! Secret strings (MCP header values, child env values) and `${VAR}` expansion.

use std::fmt;

/// A value that must never be logged: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it (a header, a child's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replace every `${NAME}` with `env(NAME)`. `$$` is a literal `$`; any other `$` is kept.
/// A missing variable is an error naming the variable, never a value.
pub fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Secret, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated `${` in value".to_owned())?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("invalid variable name `{name}` in `${{…}}`"));
            }
            let value =
                env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Secret(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn expands_and_escapes() {
        let got = expand_env("Bearer ${TOKEN}", &env).unwrap();
        assert_eq!(got.expose(), "Bearer s3cr3t");
        assert_eq!(expand_env("a$$b$c", &env).unwrap().expose(), "a$b$c");
        assert_eq!(expand_env("plain", &env).unwrap().expose(), "plain");
    }

    #[test]
    fn missing_variable_names_it() {
        let e = expand_env("Bearer ${NOPE}", &env).unwrap_err();
        assert!(e.contains("NOPE"), "{e}");
        assert!(expand_env("${TOKEN", &env).is_err());
        assert!(expand_env("${1X}", &env).is_err());
    }

    #[test]
    fn debug_hides_value() {
        let s = Secret::new("s3cr3t");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
    }
}
