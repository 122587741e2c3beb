//! The bodies of keygate's fuzz targets, as plain functions of a byte slice.
//!
//! Each target panics (through `assert!`) when a property fails, so the same function serves two
//! drivers: libFuzzer, through the thin wrappers in the repository's `fuzz/` directory (nightly
//! features, run by hand or on a schedule), and the stable test `tests/replay.rs`, which replays
//! the checked-in corpus `fuzz/corpus/<target>/` and a few thousand deterministic pseudo-random
//! inputs on every `cargo test`, so CI exercises every property without libFuzzer.
//!
//! See `docs/fuzzing.md` for what each target asserts and how to run it.

pub mod amount;
pub mod config;
pub mod ed25519_batch;
pub mod engine;
pub mod input;
pub mod keyfmt;
pub mod params;
pub mod scan;
pub mod verify;

pub use input::Input;

/// A target's body: panics when a property fails.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its `fuzz/fuzz_targets/<name>.rs` wrapper and of its corpus
/// directory), so drivers iterate over one list and cannot forget a target.
pub const TARGETS: &[(&str, Target)] = &[
    ("params", params::run),
    ("verify", verify::run),
    ("keyfmt", keyfmt::run),
    ("amount", amount::run),
    ("engine", engine::run),
    ("config", config::run),
    ("scan", scan::run),
    ("ed25519_batch", ed25519_batch::run),
];
