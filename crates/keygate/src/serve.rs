//! `keygate serve`.

use crate::cli::parse_duration_ms;
use crate::context::Context;
use anyhow::{Context as _, bail};
use clap::Args;
use keygate_server::serve::{ServerConfig, start};
use keygate_store::datadir::LockError;
use keygate_store::sqlite::SyncMode;
use std::net::SocketAddr;

/// `serve` flags.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, env = "KEYGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// A proxy (address or CIDR) whose X-Forwarded-For is believed (repeatable).
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    pub trusted_proxy: Vec<String>,
    /// Markets and assets of a new sandbox (TOML); an existing sandbox keeps the ones it was
    /// created with.
    #[arg(long, value_name = "FILE")]
    pub exchange_config: Option<std::path::PathBuf>,
    /// Run the simulated market (docs/demo.md): a market maker (account `market-maker`) quoting
    /// around a seeded random walk, a taker flow (account `market-flow`) trading against the book,
    /// and, on a sandbox without trades, --history-days of one-minute history.
    #[arg(long)]
    pub market_maker: bool,
    /// Seed of the simulated market's random walk, history and flow (the same seed gives the same
    /// prices).
    #[arg(long, alias = "market-maker-seed", value_name = "SEED", default_value_t = 1)]
    pub market_seed: u64,
    /// The simulated taker flow: orders a second on each market (e.g. 1, 0.2, 5; at most 100),
    /// or `off`.
    #[arg(long, value_name = "RATE|off", default_value = "1", value_parser = parse_flow_rate)]
    pub market_flow: FlowRate,
    /// Days of one-minute history a sandbox without trades gets when the simulated market first
    /// starts (0 to 365); computed from the seed, not stored.
    #[arg(long, value_name = "N", default_value_t = keygate_exchange::DEFAULT_HISTORY_DAYS,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(keygate_exchange::MAX_HISTORY_DAYS)))]
    pub history_days: u32,
    /// Durability of writes: `normal` survives a crash of the process (kill -9); `full` also
    /// survives power loss.
    #[arg(long, value_parser = ["normal", "full"], default_value = "normal")]
    pub sync: String,
    /// Binance's rate limits (request weight per IP, orders per account, 429 then 418 bans):
    /// `off` for load benchmarks.
    #[arg(long, value_parser = ["on", "off"], default_value = "on")]
    pub rate_limits: String,
    /// Rate limits from a TOML file instead of Binance's defaults (see docs/demo.md).
    #[arg(long, value_name = "FILE")]
    pub rate_limits_config: Option<std::path::PathBuf>,
    /// A ready-to-use sandbox: a funded `demo` account, three keys and a console login written
    /// to <data-dir>/demo-keys.json (mode 0600), the market maker on, rate limits at 10x
    /// Binance's. Loopback only.
    #[arg(long)]
    pub demo: bool,
    /// With --demo: delete the demo sandbox in the data directory and start a fresh one.
    #[arg(long, requires = "demo")]
    pub demo_reset: bool,
    /// Serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", env = "KEYGATE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", env = "KEYGATE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// A host name the web console answers to besides the listen address, localhost, 127.0.0.1
    /// and [::1] (repeatable; `name` or `name:port`). Other Host headers are refused, which stops
    /// DNS-rebinding attacks on a local console.
    #[arg(long = "console-host", value_name = "HOST")]
    pub console_host: Vec<String>,
    /// Sandbox faucet deposits an account may take per 24 hours from the console's wallet page
    /// (0 turns the faucet off; deposits are then operator actions only).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub faucet_per_day: usize,
    /// Most open connections from one client address (IPv6: one /64); more are closed at once,
    /// so one host cannot hold all 4,096. Trusted proxies are exempt.
    #[arg(long, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections_per_ip: u32,
    /// Who may create console accounts: `open` (anyone, at /console/signup; at most 10 sign-ups
    /// per client address per hour), `invite` (whoever has an unused invite code from `keygate
    /// invites create`, entered on the sign-up page; same limit) or `closed` (only the operator,
    /// with `keygate accounts create`). Default closed, and open with --demo.
    #[arg(long, value_enum, value_name = "MODE")]
    pub signup: Option<SignupMode>,
    /// How long withdrawals wait after an owner turns 2FA on (the whole account), gives a key the
    /// withdraw permission (that key) or adds a withdrawal address (that address): e.g. `24h`,
    /// `90m`, `2d`; `0` starts no holds. Default 24h, and 0 with --demo.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms)]
    pub withdrawal_hold: Option<u64>,
    /// Log lines (the access log included) as readable text, or as one JSON object per line for
    /// log shippers. Either way on stderr, filtered by RUST_LOG.
    #[arg(long, value_enum, env = "KEYGATE_LOG_FORMAT", default_value_t = crate::LogFormat::Text)]
    pub log_format: crate::LogFormat,
    /// Serve Prometheus metrics at GET /metrics on this address (off by default). Never on the
    /// API address; no authentication, and nothing secret in it (see docs/operations.md).
    #[arg(long, value_name = "ADDR", env = "KEYGATE_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
    /// With --database-url: where this node takes the exchange commands the other nodes send it
    /// while it is the exchange's writer (plain HTTP, each call signed with a key derived from
    /// the master key; keep it on loopback or a private network). Port 0 picks a free port.
    #[arg(long, value_name = "ADDR", env = "KEYGATE_CLUSTER_LISTEN", default_value = "127.0.0.1:0")]
    pub cluster_listen: SocketAddr,
    /// The URL the other nodes reach --cluster-listen at (default: http:// and the address it
    /// bound). Required when --cluster-listen is a wildcard address such as 0.0.0.0.
    #[arg(long, value_name = "URL", env = "KEYGATE_CLUSTER_ADVERTISE")]
    pub cluster_advertise: Option<String>,
    /// This node's name in the exchange writer's lease and in logs (default: the host name and
    /// the process id).
    #[arg(long, value_name = "NAME", env = "KEYGATE_NODE_NAME")]
    pub node_name: Option<String>,
    /// Share rate limits (request weight per IP, orders per account) and the login, sign-up and
    /// 2FA throttles with every node given the same Redis (e.g. redis://127.0.0.1:6379/0).
    /// Without it each node counts alone, and exchangeInfo says rateLimitsScope NODE. While
    /// Redis does not answer, the node counts alone too, warns once, and stays ready.
    #[arg(long, value_name = "URL", env = "KEYGATE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// What every key this node writes in Redis starts with: give deployments that share one
    /// Redis different prefixes.
    #[arg(long, value_name = "PREFIX", default_value = "keygate:", requires = "redis_url")]
    pub redis_key_prefix: String,
    /// Disable API keys not used (nor created or edited) for this many days, warning their
    /// owners 7 days and 1 day ahead; `off` never does. Default 90 (or the --key-policy file's).
    #[arg(long, value_name = "DAYS|off", value_parser = parse_days)]
    pub unused_key_days: Option<PolicyDays>,
    /// The same, sooner, for keys that can trade or withdraw and have no IP allowlist. Default 30.
    #[arg(long, value_name = "DAYS|off", value_parser = parse_days)]
    pub unrestricted_key_idle_days: Option<PolicyDays>,
    /// Keys that can withdraw must expire within this many days (one given withdraw without an
    /// expiry gets the longest); `off` lets them live forever. Default 365.
    #[arg(long, value_name = "DAYS|off", value_parser = parse_days)]
    pub withdraw_key_max_days: Option<PolicyDays>,
    /// Live keys an account may hold (at most 100). Default 100.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_keys_per_account: Option<u32>,
    /// After a password change, hours the owner has to re-confirm trade and withdraw keys (with
    /// a step-up) before they are suspended; 0 suspends them at once. Default 24.
    #[arg(long, value_name = "HOURS")]
    pub reconfirm_grace_hours: Option<u32>,
    /// How often the key policies are applied (on one node: the exchange's writer).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_ms, default_value = "60s")]
    pub policy_sweep_every: u64,
    /// Let owners register plain http:// webhook URLs (a receiver on this machine, tests).
    /// Without it, webhook URLs must be https://.
    #[arg(long)]
    pub webhook_allow_http: bool,
    /// Let owners register webhook URLs on loopback, private, link-local and other non-public
    /// addresses (checked again, after name resolution, at each delivery). Without it, they are
    /// refused, so an owner cannot make the server probe its own network.
    #[arg(long)]
    pub webhook_allow_private_targets: bool,
    /// The delays before each retry of a failed webhook delivery, comma-separated; after the
    /// last, the delivery is dead (shown in the console, redeliverable).
    #[arg(long, value_name = "DURATIONS", value_parser = parse_schedule,
          default_value = "5s,5m,30m,2h,5h,10h,14h,20h,24h")]
    pub webhook_retry_schedule: Schedule,
    /// How long one webhook delivery attempt may take.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration_ms, default_value = "15s")]
    pub webhook_timeout: u64,
    /// A public key that signs leak reports POSTed to /keygate/v1/leak-reports (GitHub's secret
    /// scanning partner program, or any scanner signing the same way): ID=FILE, where ID is the
    /// key identifier the reporter sends and FILE a PEM P-256 public key (repeatable). Without
    /// one, the endpoint answers 404.
    #[arg(long = "leak-report-key", value_name = "ID=FILE")]
    pub leak_report_key: Vec<String>,
}

/// A policy's number of days, or off (`serve --unused-key-days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyDays(pub Option<u32>);

/// `30` or `off`.
fn parse_days(text: &str) -> Result<PolicyDays, String> {
    match text.trim() {
        "off" => Ok(PolicyDays(None)),
        n => match n.parse::<u32>() {
            Ok(d) if (1..=36_500).contains(&d) => Ok(PolicyDays(Some(d))),
            _ => Err(format!("{text:?} is not a number of days from 1 to 36500, or off")),
        },
    }
}

/// The deployment's key policies: the --key-policy file's (or the defaults), then the flags.
fn key_policy(ctx: &Context, args: &ServeArgs) -> keygate_service::policy::KeyPolicy {
    let mut p = ctx.key_policy();
    if let Some(d) = args.unused_key_days {
        p.unused_days = d.0;
    }
    if let Some(d) = args.unrestricted_key_idle_days {
        p.unrestricted_idle_days = d.0;
    }
    if let Some(d) = args.withdraw_key_max_days {
        p.withdraw_max_days = d.0;
    }
    if let Some(n) = args.max_keys_per_account {
        p.max_keys = n;
    }
    if let Some(h) = args.reconfirm_grace_hours {
        p.reconfirm_grace_hours = h;
    }
    p
}

/// A retry schedule: delays in ms.
#[derive(Debug, Clone)]
pub struct Schedule(pub Vec<u64>);

fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let delays = text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(crate::cli::parse_duration_ms)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Schedule(delays))
}

/// Reads `--leak-report-key ID=FILE` values.
fn leak_report_keys(specs: &[String]) -> anyhow::Result<Vec<keygate_auth::leak::ReporterKey>> {
    specs
        .iter()
        .map(|spec| {
            let (id, path) = spec
                .split_once('=')
                .filter(|(id, path)| !id.is_empty() && !path.is_empty())
                .with_context(|| format!("--leak-report-key {spec:?}: expected ID=FILE"))?;
            let pem =
                std::fs::read_to_string(path).with_context(|| format!("--leak-report-key: cannot read {path}"))?;
            keygate_auth::leak::ReporterKey::from_pem(id, &pem).map_err(anyhow::Error::msg)
        })
        .collect()
}

/// `--market-flow`: taker orders per 1000 seconds on each market; 0 is off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRate(pub u64);

/// Parses `--market-flow`: `off`, or orders a second (up to three decimals, at most 100).
fn parse_flow_rate(text: &str) -> Result<FlowRate, String> {
    if text == "off" {
        return Ok(FlowRate(0));
    }
    let bad = || format!("{text:?}: give orders a second on each market (e.g. 1 or 0.5, at most 100) or `off`");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || frac.len() > 3 || !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<3}").parse().map_err(|_| bad())? };
    let milli = whole.checked_mul(1000).and_then(|w| w.checked_add(frac)).ok_or_else(bad)?;
    if milli > keygate_exchange::market_maker::MAX_FLOW_RATE_MILLI {
        return Err(bad());
    }
    Ok(FlowRate(milli))
}

/// Who may create console accounts (`serve --signup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignupMode {
    /// Anyone may sign up at /console/signup (the demo's default).
    Open,
    /// Only the operator creates accounts (`keygate accounts create`); the default.
    Closed,
    /// Whoever holds an unused invite code (`keygate invites create`) may sign up, once per code.
    Invite,
}

/// The rate limits `serve` enforces: off, a file's, 10x Binance's for the demo, or Binance's.
fn rate_limits(args: &ServeArgs) -> anyhow::Result<keygate_server::ratelimit::RateLimitConfig> {
    use keygate_server::ratelimit::RateLimitConfig;
    if args.rate_limits == "off" {
        return Ok(RateLimitConfig::off());
    }
    Ok(match &args.rate_limits_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            RateLimitConfig::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        // Ten times Binance's, so that test suites pointed at the demo do not trip them.
        None if args.demo => RateLimitConfig::binance().scaled(10),
        None => RateLimitConfig::binance(),
    })
}

/// Runs the server until Ctrl-C or SIGTERM.
///
/// # Errors
/// When the data directory is in use, the address cannot be bound, or the store cannot open.
pub async fn run(
    ctx: &Context,
    args: ServeArgs,
    access_log: Option<keygate_server::access_line::DirectLog>,
) -> anyhow::Result<()> {
    let mut trusted = Vec::new();
    for t in &args.trusted_proxy {
        let net =
            keygate_auth::IpAllowlist::parse(&[t.as_str()]).map_err(|e| anyhow::anyhow!("--trusted-proxy {e}"))?;
        trusted.extend(net.nets().iter().copied());
    }
    if args.demo && !args.listen.ip().is_loopback() {
        bail!(
            "refusing to serve the demo on {}: --demo writes its API secrets to {} for scripts, so it listens \
             only on loopback (127.0.0.1 or ::1). Drop --demo, or listen on 127.0.0.1",
            args.listen,
            ctx.data_dir.path().join(crate::demo::KEYS_FILE).display()
        );
    }
    let rate_limits = rate_limits(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(keygate_server::tls::TlsConfig::from_pem_files(cert, key)?),
        _ => None,
    };
    if !args.listen.ip().is_loopback() && trusted.is_empty() && tls.is_none() {
        bail!(
            "refusing to listen on {} without TLS: API secrets, signatures, console passwords and session cookies \
             would cross the network in clear text. Listen on 127.0.0.1 (the default), serve HTTPS with --tls-cert \
             and --tls-key, or put keygate behind a TLS-terminating proxy and pass --trusted-proxy",
            args.listen
        );
    }
    let _lock = match ctx.lock("keygate serve") {
        Ok(l) => l,
        Err(LockError::Held { dir, holder }) => {
            bail!("data directory {dir} is in use by {holder}; stop that server first or use another --data-dir")
        }
        Err(e) => return Err(e.into()),
    };
    if args.demo_reset {
        crate::demo::reset(ctx)?;
    }
    let sync = if args.sync == "full" { SyncMode::Full } else { SyncMode::Normal };
    let exchange_config = match &args.exchange_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            keygate_exchange::ExchangeConfig::from_toml(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => keygate_exchange::ExchangeConfig::default(),
    };
    // The demo is for trying withdrawals at once; everywhere else the holds protect owners.
    let withdrawal_hold_ms = args.withdrawal_hold.unwrap_or(if args.demo { 0 } else { 24 * 3_600_000 });
    // A public sign-up page is a choice: off unless asked for, except in the demo (loopback only).
    let signup = args.signup.unwrap_or(if args.demo { SignupMode::Open } else { SignupMode::Closed });
    let shared_counters = match args.redis_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => {
            let counters = keygate_redis::RedisCounters::new(
                url,
                &args.redis_key_prefix,
                keygate_service::counters::CALL_TIMEOUT,
            )?;
            tracing::info!(at = %keygate_service::counters::CounterStore::describe(&counters), "rate limits and login throttles are shared through Redis");
            Some(std::sync::Arc::new(counters) as std::sync::Arc<dyn keygate_service::counters::CounterStore>)
        }
        None => None,
    };
    let service_config = keygate_service::ServiceConfig {
        withdrawal_hold_ms,
        sign_up: match signup {
            SignupMode::Open => keygate_service::SignUpMode::Open,
            SignupMode::Closed => keygate_service::SignUpMode::Closed,
            SignupMode::Invite => keygate_service::SignUpMode::Invite,
        },
        shared_counters,
        key_policy: key_policy(ctx, &args),
        webhooks: keygate_service::WebhookConfig {
            allow_http: args.webhook_allow_http,
            allow_private_targets: args.webhook_allow_private_targets,
            retry_schedule_ms: args.webhook_retry_schedule.0.clone(),
            timeout_ms: args.webhook_timeout.max(1),
            ..keygate_service::WebhookConfig::default()
        },
        leak_reporters: leak_report_keys(&args.leak_report_key)?,
        ..keygate_service::ServiceConfig::default()
    };
    let (cluster, channel) = cluster_setup(ctx, &args).await?;
    let (cluster_node, cluster_endpoint) = (cluster.node.clone(), cluster.endpoint.clone());
    let assembly = ctx
        .assembly(sync)?
        .config(service_config)
        .exchange(keygate_service::ExchangeSetup { config: exchange_config, cluster, ..Default::default() })
        .flush_every(std::time::Duration::from_secs(1))
        .sweep_policies_every(std::time::Duration::from_millis(args.policy_sweep_every.max(1_000)));
    let service = ctx.start(assembly).await?;
    let channel = match channel {
        Some(listener) => {
            Some(keygate_server::cluster::serve_channel(listener, service.clone()).map_err(anyhow::Error::msg)?)
        }
        None => None,
    };
    // Whatever happens from here, the service's tasks stop and its store closes before the
    // runtime does (a task left running into the runtime's shutdown would fail noisily).
    let result: anyhow::Result<()> = async {
        let mut demo = if args.demo { Some(crate::demo::prepare(ctx, &service).await?) } else { None };
        let market_maker = if args.market_maker || args.demo {
            let account = system_account(&service, "market-maker").await?;
            let flow = match args.market_flow.0 {
                0 => None,
                rate_milli => Some(keygate_exchange::market_maker::FlowConfig {
                    account: system_account(&service, "market-flow").await?,
                    rate_milli,
                }),
            };
            Some(keygate_exchange::MarketMakerConfig {
                flow,
                history_days: Some(args.history_days),
                ..keygate_exchange::MarketMakerConfig::new(account, args.market_seed)
            })
        } else {
            None
        };
        let config = ServerConfig {
            market_maker,
            listen: args.listen,
            trusted_proxies: trusted,
            admin_socket: Some(ctx.data_dir.admin_socket()),
            limits: verify_limits(&rate_limits),
            rate_limits,
            tls: tls.clone(),
            console_hosts: args.console_host.clone(),
            faucet_per_day: args.faucet_per_day,
            max_connections_per_ip: args.max_connections_per_ip as usize,
            metrics_listen: args.metrics_listen,
            access_log: access_log.clone(),
            ..ServerConfig::default()
        };
        // Before the address is printed: see wait_for_signal.
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let mut handle =
            start(config, service.clone()).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        sayln!("keygate listening on {scheme}://{}", handle.addr);
        sayln!("web console: {scheme}://{}/console/", handle.addr);
        if let Some(addr) = handle.metrics_addr {
            sayln!("metrics: http://{addr}/metrics");
        }
        sayln!("data directory: {}", ctx.data_dir.path().display());
        if !cluster_node.is_empty() {
            let role = if service.engine().is_ok_and(keygate_service::engine::Engine::is_writer) {
                "writes the exchange"
            } else {
                "follows the exchange's writer"
            };
            sayln!("node {cluster_node:?} {role}; commands from other nodes at {cluster_endpoint}");
        }
        if let Some(demo) = demo.as_mut() {
            let path = demo.write(&format!("{scheme}://{}", handle.addr))?.display().to_string();
            sayln!(
                "demo: account {:?}, its API keys and console login are in {path} (mode 0600)",
                crate::demo::ACCOUNT
            );
            sayln!("demo: e.g. jq -r '.keys[] | select(.label == \"demo-trade\") | .api_key, .secret' {path}");
            sayln!("demo: console at {scheme}://{}/console/; start over with --demo-reset", handle.addr);
        }
        let trigger = handle.take_shutdown();
        tokio::spawn(async move {
            wait_for_signal(term).await;
            tracing::info!("shutting down");
            if let Some(tx) = trigger {
                let _ = tx.send(());
            }
        });
        handle.wait().await.context("server failed")
    }
    .await;
    if let Some(channel) = channel {
        channel.abort();
    }
    service.shutdown().await;
    result
}

/// Who this node is to the other nodes of a PostgreSQL deployment, and the listener of its end
/// of the channel between them (bound now: the writer's lease records where it is). A SQLite
/// store has one process, which writes the exchange itself: nothing to set up.
async fn cluster_setup(
    ctx: &Context,
    args: &ServeArgs,
) -> anyhow::Result<(keygate_service::cluster::ClusterSetup, Option<tokio::net::TcpListener>)> {
    use keygate_service::cluster::ClusterSetup;
    if !ctx.uses_postgres() {
        return Ok((ClusterSetup::default(), None));
    }
    let listener = tokio::net::TcpListener::bind(args.cluster_listen)
        .await
        .with_context(|| format!("cannot listen on --cluster-listen {}", args.cluster_listen))?;
    let bound = listener.local_addr()?;
    let endpoint = match &args.cluster_advertise {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if bound.ip().is_unspecified() => bail!(
            "--cluster-listen {bound} is a wildcard address: pass --cluster-advertise with the URL the other \
             nodes reach this one at (e.g. http://10.0.0.5:{})",
            bound.port()
        ),
        None => format!("http://{bound}"),
    };
    let node = args.node_name.clone().unwrap_or_else(default_node_name);
    let forward = keygate_server::cluster::HttpForward::new(std::sync::Arc::new(keygate_service::clock::SystemClock))
        .map_err(anyhow::Error::msg)?;
    Ok((ClusterSetup { node, endpoint, forward: Some(std::sync::Arc::new(forward)) }, Some(listener)))
}

/// The host name and the process id: unique among the nodes of one deployment.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Waits for Ctrl-C or SIGTERM. The SIGTERM handler is installed by the caller before the server
/// announces its address, so a supervisor (or a test) that stops it right after reading that line
/// gets a clean shutdown instead of the default action killing the process.
async fn wait_for_signal(term: Option<tokio::signal::unix::Signal>) {
    let ctrl_c = tokio::signal::ctrl_c();
    match term {
        Some(mut term) => {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        None => {
            let _ = ctrl_c.await;
        }
    }
}

/// An account of the simulated market (`market-maker`, `market-flow`), created (by the system,
/// without a console password) on first use.
async fn system_account(service: &keygate_service::Service, name: &str) -> anyhow::Result<keygate_proto::AccountId> {
    let system = keygate_service::Actor::System { policy: name.into() };
    if let Ok(a) = service.account(&system, name).await {
        return Ok(keygate_proto::AccountId(a.id));
    }
    match service.create_account_without_password(&system, name).await {
        Ok(a) => Ok(keygate_proto::AccountId(a.id)),
        // Several nodes starting at once on one database: another one created it meanwhile.
        Err(keygate_service::ServiceError::Conflict(_)) => {
            Ok(keygate_proto::AccountId(service.account(&system, name).await?.id))
        }
        Err(e) => Err(e.into()),
    }
}

/// The verifier's limits for `rate_limits`: the per-key share of the replay guard is a rate
/// limit too, off with the others (`--rate-limits off`), for load benchmarks that send one key's
/// requests far faster than any client would.
fn verify_limits(rate_limits: &keygate_server::ratelimit::RateLimitConfig) -> keygate_auth::Limits {
    let defaults = keygate_auth::Limits::default();
    let replay_per_key = if rate_limits.enabled { defaults.replay_per_key } else { usize::MAX };
    keygate_auth::Limits { replay_per_key, ..defaults }
}

#[cfg(test)]
mod tests {
    use super::{parse_duration_ms, verify_limits};
    use keygate_server::ratelimit::RateLimitConfig;

    #[test]
    fn rate_limits_off_also_lift_the_per_key_replay_quota_and_nothing_else() {
        let on = verify_limits(&RateLimitConfig::binance());
        let off = verify_limits(&RateLimitConfig::off());
        assert_eq!(on, keygate_auth::Limits::default());
        assert_eq!(off.replay_per_key, usize::MAX);
        assert_eq!(keygate_auth::Limits { replay_per_key: on.replay_per_key, ..off }, on);
    }

    #[test]
    fn durations_are_zero_or_a_number_with_a_unit() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_duration_ms("90m"), Ok(5_400_000));
        assert_eq!(parse_duration_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        for bad in ["", "24", "h", "1.5h", "-1h", "24 h", "1w", "400d", "99999999999999999999h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
