//! The request body read as the agent's payload, in one linear pass: the
//! control fields (`response`, `runtimeSessionId`) are taken out, the last
//! occurrence of each winning; every other member is forwarded as the
//! client wrote it, duplicates, whitespace and escapes included (the origin's
//! own parser decides what a duplicate means). At most `max_keys` top-level
//! members are read.
//!
//! serde_json gives each key and value as a [`RawValue`] borrowed from the
//! body, so a control member is cut out of the original bytes by position;
//! nothing is re-serialized.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use bytes::Bytes;
use serde::de::{DeserializeSeed, MapAccess, Visitor};
use serde::Deserializer;
use serde_json::value::RawValue;

use crate::error::{Code, GatewayError};

/// The control fields of a body, the last occurrence of each.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Controls {
    pub response: Option<String>,
    pub session_id: Option<String>,
}

/// Splits `body` into its control fields and the payload to forward.
pub fn read(body: &Bytes, max_keys: usize) -> Result<(Controls, Bytes), GatewayError> {
    let mut scan = Scan {
        body_start: body.as_ptr() as usize,
        max_keys,
        keys: 0,
        response: None,
        session_id: None,
        kept: None,
        last_kept_end: None,
        last_control_end: None,
        cuts: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    (&mut scan)
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| {
            if scan.keys > max_keys {
                GatewayError::new(Code::InvalidBody).with_message(format!(
                    "the request body has more than {max_keys} top-level keys"
                ))
            } else if e.classify() == serde_json::error::Category::Data {
                GatewayError::new(Code::InvalidBody)
            } else {
                GatewayError::new(Code::InvalidJson).with_message(format!(
                    "the request body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            }
        })?;

    let controls = Controls {
        response: scan
            .response
            .map(|v| control_string(v, "response"))
            .transpose()?,
        session_id: scan
            .session_id
            .map(|v| control_string(v, "runtimeSessionId"))
            .transpose()?,
    };
    if controls == Controls::default() {
        return Ok((controls, body.clone()));
    }
    let Some(kept) = scan.kept else {
        return Ok((controls, Bytes::from_static(b"{}")));
    };
    let mut payload = Vec::with_capacity(kept.len() + 2);
    payload.push(b'{');
    let mut from = kept.start;
    for cut in &scan.cuts {
        payload.extend_from_slice(&body[from..cut.start]);
        from = cut.end;
    }
    payload.extend_from_slice(&body[from..kept.end]);
    payload.push(b'}');
    Ok((controls, payload.into()))
}

fn control_string(value: &RawValue, field: &'static str) -> Result<String, GatewayError> {
    serde_json::from_str::<String>(value.get()).map_err(|_| {
        GatewayError::new(Code::InvalidField).with_message(format!("{field} must be a string"))
    })
}

/// What one pass over the top-level object records. Offsets are into the body.
struct Scan<'a> {
    body_start: usize,
    max_keys: usize,
    keys: usize,
    response: Option<&'a RawValue>,
    session_id: Option<&'a RawValue>,
    /// From the first forwarded member's key to the last one's value.
    kept: Option<Range<usize>>,
    last_kept_end: Option<usize>,
    /// The end of the last control member after `last_kept_end`.
    last_control_end: Option<usize>,
    /// Control members between forwarded ones, each with its leading comma.
    cuts: Vec<Range<usize>>,
}

impl Scan<'_> {
    fn offset(&self, raw: &RawValue) -> Range<usize> {
        let start = raw.get().as_ptr() as usize - self.body_start;
        start..start + raw.get().len()
    }
}

enum Control {
    Response,
    SessionId,
}

fn control(raw_key: &str) -> Option<Control> {
    // Escapes are rare in keys: decode only when there is one.
    let name: Cow<str> = if raw_key.contains('\\') {
        Cow::Owned(serde_json::from_str(raw_key).ok()?)
    } else {
        Cow::Borrowed(&raw_key[1..raw_key.len() - 1])
    };
    match name.as_ref() {
        "response" => Some(Control::Response),
        "runtimeSessionId" => Some(Control::SessionId),
        _ => None,
    }
}

impl<'de> DeserializeSeed<'de> for &mut Scan<'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Scan<'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<&'de RawValue>()? {
            self.keys += 1;
            if self.keys > self.max_keys {
                return Err(serde::de::Error::custom("too many keys"));
            }
            let value: &'de RawValue = map.next_value()?;
            let (key_at, value_at) = (self.offset(key), self.offset(value));
            match control(key.get()) {
                Some(which) => {
                    match which {
                        Control::Response => self.response = Some(value),
                        Control::SessionId => self.session_id = Some(value),
                    }
                    if self.last_kept_end.is_some() {
                        self.last_control_end = Some(value_at.end);
                    }
                }
                None => {
                    if let (Some(kept_end), Some(control_end)) =
                        (self.last_kept_end, self.last_control_end.take())
                    {
                        self.cuts.push(kept_end..control_end);
                    }
                    let start = self.kept.as_ref().map_or(key_at.start, |k| k.start);
                    self.kept = Some(start..value_at.end);
                    self.last_kept_end = Some(value_at.end);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &str) -> (Controls, String) {
        let (controls, payload) = read(&Bytes::copy_from_slice(body.as_bytes()), 100).unwrap();
        (controls, String::from_utf8(payload.to_vec()).unwrap())
    }

    #[test]
    fn control_fields_are_cut_out_and_the_rest_kept_byte_for_byte() {
        let cases = [
            (r#"{"prompt":"hi"}"#, r#"{"prompt":"hi"}"#),
            (r#"{"response":"original"}"#, "{}"),
            (r#"{"response":"original", "a" : 1.50}"#, r#"{"a" : 1.50}"#),
            (r#"{"a":1, "response":"original"}"#, r#"{"a":1}"#),
            (
                r#"{"a":1 , "response":"x","runtimeSessionId":"y" ,"b":"\u0041","a":2}"#,
                r#"{"a":1 ,"b":"\u0041","a":2}"#,
            ),
            (
                r#"{"response":"x","runtimeSessionId":"y","a":[1, {"response":2}]}"#,
                r#"{"a":[1, {"response":2}]}"#,
            ),
            (r#"{"respons\u0065":"x","b":true}"#, r#"{"b":true}"#),
        ];
        for (body, payload) in cases {
            assert_eq!(split(body).1, payload, "{body}");
        }
    }

    #[test]
    fn the_last_occurrence_of_a_control_field_wins() {
        let (controls, payload) =
            split(r#"{"response":"original","p":1,"response":"transformed"}"#);
        assert_eq!(controls.response.as_deref(), Some("transformed"));
        assert_eq!(payload, r#"{"p":1}"#);
        let (controls, _) = split(r#"{"runtimeSessionId":"a","runtimeSessionId":"b"}"#);
        assert_eq!(controls.session_id.as_deref(), Some("b"));
    }

    #[test]
    fn a_body_without_control_fields_is_forwarded_as_is() {
        let body = Bytes::from_static(b" {\"a\":1,\"a\":2} \n");
        let (_, payload) = read(&body, 100).unwrap();
        assert_eq!(payload, body);
    }

    #[test]
    fn errors_name_their_cause() {
        let code = |body: &str, max| {
            read(&Bytes::copy_from_slice(body.as_bytes()), max)
                .unwrap_err()
                .code
        };
        assert_eq!(code("[1]", 10), Code::InvalidBody);
        assert_eq!(code("{", 10), Code::InvalidJson);
        assert_eq!(code("{} x", 10), Code::InvalidJson);
        assert_eq!(code(r#"{"response":1}"#, 10), Code::InvalidField);
        assert_eq!(code(r#"{"a":1,"b":2,"c":3}"#, 2), Code::InvalidBody);
        assert!(read(&Bytes::from_static(br#"{"a":1,"b":2}"#), 2).is_ok());
    }
}
