//! The README's walk-through, run as a newcomer runs it: `scripts/readme-check.sh` starts
//! this build's `berth serve` on loopback in a fresh directory, runs every command block the
//! README marks (`<!-- check: … -->`) in order in one shell, with the receiver of
//! `examples/receiver.py` on 127.0.0.1, and compares each output with the README's sample
//! (ids, times, tokens and keys normalised to `…`). A README that drifts from what Berth
//! prints fails here, with a diff.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_berth");

fn readme_check(extra: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Command::new("bash")
        .arg(root.join("scripts/readme-check.sh"))
        .args(["--berth", BIN])
        .args(extra)
        .current_dir(root)
        .output()
        .expect("run scripts/readme-check.sh (needs bash, python3, curl and jq)")
}

fn report(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every sample output of the README is what its commands print, run in order.
#[test]
fn readme_samples_match_a_fresh_run() {
    let out = readme_check(&[]);
    assert!(
        out.status.success(),
        "the README's samples differ from what its commands print; fix the README (or run \
         `bash scripts/readme-check.sh --update` and review the diff):\n{}",
        report(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("ran and matched"), "{}", report(&out));
}

/// The check is not vacuous: a changed sample (the first JSON one after a checked command)
/// fails it, with a diff of that line.
#[test]
fn readme_check_fails_when_a_sample_drifts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let run = readme
        .find("<!-- check: run -->")
        .expect("a checked command");
    let sample = run + readme[run..].find("```json\n").expect("a JSON sample") + "```json\n".len();
    let line = readme[sample..]
        .lines()
        .next()
        .expect("a sample line")
        .to_owned();
    let mut drifted = readme.clone();
    drifted.insert_str(sample, "drift");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("README.md");
    std::fs::write(&path, drifted).expect("write the drifted README");

    let out = readme_check(&["--readme", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", report(&out));
    assert!(
        stderr.contains(&format!("-drift{line}\n+{line}\n")) && stderr.contains("1 of "),
        "{}",
        report(&out)
    );
}
