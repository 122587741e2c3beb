//! `keygate-load`: starts a real `keygate serve` and measures endpoints on it, side by side.
//!
//! The machine is noisy, so endpoints are interleaved over several rounds and the median of the
//! rounds is reported, each as a ratio to unsigned `GET /api/v3/ping` on the same server in the
//! same run. Run with `cargo run --release -p keygate-load -- --help`.

// A benchmark tool reports on stdout, and times with the wall clock.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use anyhow::{Context as _, bail};
use clap::Parser;
use keygate_client::{Client, Signer};
use reqwest::Method;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Load benchmark for keygate.
#[derive(Debug, Parser)]
struct Args {
    /// The keygate binary (build it with `cargo build --release -p keygate`).
    #[arg(long, default_value = "target/release/keygate")]
    keygate: PathBuf,
    /// `--sync` mode of the server: normal (survives kill -9) or full (also power loss).
    #[arg(long, default_value = "normal")]
    sync: String,
    /// Rounds; each round runs every endpoint once, in turn.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per endpoint per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
}

struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}

fn keygate(bin: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
    let mut child = Command::new(bin)
        .args(args)
        .env("KEYGATE_DATA_DIR", dir.join("data"))
        .env("KEYGATE_MASTER_KEY_FILE", dir.join("master.key"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("keygate {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn start(args: &Args) -> anyhow::Result<Server> {
    let dir = tempfile::tempdir()?;
    let mut child = Command::new(&args.keygate)
        .args(["serve", "--listen", "127.0.0.1:0", "--market-maker", "--rate-limits", "off", "--sync", &args.sync])
        .env("KEYGATE_DATA_DIR", dir.path().join("data"))
        .env("KEYGATE_MASTER_KEY_FILE", dir.path().join("master.key"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", args.keygate.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
    let url = line.trim().strip_prefix("keygate listening on ").context("no address printed")?.to_owned();
    Ok(Server { child, url, dir })
}

fn now_ms() -> keygate_proto::UnixMillis {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    keygate_proto::UnixMillis(u64::try_from(d.as_millis()).unwrap_or(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Ping,
    AccountHmac,
    OrderIoc,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Ping => "GET /api/v3/ping",
            Self::AccountHmac => "GET /api/v3/account (HMAC)",
            Self::OrderIoc => "POST /api/v3/order (IOC, durable)",
        }
    }
}

struct Round {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

async fn run(endpoint: Endpoint, client: Arc<Client>, http: reqwest::Client, url: &str, args: &Args) -> Round {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, http, url, errors, seq) =
            (Arc::clone(&client), http.clone(), url.to_owned(), Arc::clone(&errors), Arc::clone(&seq));
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match endpoint {
                    Endpoint::Ping => {
                        http.get(format!("{url}/api/v3/ping")).send().await.is_ok_and(|r| r.status() == 200)
                    }
                    Endpoint::AccountHmac => client
                        .signed(Method::GET, "/api/v3/account", &[("omitZeroBalances", "true")])
                        .await
                        .is_ok_and(|a| a.status == 200),
                    Endpoint::OrderIoc => {
                        // Far below the market, so it never fills: every answer is 200 EXPIRED, and
                        // every order is still journaled before it is answered.
                        let id = format!("load-{}", seq.fetch_add(1, Ordering::Relaxed));
                        let params = [
                            ("symbol", "BTCUSDT"),
                            ("side", "BUY"),
                            ("type", "LIMIT"),
                            ("timeInForce", "IOC"),
                            ("quantity", "0.001"),
                            ("price", "10000"),
                            ("newClientOrderId", id.as_str()),
                        ];
                        client.signed(Method::POST, "/api/v3/order", &params).await.is_ok_and(|a| a.status == 200)
                    }
                };
                if ok {
                    lat.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Round {
        rps: all.len() as f64 / args.seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors: errors.load(Ordering::Relaxed),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = start(&args)?;
    let dir = server.dir.path();
    keygate(&args.keygate, dir, &["accounts", "create", "load", "--password-stdin"], Some("load test password\n"))?;
    keygate(&args.keygate, dir, &["deposit", "--account", "load", "--asset", "USDT", "--amount", "100000000"], None)?;
    let k: serde_json::Value = serde_json::from_str(&keygate(
        &args.keygate,
        dir,
        &["keys", "create", "--account", "load", "--permissions", "read,trade", "--json"],
        None,
    )?)?;
    let key = k["api_key"].as_str().context("api_key")?;
    let secret = k["secret"].as_str().context("secret")?;
    let client = Arc::new(Client::new(server.url.clone(), key, Signer::hmac(secret), Arc::new(now_ms)));
    let http = reqwest::Client::new();
    let endpoints = [Endpoint::Ping, Endpoint::AccountHmac, Endpoint::OrderIoc];
    let mut results: Vec<Vec<Round>> = endpoints.iter().map(|_| Vec::new()).collect();
    for round in 0..args.rounds {
        for (i, e) in endpoints.iter().enumerate() {
            let r = run(*e, Arc::clone(&client), http.clone(), &server.url, &args).await;
            eprintln!(
                "round {} {:<36} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  errors {}",
                round + 1,
                e.name(),
                r.rps,
                r.p50_ms,
                r.p99_ms,
                r.errors
            );
            results[i].push(r);
        }
    }
    let ping = median(results[0].iter().map(|r| r.rps).collect());
    println!(
        "\nkeygate-load: --sync {} --rounds {} --seconds {} --connections {} (medians over rounds)",
        args.sync, args.rounds, args.seconds, args.connections
    );
    println!("  {:<36} {:>10} {:>9} {:>9} {:>8} {:>7}", "endpoint", "req/s", "p50 ms", "p99 ms", "errors", "/ping");
    for (i, e) in endpoints.iter().enumerate() {
        let rps = median(results[i].iter().map(|r| r.rps).collect());
        let p50 = median(results[i].iter().map(|r| r.p50_ms).collect());
        let p99 = median(results[i].iter().map(|r| r.p99_ms).collect());
        let errors: u64 = results[i].iter().map(|r| r.errors).sum();
        println!("  {:<36} {rps:>10.0} {p50:>9.2} {p99:>9.2} {errors:>8} {:>7.2}", e.name(), rps / ping);
    }
    drop(server);
    Ok(())
}
