//! The Python virtualenv `target/pyenv` with the reference implementations
//! the interoperability tests compare against (botocore, PyJWT,
//! cryptography) and cfn-lint, at the versions `scripts/setup.sh` pins: its
//! `PYTHON_REQUIREMENTS=(...)` line is read here, so there is one list.
//! `scripts/setup.sh` makes it; so does [`python`] on first use if it is
//! missing or its pins changed (needs `python3` and PyPI once). Both write
//! the same stamp file, so each sees the other's work.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

const VENV: &str = "target/pyenv";
/// The pins last installed, as `scripts/setup.sh` writes them.
const STAMP: &str = ".agent-edge-requirements";

/// `target/pyenv/bin/python`, with the pinned packages installed (once per
/// test process; concurrent callers wait for the first).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(install).clone()
}

/// Runs [`python`] with `args` and `input` on its stdin, and reads the JSON
/// it prints; or why not (with what it wrote to stderr).
pub fn run_json<S: AsRef<OsStr>>(args: &[S], input: &[u8]) -> Result<Value, String> {
    let mut child = Command::new(python())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run python: {e}"))?;
    let mut stdin = child.stdin.take().expect("a piped stdin");
    stdin
        .write_all(input)
        .map_err(|e| format!("writing to python: {e}"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for python: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "it failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| format!("its output is not JSON: {e}"))
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The pins of `scripts/setup.sh`, e.g. `["botocore==1.43.107", ...]`.
fn requirements() -> Vec<String> {
    let path = repository().join("scripts/setup.sh");
    let script = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let list = script
        .lines()
        .find_map(|line| line.trim().strip_prefix("PYTHON_REQUIREMENTS=("))
        .and_then(|rest| rest.split_once(')'))
        .map(|(list, _)| list)
        .expect("scripts/setup.sh: a PYTHON_REQUIREMENTS=(...) line");
    list.split_whitespace().map(str::to_owned).collect()
}

fn install() -> PathBuf {
    let venv = repository().join(VENV);
    let python = venv.join("bin/python");
    let stamp = venv.join(STAMP);
    // setup.sh's `${PYTHON_REQUIREMENTS[*]}`: the pins joined by spaces.
    let pins = requirements().join(" ");
    let installed = std::fs::read_to_string(&stamp).unwrap_or_default();
    if python.exists() && installed.trim() == pins {
        return python;
    }
    let run = |program: &Path, args: &[&str]| {
        let status = Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    run(
        Path::new("python3"),
        &["-m", "venv", venv.to_str().expect("a UTF-8 path")],
    );
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ];
    args.extend(pins.split(' '));
    run(&python, &args);
    std::fs::write(&stamp, format!("{pins}\n"))
        .unwrap_or_else(|e| panic!("writing {}: {e}", stamp.display()));
    python
}

#[test]
fn setup_pins_the_packages_the_tests_import() {
    let pins = requirements();
    for package in ["botocore==", "PyJWT==", "cryptography==", "cfn-lint=="] {
        assert!(
            pins.iter().any(|pin| pin.starts_with(package)),
            "scripts/setup.sh does not pin {package}: {pins:?}"
        );
    }
}
