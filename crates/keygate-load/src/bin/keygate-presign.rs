//! `keygate-presign`: writes a pool of signed requests for wrk (`scripts/load-wrk`), one per
//! line as `METHOD /path?query`, each with its own microsecond timestamp, so every signature is
//! new to the server's replay guard and verified in full.
//!
//! wrk cannot sign; signing in Rust (rather than Python) covers Ed25519 without extra packages.
//! Usage: `keygate-presign DEMO_KEYS_JSON ENDPOINT COUNT OUT_POOL OUT_KEY`, with ENDPOINT one of
//! `account-hmac` (demo-read), `account-ed25519` (demo-ed25519) or `order-test` (demo-trade).
//! Windows are 10 s (30 s for Ed25519): short enough that a few rounds at 100k req/s stay inside
//! the replay guard's million signatures, long enough for wrk to load the pool.
//! For `account-ed25519` it also prints the median time of one `verify_strict` on this machine
//! (in µs), which the Ed25519 target is stated against.

// A benchmark tool reports on stdout, and times with the wall clock.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use anyhow::{Context as _, bail};
use keygate_client::Signer;
use std::io::Write as _;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [keys, endpoint, count, out_pool, out_key] = args.as_slice() else {
        bail!("usage: keygate-presign DEMO_KEYS_JSON account-hmac|account-ed25519|order-test COUNT OUT_POOL OUT_KEY");
    };
    let count: u64 = count.parse().context("COUNT")?;
    let demo: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(keys)?)?;
    let label = match endpoint.as_str() {
        "account-hmac" => "demo-read",
        "account-ed25519" => "demo-ed25519",
        "order-test" => "demo-trade",
        other => bail!("unknown endpoint {other:?}"),
    };
    let key = demo["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["label"] == label))
        .with_context(|| format!("no key {label} in {keys}"))?;
    let signer = match key["private_key_file"].as_str() {
        Some(pem_file) => {
            Signer::ed25519_pem(&std::fs::read_to_string(pem_file)?).map_err(|e| anyhow::anyhow!("{e}"))?
        }
        None => Signer::hmac(key["secret"].as_str().context("secret")?),
    };
    let (method, path, params) = match endpoint.as_str() {
        "order-test" => (
            "POST",
            "/api/v3/order/test",
            "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000&recvWindow=10000",
        ),
        // Ed25519 pools take seconds to sign: a wider window keeps their first requests valid.
        "account-ed25519" => ("GET", "/api/v3/account", "omitZeroBalances=true&recvWindow=30000"),
        _ => ("GET", "/api/v3/account", "omitZeroBalances=true&recvWindow=10000"),
    };
    let base_us =
        u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_micros()).unwrap_or(0);
    let mut out = std::io::BufWriter::new(std::fs::File::create(out_pool)?);
    for i in 0..count {
        let q = format!("{params}&timestamp={}", base_us + i);
        let sig = signer.sign(q.as_bytes());
        writeln!(out, "{method} {path}?{q}&signature={sig}")?;
    }
    out.flush()?;
    std::fs::write(out_key, format!("{}\n", key["api_key"].as_str().context("api_key")?))?;
    if let Signer::Ed25519(k) = &signer {
        use ed25519_dalek::Signer as _;
        let (vk, msg) = (k.verifying_key(), b"omitZeroBalances=true&recvWindow=10000&timestamp=1700000000000000");
        let sig = k.sign(msg);
        let mut runs: Vec<f64> = (0..15)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..200 {
                    std::hint::black_box(vk.verify_strict(std::hint::black_box(msg), &sig).is_ok());
                }
                t.elapsed().as_secs_f64() * 1e6 / 200.0
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        println!("{:.1}", runs[runs.len() / 2]);
    }
    Ok(())
}
