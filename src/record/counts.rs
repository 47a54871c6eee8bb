//! [`TokenCounts`]: the named token counts of a response beyond the four usage columns.

use std::borrow::Cow;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Number;

/// Token counts by name (`reasoning_tokens`, `ephemeral_5m_input_tokens`, …), in the order
/// they were first read, serialized as one JSON object.
///
/// A response has a handful of them, read once and written once: a list with names the
/// providers document kept as static strings costs a fraction of a JSON map, which hashes
/// every name and allocates it and its value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenCounts(Vec<(Cow<'static, str>, Number)>);

/// Count names the providers' API references document: they are kept without an
/// allocation. Any other name is kept as it came.
const KNOWN: &[&str] = &[
    "accepted_prediction_tokens",
    "audio_tokens",
    "cached_tokens",
    "ephemeral_1h_input_tokens",
    "ephemeral_5m_input_tokens",
    "image_tokens",
    "input_audio_tokens",
    "input_image_tokens",
    "input_text_tokens",
    "output_audio_tokens",
    "reasoning_tokens",
    "rejected_prediction_tokens",
    "text_tokens",
    "total_tokens",
    "web_fetch_requests",
    "web_search_requests",
];

fn known(name: &str) -> Option<&'static str> {
    KNOWN.iter().find(|known| **known == name).copied()
}

/// `name` as a static string when it is a documented one, else a copy.
fn count_name(name: &str) -> Cow<'static, str> {
    known(name).map_or_else(|| Cow::Owned(name.to_owned()), Cow::Borrowed)
}

/// `prefix` + `name`, as a static string when that is a documented name.
pub(crate) fn prefixed_count_name(prefix: &str, name: &str) -> Cow<'static, str> {
    KNOWN
        .iter()
        .find(|known| known.strip_prefix(prefix) == Some(name))
        .map_or_else(
            || Cow::Owned(format!("{prefix}{name}")),
            |known| Cow::Borrowed(*known),
        )
}

impl TokenCounts {
    /// No counts.
    pub fn new() -> TokenCounts {
        TokenCounts(Vec::new())
    }

    /// No counts, with room for `n` without reallocating.
    pub fn with_capacity(n: usize) -> TokenCounts {
        TokenCounts(Vec::with_capacity(n))
    }

    /// Sets the count `name`; a count already there keeps its place and takes the new value.
    pub fn set(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<Number>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name, value)),
        }
    }

    /// The count `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Number> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// Whether there are no counts.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many counts there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The counts in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Number)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v))
    }
}

impl<N: Into<Cow<'static, str>>, V: Into<Number>> FromIterator<(N, V)> for TokenCounts {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut counts = TokenCounts::new();
        for (n, v) in iter {
            counts.set(n, v);
        }
        counts
    }
}

impl IntoIterator for TokenCounts {
    type Item = (Cow<'static, str>, Number);
    type IntoIter = std::vec::IntoIter<(Cow<'static, str>, Number)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for TokenCounts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name.as_ref(), value)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for TokenCounts {
    /// From a JSON object; members that are not numbers are skipped, as when the counts
    /// were read from a response.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = TokenCounts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of token counts")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TokenCounts, A::Error> {
                let mut counts = TokenCounts::new();
                while let Some(CountName(name)) = map.next_key()? {
                    if let serde_json::Value::Number(n) = map.next_value()? {
                        counts.set(name, n);
                    }
                }
                Ok(counts)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// A count's name, read without a copy when it is a documented one.
pub(crate) struct CountName(pub(crate) Cow<'static, str>);

impl<'de> Deserialize<'de> for CountName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = CountName;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count name")
            }
            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<CountName, E> {
                Ok(CountName(count_name(name)))
            }
            fn visit_string<E: serde::de::Error>(self, name: String) -> Result<CountName, E> {
                Ok(CountName(
                    known(&name).map_or(Cow::Owned(name), Cow::Borrowed),
                ))
            }
        }
        d.deserialize_str(Visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_set_twice_keeps_its_place_and_takes_the_new_value() {
        let mut c = TokenCounts::new();
        c.set("reasoning_tokens", 1);
        c.set(count_name("custom_tokens"), 2);
        c.set("reasoning_tokens", 3);
        assert_eq!(c.len(), 2);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"reasoning_tokens":3,"custom_tokens":2}"#
        );
        assert_eq!(c.get("reasoning_tokens"), Some(&Number::from(3)));
        assert_eq!(c.get("missing"), None);
    }

    #[test]
    fn counts_round_trip_through_json_and_skip_what_is_not_a_number() {
        let c: TokenCounts = serde_json::from_str(
            r#"{"web_search_requests":2,"note":"x","odd\"name":1.5,"nested":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"web_search_requests":2,"odd\"name":1.5})
        );
        let back: TokenCounts = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        assert!(serde_json::from_str::<TokenCounts>("[1]").is_err());
    }

    #[test]
    fn documented_names_are_not_copied() {
        assert!(matches!(count_name("reasoning_tokens"), Cow::Borrowed(_)));
        assert!(matches!(count_name("reasoning_tokens2"), Cow::Owned(_)));
        assert!(matches!(
            prefixed_count_name("input_", "audio_tokens"),
            Cow::Borrowed("input_audio_tokens")
        ));
        assert_eq!(
            prefixed_count_name("input_", "video_tokens"),
            "input_video_tokens"
        );
    }
}
