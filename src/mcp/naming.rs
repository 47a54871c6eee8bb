//! Injected tool names: `bmcp_<server>_<tool>`, valid for every provider.
//!
//! Providers accept `^[a-zA-Z0-9_-]{1,64}$`. Any other character becomes `_`. A name longer
//! than 64 characters is cut to 55 and gets `_` plus 8 hex digits of a hash of the server and
//! raw tool name. When two tools end up with the same name, *all* of them get that hash
//! suffix, so the outcome does not depend on which server answered first.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

/// Prefix of every injected tool name.
pub const PREFIX: &str = "bmcp_";
/// Longest name providers accept.
pub const MAX_LEN: usize = 64;
const HASH_LEN: usize = 8;
const CUT_LEN: usize = MAX_LEN - 1 - HASH_LEN;

/// The name chosen for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedName {
    /// The injected name.
    pub name: String,
    /// Whether it had to be disambiguated because another tool wanted the same name.
    pub collided: bool,
}

/// Whether `name` is acceptable to every provider.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn short_hash(server: &str, tool: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(server.as_bytes());
    hasher.update([0]);
    hasher.update(tool.as_bytes());
    let digest = hasher.finalize();
    digest
        .iter()
        .take(HASH_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn with_hash(base: &str, server: &str, tool: &str) -> String {
    // `base` is ASCII after sanitizing, so byte slicing is on char boundaries.
    let cut = &base[..base.len().min(CUT_LEN)];
    format!("{cut}_{}", short_hash(server, tool))
}

/// The name a tool gets when nothing collides with it.
pub fn base_name(server: &str, tool: &str) -> String {
    let base = sanitize(&format!("{PREFIX}{server}_{tool}"));
    if base.len() > MAX_LEN {
        with_hash(&base, server, tool)
    } else {
        base
    }
}

/// Names for `(server, raw tool)` pairs, returned in the same order.
///
/// The pairs must be unique. The result depends only on the set of pairs, not their order.
pub fn assign(pairs: &[(&str, &str)]) -> Vec<AssignedName> {
    let bases: Vec<String> = pairs.iter().map(|(s, t)| base_name(s, t)).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for base in &bases {
        *counts.entry(base.as_str()).or_default() += 1;
    }
    let mut names: Vec<AssignedName> = pairs
        .iter()
        .zip(&bases)
        .map(|((server, tool), base)| {
            if counts.get(base.as_str()).copied().unwrap_or(0) > 1 {
                AssignedName {
                    name: with_hash(base, server, tool),
                    collided: true,
                }
            } else {
                AssignedName {
                    name: base.clone(),
                    collided: false,
                }
            }
        })
        .collect();
    // A hashed name could, in theory, equal another tool's plain name; number such repeats
    // in the order of the (sorted) pairs so that the result stays unique and deterministic.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| pairs[a].cmp(&pairs[b]));
    let mut seen: HashSet<String> = HashSet::new();
    for i in order {
        let Some(entry) = names.get_mut(i) else {
            continue;
        };
        let mut candidate = entry.name.clone();
        let mut n = 2;
        while seen.contains(&candidate) {
            let suffix = format!("_{n}");
            let keep = entry.name.len().min(MAX_LEN - suffix.len());
            candidate = format!("{}{suffix}", &entry.name[..keep]);
            n += 1;
        }
        if candidate != entry.name {
            entry.name = candidate.clone();
            entry.collided = true;
        }
        seen.insert(candidate);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass_through() {
        assert_eq!(
            base_name("time", "get_current_time"),
            "bmcp_time_get_current_time"
        );
        assert_eq!(base_name("e", "get-sum"), "bmcp_e_get-sum");
    }

    #[test]
    fn invalid_characters_become_underscores() {
        let name = base_name("gh", "repos.list/all ü");
        assert_eq!(name, "bmcp_gh_repos_list_all__");
        assert!(is_valid(&name));
    }

    #[test]
    fn long_names_are_cut_with_a_hash() {
        let long = "x".repeat(100);
        let a = base_name("s", &long);
        let b = base_name("s", &format!("{long}y"));
        assert_eq!(a.len(), MAX_LEN);
        assert!(is_valid(&a));
        assert_ne!(a, b, "different tools must keep different names");
        assert_eq!(a, base_name("s", &long), "the cut is deterministic");
    }

    #[test]
    fn exactly_64_is_kept() {
        let tool = "t".repeat(MAX_LEN - "bmcp_s_".len());
        assert_eq!(base_name("s", &tool).len(), MAX_LEN);
        assert!(!base_name("s", &tool).contains(|c: char| c.is_ascii_digit()));
    }

    #[test]
    fn collisions_get_hash_suffixes_independent_of_order() {
        let pairs = [("a", "b.c"), ("a", "b_c"), ("a", "other")];
        let names = assign(&pairs);
        assert!(names[0].collided && names[1].collided && !names[2].collided);
        assert_ne!(names[0].name, names[1].name);
        assert!(names[0].name.starts_with("bmcp_a_b_c_"));
        assert_eq!(names[2].name, "bmcp_a_other");
        let reversed = assign(&[pairs[2], pairs[1], pairs[0]]);
        assert_eq!(reversed[2], names[0]);
        assert_eq!(reversed[1], names[1]);
        for n in &names {
            assert!(is_valid(&n.name), "{}", n.name);
        }
    }

    #[test]
    fn cross_server_collisions() {
        let names = assign(&[("x_y", "z"), ("x", "y_z")]);
        assert_ne!(names[0].name, names[1].name);
        assert!(names.iter().all(|n| n.collided));
    }
}
