//! The request body reader (issue 14, item 1):
//! [`agent_edge::gateway::payload::read`] on 1 MB bodies of 1, 1,000 and
//! 100,000 top-level keys, each without control field (the body is
//! forwarded as it is) and with `"response":"transformed"` in the middle of
//! the keys (cut out of the bytes: the payload is copied around it). Targets:
//! linear, and a 1 MB body of 100,000 keys read in under 20 ms.
//!
//! Groups:
//! - `payload_read`: the reader on the six bodies above and on 1 MB bodies of
//!   10,000 keys (the default `MAX_BODY_KEYS`), plus the 100,000-key body
//!   against that default, refused after the 10,001st key. Throughput in
//!   bytes.
//! - `payload_scaling`: the same 10-byte members (`"00000":7,`) in 100 KB,
//!   1 MB and 4 MB bodies (10,000, 100,000 and 400,000 keys): linear time is
//!   the same throughput at every size.
//! - `baseline_quadratic`: **the previous reader**, for comparison: a copy of
//!   the `raw_object` module of `src/gateway/mod.rs` before issue 14 (its
//!   `retain` over all earlier keys for every key) and of the loop of
//!   `Gateway::parse_invocation` that rebuilt the payload from it. On 1,
//!   1,000 and 10,000 keys only: criterion's samples of the 100,000-key body
//!   would take minutes (one read takes seconds), so under `--bench` that
//!   body is read once, timed, after the groups.
//!
//! After the groups, under `--bench`, a table: the median of repeated reads
//! of each body (new reader, and the baseline where it runs), with the
//! target. Under `cargo test --all-targets` (no `--bench`) criterion runs
//! each benchmark once, the baseline's 10,000-key body excepted (slow in an
//! unoptimized build), and no table is printed.
//!
//! Run: `cargo bench --bench payload` (`-- --warm-up-time 1
//! --measurement-time 3` for a shorter run).

// Only the core may not read the clock (clippy.toml).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use agent_edge::gateway::payload;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput};

/// 1 MB, the body size of the issue's target (`MAX_BODY_BYTES` defaults to 1 MiB).
const MB: usize = 1_000_000;
/// The control member put in the middle of the keys, and the comma it brings.
const CONTROL: &str = r#""response":"transformed""#;
/// `MAX_BODY_KEYS`'s default.
const DEFAULT_MAX_KEYS: usize = 10_000;
const TARGET_MS: f64 = 20.0;

/// A JSON object of `keys` members, about `size` bytes in all: fixed-width
/// numeric keys, values padded to share the size (a number of at least one
/// digit when a member has no room for a string). With `control`, [`CONTROL`]
/// goes after the first half of the members.
fn body(keys: usize, size: usize, control: bool) -> Bytes {
    let width = (keys.max(2) - 1).to_string().len();
    let control_bytes = if control { CONTROL.len() + 1 } else { 0 };
    let member = (size - 2 - control_bytes) / keys;
    // `"<key>":` and the comma after the value.
    let value_len = member.saturating_sub(width + 4).max(1);
    let value = if value_len >= 3 {
        format!("\"{}\"", "x".repeat(value_len - 2))
    } else {
        "7".repeat(value_len)
    };
    let mut out = String::with_capacity(size + 64);
    out.push('{');
    for i in 0..keys {
        if i > 0 {
            out.push(',');
        }
        if control && i == keys.div_ceil(2) {
            out.push_str(CONTROL);
            out.push(',');
        }
        out.push_str(&format!("\"{i:0width$}\":{value}"));
    }
    if control && keys.div_ceil(2) == keys {
        out.push(',');
        out.push_str(CONTROL);
    }
    out.push('}');
    Bytes::from(out)
}

struct Case {
    keys: usize,
    control: bool,
    body: Bytes,
}

impl Case {
    fn new(keys: usize, size: usize, control: bool) -> Case {
        Case {
            keys,
            control,
            body: body(keys, size, control),
        }
    }

    fn name(&self) -> String {
        let control = if self.control {
            "with_control"
        } else {
            "no_control"
        };
        format!("{}_keys_{control}", self.keys)
    }

    /// The cap the body just fits: its keys, the control member included.
    fn max_keys(&self) -> usize {
        self.keys + usize::from(self.control)
    }

    /// Reads with the new reader and checks the result.
    fn read(&self) -> Bytes {
        let (controls, forwarded) =
            payload::read(&self.body, self.max_keys()).expect("a valid body");
        if self.control {
            assert_eq!(controls.response.as_deref(), Some("transformed"));
            assert_eq!(forwarded.len(), self.body.len() - CONTROL.len() - 1);
        } else {
            assert!(controls.response.is_none());
            assert_eq!(forwarded, self.body);
        }
        forwarded
    }

    /// Reads with the previous (quadratic) reader and checks the result.
    fn read_baseline(&self) -> Bytes {
        let (response, _, forwarded) = baseline::read(&self.body).expect("a valid body");
        assert_eq!(response.is_some(), self.control);
        assert_eq!(
            forwarded.len(),
            self.body.len() - if self.control { CONTROL.len() + 1 } else { 0 }
        );
        forwarded
    }
}

fn cases() -> Vec<Case> {
    [1, 1_000, 10_000, 100_000]
        .into_iter()
        .flat_map(|keys| [false, true].map(|control| Case::new(keys, MB, control)))
        .collect()
}

fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn reader(c: &mut Criterion, cases: &[Case]) {
    let mut group = c.benchmark_group("payload_read");
    group.sample_size(20);
    for case in cases {
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
            b.iter(|| payload::read(black_box(&case.body), case.max_keys()).expect("a valid body"))
        });
    }
    // The default cap: refused after the 10,001st key, whatever follows.
    let over = cases
        .iter()
        .find(|c| c.keys == 100_000 && !c.control)
        .expect("the 100,000-key body");
    assert!(payload::read(&over.body, DEFAULT_MAX_KEYS).is_err());
    group.throughput(Throughput::Bytes(over.body.len() as u64));
    group.bench_function(
        BenchmarkId::from_parameter("100000_keys_refused_at_10000"),
        |b| b.iter(|| payload::read(black_box(&over.body), DEFAULT_MAX_KEYS).is_err()),
    );
    group.finish();
}

fn scaling(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload_scaling");
    group.sample_size(20);
    for (keys, size) in [(10_000, MB / 10), (100_000, MB), (400_000, 4 * MB)] {
        let case = Case::new(keys, size, true);
        case.read();
        group.throughput(Throughput::Bytes(case.body.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
            b.iter(|| payload::read(black_box(&case.body), case.max_keys()).expect("a valid body"))
        });
    }
    group.finish();
}

fn quadratic_baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline_quadratic");
    group.sample_size(10);
    let mut keys = vec![1, 1_000];
    // Seconds per run unoptimized (`cargo test`): only under `--bench`.
    if bench_mode() {
        keys.push(10_000);
    }
    for keys in keys {
        for control in [false, true] {
            let case = Case::new(keys, MB, control);
            case.read_baseline();
            group.throughput(Throughput::Bytes(case.body.len() as u64));
            group.bench_function(BenchmarkId::from_parameter(case.name()), |b| {
                b.iter(|| baseline::read(black_box(&case.body)).expect("a valid body"))
            });
        }
    }
    group.finish();
}

/// The median of `runs` calls of `f`, in milliseconds.
fn median_ms(runs: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[runs / 2].as_secs_f64() * 1000.0
}

fn summary(cases: &[Case]) {
    println!();
    println!("payload reader: median of repeated reads (ms), 1 MB bodies");
    println!("| keys | control field | body bytes | new reader | previous reader (quadratic) | previous / new | target | result |");
    println!("|---|---|---|---|---|---|---|---|");
    for case in cases {
        let new = median_ms(51, || {
            black_box(case.read());
        });
        let (old, old_note) = if case.keys <= 10_000 {
            let runs = if case.keys <= 1_000 { 51 } else { 5 };
            let old = median_ms(runs, || {
                black_box(case.read_baseline());
            });
            (old, format!("{old:.3} ms"))
        } else {
            // One run: it takes seconds.
            let old = median_ms(1, || {
                black_box(case.read_baseline());
            });
            (old, format!("{old:.0} ms (one run)"))
        };
        let (target, result) = if case.keys == 100_000 {
            (
                format!("< {TARGET_MS} ms"),
                if new < TARGET_MS { "PASS" } else { "MISS" },
            )
        } else {
            (String::new(), "")
        };
        let ratio = old / new;
        let ratio = if ratio < 10.0 {
            format!("{ratio:.1}x")
        } else {
            format!("{ratio:.0}x")
        };
        let control = if case.control {
            "in the middle"
        } else {
            "none"
        };
        println!(
            "| {} | {control} | {} | {new:.3} ms | {old_note} | {ratio} | {target} | {result} |",
            case.keys,
            case.body.len(),
        );
    }
}

fn main() {
    let cases = cases();
    for case in &cases {
        case.read();
    }
    let mut c = Criterion::default().configure_from_args();
    reader(&mut c, &cases);
    scaling(&mut c);
    quadratic_baseline(&mut c);
    c.final_summary();
    if bench_mode() {
        summary(&cases);
    }
}

/// BASELINE, not the gateway's code: the body reader before issue 14, from
/// `git show 1e8a3a0~1:src/gateway/mod.rs` (`raw_object` and the loop of
/// `Gateway::parse_invocation`), unchanged but for its errors (a string
/// here). Quadratic in the number of keys: every key runs a `retain` over all
/// the earlier ones.
mod baseline {
    use bytes::Bytes;
    use serde_json::value::RawValue;

    type Read = (Option<String>, Option<String>, Bytes);

    pub fn read(body: &[u8]) -> Result<Read, String> {
        let raw: raw_object::RawObject = serde_json::from_slice(body).map_err(|e| e.to_string())?;

        let mut body_mode = None;
        let mut body_session = None;
        let mut payload = Vec::with_capacity(body.len());
        payload.push(b'{');
        let mut had_control_field = false;
        for (key, value) in &raw.0 {
            match key.as_ref() {
                "response" => {
                    had_control_field = true;
                    body_mode = Some(control_string(value, "response")?);
                }
                "runtimeSessionId" => {
                    had_control_field = true;
                    body_session = Some(control_string(value, "runtimeSessionId")?);
                }
                _ => {
                    if payload.len() > 1 {
                        payload.push(b',');
                    }
                    serde_json::to_writer(&mut payload, key).expect("string to vec");
                    payload.push(b':');
                    payload.extend_from_slice(value.get().as_bytes());
                }
            }
        }
        payload.push(b'}');
        let payload = if had_control_field {
            Bytes::from(payload)
        } else {
            Bytes::copy_from_slice(body)
        };
        Ok((body_mode, body_session, payload))
    }

    fn control_string(value: &RawValue, field: &'static str) -> Result<String, String> {
        serde_json::from_str::<String>(value.get()).map_err(|_| format!("{field} must be a string"))
    }

    /// A JSON object read with its values kept raw and its keys in order.
    mod raw_object {
        use serde::de::{MapAccess, Visitor};
        use serde::{Deserialize, Deserializer};
        use serde_json::value::RawValue;
        use std::borrow::Cow;
        use std::fmt;

        pub struct RawObject<'a>(pub Vec<(Cow<'a, str>, &'a RawValue)>);

        impl<'de: 'a, 'a> Deserialize<'de> for RawObject<'a> {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = RawObject<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a JSON object")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Self::Value, A::Error> {
                        let mut fields = Vec::new();
                        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                            let value: &'de RawValue = map.next_value()?;
                            // A later duplicate replaces an earlier one, as JSON parsers do.
                            fields.retain(|(k, _): &(Cow<'de, str>, &RawValue)| *k != key);
                            fields.push((key, value));
                        }
                        Ok(RawObject(fields))
                    }
                }
                d.deserialize_map(V)
            }
        }
    }
}
