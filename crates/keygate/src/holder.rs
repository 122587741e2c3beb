//! The key holder's commands: `vault`, `check`, `portfolio`, `export` (docs/holder.md). Thin: the
//! work is in `keygate-holder`; this module reads arguments, passphrases and secrets, and prints.
//! None of them needs a data directory or a server of keygate's own: they talk to exchanges
//! (keygate or Binance) over HTTP with the credentials of the vault.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use comfy_table::Table;
use keygate_holder::check::{self, Severity};
use keygate_holder::export;
use keygate_holder::portfolio;
use keygate_holder::vault::{Credential, Entry, KdfParams, Purpose, Vault};
use keygate_service::Clock as _;
use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// A command of the holder's tools that ends with a chosen exit status (a finding at or above
/// `--fail-on`, the status of the command `vault exec` ran).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process's exit status.
    pub code: u8,
    /// Printed to stderr when not empty.
    pub message: String,
}

/// Where the vault is and how to unlock it; shared by every holder command, and accepted before
/// or after a `vault` subcommand's name (`keygate vault --vault F list`, `keygate vault list
/// --vault F`).
#[derive(Debug, Args, Clone)]
pub struct VaultOpts {
    /// The vault file [default: ~/.config/keygate/vault.json].
    #[arg(long, env = "KEYGATE_VAULT", value_name = "PATH", global = true)]
    pub vault: Option<PathBuf>,
    /// Read the passphrase from the first line of standard input (else KEYGATE_VAULT_PASSPHRASE,
    /// else a prompt).
    #[arg(long, global = true)]
    pub passphrase_stdin: bool,
}

/// `keygate vault`.
#[derive(Debug, Args)]
pub struct VaultArgs {
    #[command(flatten)]
    opts: VaultOpts,
    #[command(subcommand)]
    cmd: VaultCmd,
}

/// Vault commands.
#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Make a new, empty vault (asks for a passphrase of at least 12 characters).
    Init,
    /// Add an exchange credential. The secret (an HMAC secret, or an Ed25519 private key in
    /// PKCS#8 PEM) is read from standard input or a prompt, never from the command line.
    Add {
        /// A name for it (letters, digits, '-', '_', '.'; a letter or digit first).
        name: String,
        /// The exchange's base URL, e.g. https://api.binance.com or http://127.0.0.1:8080.
        #[arg(long)]
        url: String,
        /// The API key id.
        #[arg(long)]
        api_key: String,
        /// What the key is for; `keygate check` flags permissions beyond it.
        #[arg(long, value_enum)]
        purpose: Option<PurposeArg>,
    },
    /// List the entries: name, exchange, key id, key type, purpose (never a secret).
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an entry.
    Remove {
        /// Its name.
        name: String,
    },
    /// Replace an entry's key with a new one after checking the new one works, then tell how to
    /// revoke the old one. Without --api-key: show the old key's permissions and the steps.
    Rotate {
        /// The entry.
        name: String,
        /// The new key's id (its secret from standard input or a prompt).
        #[arg(long)]
        api_key: Option<String>,
    },
    /// Run a command with one entry's credentials in its environment only: KEYGATE_BASE_URL,
    /// KEYGATE_API_KEY, and KEYGATE_API_SECRET (HMAC) or KEYGATE_PRIVATE_KEY (Ed25519 PEM).
    Exec {
        /// The entry.
        name: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
}

/// `--purpose`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PurposeArg {
    /// Reading only (trackers, tax exports).
    Read,
    /// A trading bot.
    Trade,
    /// Withdrawals intended.
    Withdraw,
}

impl From<PurposeArg> for Purpose {
    fn from(p: PurposeArg) -> Self {
        match p {
            PurposeArg::Read => Self::Read,
            PurposeArg::Trade => Self::Trade,
            PurposeArg::Withdraw => Self::Withdraw,
        }
    }
}

/// `--fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SeverityArg {
    /// Any finding.
    Info,
    /// Low and above.
    Low,
    /// Medium and above.
    Medium,
    /// High and above.
    High,
    /// Critical only.
    Critical,
    /// Never fail on findings.
    Never,
}

/// `keygate check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    opts: VaultOpts,
    /// Vault entries to check [default: all].
    names: Vec<String>,
    /// Check a key outside the vault: the exchange's base URL (with --api-key; the secret from
    /// standard input or a prompt).
    #[arg(long, requires = "api_key", conflicts_with = "names")]
    url: Option<String>,
    /// The key id, with --url.
    #[arg(long, requires = "url")]
    api_key: Option<String>,
    /// What the key is for (overrides the vault entry's purpose).
    #[arg(long, value_enum)]
    purpose: Option<PurposeArg>,
    /// Exit with status 1 when a finding is at or above this severity (for CI).
    #[arg(long, value_enum, default_value = "high")]
    fail_on: SeverityArg,
    /// Warn when a key expires within this many days.
    #[arg(long, default_value_t = 14)]
    expiry_warn_days: u64,
    /// Advise rotating keys older than this many days.
    #[arg(long, default_value_t = 90)]
    max_age_days: u64,
    /// Flag keys not used for this many days (exchanges that report use: keygate).
    #[arg(long, default_value_t = 30)]
    unused_days: u64,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// `keygate portfolio`.
#[derive(Debug, Args)]
pub struct PortfolioArgs {
    #[command(flatten)]
    opts: VaultOpts,
    /// The currency to value everything in.
    #[arg(long, default_value = "USDT")]
    quote: String,
    /// Write an SVG allocation chart here.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// `keygate export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    opts: VaultOpts,
    /// Vault entries to export [default: all].
    names: Vec<String>,
    /// The output directory: history.jsonl, one koinly-ENTRY.csv per account, cointracking.csv
    /// and the cursor file.
    #[arg(long, default_value = "keygate-export")]
    out: PathBuf,
    /// Leave out history before this date, YYYY-MM-DD (UTC) [default: 2017-07-14, Binance's
    /// launch].
    #[arg(long)]
    since: Option<String>,
    /// JSON summary instead of lines.
    #[arg(long)]
    json: bool,
}

fn wall_clock() -> keygate_client::TimeSource {
    Arc::new(|| keygate_service::SystemClock.now().as_millis())
}

fn vault_path(opts: &VaultOpts) -> anyhow::Result<PathBuf> {
    match opts.vault.clone().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => Ok(p),
        None => keygate_holder::vault::default_path()
            .context("no vault path: set --vault, KEYGATE_VAULT, XDG_CONFIG_HOME or HOME"),
    }
}

/// A command's status as a shell reports it: its exit code, or 128 + the signal that ended it
/// (a bot killed by SIGKILL is 137, not a plain failure).
fn exit_code(status: std::process::ExitStatus) -> u8 {
    #[cfg(unix)]
    if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
        return u8::try_from(128 + signal).unwrap_or(1);
    }
    status.code().and_then(|c| u8::try_from(c).ok()).filter(|c| *c != 0).unwrap_or(1)
}

/// The first line of standard input, read a byte at a time from the descriptor itself: a
/// buffered read would take more than the line, and `vault exec` hands the rest of standard
/// input to its command.
fn read_line(what: &str) -> anyhow::Result<Zeroizing<String>> {
    let context = || format!("reading the {what} from stdin");
    let mut bytes = Zeroizing::new(Vec::new());
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        let mut fd = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().with_context(context)?);
        let mut byte = [0u8; 1];
        while fd.read(&mut byte).with_context(context)? == 1 && byte[0] != b'\n' {
            bytes.push(byte[0]);
        }
    }
    #[cfg(not(unix))]
    {
        use std::io::BufRead as _;
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line).with_context(context)?;
        bytes.extend_from_slice(line.trim_end_matches('\n').as_bytes());
    }
    let line = std::str::from_utf8(&bytes).with_context(|| format!("the {what} is not UTF-8"))?;
    Ok(Zeroizing::new(line.trim_end_matches('\r').to_owned()))
}

/// The passphrase: stdin's first line with --passphrase-stdin, else KEYGATE_VAULT_PASSPHRASE,
/// else a prompt (twice when making a vault).
fn passphrase(opts: &VaultOpts, confirm: bool) -> anyhow::Result<Zeroizing<String>> {
    if opts.passphrase_stdin {
        return read_line("passphrase");
    }
    if let Some(p) = std::env::var_os("KEYGATE_VAULT_PASSPHRASE").filter(|p| !p.is_empty()) {
        return Ok(Zeroizing::new(
            p.into_string().map_err(|_| anyhow::anyhow!("KEYGATE_VAULT_PASSPHRASE is not UTF-8"))?,
        ));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for the vault passphrase; pass --passphrase-stdin or set KEYGATE_VAULT_PASSPHRASE");
    }
    let first = Zeroizing::new(rpassword::prompt_password("Vault passphrase: ").context("reading the passphrase")?);
    if confirm {
        let again =
            Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ").context("reading the passphrase")?);
        if first != again {
            bail!("the two passphrases differ");
        }
    }
    Ok(first)
}

/// A secret: the rest of standard input when it is not a terminal (an HMAC secret or a PEM),
/// else a prompt.
fn secret() -> anyhow::Result<Credential> {
    let text = if std::io::stdin().is_terminal() {
        Zeroizing::new(
            rpassword::prompt_password("Secret (HMAC) — for an Ed25519 key pipe its PEM in: ")
                .context("reading the secret")?,
        )
    } else {
        let mut s = Zeroizing::new(String::new());
        std::io::stdin().lock().read_to_string(&mut s).context("reading the secret from stdin")?;
        s
    };
    Ok(Credential::parse(&text)?)
}

fn open(opts: &VaultOpts) -> anyhow::Result<Vault> {
    let path = vault_path(opts)?;
    let pass = passphrase(opts, false)?;
    Ok(Vault::open(&path, pass.as_bytes())?)
}

fn selected<'a>(vault: &'a Vault, names: &[String]) -> anyhow::Result<Vec<&'a Entry>> {
    if names.is_empty() {
        return Ok(vault.entries().iter().collect());
    }
    names.iter().map(|n| vault.get(n).map_err(Into::into)).collect()
}

/// `keygate vault ...`.
///
/// # Errors
/// A clear message; a wrong passphrase changes nothing.
pub async fn vault(args: VaultArgs) -> anyhow::Result<()> {
    let opts = &args.opts;
    match args.cmd {
        VaultCmd::Init => {
            let path = vault_path(opts)?;
            let pass = passphrase(opts, true)?;
            Vault::init(&path, pass.as_bytes(), KdfParams::RECOMMENDED)?;
            outln!("made an empty vault at {} (mode 0600)", path.display());
        }
        VaultCmd::Add { name, url, api_key, purpose } => {
            let mut v = open(opts)?;
            let credential = secret()?;
            let kind = credential.kind();
            v.add(Entry { name: name.clone(), url, api_key, credential, purpose: purpose.map(Into::into) })?;
            outln!("added {name} ({kind} key)");
        }
        VaultCmd::List { json } => {
            let v = open(opts)?;
            let rows: Vec<serde_json::Value> = v
                .entries()
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name, "url": e.url, "api_key": e.api_key,
                        "key_type": e.credential.kind(), "purpose": e.purpose,
                    })
                })
                .collect();
            if json {
                outln!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut t = Table::new();
                t.set_header(["name", "url", "api key", "type", "purpose"]);
                for e in v.entries() {
                    let purpose = e.purpose.map_or("-".to_owned(), |p| format!("{p:?}").to_lowercase());
                    t.add_row([e.name.as_str(), &e.url, &e.api_key, e.credential.kind(), &purpose]);
                }
                outln!("{t}");
            }
        }
        VaultCmd::Remove { name } => {
            let mut v = open(opts)?;
            v.remove(&name)?;
            outln!("removed {name}");
        }
        VaultCmd::Rotate { name, api_key } => rotate(opts, &name, api_key).await?,
        VaultCmd::Exec { name, command } => {
            let v = open(opts)?;
            let e = v.get(&name)?;
            let mut c = std::process::Command::new(&command[0]);
            // The child gets its one entry, never the way into the whole vault.
            c.args(&command[1..])
                .env_remove("KEYGATE_VAULT_PASSPHRASE")
                .env_remove("KEYGATE_VAULT")
                .env("KEYGATE_BASE_URL", e.base_url())
                .env("KEYGATE_API_KEY", &e.api_key);
            match &e.credential {
                Credential::Hmac { secret } => c.env("KEYGATE_API_SECRET", secret),
                Credential::Ed25519 { private_key_pem } => c.env("KEYGATE_PRIVATE_KEY", private_key_pem),
            };
            drop(v);
            // As a shell: 127 for a command not found, 126 for one that cannot be run.
            let status = c.status().map_err(|e| Exit {
                code: if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 },
                message: format!("cannot run {}: {e}", command[0]),
            })?;
            if !status.success() {
                return Err(Exit { code: exit_code(status), message: String::new() }.into());
            }
        }
    }
    Ok(())
}

async fn restrictions(entry: &Entry) -> anyhow::Result<check::Restrictions> {
    let client = keygate_holder::client_for(entry, wall_clock())?;
    Ok(client.call(reqwest::Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await?)
}

fn permissions(r: &check::Restrictions) -> String {
    let mut p = vec!["read"];
    if r.enable_spot_and_margin_trading {
        p.push("trade");
    }
    if r.enable_withdrawals {
        p.push("withdraw");
    }
    format!("{}{}", p.join(","), if r.ip_restrict { ", IP allowlist" } else { ", no IP allowlist" })
}

/// Rotation: an API key cannot make or revoke keys on Binance or keygate (that takes the
/// owner's login), so this guides the owner and does the part that can be checked: the new key
/// must work, and is compared with the old one, before it replaces it in the vault.
async fn rotate(opts: &VaultOpts, name: &str, api_key: Option<String>) -> anyhow::Result<()> {
    let mut v = open(opts)?;
    let old = v.get(name)?.clone();
    let old_r = restrictions(&old).await;
    let Some(api_key) = api_key else {
        outln!("Rotating {name} ({}, key {}):", old.url, old.api_key);
        match &old_r {
            Ok(r) => outln!("  the old key may: {}", permissions(r)),
            Err(e) => outln!("  the old key no longer answers: {e:#}"),
        }
        outln!("1. Make a new key with the same permissions (no wider), preferably Ed25519:");
        outln!("   keygate console: Keys > New key; keygate operator: `keygate keys create`;");
        outln!("   Binance: API Management > Create API.");
        outln!("2. keygate vault rotate {name} --api-key NEW_KEY_ID   (the secret or PEM on stdin or a prompt)");
        outln!("3. Revoke the old key {} where you made it (console: Keys > Revoke).", old.api_key);
        return Ok(());
    };
    if api_key == old.api_key {
        bail!(
            "{name} already holds {api_key}; rotating means a new key (make one first, see `keygate vault rotate {name}`)"
        );
    }
    let credential = secret()?;
    let new = Entry { name: name.to_owned(), url: old.url.clone(), api_key, credential, purpose: old.purpose };
    let new_r = restrictions(&new).await.context("the new key does not work; the vault was not changed")?;
    v.replace(new)?;
    outln!("{name}: the new key works ({}); the vault now holds it.", permissions(&new_r));
    if let Ok(r) = &old_r {
        if permissions(r) != permissions(&new_r) {
            outln!("note: the old key could {}; check the new one is what you meant.", permissions(r));
        }
        outln!(
            "Now revoke the old key {} (console: Keys > Revoke; operator: `keygate keys revoke {}`).",
            old.api_key,
            old.api_key
        );
    } else {
        outln!("The old key {} no longer answers: nothing left to revoke.", old.api_key);
    }
    Ok(())
}

/// `keygate check`.
///
/// # Errors
/// [`Exit`] with status 1 when a finding is at or above `--fail-on`.
pub async fn check(args: CheckArgs) -> anyhow::Result<()> {
    let entries: Vec<Entry> = match (&args.url, &args.api_key) {
        (Some(url), Some(api_key)) => {
            let credential = secret()?;
            let e = Entry {
                name: "command-line".into(),
                url: url.clone(),
                api_key: api_key.clone(),
                credential,
                purpose: None,
            };
            e.validate()?;
            vec![e]
        }
        _ => {
            let v = open(&args.opts)?;
            selected(&v, &args.names)?.into_iter().cloned().collect()
        }
    };
    let now_ms = keygate_service::SystemClock.now().as_millis().0;
    let mut reports = Vec::new();
    for e in &entries {
        let client = keygate_holder::client_for(e, wall_clock())?;
        let cx = check::Context {
            now_ms,
            purpose: args.purpose.map(Into::into).or(e.purpose),
            hmac: matches!(e.credential, Credential::Hmac { .. }),
            ed25519_offered: false,
            expiry_warn_days: args.expiry_warn_days,
            max_age_days: args.max_age_days,
            usage_reported: false,
            unused_days: args.unused_days,
        };
        let hmac = cx.hmac;
        let report = match check::check(&client, &e.name, e.base_url(), hmac, cx).await {
            Ok(r) => r,
            Err(err) => check::Report {
                name: e.name.clone(),
                url: e.url.clone(),
                api_key: e.api_key.clone(),
                key_type: e.credential.kind(),
                restrictions: None,
                account: None,
                findings: vec![check::Finding {
                    code: "unreachable",
                    severity: Severity::Critical,
                    message: format!("the exchange could not be reached: {err}"),
                }],
            },
        };
        reports.push(report);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        let mut t = Table::new();
        t.set_header(["entry", "key", "severity", "finding", "what"]);
        for r in &reports {
            if r.findings.is_empty() {
                t.add_row([r.name.as_str(), &r.api_key, "-", "ok", "no finding"]);
            }
            for f in &r.findings {
                t.add_row([r.name.as_str(), &r.api_key, f.severity.as_str(), f.code, &f.message]);
            }
        }
        outln!("{t}");
    }
    let threshold = match args.fail_on {
        SeverityArg::Info => Some(Severity::Info),
        SeverityArg::Low => Some(Severity::Low),
        SeverityArg::Medium => Some(Severity::Medium),
        SeverityArg::High => Some(Severity::High),
        SeverityArg::Critical => Some(Severity::Critical),
        SeverityArg::Never => None,
    };
    if let Some(t) = threshold {
        let n = reports.iter().flat_map(|r| &r.findings).filter(|f| f.severity >= t).count();
        if n > 0 {
            return Err(Exit { code: 1, message: format!("{n} finding(s) at or above {}", t.as_str()) }.into());
        }
    }
    Ok(())
}

/// `keygate portfolio`: every entry read at once, with a progress bar on a terminal.
///
/// # Errors
/// An unopenable vault; an exchange that fails is reported in the output instead.
pub async fn portfolio(args: PortfolioArgs) -> anyhow::Result<()> {
    let v = open(&args.opts)?;
    let quote = args.quote.to_ascii_uppercase();
    let bar = indicatif::ProgressBar::new(v.entries().len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} exchanges read {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut tasks = tokio::task::JoinSet::new();
    for (i, e) in v.entries().iter().enumerate() {
        let client = keygate_holder::client_for(e, wall_clock())?;
        let (name, quote, bar) = (e.name.clone(), quote.clone(), bar.clone());
        tasks.spawn(async move {
            let result = portfolio::holdings(&name, &client, &quote).await;
            bar.inc(1);
            bar.set_message(name.clone());
            (i, result)
        });
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.context("a portfolio task failed")?);
    }
    bar.finish_and_clear();
    results.sort_by_key(|(i, _)| *i);
    let p = portfolio::combine(&quote, results.into_iter().map(|(_, r)| r).collect());
    if let Some(path) = &args.chart {
        keygate_holder::vault::write_atomic(path, portfolio::allocation_svg(&p)?.as_bytes())?;
    }
    let down = p.exchanges.iter().filter(|e| e.error.is_some()).count();
    // Some exchanges down is a partial answer, shown; none read is a failure.
    let none_read = || -> anyhow::Result<()> {
        if down > 0 && down == p.exchanges.len() {
            return Err(Exit { code: 1, message: "no exchange could be read".to_owned() }.into());
        }
        Ok(())
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&p)?);
        return none_read();
    }
    let opt = |a: Option<keygate_proto::Amount>| a.map_or_else(|| "no price".to_owned(), |a| a.to_string());
    for e in &p.exchanges {
        outln!("{}", e.name);
        if let Some(err) = &e.error {
            outln!("  not read: {err}");
            continue;
        }
        if let Some(first) = &e.same_account_as {
            outln!("  a key of the same account as {first}: counted there");
            continue;
        }
        let mut t = Table::new();
        t.set_header(["asset", "amount", &format!("price ({quote})"), &format!("value ({quote})"), "priced by"]);
        for h in &e.holdings {
            t.add_row([h.asset.clone(), h.amount.to_string(), opt(h.price), opt(h.value), h.route.clone()]);
        }
        outln!("{t}");
        outln!("  total {} {quote}{}", e.total, unpriced(e.unpriced));
    }
    outln!("All exchanges");
    let mut t = Table::new();
    t.set_header(["asset", "amount", &format!("value ({quote})")]);
    for h in &p.by_asset {
        t.add_row([h.asset.clone(), h.amount.to_string(), opt(h.value)]);
    }
    outln!("{t}");
    outln!(
        "  total {} {quote}{}",
        p.total,
        if down > 0 { format!(" ({down} exchange(s) not read)") } else { String::new() }
    );
    if let Some(path) = &args.chart {
        outln!("chart: {}", path.display());
    }
    none_read()
}

fn unpriced(n: usize) -> String {
    if n == 0 { String::new() } else { format!(" ({n} asset(s) with no price left out)") }
}

/// `keygate export`.
///
/// # Errors
/// An unopenable vault or output directory; an entry that stops early is reported and makes the
/// exit status 1 after everything read was written.
pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let v = open(&args.opts)?;
    let since = match &args.since {
        None => export::DEFAULT_SINCE_MS,
        Some(s) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            let d = time::Date::parse(s, &format).with_context(|| format!("--since {s:?}: expected YYYY-MM-DD"))?;
            u64::try_from(d.midnight().assume_utc().unix_timestamp()).context("--since before 1970")? * 1000
        }
    };
    let mut sources = Vec::new();
    for e in selected(&v, &args.names)? {
        sources.push(export::Source {
            name: e.name.clone(),
            client: keygate_holder::client_for(e, wall_clock())?,
            pacer: export::Pacer::tokio(),
            page: export::PAGE,
        });
    }
    drop(v);
    let summary = export::run(&sources, &args.out, since).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        for e in &summary.entries {
            if let Some(first) = &e.same_account_as {
                outln!("{}: skipped, a key of the same account as {first}", e.name);
                continue;
            }
            outln!(
                "{}: {} new trade(s), {} deposit(s), {} withdrawal(s){}",
                e.name,
                e.trades,
                e.deposits,
                e.withdrawals,
                e.error.as_ref().map_or(String::new(), |m| format!("; stopped early: {m} (the next run carries on)"))
            );
        }
        outln!("{} record(s) in {}: {}", summary.total_records, args.out.display(), summary.files.join(", "));
    }
    let failed = summary.entries.iter().filter(|e| e.error.is_some()).count();
    if failed > 0 {
        return Err(Exit { code: 1, message: format!("{failed} entry(ies) stopped early") }.into());
    }
    Ok(())
}
