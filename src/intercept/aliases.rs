//! Response ids a streaming Responses client was shown in place of the upstream's.
//!
//! A tool loop streams several upstream responses as one, and the client's SDK insists that
//! the id in `response.completed` is the one `response.created` announced: the first round's.
//! When the response is stored upstream, the conversation must be continued from the last
//! round's response (the first holds an injected call answered only in the next round), so
//! the bridge remembers which upstream id each shown id stands for and rewrites a later
//! request's `previous_response_id`. The memory is bounded and local to this process.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// How many aliases are kept; the oldest are forgotten first.
const CAPACITY: usize = 10_000;

/// Shown id → upstream id, bounded.
#[derive(Debug, Default)]
pub struct ResponseAliases {
    inner: Mutex<Aliases>,
}

#[derive(Debug, Default)]
struct Aliases {
    map: HashMap<String, String>,
    order: VecDeque<String>,
}

impl ResponseAliases {
    /// Remembers that the client knows upstream response `real` as `shown`.
    pub fn insert(&self, shown: String, real: String) {
        let mut a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if a.map.len() >= CAPACITY
            && let Some(oldest) = a.order.pop_front()
        {
            a.map.remove(&oldest);
        }
        if a.map.insert(shown.clone(), real).is_none() {
            a.order.push_back(shown);
        }
    }

    /// The upstream id a shown id stands for, if it is an alias.
    pub fn resolve(&self, shown: &str) -> Option<String> {
        let a = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        a.map.get(shown).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_and_forgets_the_oldest_past_capacity() {
        let aliases = ResponseAliases::default();
        for i in 0..=CAPACITY {
            aliases.insert(format!("shown_{i}"), format!("real_{i}"));
        }
        assert_eq!(aliases.resolve("shown_0"), None);
        assert_eq!(aliases.resolve("shown_1").as_deref(), Some("real_1"));
        assert_eq!(
            aliases.resolve(&format!("shown_{CAPACITY}")).as_deref(),
            Some(format!("real_{CAPACITY}").as_str())
        );
        assert_eq!(aliases.resolve("real_1"), None);
    }
}
