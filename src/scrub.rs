//! The one scrubber: removes secrets from any text that leaves the gateway
//! as a log field or inside a response it writes itself (error details, an
//! agent's error message, the origin's failure text).
//!
//! It knows the configured secrets by value, in every form the gateway
//! builds them into (the gateway lists them, from the configuration). It also
//! removes what looks like a secret
//! whatever its value: an ARN (plain or encoded), a 12-digit account id, an
//! AWS access key id, a SigV4 `Signature=`, a JWT, and the token after
//! `Bearer`. Every match becomes [`REDACTED`].
//!
//! Hand-written rather than with `regex`: the patterns are few and simple,
//! and the Worker bundle stays small.

use std::sync::Arc;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// The secrets of one configuration; cheap to clone.
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so that a secret containing another goes whole.
    known: Arc<[String]>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("known", &self.known.len())
            .finish()
    }
}

impl Scrubber {
    /// Knows exactly `known` (besides the patterns).
    pub fn with_known(known: Vec<String>) -> Self {
        let mut known: Vec<String> = known.into_iter().filter(|s| s.len() >= 4).collect();
        known.sort_by_key(|s| std::cmp::Reverse(s.len()));
        known.dedup();
        Scrubber {
            known: known.into(),
        }
    }

    /// `text` with every secret replaced by [`REDACTED`].
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.known.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        scrub_patterns(&out)
    }

    /// Scrubs every string in `value` (keys stay).
    pub fn scrub_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => {
                let clean = self.scrub(text);
                if clean != *text {
                    *text = clean;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_json(v)),
            _ => {}
        }
    }

    /// [`Self::scrub`], then cut to at most `max` bytes (on a character
    /// boundary).
    pub fn scrub_bounded(&self, text: &str, max: usize) -> String {
        let mut out = self.scrub(text);
        if out.len() > max {
            let mut cut = max;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Secrets recognised by their shape.
fn scrub_patterns(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let word_start = i == 0 || !is_word_byte(bytes[i - 1]);
        let rest = &bytes[i..];
        // The byte range to redact, if a secret starts here.
        let found: Option<(usize, usize)> = if !word_start {
            None
        } else if starts_with_ignore_case(rest, b"arn:") || starts_with_ignore_case(rest, b"arn%3a")
        {
            // To the end of the ARN: whitespace, a quote or a comma.
            let len = rest
                .iter()
                .position(|&b| b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b',' | b'&'))
                .unwrap_or(rest.len());
            Some((i, i + len))
        } else if rest[0].is_ascii_digit() {
            let len = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            (len == 12).then_some((i, i + len))
        } else if rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA") {
            let len = rest
                .iter()
                .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                .count();
            (len == 20).then_some((i, i + len))
        } else if rest.starts_with(b"eyJ") {
            // A JWT (or any base64url JSON): its segments and dots.
            let len = rest
                .iter()
                .take_while(|&&b| is_base64url(b) || b == b'.')
                .count();
            (len >= 8).then_some((i, i + len))
        } else if starts_with_ignore_case(rest, b"signature=") {
            let start = b"signature=".len();
            let len = rest[start..]
                .iter()
                .take_while(|b| b.is_ascii_hexdigit())
                .count();
            // Keep the parameter name, drop its value.
            (len > 0).then_some((i + start, i + start + len))
        } else if starts_with_ignore_case(rest, b"bearer ") {
            let start = b"bearer ".len();
            let value = &rest[start..];
            let skip = value.iter().take_while(|&&b| b == b' ').count();
            let len = value[skip..]
                .iter()
                .take_while(|&&b| !b.is_ascii_whitespace() && !matches!(b, b'"' | b'\'' | b','))
                .count();
            (len > 0).then_some((i + start + skip, i + start + skip + len))
        } else {
            None
        };
        match found {
            Some((from, end)) => {
                out.push_str(&text[copied..from]);
                out.push_str(REDACTED);
                copied = end;
                i = end;
            }
            None => i += 1,
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn starts_with_ignore_case(haystack: &[u8], prefix: &[u8]) -> bool {
    haystack.len() >= prefix.len() && haystack[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_by_their_shape() {
        let none = Scrubber::default();
        let cases = [
            (
                "User: arn:aws:sts::210987654321:assumed-role/r/s is not authorized",
                "User: [redacted] is not authorized",
            ),
            ("path arn%3Aaws%3Ax%3A1/y end", "path [redacted] end"),
            ("path ARN%3aaws%3ax end", "path [redacted] end"),
            ("account 210987654321, request 2109876543210", "account [redacted], request 2109876543210"),
            ("key AKIAABCDEFGHIJKLMNOP.", "key [redacted]."),
            (
                "AWS4-HMAC-SHA256 Credential=ASIAABCDEFGHIJKLMNOP/20240101/us-east-1/s/aws4_request, SignedHeaders=host, Signature=0123abcdef",
                "AWS4-HMAC-SHA256 Credential=[redacted]/20240101/us-east-1/s/aws4_request, SignedHeaders=host, Signature=[redacted]",
            ),
            ("Authorization: Bearer abc.def-ghi", "Authorization: Bearer [redacted]"),
            ("authorization: bearer  opaque-token!", "authorization: bearer  [redacted]"),
            ("token eyJhbGciOi.eyJzdWIi.c2ln-_x!", "token [redacted]!"),
            ("nothing secret: 42 runtime", "nothing secret: 42 runtime"),
        ];
        for (text, expected) in cases {
            assert_eq!(none.scrub(text), expected, "{text}");
        }
    }

    #[test]
    fn json_strings_are_scrubbed_and_numbers_kept() {
        let mut value =
            serde_json::json!({"n": 123456789012u64, "s": ["key AKIAABCDEFGHIJKLMNOP"]});
        Scrubber::default().scrub_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({"n": 123456789012u64, "s": ["key [redacted]"]})
        );
    }

    #[test]
    fn bounded_scrub_cuts_on_a_character_boundary() {
        let text = "é".repeat(100);
        let out = Scrubber::default().scrub_bounded(&text, 11);
        assert_eq!(out.len(), 10);
    }
}
