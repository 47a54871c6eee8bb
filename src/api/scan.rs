//! A structural JSON scanner for request bodies: it finds the raw bytes of an object's
//! members and an array's elements without decoding what it skips.
//!
//! A coding client's request is mostly text the bridge never reads (system prompt, tool
//! definitions, earlier turns with file contents), full of escapes. serde_json skips a
//! string byte by byte; this scanner finds a string's quotes and backslashes 64 bytes at a
//! time with SIMD compares and works out which bytes are escaped for the whole block at
//! once, so reading the few fields the bridge needs from a 100 KB body costs a fraction of
//! a full parse.
//! What the bridge reads is then decoded by serde_json from its own span.
//!
//! The structure is checked as strictly as JSON requires (brackets, commas, colons,
//! literals, number syntax, nesting depth); inside skipped strings only the escapes are
//! followed, so a raw control character or bad UTF-8 in text the bridge does not read is
//! left for the upstream to refuse, as it would refuse it without the bridge.

use memchr::memchr2;
use wide::u8x16;

/// Nesting deeper than this is refused, as serde_json refuses it.
const MAX_DEPTH: usize = 128;

/// The body is not well-formed JSON (the caller asks serde_json for the exact message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One member of an object: its key (decoded when it holds escapes, else borrowed) and the
/// raw bytes of its value.
type Member<'a> = (std::borrow::Cow<'a, str>, &'a [u8]);

/// An object's members, and the elements of one of its arrays.
type Scanned<'a> = (Vec<Member<'a>>, Option<Vec<&'a [u8]>>);

/// The members of the JSON object that is all of `json` (whitespace around it allowed), in
/// order.
#[cfg(test)]
fn members(json: &[u8]) -> Result<Vec<Member<'_>>, Malformed> {
    members_and_elements(json, "").map(|(members, _)| members)
}

/// [`members`], and the raw elements of the array under `key` (the last such member), found
/// in the same pass: the array is usually most of the body, and is not scanned twice.
/// `None` when no member `key` holds an array.
fn members_and_elements<'a>(json: &'a [u8], key: &str) -> Result<Scanned<'a>, Malformed> {
    let mut s = Scanner { b: json, i: 0 };
    s.ws();
    let mut out = Vec::new();
    let mut items = None;
    s.expect(b'{')?;
    s.ws();
    if s.peek() == Some(b'}') {
        s.i += 1;
    } else {
        loop {
            s.ws();
            let name = s.key()?;
            s.ws();
            s.expect(b':')?;
            s.ws();
            let start = s.i;
            if !key.is_empty() && name == key && s.peek() == Some(b'[') {
                let mut found = Vec::new();
                s.array(1, Some(&mut found))?;
                items = Some(found);
            } else {
                if !key.is_empty() && name == key {
                    items = None;
                }
                s.value(1)?;
            }
            out.push((name, &json[start..s.i]));
            s.ws();
            match s.next() {
                Some(b',') => continue,
                Some(b'}') => break,
                _ => return Err(Malformed),
            }
        }
    }
    s.end()?;
    Ok((out, items))
}

/// A request body read by the scanner: its top-level members, and the elements of its main
/// list (`messages`, `input`) when that is an array.
pub(crate) struct Body<'a> {
    members: Vec<Member<'a>>,
    items: Option<Vec<&'a [u8]>>,
}

impl<'a> Body<'a> {
    /// Scans `json`, a JSON object, collecting the elements of the array under `list`.
    pub(crate) fn read(json: &'a [u8], list: &str) -> Result<Body<'a>, super::BadRequest> {
        let (members, items) =
            members_and_elements(json, list).map_err(|_| super::not_json(json))?;
        Ok(Body { members, items })
    }

    /// The raw value of member `name` (the last one, if the key repeats).
    pub(crate) fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.members
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
    }

    /// Member `name` decoded; `None` when absent or null.
    pub(crate) fn decode<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, super::BadRequest> {
        match self.raw(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_slice::<Option<T>>(raw)
                .map_err(|e| super::BadRequest::new(format!("{name}: {e}"))),
        }
    }

    /// The elements of the list, when it is an array.
    pub(crate) fn items(&self) -> Option<&[&'a [u8]]> {
        self.items.as_deref()
    }
}

/// A message's `content`, read for its prompt: a string, or an array of parts.
pub(crate) enum Content<'a> {
    /// Plain string content.
    Text(String),
    /// The parts that have a string `type` and `text` (others, such as images, are left out).
    Parts(Vec<Part<'a>>),
}

/// A content part's `type` and `text`, borrowed from the body unless they hold escapes: a
/// coding client's text parts are most of a big request, and are not copied to be looked at.
#[derive(serde::Deserialize)]
pub(crate) struct Part<'a> {
    #[serde(rename = "type", borrow)]
    pub(crate) kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    pub(crate) text: std::borrow::Cow<'a, str>,
}

impl<'a> Content<'a> {
    /// Reads the raw JSON value of a `content` member; `None` for null, other types, or
    /// malformed JSON.
    pub(crate) fn read(raw: &'a [u8]) -> Option<Content<'a>> {
        let mut s = Scanner { b: raw, i: 0 };
        s.ws();
        match s.peek()? {
            b'"' => serde_json::from_slice(raw).ok().map(Content::Text),
            b'[' => {
                let mut elements = Vec::new();
                s.array(1, Some(&mut elements)).ok()?;
                s.end().ok()?;
                let parts = elements
                    .into_iter()
                    .filter_map(|part| serde_json::from_slice(part).ok())
                    .collect();
                Some(Content::Parts(parts))
            }
            _ => None,
        }
    }

    /// The string itself, or the non-empty texts of the parts of type `part_type` joined by
    /// newlines; `None` when that is empty.
    pub(crate) fn text(self, part_type: &str) -> Option<String> {
        let text = match self {
            Content::Text(text) => text,
            Content::Parts(parts) => join_lines(
                parts
                    .iter()
                    .filter(|p| p.kind == part_type && !p.text.is_empty())
                    .map(|p| &*p.text),
            ),
        };
        (!text.is_empty()).then_some(text)
    }
}

/// `texts` joined by newlines, in one allocation.
pub(crate) fn join_lines<'t>(texts: impl Iterator<Item = &'t str> + Clone) -> String {
    let len = texts.clone().map(|t| t.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len.saturating_sub(1));
    for (n, text) in texts.enumerate() {
        if n > 0 {
            out.push('\n');
        }
        out.push_str(text);
    }
    out
}

/// Where the first `"` or `\\` in `s` is. Text in a coding client's request has an escape
/// every dozen bytes or so (code, newlines), too close for `memchr`'s set-up to pay off, so
/// the first 32 bytes are searched eight at a time in a `u64` (the lowest match of the
/// zero-byte test is exact); longer runs go to `memchr`.
fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = ONES * b'"' as u64;
    const BACKSLASHES: u64 = ONES * b'\\' as u64;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    for word in s.chunks_exact(8).take(4) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let found = zero_bytes(w ^ QUOTES) | zero_bytes(w ^ BACKSLASHES);
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    memchr2(b'"', b'\\', &s[at..]).map(|p| at + p)
}

/// The quotes and the backslashes of 16 bytes, one bit per byte (bit 0 is the first),
/// by SIMD compares (SSE2 on x86-64, NEON on aarch64, through `wide`).
fn specials16(lanes: &[u8; 16]) -> (u32, u32) {
    let v = u8x16::new(*lanes);
    (
        v.simd_eq(u8x16::splat(b'"')).to_bitmask(),
        v.simd_eq(u8x16::splat(b'\\')).to_bitmask(),
    )
}

/// The quotes and the backslashes of a 64-byte block.
fn specials(block: &[u8; 64]) -> (u64, u64) {
    let mut quotes = 0u64;
    let mut backslashes = 0u64;
    for (k, lanes) in block.as_chunks::<16>().0.iter().enumerate() {
        let (q, b) = specials16(lanes);
        quotes |= u64::from(q) << (16 * k);
        backslashes |= u64::from(b) << (16 * k);
    }
    (quotes, backslashes)
}

/// The `n`s and `t`s of a 64-byte block: after `"` and `\\`, the letters of nearly every
/// escape in code and prose (`\\n`, `\\t`).
fn common_letters(block: &[u8; 64]) -> u64 {
    let mut found = 0u64;
    for (k, lanes) in block.as_chunks::<16>().0.iter().enumerate() {
        let v = u8x16::new(*lanes);
        let hits = v.simd_eq(u8x16::splat(b'n')) | v.simd_eq(u8x16::splat(b't'));
        found |= u64::from(hits.to_bitmask()) << (16 * k);
    }
    found
}

/// The bytes of a block that a backslash escapes, given its backslashes and whether its
/// first byte is escaped by the block before (`carry`, 0 or 1); and whether the next
/// block's first byte is escaped. In a run of backslashes every second one escapes the
/// byte after it, so what is escaped depends on where each run starts: a run that starts
/// on an even bit escapes the odd bits after its start, one that starts on an odd bit the
/// even ones. Adding each odd-starting run's first bit to the backslashes carries it past
/// the run's end, which tells the two kinds apart for all runs at once.
fn escaped_bytes(backslashes: u64, carry: u64) -> (u64, u64) {
    const EVEN: u64 = 0x5555_5555_5555_5555;
    // An escaped backslash starts no run.
    let backslashes = backslashes & !carry;
    let after_backslash = (backslashes << 1) | carry;
    let odd_starts = backslashes & !EVEN & !after_backslash;
    let (even_runs_and_odd_ends, overflow) = odd_starts.overflowing_add(backslashes);
    let flipped = even_runs_and_odd_ends << 1;
    ((EVEN ^ flipped) & after_backslash, u64::from(overflow))
}

/// The length of an escape by its letter: `\n` and the like 1, `\u` 5 (four hex digits
/// follow), 0 for a letter JSON has no escape for.
static ESCAPE_LENGTHS: [u8; 256] = {
    let mut lengths = [0u8; 256];
    let simple = *b"\"\\/bfnrt";
    let mut k = 0;
    while k < simple.len() {
        lengths[simple[k] as usize] = 1;
        k += 1;
    }
    lengths[b'u' as usize] = 5;
    lengths
};

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn expect(&mut self, c: u8) -> Result<(), Malformed> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }

    /// Only whitespace may follow the value.
    fn end(&mut self) -> Result<(), Malformed> {
        self.ws();
        if self.i == self.b.len() {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    fn key(&mut self) -> Result<std::borrow::Cow<'a, str>, Malformed> {
        let start = self.i;
        let escaped = self.string()?;
        let raw = &self.b[start..self.i];
        if escaped {
            serde_json::from_slice::<String>(raw)
                .map(std::borrow::Cow::Owned)
                .map_err(|_| Malformed)
        } else {
            std::str::from_utf8(&raw[1..raw.len() - 1])
                .map(std::borrow::Cow::Borrowed)
                .map_err(|_| Malformed)
        }
    }

    /// Skips the string starting at the cursor; whether it held an escape. A short one
    /// without escapes is settled by one 16-byte look; longer ones go 64 bytes at a time,
    /// their escapes found for the whole block at once; the last 63 bytes of a body go
    /// from quote to backslash.
    fn string(&mut self) -> Result<bool, Malformed> {
        self.expect(b'"')?;
        if let Some(head) = self
            .b
            .get(self.i..self.i + 16)
            .and_then(|h| <&[u8; 16]>::try_from(h).ok())
        {
            let (quotes, backslashes) = specials16(head);
            if quotes != 0 && quotes.trailing_zeros() < backslashes.trailing_zeros() {
                self.i += quotes.trailing_zeros() as usize + 1;
                return Ok(false);
            }
        }
        let mut any = false;
        let mut carry = 0;
        while let Some(block) = self
            .b
            .get(self.i..self.i + 64)
            .and_then(|b| <&[u8; 64]>::try_from(b).ok())
        {
            let (quotes, backslashes) = specials(block);
            let (escaped, carry_out) = escaped_bytes(backslashes, carry);
            let ends = quotes & !escaped;
            let (letters, end) = match ends.trailing_zeros() {
                64 => (escaped, None),
                at => (escaped & ((1 << at) - 1), Some(at as usize)),
            };
            if letters != 0 {
                // Escaped quotes and backslashes are valid as they are, and `n` and `t` are
                // found for the whole block in one go: what is left (rare) goes by the table.
                let mut rest = letters & !(quotes | backslashes);
                if rest != 0 {
                    rest &= !common_letters(block);
                }
                self.check_escapes(self.i, rest)?;
                any = true;
            }
            if let Some(at) = end {
                self.i += at + 1;
                return Ok(any);
            }
            self.i += 64;
            carry = carry_out;
        }
        if carry != 0 {
            any = true;
            self.i += self.escape(self.i)?;
        }
        loop {
            let Some(at) = quote_or_backslash(&self.b[self.i..]) else {
                return Err(Malformed);
            };
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok(any);
            }
            any = true;
            self.i += 1 + self.escape(self.i + 1)?;
        }
    }

    /// Checks the escapes whose letters are at the bits of `letters`, counted from `base`.
    fn check_escapes(&self, base: usize, mut letters: u64) -> Result<(), Malformed> {
        while letters != 0 {
            self.escape(base + letters.trailing_zeros() as usize)?;
            letters &= letters - 1;
        }
        Ok(())
    }

    /// The length of the escape whose letter is at `at` (after its backslash).
    #[inline]
    fn escape(&self, at: usize) -> Result<usize, Malformed> {
        let letter = *self.b.get(at).ok_or(Malformed)?;
        match ESCAPE_LENGTHS[usize::from(letter)] {
            0 => Err(Malformed),
            5 => {
                let hex = self.b.get(at + 1..at + 5).ok_or(Malformed)?;
                if hex.iter().all(u8::is_ascii_hexdigit) {
                    Ok(5)
                } else {
                    Err(Malformed)
                }
            }
            n => Ok(usize::from(n)),
        }
    }

    /// Skips one value starting at the cursor; `depth` is its nesting level.
    fn value(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        match self.peek().ok_or(Malformed)? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek() == Some(b'}') {
                    self.i += 1;
                    return Ok(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next() {
                        Some(b',') => continue,
                        Some(b'}') => return Ok(()),
                        _ => return Err(Malformed),
                    }
                }
            }
            b'[' => self.array(depth, None),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Malformed),
        }
    }

    /// Skips the array starting at the cursor, noting each element's bytes in `found`.
    fn array(
        &mut self,
        depth: usize,
        mut found: Option<&mut Vec<&'a [u8]>>,
    ) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        self.expect(b'[')?;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let start = self.i;
            self.value(depth + 1)?;
            if let Some(found) = found.as_deref_mut() {
                found.push(&self.b[start..self.i]);
            }
            self.ws();
            match self.next() {
                Some(b',') => continue,
                Some(b']') => return Ok(()),
                _ => return Err(Malformed),
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Malformed> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), Malformed> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(Malformed),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), Malformed> {
        let start = self.i;
        self.digits();
        if self.i > start {
            Ok(())
        } else {
            Err(Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    #[test]
    fn finds_members_and_elements() {
        let body = br#" {"model" : "m", "a\u0062c": [1, -2.5e+3, {"x": "q\"\\"}], "n": null } "#;
        let m = members(body).unwrap();
        let keys: Vec<&str> = m.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["model", "abc", "n"]);
        assert_eq!(m[0].1, br#""m""#);
        assert_eq!(m[1].1, br#"[1, -2.5e+3, {"x": "q\"\\"}]"#);
        let (all, items) = members_and_elements(body, "abc").unwrap();
        assert_eq!(all, m);
        let e = [&b"1"[..], b"-2.5e+3", br#"{"x": "q\"\\"}"#];
        assert_eq!(items.unwrap(), e);
        assert_eq!(members_and_elements(body, "model").unwrap().1, None);
        assert_eq!(members(b"{}").unwrap().len(), 0);
        let empty = members_and_elements(br#"{"a": [ ]}"#, "a").unwrap().1;
        assert_eq!(empty.map(|e| e.len()), Some(0));
    }

    #[test]
    fn body_reads_members_by_name() {
        let json =
            br#"{"a": 1, "n": null, "a": "second", "list": [{"x": 1}, 2], "o": {"k": true}}"#;
        let body = Body::read(json, "list").unwrap();
        assert_eq!(body.raw("a"), Some(&br#""second""#[..]));
        assert_eq!(
            body.decode::<String>("a").unwrap().as_deref(),
            Some("second")
        );
        assert_eq!(body.decode::<Value>("n").unwrap(), None);
        assert_eq!(body.decode::<Value>("missing").unwrap(), None);
        let err = body.decode::<bool>("o").err().map(|e| e.message);
        assert!(err.is_some_and(|m| m.starts_with("o: invalid type")));
        assert_eq!(body.items(), Some(&[&br#"{"x": 1}"#[..], b"2"][..]));
        assert!(Body::read(json, "o").unwrap().items().is_none());
        let bad = Body::read(b"{\"a\": [1,}", "a").err().map(|e| e.message);
        assert!(bad.is_some_and(|m| m.starts_with("request body is not valid JSON: ")));
    }

    #[test]
    fn content_reads_a_string_or_the_text_parts() {
        let text = |raw: &[u8], kind: &str| Content::read(raw).and_then(|c| c.text(kind));
        assert_eq!(text(br#" "a\nb" "#, "text").as_deref(), Some("a\nb"));
        assert_eq!(text(br#""""#, "text"), None);
        let parts = br#"[{"type":"text","text":"one"},{"type":"image","source":{}},
            {"type":"text","text":"t\u00e9\"two\""},{"type":"text","text":""},
            {"type":"text","text":null},{"type":"text"},7,
            {"type":"input_text","text":"other"},{"text":"x","type":"text","cache":1}]"#;
        assert_eq!(
            text(parts, "text").as_deref(),
            Some("one\nt\u{e9}\"two\"\nx")
        );
        assert_eq!(text(parts, "input_text").as_deref(), Some("other"));
        assert_eq!(text(parts, "none"), None);
        // Unescaped text is borrowed from the body, escaped text decoded.
        let Some(Content::Parts(read)) = Content::read(parts) else {
            panic!("parts expected");
        };
        assert!(matches!(read[0].text, std::borrow::Cow::Borrowed("one")));
        assert!(matches!(read[1].text, std::borrow::Cow::Owned(_)));
        for other in [
            &b"null"[..],
            b"3",
            b"{\"text\":\"a\"}",
            b"[1,",
            b"[] x",
            b"\"open",
        ] {
            assert!(
                Content::read(other).is_none(),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn join_lines_is_join() {
        let texts = ["a", "", "bc"];
        assert_eq!(join_lines(texts.iter().copied()), texts.join("\n"));
        assert_eq!(join_lines(std::iter::empty()), "");
    }

    #[test]
    fn refuses_what_json_refuses() {
        for bad in [
            &b""[..],
            b"{",
            b"{}x",
            b"[]",
            br#"{"a" 1}"#,
            br#"{"a":1,}"#,
            br#"{"a":[1,,2]}"#,
            br#"{"a":[1 2]}"#,
            br#"{"a":tru}"#,
            br#"{"a":01}"#,
            br#"{"a":1.}"#,
            br#"{"a":-}"#,
            br#"{"a":"\x"}"#,
            br#"{"a":"\u12g4"}"#,
            br#"{"a":"open}"#,
            br#"{"a":[}"#,
            br#"{"a":{]}"#,
            br#"{a:1}"#,
        ] {
            assert_eq!(
                members(bad).err(),
                Some(Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(members(deep.as_bytes()).err(), Some(Malformed));
    }

    /// One piece of a JSON string's text: a plain character or an escape.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just("a"),
            Just("\u{e9}"),
            Just("\u{1f600}"),
            Just("\\n"),
            Just("\\t"),
            Just("\\r"),
            Just("n"),
            Just("\\\""),
            Just("\\\\"),
            Just("\\/"),
            Just("\\u00e9"),
            Just("\\ud83d\\ude00"),
        ]
    }

    proptest! {
        /// Escape-dense strings of every length, at every offset from the 64-byte blocks
        /// (escapes split across two blocks included), read as serde reads them.
        #[test]
        fn escape_dense_strings_match_serde(pieces in prop::collection::vec(piece(), 0..160), pad in 0usize..64) {
            let text: String = pieces.concat();
            let body = format!("{{\"p\":\"{}\",\"s\":\"{text}\",\"n\":1}}", "x".repeat(pad));
            let expected: Value = serde_json::from_str(&body).unwrap();
            let found = members(body.as_bytes()).unwrap();
            prop_assert_eq!(found.len(), 3);
            let s: Value = serde_json::from_slice(found[1].1).unwrap();
            prop_assert_eq!(&s, &expected["s"]);
            prop_assert_eq!(found[2].1, b"1");
        }

        /// A bad escape anywhere in a long string is malformed, as serde finds it.
        #[test]
        fn a_bad_escape_anywhere_is_malformed(pieces in prop::collection::vec(piece(), 1..160), at in any::<prop::sample::Index>(), bad in prop_oneof![Just("\\q"), Just("\\N"), Just("\\T"), Just("\\ "), Just("\\u00g0"), Just("\\u12x")], pad in 0usize..64) {
            let mut pieces = pieces;
            pieces.insert(at.index(pieces.len()), bad);
            let body = format!("{{\"p\":\"{}\",\"s\":\"{}\"}}", "x".repeat(pad), pieces.concat());
            prop_assert!(serde_json::from_str::<Value>(&body).is_err());
            prop_assert_eq!(members(body.as_bytes()).err(), Some(Malformed));
        }

        /// The masks agree with walking the bytes one by one.
        #[test]
        fn escaped_bytes_follow_backslash_runs(backslashes in any::<u64>(), carry in 0u64..2) {
            let mut expected = 0u64;
            let mut escaping = carry == 1;
            for bit in 0..64 {
                if escaping {
                    expected |= 1 << bit;
                    escaping = false;
                } else if backslashes & (1 << bit) != 0 {
                    escaping = true;
                }
            }
            prop_assert_eq!(escaped_bytes(backslashes, carry), (expected, u64::from(escaping)));
        }

        #[test]
        fn quote_or_backslash_finds_the_first(s in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), any::<u8>()], 0..80)) {
            let expected = s.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(quote_or_backslash(&s), expected);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((".*", inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Every member's span decodes to exactly what serde_json reads for that key.
        #[test]
        fn spans_match_serde(map in prop::collection::vec((".*", json_value()), 0..8), pretty in any::<bool>()) {
            let object = Value::Object(map.into_iter().collect());
            let text = if pretty {
                serde_json::to_string_pretty(&object).unwrap()
            } else {
                serde_json::to_string(&object).unwrap()
            };
            let found = members(text.as_bytes()).unwrap();
            // Compared with serde's own reading of the whole text (floats parse the same way).
            let whole: Value = serde_json::from_str(&text).unwrap();
            let obj = whole.as_object().unwrap();
            prop_assert_eq!(found.len(), obj.len());
            for (key, raw) in found {
                let decoded: Value = serde_json::from_slice(raw).unwrap();
                prop_assert_eq!(Some(&decoded), obj.get(key.as_ref()));
            }
        }
    }
}
