//! `keygate-load`: starts a real `keygate serve` and measures endpoints on it, side by side.
//!
//! The machine is noisy, so endpoints are interleaved over several rounds and the median of the
//! rounds is reported, each as a ratio to unsigned `GET /api/v3/ping` on the same server in the
//! same run. Run with `cargo run --release -p keygate-load -- --help`.
//!
//! `--mode keys` instead measures how signed-request latency and server memory grow with the
//! number of stored keys: it prepares one data directory per count in `--key-counts`, inserts the
//! keys through the store's public API (`Store::insert_key`, one transaction and one audit record
//! per key, as the service does; all under one account, so the service's per-account key limit
//! is not applied), starts one server per directory (each loads every key into its in-memory
//! cache at start), and then sends signed `GET /api/v3/account` requests that rotate over many of
//! the stored keys, alternating between the servers round by round.

// A benchmark tool reports on stdout, and times with the wall clock.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::disallowed_methods)]

use anyhow::{Context as _, bail};
use clap::Parser;
use keygate_auth::{
    AccountId, ApiKeyId, Entropy, EntropyError, HmacSecret, KeyStatus, Permissions, PublicKey, Restrictions,
};
use keygate_client::Signer;
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::datadir::DataDir;
use keygate_store::{AuditDraft, KeyMaterial, KeyRecord, Store, SyncMode};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, Url};
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
    /// `endpoints` (ping, signed reads, orders side by side) or `keys` (latency and memory
    /// against the number of stored keys).
    #[arg(long, default_value = "endpoints")]
    mode: String,
    /// The server's simulated taker flow (`serve --market-flow`): orders a second on each
    /// market, or `off` (the default, as in the runs before it existed).
    #[arg(long, default_value = "off")]
    market_flow: String,
    /// `--sync` mode of the server: normal (survives kill -9) or full (also power loss).
    #[arg(long, default_value = "normal")]
    sync: String,
    /// Rounds; each round runs every endpoint (or every server, in `keys` mode) once, in turn.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per endpoint per round.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// `keys` mode: how many keys each server stores, comma-separated.
    #[arg(long, default_value = "1000,1000000", value_delimiter = ',')]
    key_counts: Vec<usize>,
    /// `keys` mode: hmac or ed25519.
    #[arg(long, default_value = "hmac")]
    key_type: String,
    /// `keys` mode: how many distinct keys the requests rotate over (spread evenly over all the
    /// stored ones; capped at the count).
    #[arg(long, default_value_t = 100_000)]
    rotate_over: usize,
    /// `endpoints` mode: measure only these besides ping (account-hmac, account-ed25519,
    /// order-test, order, account-hmac-presigned), comma-separated; all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// `endpoints` mode: requests in the pre-signed pool, signed before each round of
    /// account-hmac-presigned.
    #[arg(long, default_value_t = 200_000)]
    presign_pool: usize,
    /// Serve with the rate limits of this TOML file (`serve --rate-limits-config`) instead of
    /// `--rate-limits off`: to measure what counting costs, give limits no load reaches.
    #[arg(long, value_name = "FILE")]
    rate_limits_config: Option<PathBuf>,
    /// Serve with `--redis-url URL`: limits counted in Redis (needs `--rate-limits-config`,
    /// since nothing is counted with limits off).
    #[arg(long, value_name = "URL", requires = "rate_limits_config")]
    redis_url: Option<String>,
}

struct Server {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    /// `http://addr/metrics` of the server's metrics listener.
    metrics: String,
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

/// Starts `keygate serve` on `dir` (a fresh one when `None`).
fn start(args: &Args, dir: Option<tempfile::TempDir>) -> anyhow::Result<Server> {
    let dir = match dir {
        Some(d) => d,
        None => tempfile::tempdir()?,
    };
    let mut serve = Command::new(&args.keygate);
    serve.args(["serve", "--listen", "127.0.0.1:0", "--market-maker", "--sync", &args.sync]);
    serve.args(["--market-flow", &args.market_flow, "--metrics-listen", "127.0.0.1:0"]);
    match &args.rate_limits_config {
        Some(file) => serve.arg("--rate-limits-config").arg(file),
        None => serve.args(["--rate-limits", "off"]),
    };
    if let Some(url) = &args.redis_url {
        serve.args(["--redis-url", url, "--redis-key-prefix", &format!("keygate-load:{}:", std::process::id())]);
    }
    let mut child = serve
        .env("KEYGATE_DATA_DIR", dir.path().join("data"))
        .env("KEYGATE_MASTER_KEY_FILE", dir.path().join("master.key"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("cannot run {}", args.keygate.display()))?;
    let mut reader = BufReader::new(child.stdout.as_mut().context("no stdout")?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let url = line.trim().strip_prefix("keygate listening on ").context("no address printed")?.to_owned();
    // The console's line, then the metrics address.
    let mut metrics = String::new();
    for _ in 0..3 {
        line.clear();
        reader.read_line(&mut line)?;
        if let Some(m) = line.trim().strip_prefix("metrics: ") {
            m.clone_into(&mut metrics);
            break;
        }
    }
    Ok(Server { child, url, dir, metrics })
}

/// Memory of a process from `/proc/<pid>/status`, in KiB.
#[derive(Debug, Clone, Copy)]
struct Mem {
    /// `VmRSS`: resident, all kinds.
    rss: u64,
    /// `RssAnon`: resident anonymous memory (the heap), without mapped files and libraries.
    anon: u64,
    /// `VmHWM`: peak resident.
    peak: u64,
}

fn mem_of(pid: &str) -> Mem {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    Mem { rss: field("VmRSS:"), anon: field("RssAnon:"), peak: field("VmHWM:") }
}

/// Bytes per key of the server's in-memory key cache alone, measured in this process: the
/// growth of this process's resident heap while `count` keys are inserted one by one into a
/// `KeyCache` (each record dropped right after), divided by `count`. It leaves out what the
/// server's start-up costs besides the cache (reading every key from the store at once).
fn cache_bytes_per_key(count: usize, key_type: &str) -> anyhow::Result<f64> {
    let mut entropy = Xorshift(0x5851_f42d_4c95_7f2d);
    let before = mem_of("self").anon;
    let cache = keygate_service::KeyCache::default();
    for _ in 0..count {
        let (id, material) = new_key(&mut entropy, key_type)?;
        cache.upsert(&record(id, AccountId(1), material, now_ms()))?;
    }
    let after = mem_of("self").anon;
    let held = cache.len();
    drop(cache);
    Ok((after.saturating_sub(before) as f64 * 1024.0) / held.max(1) as f64)
}

/// A fresh key id with fresh material of `key_type` (`hmac` or `ed25519`), plus the Ed25519
/// signing key when there is one.
fn new_key_signing(
    entropy: &mut Xorshift,
    key_type: &str,
) -> anyhow::Result<(ApiKeyId, KeyMaterial, Option<ed25519_dalek::SigningKey>)> {
    let id = ApiKeyId::generate(entropy).map_err(|e| anyhow::anyhow!("{e}"))?;
    if key_type == "ed25519" {
        let mut seed = [0u8; 32];
        entropy.fill(&mut seed).map_err(|e| anyhow::anyhow!("{e}"))?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
        let pem = {
            use ed25519_dalek::pkcs8::EncodePublicKey as _;
            signing.verifying_key().to_public_key_pem(Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?
        };
        Ok((id, KeyMaterial::Public(PublicKey::parse_ed25519(&pem)?), Some(signing)))
    } else {
        let secret = HmacSecret::generate(entropy).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok((id, KeyMaterial::Hmac(secret), None))
    }
}

fn new_key(entropy: &mut Xorshift, key_type: &str) -> anyhow::Result<(ApiKeyId, KeyMaterial)> {
    new_key_signing(entropy, key_type).map(|(id, m, _)| (id, m))
}

/// A read-only active key record, as the service would store it.
fn record(id: ApiKeyId, account_id: AccountId, material: KeyMaterial, now: keygate_proto::UnixMillis) -> KeyRecord {
    KeyRecord {
        id,
        account_id,
        label: String::new(),
        material,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        status: KeyStatus::Active,
        status_reason: None,
        created_at: now,
        created_by: "operator".into(),
        updated_at: now,
        updated_by: "operator".into(),
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
        withdrawal_holds: keygate_store::WithdrawalHolds::default(),
        app_id: None,
    }
}

/// CPU time (user + system) a process has used, in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    // The kernel reports in USER_HZ, 100 on Linux.
    ticks as f64 / 100.0
}

fn now_ms() -> keygate_proto::UnixMillis {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    keygate_proto::UnixMillis(u64::try_from(d.as_millis()).unwrap_or(0))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    Ping,
    AccountHmac,
    AccountEd25519,
    OrderTest,
    OrderIoc,
    /// Signed account reads rotating over many keys (`keys` mode).
    AccountRotating,
    /// HMAC account reads from a pool signed before the round, as wrk-style generators send
    /// them: the load generator no longer signs inside the timed window, the server still
    /// verifies every request in full.
    AccountHmacPresigned,
}

impl Endpoint {
    /// The name `--only` takes.
    fn short(self) -> &'static str {
        match self {
            Self::Ping => "ping",
            Self::AccountHmac => "account-hmac",
            Self::AccountEd25519 => "account-ed25519",
            Self::OrderTest => "order-test",
            Self::OrderIoc => "order",
            Self::AccountRotating => "account-rotating",
            Self::AccountHmacPresigned => "account-hmac-presigned",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ping => "GET /api/v3/ping",
            Self::AccountHmac => "GET /api/v3/account (HMAC)",
            Self::AccountEd25519 => "GET /api/v3/account (Ed25519)",
            Self::OrderTest => "POST /api/v3/order/test (HMAC)",
            Self::OrderIoc => "POST /api/v3/order (IOC, durable)",
            Self::AccountRotating => "GET /api/v3/account (rotating keys)",
            Self::AccountHmacPresigned => "GET /api/v3/account (HMAC, pre-signed)",
        }
    }
}

/// The keys one run may sign with. Every endpoint goes through one shared HTTP client and reads
/// the whole body without parsing it, so the load generator spends the same on each answer and
/// the ratios to ping are about the server.
struct Clients {
    hmac: Arc<(String, Signer)>,
    ed25519: Option<Arc<(String, Signer)>>,
    /// Keys to rotate over.
    rotating: Arc<Rotation>,
    /// Complete URLs of HMAC account reads signed before the round (pre-signed mode).
    presigned: Arc<Vec<Url>>,
}

/// `count` account reads signed with `key` right now, each with its own timestamp (in µs, which
/// the server accepts like Binance does: `base + i`, so no two requests of the pool are the same
/// and each one's signature is new to the server's replay guard). They stay valid for the
/// default recvWindow of 5 s, longer than a round; a round that sends more than `count` requests
/// starts over at the first, which a USER_DATA read allows (only TRADE signatures are
/// single-use), and the server verifies the repeat in full all the same.
fn presign(url: &str, key: &(String, Signer), count: usize) -> Vec<Url> {
    let base_us = u64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_micros(),
    )
    .unwrap_or(0);
    (0..count as u64)
        .map(|i| {
            let q = format!("omitZeroBalances=true&timestamp={}", base_us + i);
            let sig = key.1.sign(q.as_bytes());
            format!("{url}/api/v3/account?{q}&signature={sig}")
        })
        .filter_map(|u| Url::parse(&u).ok())
        .collect()
}

/// Binance's API key header.
const X_MBX_APIKEY: HeaderName = HeaderName::from_static("x-mbx-apikey");

/// The `X-MBX-APIKEY` header value of `key`, built once per connection (and cloned per request)
/// so the load generator does not validate and copy the same text for every request.
fn key_header(key: &(String, Signer)) -> Option<HeaderValue> {
    HeaderValue::from_str(&key.0).ok()
}

/// Sends one signed request (every parameter in the query, as `keygate-client` does) to `base`
/// (the endpoint's URL, parsed once per connection; only the query is set per request) with
/// `api_key` (from [`key_header`]) and returns true if and only if it was answered 200 and its
/// body was read.
async fn signed(
    http: &reqwest::Client,
    base: &Url,
    method: Method,
    (api_key, signer): (Option<HeaderValue>, &Signer),
    params: &[(&str, &str)],
) -> bool {
    let Some(api_key) = api_key else { return false };
    let q = keygate_client::signed_query(params, now_ms(), signer);
    let mut url = base.clone();
    url.set_query(Some(&q));
    match http.request(method, url).header(X_MBX_APIKEY, api_key).send().await {
        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
        Err(_) => false,
    }
}

/// `url` + `path`, parsed.
fn endpoint_url(url: &str, path: &str) -> Url {
    match Url::parse(&format!("{url}{path}")) {
        Ok(u) => u,
        Err(e) => panic!("the server URL {url}{path} does not parse: {e}"),
    }
}

struct Round {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The slowest answered request, in ms: shows stalls that p99 hides.
    max_ms: f64,
    errors: u64,
    /// CPU the server used per answered request, in µs.
    server_us: f64,
    /// CPU this load generator used per answered request, in µs (signing, HTTP, timing).
    client_us: f64,
}

/// The order every order request sends: far below the market, so it never fills.
fn order_params(id: &str) -> [(&str, &str); 7] {
    [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "IOC"),
        ("quantity", "0.001"),
        ("price", "10000"),
        ("newClientOrderId", id),
    ]
}

async fn run(
    endpoint: Endpoint,
    clients: &Clients,
    http: reqwest::Client,
    url: &str,
    server_pid: u32,
    args: &Args,
) -> Round {
    let server_pid = server_pid.to_string();
    let (server_cpu, client_cpu) = (cpu_seconds(&server_pid), cpu_seconds("self"));
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let errors = Arc::new(AtomicU64::new(0));
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (hmac, ed, rotating) = (Arc::clone(&clients.hmac), clients.ed25519.clone(), Arc::clone(&clients.rotating));
        let presigned = Arc::clone(&clients.presigned);
        let (http, errors, seq) = (http.clone(), Arc::clone(&errors), Arc::clone(&seq));
        // Every URL is parsed once per connection, not per request, for every endpoint alike.
        let ping_url = endpoint_url(url, "/api/v3/ping");
        let account_url = endpoint_url(url, "/api/v3/account");
        let order_test_url = endpoint_url(url, "/api/v3/order/test");
        let order_url = endpoint_url(url, "/api/v3/order");
        let hmac_header = key_header(&hmac);
        let ed_header = ed.as_deref().and_then(key_header);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t = Instant::now();
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let ok = match endpoint {
                    Endpoint::Ping => match http.get(ping_url.clone()).send().await {
                        Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                        Err(_) => false,
                    },
                    Endpoint::AccountHmac => {
                        signed(
                            &http,
                            &account_url,
                            Method::GET,
                            (hmac_header.clone(), &hmac.1),
                            &[("omitZeroBalances", "true")],
                        )
                        .await
                    }
                    Endpoint::AccountEd25519 => match &ed {
                        Some(ed) => {
                            let key = (ed_header.clone(), &ed.1);
                            signed(&http, &account_url, Method::GET, key, &[("omitZeroBalances", "true")]).await
                        }
                        None => false,
                    },
                    Endpoint::AccountHmacPresigned => {
                        let i = usize::try_from(n).unwrap_or(0) % presigned.len().max(1);
                        match (presigned.get(i), hmac_header.clone()) {
                            (Some(u), Some(key)) => match http.get(u.clone()).header(X_MBX_APIKEY, key).send().await {
                                Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                                Err(_) => false,
                            },
                            _ => false,
                        }
                    }
                    Endpoint::AccountRotating => {
                        // Consecutive requests use different keys, spread over the whole pool.
                        let i = usize::try_from(n).unwrap_or(0) % rotating.len().max(1);
                        match rotating.get(i) {
                            Some(key) => {
                                let key = (key_header(key), &key.1);
                                signed(&http, &account_url, Method::GET, key, &[("omitZeroBalances", "true")]).await
                            }
                            None => false,
                        }
                    }
                    Endpoint::OrderTest => {
                        // Validated like a real order (and its signature made single-use), never
                        // journaled.
                        let id = format!("test-{n}");
                        signed(&http, &order_test_url, Method::POST, (hmac_header.clone(), &hmac.1), &order_params(&id))
                            .await
                    }
                    Endpoint::OrderIoc => {
                        // Every answer is 200 EXPIRED, and every order is journaled first.
                        let id = format!("load-{n}");
                        signed(&http, &order_url, Method::POST, (hmac_header.clone(), &hmac.1), &order_params(&id))
                            .await
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
    let per_request = |secs: f64| secs * 1e6 / all.len().max(1) as f64;
    let server_us = per_request(cpu_seconds(&server_pid) - server_cpu);
    let client_us = per_request(cpu_seconds("self") - client_cpu);
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    let sent = seq.load(Ordering::Relaxed);
    if endpoint == Endpoint::AccountHmacPresigned && sent > clients.presigned.len() as u64 {
        eprintln!(
            "  pre-signed pool of {} used for {sent} requests: {} repeated a signature (allowed for reads)",
            clients.presigned.len(),
            sent - clients.presigned.len() as u64
        );
    }
    Round {
        rps: all.len() as f64 / args.seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        max_ms: all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
        errors: errors.load(Ordering::Relaxed),
        server_us,
        client_us,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A xorshift64* stream: key material for throwaway benchmark keys, fast enough for a million.
struct Xorshift(u64);

impl Entropy for Xorshift {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        for b in dest {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            *b = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8;
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.mode.as_str() {
        "endpoints" => endpoints(&args).await,
        "keys" => keys(&args).await,
        other => bail!("unknown --mode {other:?}: endpoints or keys"),
    }
}

fn print_round(round: usize, name: &str, r: &Round) {
    eprintln!(
        "round {round} {name:<40} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>7.2} ms  max {:>7.1} ms  errors {}  cpu/req server {:.1} µs client {:.1} µs",
        r.rps, r.p50_ms, r.p99_ms, r.max_ms, r.errors, r.server_us, r.client_us
    );
}

/// Medians over rounds: (req/s, p50 ms, p99 ms, errors in all rounds).
fn medians(rounds: &[Round]) -> (f64, f64, f64, u64) {
    (
        median(rounds.iter().map(|r| r.rps).collect()),
        median(rounds.iter().map(|r| r.p50_ms).collect()),
        median(rounds.iter().map(|r| r.p99_ms).collect()),
        rounds.iter().map(|r| r.errors).sum(),
    )
}

async fn endpoints(args: &Args) -> anyhow::Result<()> {
    let server = start(args, None)?;
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
    let hmac = Arc::new((key.to_owned(), Signer::hmac(secret)));
    // An Ed25519 key: the public half registered through the CLI like any user's.
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        signing.verifying_key().to_public_key_pem(Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?
    };
    let pem_path = dir.join("ed25519.pub.pem");
    std::fs::write(&pem_path, pem)?;
    let pem_arg = pem_path.to_string_lossy().into_owned();
    let e: serde_json::Value = serde_json::from_str(&keygate(
        &args.keygate,
        dir,
        &["keys", "create", "--account", "load", "--permissions", "read", "--ed25519-public-key", &pem_arg, "--json"],
        None,
    )?)?;
    let ed_key = e["api_key"].as_str().context("api_key of the Ed25519 key")?;
    let ed25519 = Arc::new((ed_key.to_owned(), Signer::Ed25519(signing)));
    let mut clients =
        Clients { hmac, ed25519: Some(ed25519), rotating: Arc::new(Vec::new()), presigned: Arc::new(Vec::new()) };
    let http = reqwest::Client::new();
    let all = [
        Endpoint::Ping,
        Endpoint::AccountHmac,
        Endpoint::AccountHmacPresigned,
        Endpoint::AccountEd25519,
        Endpoint::OrderTest,
        Endpoint::OrderIoc,
    ];
    // Ping stays first: every ratio is to it.
    let endpoints: Vec<Endpoint> = all
        .into_iter()
        .filter(|e| *e == Endpoint::Ping || args.only.is_empty() || args.only.iter().any(|o| e.short() == o))
        .collect();
    let mut results: Vec<Vec<Round>> = endpoints.iter().map(|_| Vec::new()).collect();
    let depths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let queue = tokio::spawn(sample_queue_depth(http.clone(), server.metrics.clone(), Arc::clone(&depths)));
    for round in 0..args.rounds {
        for (i, e) in endpoints.iter().enumerate() {
            if *e == Endpoint::AccountHmacPresigned {
                // Signed before the round's clock and CPU counters start.
                clients.presigned = Arc::new(presign(&server.url, &clients.hmac, args.presign_pool));
            }
            let r = run(*e, &clients, http.clone(), &server.url, server.child.id(), args).await;
            clients.presigned = Arc::new(Vec::new());
            print_round(round + 1, e.name(), &r);
            results[i].push(r);
        }
    }
    let (ping, ping_p50, ping_p99, _) = medians(&results[0]);
    println!(
        "\nkeygate-load: --sync {} --rounds {} --seconds {} --connections {} (medians over rounds)",
        args.sync, args.rounds, args.seconds, args.connections
    );
    println!(
        "  {:<40} {:>10} {:>9} {:>9} {:>8} {:>9} {:>10} {:>9} {:>9} {:>11} {:>11}",
        "endpoint",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "req/ping",
        "round med",
        "p50/ping",
        "p99/ping",
        "server µs",
        "client µs"
    );
    for (i, e) in endpoints.iter().enumerate() {
        let (rps, p50, p99, errors) = medians(&results[i]);
        // Ping ran just before in the same round: the per-round ratio cancels slow drifts.
        let per_round = median(results[i].iter().zip(&results[0]).map(|(r, p)| r.rps / p.rps).collect());
        let server_us = median(results[i].iter().map(|r| r.server_us).collect());
        let client_us = median(results[i].iter().map(|r| r.client_us).collect());
        println!(
            "  {:<40} {rps:>10.0} {p50:>9.2} {p99:>9.2} {errors:>8} {:>9.2} {per_round:>10.2} {:>9.2} {:>9.2} {server_us:>11.1} {client_us:>11.1}",
            e.name(),
            rps / ping,
            p50 / ping_p50,
            p99 / ping_p99
        );
    }
    println!(
        "  (req/ping: ratio of the medians; round med: median over rounds of each round's ratio to that round's ping;\n   \
         server µs, client µs: CPU time per answered request from /proc/<pid>/stat, medians over rounds)"
    );
    queue.abort();
    let depths = depths.lock().map(|d| d.clone()).unwrap_or_default();
    if !depths.is_empty() {
        let mut sorted = depths.clone();
        sorted.sort_unstable();
        let p99 = sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)];
        println!(
            "  engine queue depth (--market-flow {}): max {}, p99 {p99}, mean {:.2} over {} samples every 100 ms",
            args.market_flow,
            sorted.last().copied().unwrap_or(0),
            depths.iter().sum::<u64>() as f64 / depths.len() as f64,
            depths.len()
        );
    }
    drop(server);
    Ok(())
}

/// Samples the engine's queue depth (`keygate_engine_queue_depth` on the metrics listener) every
/// 100 ms into `into`, so that a run shows whether the engine keeps up (with `--market-flow`, the
/// simulated market's batches share it with the load). Runs until aborted.
async fn sample_queue_depth(http: reqwest::Client, metrics: String, into: Arc<std::sync::Mutex<Vec<u64>>>) {
    if metrics.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Ok(res) = http.get(&metrics).send().await else { continue };
        let Ok(text) = res.text().await else { continue };
        if let Some(v) = text
            .lines()
            .find_map(|l| l.strip_prefix("keygate_engine_queue_depth "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            && let Ok(mut seen) = into.lock()
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // A gauge of at most 8,192.
            seen.push(v as u64);
        }
    }
}

/// Stores `count` fresh keys of `key_type` for account `load` in `dir` through the store's
/// public API, with the server stopped (the data directory lock is held meanwhile). Returns the
/// key ids and signers of up to `rotate_over` of them, spread evenly over all.
async fn store_keys(dir: &Path, count: usize, key_type: &str, rotate_over: usize) -> anyhow::Result<Rotation> {
    const WRITERS: usize = 4;
    let data = DataDir::new(dir.join("data"));
    let _lock = data.try_lock("keygate-load").map_err(|e| anyhow::anyhow!("{e}"))?;
    let cipher = Arc::new(SecretCipher::new(MasterKey::load_or_create(&dir.join("master.key"))?, Vec::new()));
    let store: Arc<dyn Store> = keygate_store::open(None, &data.database(), cipher, SyncMode::Normal).await?;
    let account: AccountId = store.account_by_name("load").await?.context("account load")?.id;
    let now = now_ms();
    let step = count.div_ceil(rotate_over.clamp(1, count.max(1))).max(1);
    let mut entropy = Xorshift(0x9e37_79b9_7f4a_7c15 ^ now.0);
    let t = Instant::now();
    let mut rotation = Vec::new();
    // Several writers: SQLite takes one write at a time, but encoding and sealing overlap.
    let mut senders = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<KeyRecord>(1024);
        senders.push(tx);
        let store = Arc::clone(&store);
        writers.push(tokio::spawn(async move {
            while let Some(rec) = rx.recv().await {
                let audit = AuditDraft {
                    at: rec.created_at,
                    actor: "operator:keygate-load".into(),
                    action: "key.create".into(),
                    target: rec.id.as_str().to_owned(),
                    account_id: Some(rec.account_id),
                    source: None,
                    details: serde_json::json!({ "type": rec.material.key_type(), "bulk": "keygate-load" }),
                };
                store.insert_key(&rec, audit).await?;
            }
            anyhow::Ok(())
        }));
    }
    for i in 0..count {
        let (id, material, signing) = new_key_signing(&mut entropy, key_type)?;
        if i % step == 0 {
            let signer = match (signing, &material) {
                (Some(signing), _) => Signer::Ed25519(signing),
                (None, KeyMaterial::Hmac(secret)) => Signer::hmac(secret.expose()),
                (None, KeyMaterial::Public(_)) => bail!("a public key without its signing key"),
            };
            rotation.push((id.as_str().to_owned(), signer));
        }
        let rec = record(id, account, material, now);
        if senders[i % WRITERS].send(rec).await.is_err() {
            break;
        }
        if (i + 1) % 100_000 == 0 {
            eprintln!("  stored {} of {count} keys ({:.0} s)", i + 1, t.elapsed().as_secs_f64());
        }
    }
    drop(senders);
    for w in writers {
        w.await??;
    }
    store.close().await;
    eprintln!("  stored {count} {key_type} keys in {:.1} s", t.elapsed().as_secs_f64());
    Ok(rotation)
}

/// Key ids with their signers, for rotating requests.
type Rotation = Vec<(String, Signer)>;

/// One server of the `keys` mode, with what was measured on it.
struct KeyServer {
    count: usize,
    server: Server,
    clients: Clients,
    /// Memory right after start (every key loaded into the cache).
    started: Mem,
    rounds: Vec<Round>,
}

async fn keys(args: &Args) -> anyhow::Result<()> {
    // First, while this process's heap is fresh, so the growth is the cache's own.
    let cache_n = args.key_counts.iter().copied().max().unwrap_or(0).min(200_000);
    let cache_per_key = cache_bytes_per_key(cache_n, &args.key_type)?;
    let mut servers = Vec::new();
    for &count in &args.key_counts {
        let dir = tempfile::tempdir()?;
        keygate(
            &args.keygate,
            dir.path(),
            &["accounts", "create", "load", "--password-stdin"],
            Some("load test password\n"),
        )?;
        let rotation = store_keys(dir.path(), count, &args.key_type, args.rotate_over).await?;
        let t = Instant::now();
        let server = start(args, Some(dir))?;
        let mem = mem_of(&server.child.id().to_string());
        eprintln!("  server with {count} keys listening after {:.1} s: {mem:?} KiB", t.elapsed().as_secs_f64());
        // Unused in this mode; it only fills the struct.
        let hmac = Arc::new((String::new(), Signer::hmac("")));
        let clients = Clients { hmac, ed25519: None, rotating: Arc::new(rotation), presigned: Arc::new(Vec::new()) };
        servers.push(KeyServer { count, server, clients, started: mem, rounds: Vec::new() });
    }
    let http = reqwest::Client::new();
    for round in 0..args.rounds {
        for s in &mut servers {
            let r = run(Endpoint::AccountRotating, &s.clients, http.clone(), &s.server.url, s.server.child.id(), args)
                .await;
            print_round(round + 1, &format!("{} keys, {}", s.count, args.key_type), &r);
            s.rounds.push(r);
        }
    }
    println!(
        "\nkeygate-load --mode keys: --key-type {} --rotate-over {} --rounds {} --seconds {} --connections {} \
         (signed GET /api/v3/account, medians over rounds)",
        args.key_type, args.rotate_over, args.rounds, args.seconds, args.connections
    );
    println!(
        "  {:>10} {:>8} {:>10} {:>9} {:>9} {:>8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "keys",
        "rotating",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "RSS start",
        "anon start",
        "RSS after",
        "anon after",
        "peak RSS"
    );
    let mut rows = Vec::new();
    for s in &servers {
        let (rps, p50, p99, errors) = medians(&s.rounds);
        let after = mem_of(&s.server.child.id().to_string());
        println!(
            "  {:>10} {:>8} {rps:>10.0} {p50:>9.2} {p99:>9.2} {errors:>8} {:>12} {:>12} {:>12} {:>12} {:>12}",
            s.count,
            s.clients.rotating.len(),
            s.started.rss,
            s.started.anon,
            after.rss,
            after.anon,
            after.peak
        );
        rows.push((s.count, p50, p99, s.started, after));
    }
    println!("  (memory in KiB from /proc/<pid>/status: VmRSS, RssAnon, VmHWM)");
    if let (Some(small), Some(large)) = (rows.first(), rows.last())
        && large.0 > small.0
    {
        let keys = (large.0 - small.0) as f64;
        let per = |a: u64, b: u64| (b as f64 - a as f64) * 1024.0 / keys;
        println!(
            "  {} / {} keys: p50 ratio {:.2}, p99 ratio {:.2} (target <= 1.2)",
            large.0,
            small.0,
            large.1 / small.1,
            large.2 / small.2
        );
        println!(
            "  server memory per key (difference between the two servers / difference in keys): \
             {:.0} B RSS and {:.0} B heap at start, {:.0} B RSS and {:.0} B heap after the rounds",
            per(small.3.rss, large.3.rss),
            per(small.3.anon, large.3.anon),
            per(small.4.rss, large.4.rss),
            per(small.4.anon, large.4.anon),
        );
        println!(
            "  key cache alone, {cache_n} {} keys built in this process: {cache_per_key:.0} B per key",
            args.key_type
        );
    }
    Ok(())
}
