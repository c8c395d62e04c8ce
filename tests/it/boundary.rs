//! The core is sans-IO (see `src/lib.rs`): it never imports a runtime or a
//! platform crate, so it builds for every target and tests drive it without
//! sockets or clocks. This scan fails the build when a core file names one;
//! clippy.toml's `disallowed-methods` does the same for the clocks.

use std::path::{Path, PathBuf};

/// Crates only adapters may use.
const PLATFORM_CRATES: &[&str] = &[
    "tokio",
    "hyper",
    "hyper_util",
    "http_body_util",
    "reqwest",
    "worker",
    "wasm_bindgen",
    "js_sys",
    "web_sys",
    "lambda_runtime",
    "lambda_http",
    "aws_lambda_events",
    "redis",
];

/// The core: directories and single files under `src/`.
const CORE: &[&str] = &[
    "sse", "auth", "origin", "gateway", "config", "error.rs", "scrub.rs",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

/// Platform crates named as a path root (`tokio::`, `use reqwest`, `hyper::`)
/// on a line of code (comments are skipped).
fn platform_crates_named(line: &str) -> Vec<&'static str> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    for token in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        let root = token
            .trim_start_matches("::")
            .split("::")
            .next()
            .unwrap_or("");
        let is_path = token.contains("::");
        let is_use = code.trim_start().starts_with("use ") || code.contains("extern crate");
        if let Some(name) = PLATFORM_CRATES.iter().find(|name| **name == root) {
            if is_path || is_use {
                found.push(*name);
            }
        }
    }
    found
}

#[test]
fn the_core_names_no_platform_crate() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    for part in CORE {
        rust_files(&src.join(part), &mut files);
    }
    assert!(
        files.len() > 20,
        "the core's files were not found: {files:?}"
    );
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for name in platform_crates_named(line) {
                offences.push(format!("{}:{}: {name}", file.display(), number + 1));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "platform crates in the core:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_scan_sees_imports_and_paths_but_not_comments() {
    assert_eq!(platform_crates_named("use tokio::time::sleep;"), ["tokio"]);
    assert_eq!(
        platform_crates_named("    let c = reqwest::Client::new();"),
        ["reqwest"]
    );
    assert_eq!(
        platform_crates_named("use worker::{Env, Request};"),
        ["worker"]
    );
    assert_eq!(platform_crates_named("use hyper;"), ["hyper"]);
    assert!(platform_crates_named("// hyper's decode.rs, tokio::spawn").is_empty());
    assert!(platform_crates_named("let worker = 1; crate::platform::workers::run();").is_empty());
}
