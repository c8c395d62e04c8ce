//! Transformer throughput over a recorded-style 10 MB Strands stream, fed in
//! chunks of 1 to 16 KiB, in MB/s: original mode, transformed mode, and a
//! baseline of `eventsource-stream` + `serde_json::Value` extracting the
//! same text, and original mode with the meter of `TOKEN_BUDGET` on.
//! Targets: transformed at least 3x the baseline and 400 MB/s (issue 2);
//! original at least 2 GB/s, metered too (issue 16).
//!
//! The stream starts with `tests/data/sse/strands-seed.sse` and continues
//! with generated model calls of the same shape (`messageStart`, text
//! deltas, sometimes a tool use, `contentBlockStop`, `messageStop`,
//! `metadata`), formatted as AgentCore sends them (Python `json.dumps`).
//! The generator is a fixed-seed xorshift, so every run measures the same
//! bytes.

use std::convert::Infallible;

use agent_edge::config::ResponseMode;
use agent_edge::sse::{OriginBodyKind, Transformer, TransformerOptions};
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use eventsource_stream::Eventsource;
use futures::StreamExt;
use serde_json::Value;

const SEED: &str = include_str!("../tests/data/sse/strands-seed.sse");
const TARGET_BYTES: usize = 10 * 1024 * 1024;

const WORDS: &[&str] = &[
    "the",
    "weather",
    "in",
    "Tokyo",
    "is",
    "sunny",
    "today",
    "with",
    "a",
    "light",
    "breeze",
    "and",
    "temperatures",
    "around",
    "24°C",
    "I",
    "can",
    "help",
    "you",
    "plan",
    "your",
    "trip",
    "itinerary",
    "for",
    "next",
    "week",
    "including",
    "museums",
    "restaurants",
    "parks",
    "shrines",
    "Here",
    "are",
    "some",
    "options",
    "to",
    "consider",
    "first",
    "of",
    "all",
    "you'll",
    "want",
    "\"reservations\"",
    "early",
    "because",
    "popular",
    "places",
    "fill",
    "up",
    "quickly",
    "—",
    "especially",
    "on",
    "weekends",
    "Let",
    "me",
    "know",
    "if",
    "anything",
    "else",
    "would",
    "be",
    "useful",
    "naïve",
    "café",
    "résumé",
    "🙂",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn event(out: &mut String, json: &str) {
    out.push_str("data: ");
    out.push_str(json);
    out.push_str("\n\n");
}

/// A text delta of 1 to 6 words, JSON-escaped as Python would (non-ASCII kept).
fn delta_text(rng: &mut Rng) -> String {
    let mut text = String::new();
    for _ in 0..=rng.below(6) {
        text.push(' ');
        text.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
    }
    match rng.below(20) {
        0 => text.push_str(".\n\n"),
        1 => text.push(','),
        _ => {}
    }
    serde_json::to_string(&text).unwrap()
}

fn model_call(out: &mut String, rng: &mut Rng) {
    event(out, r#"{"event": {"messageStart": {"role": "assistant"}}}"#);
    let deltas = 20 + rng.below(180);
    for _ in 0..deltas {
        let text = delta_text(rng);
        event(
            out,
            &format!(
                r#"{{"event": {{"contentBlockDelta": {{"delta": {{"text": {text}}}, "contentBlockIndex": 0}}}}}}"#
            ),
        );
    }
    event(
        out,
        r#"{"event": {"contentBlockStop": {"contentBlockIndex": 0}}}"#,
    );
    let tool_use = rng.below(3) == 0;
    if tool_use {
        event(
            out,
            r#"{"event": {"contentBlockStart": {"start": {"toolUse": {"toolUseId": "tooluse_kZJMlvQmRJ6eAyJE5GIl7Q", "name": "get_weather"}}, "contentBlockIndex": 1}}}"#,
        );
        event(
            out,
            r#"{"event": {"contentBlockDelta": {"delta": {"toolUse": {"input": "{\"city\": "}}, "contentBlockIndex": 1}}}"#,
        );
        event(
            out,
            r#"{"event": {"contentBlockDelta": {"delta": {"toolUse": {"input": "\"Tokyo\"}"}}, "contentBlockIndex": 1}}}"#,
        );
        event(
            out,
            r#"{"event": {"contentBlockStop": {"contentBlockIndex": 1}}}"#,
        );
    }
    let stop = if tool_use { "tool_use" } else { "end_turn" };
    event(
        out,
        &format!(r#"{{"event": {{"messageStop": {{"stopReason": "{stop}"}}}}}}"#),
    );
    let input = 400 + rng.below(2000);
    let output = deltas * 3;
    event(
        out,
        &format!(
            r#"{{"event": {{"metadata": {{"usage": {{"inputTokens": {input}, "outputTokens": {output}, "totalTokens": {}}}, "metrics": {{"latencyMs": {}}}}}}}}}"#,
            input + output,
            300 + rng.below(3000)
        ),
    );
}

/// The 10 MB stream and its chunks (1 to 16 KiB, zero-copy slices).
fn recorded_stream() -> (Bytes, Vec<Bytes>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut stream = String::with_capacity(TARGET_BYTES + 64 * 1024);
    stream.push_str(SEED);
    while stream.len() < TARGET_BYTES {
        model_call(&mut stream, &mut rng);
    }
    let stream = Bytes::from(stream);
    let mut chunks = Vec::new();
    let mut start = 0;
    while start < stream.len() {
        let len = (1024 + rng.below(15 * 1024) as usize).min(stream.len() - start);
        chunks.push(stream.slice(start..start + len));
        start += len;
    }
    (stream, chunks)
}

fn run_transformer(mode: ResponseMode, chunks: &[Bytes]) -> usize {
    run_metered(mode, false, chunks).0
}

/// The bytes sent, and the tokens the meter read (`TOKEN_BUDGET` on).
fn run_metered(mode: ResponseMode, meter: bool, chunks: &[Bytes]) -> (usize, Option<u64>) {
    let mut transformer = Transformer::new(
        TransformerOptions {
            mode,
            body_kind: OriginBodyKind::EventStream,
            max_event_bytes: agent_edge::config::DEFAULT_MAX_EVENT_BYTES,
            keepalive_ms: Some(15_000),
            session_id: "0b7c64d5-94a3-4a52-8e44-6a33b3d1f0a1-session".to_owned(),
            meter,
        },
        0,
    );
    let mut sent = 0;
    for chunk in chunks {
        sent += black_box(transformer.push(chunk.clone(), 1)).len();
    }
    sent += transformer.finish(None).len();
    (sent, transformer.tokens())
}

/// What a straightforward implementation does: a `Stream` SSE parser, a
/// `serde_json::Value` per event, and the same text and usage taken out.
fn run_baseline(chunks: &[Bytes]) -> usize {
    let stream = futures::stream::iter(chunks.iter().cloned().map(Ok::<_, Infallible>));
    futures::executor::block_on(async {
        let mut events = stream.eventsource();
        let mut text = String::new();
        let mut usage = Vec::new();
        while let Some(event) = events.next().await {
            let event = event.expect("valid UTF-8");
            let Ok(payload) = serde_json::from_str::<Value>(&event.data) else {
                text.push_str(&event.data);
                continue;
            };
            if let Some(delta) = payload["event"]["contentBlockDelta"]["delta"]["text"].as_str() {
                text.push_str(delta);
            }
            if let Some(metadata) = payload["event"].get("metadata") {
                usage.push(metadata["usage"].clone());
            }
        }
        black_box(&usage);
        text.len()
    })
}

fn transform(c: &mut Criterion) {
    let (stream, chunks) = recorded_stream();
    // The two text extractions must agree before their speeds are compared.
    let text_len = run_baseline(&chunks);
    let transformed = run_transformer(ResponseMode::Transformed, &chunks);
    assert!(transformed > text_len && transformed < text_len + 512);
    assert_eq!(
        run_transformer(ResponseMode::Original, &chunks),
        stream.len()
    );
    // The meter reads what transformed mode reads, and relays every byte.
    let (relayed, metered) = run_metered(ResponseMode::Original, true, &chunks);
    assert_eq!(relayed, stream.len());
    assert!(metered.is_some());
    assert_eq!(
        metered,
        run_metered(ResponseMode::Transformed, true, &chunks).1
    );

    if std::env::var_os("TRANSFORM_BENCH_CPU").is_some() {
        cpu_time_report(&stream, &chunks);
        return;
    }

    let mut group = c.benchmark_group("transform");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.sample_size(20);
    group.bench_function("original", |b| {
        b.iter(|| run_transformer(ResponseMode::Original, &chunks))
    });
    group.bench_function("original_metered", |b| {
        b.iter(|| run_metered(ResponseMode::Original, true, &chunks))
    });
    group.bench_function("transformed", |b| {
        b.iter(|| run_transformer(ResponseMode::Transformed, &chunks))
    });
    group.bench_function("baseline_eventsource_stream_serde_value", |b| {
        b.iter(|| run_baseline(&chunks))
    });
    group.finish();
}

/// CPU time (user + system, from /proc) per run of each variant: steadier
/// than wall time on a busy machine. `TRANSFORM_BENCH_CPU=1 cargo bench --bench transform`.
fn cpu_time_report(stream: &Bytes, chunks: &[Bytes]) {
    fn cpu_ticks() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
    let variants: [(&str, usize, &dyn Fn() -> usize); 4] = [
        ("original", 1000, &|| {
            run_transformer(ResponseMode::Original, chunks)
        }),
        ("original_metered", 200, &|| {
            run_metered(ResponseMode::Original, true, chunks).0
        }),
        ("transformed", 200, &|| {
            run_transformer(ResponseMode::Transformed, chunks)
        }),
        ("baseline", 20, &|| run_baseline(chunks)),
    ];
    for (name, runs, run) in variants {
        let start = cpu_ticks();
        for _ in 0..runs {
            black_box(run());
        }
        // Clock ticks are 10 ms.
        let seconds = (cpu_ticks() - start) as f64 / 100.0 / runs as f64;
        let mb_per_s = stream.len() as f64 / seconds / 1e6;
        println!(
            "{name}: {:.2} ms CPU per run, {mb_per_s:.0} MB/s",
            seconds * 1e3
        );
    }
}

criterion_group!(benches, transform);
criterion_main!(benches);
