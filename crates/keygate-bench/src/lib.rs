//! Shared helpers for keygate's benchmarks.
//!
//! Benchmarks print ratios against a baseline measured in the same run, because this machine is
//! noisy (about ±10 % run to run) and absolute numbers mislead; see `docs/benchmarks.md`.

use std::path::{Path, PathBuf};

/// Criterion's mean estimate, in nanoseconds, of benchmark `group/name` from its output directory.
#[must_use]
pub fn mean_ns(target: &Path, group: &str, name: &str) -> Option<f64> {
    let path: PathBuf = target.join("criterion").join(group).join(name).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Where criterion wrote its estimates: `CARGO_TARGET_DIR` (or `target`) when it holds them, else
/// the workspace's `target` seen from the bench crate's directory, where `cargo bench` runs it.
#[must_use]
pub fn criterion_target() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    if target.join("criterion").exists() { target } else { PathBuf::from("../../target") }
}
