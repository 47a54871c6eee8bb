//! `${VAR}` expansion into [`Secret`]s (MCP header values, child env values).

pub use crate::secret::Secret;

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
    Ok(Secret::new(out))
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
