//! Command-line arguments and dispatch.

use crate::context::Context;
#[cfg(feature = "server")]
use crate::serve;
use crate::{keygen, output};
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use keygate_auth::KeyStatus;
use keygate_service::admin::{AdminRequest, EditArgs, RestrictionArgs};
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use zeroize::Zeroizing;

/// keygate: exchange-grade API keys and a Binance-compatible sandbox exchange.
#[derive(Debug, Parser)]
#[command(name = "keygate", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory (database, admin socket, lock).
    #[arg(long, global = true, env = "KEYGATE_DATA_DIR", default_value = "./keygate-data")]
    pub data_dir: PathBuf,

    /// Master key file that encrypts HMAC secrets at rest [default: ~/.config/keygate/master.key].
    #[arg(long, global = true, env = "KEYGATE_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,

    /// PostgreSQL database (postgres://user@host:port/db) instead of the SQLite file in the data
    /// directory. Several nodes can share it: key and account changes reach every node within
    /// milliseconds, and one node at a time writes the exchange while the others follow it and
    /// send it their commands (README, "Several nodes"). Every node needs the same master key;
    /// the data directory still holds the node's lock and admin socket.
    #[arg(long, global = true, env = "KEYGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// The deployment's key policies, a TOML file (see docs/hygiene.md): unused_days,
    /// unrestricted_idle_days, max_keys, withdraw_max_days, reconfirm_grace_hours. `serve` flags
    /// override it; commands that open the store themselves apply it too.
    #[arg(long, global = true, env = "KEYGATE_KEY_POLICY", value_name = "FILE")]
    pub key_policy: Option<PathBuf>,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    #[cfg(feature = "server")]
    Serve(Box<serve::ServeArgs>),
    /// Manage accounts.
    #[command(subcommand)]
    Accounts(AccountsCmd),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Read and check the audit log and the exchange ledger.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Make, list and revoke single-use invite codes for `serve --signup invite`.
    #[command(subcommand)]
    Invites(InvitesCmd),
    /// Connected apps (OAuth clients that get API keys through a consent page): register,
    /// list, show, verify, suspend, resume, delete, allow-developer.
    #[command(subcommand)]
    Apps(crate::apps::AppsCmd),
    /// Register and inspect webhook endpoints that tell account owners about their keys and
    /// logins (Standard Webhooks signatures).
    #[command(subcommand)]
    Webhooks(WebhooksCmd),
    /// Show an account's latest notices: the events its webhooks carry.
    Notices {
        /// Account name.
        account: String,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        format: Format,
    },
    /// Pause, resume or show the running server's simulated market (`serve --market-maker` or
    /// `--demo`).
    Market {
        /// `pause`, `resume` or `status`.
        #[arg(value_enum)]
        action: MarketAction,
        #[command(flatten)]
        format: Format,
    },
    /// Find keygate secrets and key ids in files, directories or a git repository's history (exit
    /// status 1 when a secret is found, 2 when something could not be scanned).
    Scan(crate::scan::ScanArgs),
    // The key holder's tools (docs/holder.md): they talk to exchanges over HTTP with the
    // credentials of an encrypted vault and need no data directory.
    /// Keep exchange credentials in an encrypted vault (Argon2id, XChaCha20-Poly1305) and run
    /// bots with them.
    Vault(crate::holder::VaultArgs),
    /// Check what API keys may do and what is risky about them (exit status 1 on a finding at
    /// or above --fail-on, for CI).
    Check(crate::holder::CheckArgs),
    /// Balances of every vault entry, valued in one currency, with an allocation chart.
    Portfolio(crate::holder::PortfolioArgs),
    /// Trade, deposit and withdrawal history of vault entries as Koinly and CoinTracking CSV and
    /// JSONL; a second run adds only what is new.
    Export(crate::holder::ExportArgs),
    /// Credit sandbox funds to an account (an operator action; no API key can do this).
    Deposit {
        /// Account name.
        #[arg(long)]
        account: String,
        /// Asset, e.g. USDT.
        #[arg(long)]
        asset: String,
        /// Amount, e.g. 1000 or 0.5.
        #[arg(long)]
        amount: String,
        /// Network; the asset's first by default.
        #[arg(long)]
        network: Option<String>,
        #[command(flatten)]
        format: Format,
    },
}

/// Output format switch shared by listing commands.
#[derive(Debug, Args, Clone, Copy)]
pub struct Format {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Account commands.
#[derive(Debug, Subcommand)]
pub enum AccountsCmd {
    /// Create an account (asks for a password, or reads it from stdin): at least 12 characters
    /// and not easy to guess (common passwords, keyboard patterns, dates and the account name
    /// are refused, with advice). The only way to make accounts when `serve --signup closed`.
    Create {
        /// Account name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        format: Format,
    },
    /// List accounts.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Show one account.
    Show {
        /// Account name.
        name: String,
        #[command(flatten)]
        format: Format,
    },
    /// Set an account's password (ends its console sessions and locks withdrawals for 24 h).
    Passwd {
        /// Account name.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account's TOTP 2FA, for an owner who lost their device (suspends its trade and
    /// withdraw keys until 2FA is back, ends its console sessions and locks withdrawals for 24 h;
    /// audited).
    TotpReset {
        /// Account name.
        name: String,
    },
    /// Show an account's key policies (the deployment's, its own, what applies), or tighten them
    /// with the flags (an account may only tighten the deployment's; audited).
    Policy(PolicyFlags),
}

/// `accounts policy` flags.
#[derive(Debug, Args)]
pub struct PolicyFlags {
    /// Account name.
    pub name: String,
    /// Disable keys unused for this many days.
    #[arg(long, value_name = "DAYS")]
    pub unused_days: Option<u32>,
    /// Disable trade and withdraw keys without an IP allowlist after this many idle days.
    #[arg(long, value_name = "DAYS")]
    pub unrestricted_idle_days: Option<u32>,
    /// At most this many live keys.
    #[arg(long, value_name = "N")]
    pub max_keys: Option<u32>,
    /// Withdraw keys expire within this many days.
    #[arg(long, value_name = "DAYS")]
    pub withdraw_max_days: Option<u32>,
    /// Hours to re-confirm trade and withdraw keys after a password change.
    #[arg(long, value_name = "HOURS")]
    pub reconfirm_grace_hours: Option<u32>,
    /// Drop the account's own tightenings first (the deployment's apply again).
    #[arg(long)]
    pub reset: bool,
    #[command(flatten)]
    pub format: Format,
}

/// What `keygate market` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MarketAction {
    /// Stop the market maker's requotes and the taker flow (the book stays as it is).
    Pause,
    /// Start them again, at the walk's price now.
    Resume,
    /// Show whether it runs, its seed, flow and history.
    Status,
}

/// Invite commands.
#[derive(Debug, Subcommand)]
pub enum InvitesCmd {
    /// Make a single-use invite code and print it, this once (only its hash is stored). With
    /// `serve --signup invite`, the code lets one person create an account at /console/signup.
    Create {
        /// How long the code is valid: a whole number with s, m, h or d (e.g. 7d, 12h), at most a
        /// year.
        #[arg(long, value_name = "DURATION", default_value = "7d", value_parser = parse_valid_for)]
        expires: u64,
        /// A note for your own records (whom the code is for); shown by `invites list`.
        #[arg(long, value_name = "TEXT", default_value = "")]
        note: String,
        #[command(flatten)]
        format: Format,
    },
    /// List invites, without their codes: id, note, status, created, expires, used by and when.
    List {
        #[command(flatten)]
        format: Format,
    },
    /// Revoke an unused invite: its code is refused from now on.
    Revoke {
        /// Invite id (from `invites list`).
        id: i64,
        #[command(flatten)]
        format: Format,
    },
}

/// Webhook commands.
#[derive(Debug, Subcommand)]
pub enum WebhooksCmd {
    /// Register an endpoint for ACCOUNT and print its signing secret (whsec_...), this once.
    /// The URL must be https:// on a public address unless `serve --webhook-allow-http` /
    /// `--webhook-allow-private-targets` allow otherwise.
    Add {
        /// Account name.
        account: String,
        /// Where deliveries are POSTed.
        url: String,
        /// A note for the owner's records.
        #[arg(long, default_value = "")]
        description: String,
        #[command(flatten)]
        format: Format,
    },
    /// List endpoints, of one account or of all.
    List {
        /// Account name (all accounts when absent).
        account: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Delete an endpoint: its pending deliveries become dead.
    Delete {
        /// Endpoint id (from `webhooks list`).
        id: i64,
        #[command(flatten)]
        format: Format,
    },
    /// Pause an endpoint: nothing is sent to it until it is resumed.
    Pause {
        /// Endpoint id.
        id: i64,
        #[command(flatten)]
        format: Format,
    },
    /// Resume a paused endpoint (also one paused by a 410 Gone answer).
    Resume {
        /// Endpoint id.
        id: i64,
        #[command(flatten)]
        format: Format,
    },
    /// An endpoint's latest deliveries, newest first: status (pending, delivered, dead),
    /// attempts and the last error.
    Deliveries {
        /// Endpoint id.
        id: i64,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[command(flatten)]
        format: Format,
    },
    /// Send a dead delivery again (its attempts start over).
    Redeliver {
        /// Endpoint id.
        endpoint: i64,
        /// Delivery id (from `webhooks deliveries`).
        delivery: i64,
        #[command(flatten)]
        format: Format,
    },
}

/// An invite's validity: a duration as `serve` reads them, but not zero.
fn parse_valid_for(text: &str) -> Result<u64, String> {
    match parse_duration_ms(text)? {
        0 => Err("an invite must be valid for some time, e.g. 7d".into()),
        ms => Ok(ms),
    }
}

/// Restriction flags shared by create.
#[derive(Debug, Args, Clone, Default)]
pub struct RestrictionFlags {
    /// Allow requests only from this IPv4/IPv6 address or CIDR range (repeatable).
    #[arg(long = "ip", value_name = "CIDR")]
    pub ip: Vec<String>,
    /// Allow trading only these symbols (comma-separated).
    #[arg(long, value_name = "SYMBOLS", value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Expiry time, RFC 3339 (e.g. 2027-01-31T00:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub expires: Option<String>,
    /// Allow withdrawals to this address (repeatable; none means no withdrawals).
    #[arg(long = "withdraw-address", value_name = "ADDR")]
    pub withdraw_address: Vec<String>,
    /// Withdrawal ceiling per 24 hours, e.g. `--withdraw-limit-24h 0.5 BTC`.
    #[arg(long = "withdraw-limit-24h", num_args = 2, value_names = ["AMOUNT", "ASSET"])]
    pub withdraw_limit_24h: Option<Vec<String>>,
}

/// API key commands.
#[derive(Debug, Subcommand)]
pub enum KeysCmd {
    /// Create a key: HMAC by default (secret shown once), or register a public key.
    Create {
        /// Owning account.
        #[arg(long)]
        account: String,
        /// A label to recognise the key by.
        #[arg(long, default_value = "")]
        label: String,
        /// Permissions, comma-separated: read (always), trade, withdraw.
        #[arg(long, default_value = "read")]
        permissions: String,
        /// Register this Ed25519 public key (PEM or base64) instead of generating an HMAC secret.
        #[arg(long, value_name = "FILE", conflicts_with = "rsa_public_key")]
        ed25519_public_key: Option<PathBuf>,
        /// Register this RSA public key (PEM, 2048 or 4096 bits).
        #[arg(long, value_name = "FILE")]
        rsa_public_key: Option<PathBuf>,
        #[command(flatten)]
        restrictions: RestrictionFlags,
        #[command(flatten)]
        format: Format,
    },
    /// List keys.
    List {
        /// Only this account's keys.
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Show one key: its status and why, and what a key policy will do to it next and when.
    Show {
        /// API key id.
        key: String,
        #[command(flatten)]
        format: Format,
    },
    /// Apply the key policies now (a running server does every minute): disable idle keys,
    /// mark expired ones, send the warnings due, suspend keys not re-confirmed in time.
    Sweep {
        #[command(flatten)]
        format: Format,
    },
    /// Change a key's label, permissions or restrictions; enable or disable it.
    Edit(EditFlags),
    /// Revoke a key; its next request fails.
    Revoke {
        /// API key id.
        key: String,
        #[command(flatten)]
        format: Format,
    },
    /// Revoke every key of an account.
    RevokeAll {
        /// Account name.
        #[arg(long)]
        account: String,
    },
    /// Write a new Ed25519 key pair (PKCS#8 PEM private key, mode 0600, and FILE.pub).
    Keygen {
        /// Where to write the private key; the public key goes to FILE.pub.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `keys edit` flags.
#[derive(Debug, Args)]
pub struct EditFlags {
    /// API key id.
    pub key: String,
    /// New label.
    #[arg(long)]
    pub label: Option<String>,
    /// New permissions (replaces the set; read is implied).
    #[arg(long)]
    pub permissions: Option<String>,
    /// New IP allowlist entries (replaces the list; repeatable).
    #[arg(long = "ip", value_name = "CIDR")]
    pub ip: Vec<String>,
    /// Remove the IP allowlist (any address).
    #[arg(long, conflicts_with = "ip")]
    pub clear_ip: bool,
    /// New symbol allowlist (replaces it).
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// Remove the symbol allowlist (all symbols).
    #[arg(long, conflicts_with = "symbols")]
    pub clear_symbols: bool,
    /// New expiry, RFC 3339.
    #[arg(long)]
    pub expires: Option<String>,
    /// Remove the expiry.
    #[arg(long, conflicts_with = "expires")]
    pub no_expiry: bool,
    /// New withdrawal addresses (replaces the list; repeatable).
    #[arg(long = "withdraw-address", value_name = "ADDR")]
    pub withdraw_address: Vec<String>,
    /// Remove all withdrawal addresses.
    #[arg(long, conflicts_with = "withdraw_address")]
    pub clear_withdraw_addresses: bool,
    /// New withdrawal ceiling per 24 hours.
    #[arg(long = "withdraw-limit-24h", num_args = 2, value_names = ["AMOUNT", "ASSET"])]
    pub withdraw_limit_24h: Option<Vec<String>>,
    /// Remove the withdrawal ceiling.
    #[arg(long, conflicts_with = "withdraw_limit_24h")]
    pub no_withdraw_limit: bool,
    /// Disable the key (reversible).
    #[arg(long, conflicts_with = "enable")]
    pub disable: bool,
    /// Enable a disabled key.
    #[arg(long)]
    pub enable: bool,
    #[command(flatten)]
    pub format: Format,
}

/// Audit commands.
#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Print audit records.
    List {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        format: Format,
    },
    /// Check every link of the hash chain.
    Verify,
    /// Check the exchange ledger: per asset, balances plus fees equal deposits minus withdrawals.
    Ledger {
        #[command(flatten)]
        format: Format,
    },
    /// Check the exchange journal: numbered from 1 without a gap, every command readable, times
    /// in order, the latest snapshot within it (on SQLite or PostgreSQL alike).
    Journal,
}

/// Parses a duration as `0` or a whole number with a unit, `s`, `m`, `h` or `d`, into
/// milliseconds (`24h` is 86,400,000).
///
/// # Errors
/// A message saying what is accepted.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a duration: write 0, or a whole number with s, m, h or d (e.g. 24h, 90m)");
    let text = text.trim();
    if text == "0" {
        return Ok(0);
    }
    let unit_at = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(unit_at);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    n.checked_mul(per).filter(|ms| *ms <= 365 * 86_400_000).ok_or_else(|| format!("{text:?} is longer than a year"))
}

fn read_password(from_stdin: bool) -> anyhow::Result<Zeroizing<String>> {
    if from_stdin {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        let trimmed = Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned());
        return Ok(trimmed);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask for a password; pass --password-stdin and pipe it in");
    }
    let first = Zeroizing::new(rpassword::prompt_password("Password: ").context("reading the password")?);
    let second = Zeroizing::new(rpassword::prompt_password("Repeat password: ").context("reading the password")?);
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

fn limit_arg(v: Option<Vec<String>>) -> Option<(String, String)> {
    v.and_then(|v| match v.as_slice() {
        [amount, asset] => Some((amount.clone(), asset.clone())),
        _ => None,
    })
}

fn read_key_file(path: &PathBuf) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read public key file {}", path.display()))
}

/// Runs a parsed command line.
///
/// # Errors
/// Anything that went wrong, with a message for the operator.
pub async fn run(
    cli: Cli,
    #[cfg(feature = "server")] access_log: Option<keygate_server::access_line::DirectLog>,
) -> anyhow::Result<()> {
    // Reads only the paths it is given: no data directory, no store.
    if let Command::Scan(args) = &cli.command {
        return crate::scan::run(args);
    }
    // The key holder's tools read no data directory either.
    let command = match cli.command {
        Command::Vault(args) => return crate::holder::vault(args).await,
        Command::Check(args) => return crate::holder::check(args).await,
        Command::Portfolio(args) => return crate::holder::portfolio(args).await,
        Command::Export(args) => return crate::holder::export(args).await,
        other => other,
    };
    let ctx = Context::new(cli.data_dir, cli.master_key_file, cli.database_url, cli.key_policy)?;
    match command {
        Command::Scan(_) | Command::Vault(_) | Command::Check(_) | Command::Portfolio(_) | Command::Export(_) => Ok(()),
        #[cfg(feature = "server")]
        Command::Serve(args) => serve::run(&ctx, *args, access_log).await,
        Command::Accounts(cmd) => accounts(&ctx, cmd).await,
        Command::Keys(cmd) => keys(&ctx, cmd).await,
        Command::Audit(cmd) => audit(&ctx, cmd).await,
        Command::Invites(cmd) => invites(&ctx, cmd).await,
        Command::Apps(cmd) => crate::apps::run(&ctx, cmd).await,
        Command::Webhooks(cmd) => webhooks(&ctx, cmd).await,
        Command::Notices { account, limit, format } => {
            output::notices(&ctx.dispatch(AdminRequest::Notices { account, limit: Some(limit) }).await?, format.json)
        }
        Command::Market { action, format } => {
            let req = match action {
                MarketAction::Pause => AdminRequest::MarketPause,
                MarketAction::Resume => AdminRequest::MarketResume,
                MarketAction::Status => AdminRequest::MarketStatus,
            };
            let v = ctx.dispatch(req).await?;
            if format.json {
                return output::json(&v);
            }
            let state = match (v["running"].as_bool(), v["paused"].as_bool()) {
                (Some(true), Some(true)) => "paused",
                (Some(true), _) => "running",
                _ => "not running",
            };
            outln!(
                "Simulated market: {state}; seed {}, flow {} orders/s per market, history {} days{}",
                v["seed"],
                v["flow_per_second"],
                v["history_days"],
                if v["writer"].as_bool() == Some(false) {
                    " (this node is not the writer: it does not trade)"
                } else {
                    ""
                }
            );
            Ok(())
        }
        Command::Deposit { account, asset, amount, network, format } => {
            let v = ctx.dispatch(AdminRequest::Deposit { account: account.clone(), asset, amount, network }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!(
                "Deposited {} {} to {account} (deposit {}, network {}).",
                v["amount"].as_str().unwrap_or("?"),
                v["coin"].as_str().unwrap_or("?"),
                v["id"].as_str().unwrap_or("?"),
                v["network"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

async fn accounts(ctx: &Context, cmd: AccountsCmd) -> anyhow::Result<()> {
    match cmd {
        AccountsCmd::Create { name, password_stdin, format } => {
            let password = read_password(password_stdin)?;
            let v = ctx.dispatch(AdminRequest::AccountCreate { name, password: password.to_string() }).await?;
            output::account(&v, format.json)
        }
        AccountsCmd::List { format } => output::accounts(&ctx.dispatch(AdminRequest::AccountList).await?, format.json),
        AccountsCmd::Show { name, format } => {
            output::account(&ctx.dispatch(AdminRequest::AccountShow { name }).await?, format.json)
        }
        AccountsCmd::Passwd { name, password_stdin } => {
            let password = read_password(password_stdin)?;
            ctx.dispatch(AdminRequest::AccountPassword { name: name.clone(), password: password.to_string() }).await?;
            outln!("Password of {name} changed; its sessions ended and withdrawals are locked for 24 hours.");
            Ok(())
        }
        AccountsCmd::Policy(f) => {
            let changes =
                [f.unused_days, f.unrestricted_idle_days, f.max_keys, f.withdraw_max_days, f.reconfirm_grace_hours];
            let v = if f.reset || changes.iter().any(Option::is_some) {
                let current = ctx.dispatch(AdminRequest::AccountPolicyShow { name: f.name.clone() }).await?;
                let mut own: keygate_service::policy::AccountKeyPolicy = if f.reset {
                    keygate_service::policy::AccountKeyPolicy::default()
                } else {
                    serde_json::from_value(current["own"].clone()).context("reading the account's policy")?
                };
                own.unused_days = f.unused_days.or(own.unused_days);
                own.unrestricted_idle_days = f.unrestricted_idle_days.or(own.unrestricted_idle_days);
                own.max_keys = f.max_keys.or(own.max_keys);
                own.withdraw_max_days = f.withdraw_max_days.or(own.withdraw_max_days);
                own.reconfirm_grace_hours = f.reconfirm_grace_hours.or(own.reconfirm_grace_hours);
                ctx.dispatch(AdminRequest::AccountPolicySet { name: f.name.clone(), policy: own }).await?
            } else {
                ctx.dispatch(AdminRequest::AccountPolicyShow { name: f.name.clone() }).await?
            };
            output::key_policy(&v, f.format.json)
        }
        AccountsCmd::TotpReset { name } => {
            ctx.dispatch(AdminRequest::AccountTotpReset { name: name.clone() }).await?;
            outln!(
                "2FA of {name} removed; its trade and withdraw keys are suspended, its sessions ended and \
                 withdrawals are locked for 24 hours. The owner can enroll a new device after logging in \
                 with the password, then re-enable the keys."
            );
            Ok(())
        }
    }
}

async fn keys(ctx: &Context, cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Create { account, label, permissions, ed25519_public_key, rsa_public_key, restrictions, format } => {
            let (key_type, public_key) = match (ed25519_public_key, rsa_public_key) {
                (Some(p), _) => ("ed25519", Some(read_key_file(&p)?)),
                (None, Some(p)) => ("rsa", Some(read_key_file(&p)?)),
                (None, None) => ("hmac", None),
            };
            let req = AdminRequest::KeyCreate {
                account,
                label,
                key_type: key_type.into(),
                public_key,
                permissions,
                restrictions: RestrictionArgs {
                    ip: restrictions.ip,
                    symbols: restrictions.symbols,
                    expires: restrictions.expires,
                    withdraw_addresses: restrictions.withdraw_address,
                    withdraw_limit_24h: limit_arg(restrictions.withdraw_limit_24h),
                },
            };
            let created = ctx.dispatch(req).await?;
            match output::created_key(&created, format.json) {
                // The secret is shown once: a reader that went away has lost it, and a script
                // must learn that the key it asked for exists without it (not a quiet exit).
                Err(e) if crate::closed_pipe(&e) => {
                    let id = created["api_key"].as_str().unwrap_or("?");
                    anyhow::bail!(
                        "the output closed before the new key was printed: key {id} exists, but its secret was \
                         shown to no one; revoke it with `keygate keys revoke {id}` and create another"
                    )
                }
                other => other,
            }
        }
        KeysCmd::List { account, format } => {
            output::keys(&ctx.dispatch(AdminRequest::KeyList { account }).await?, format.json)
        }
        KeysCmd::Show { key, format } => {
            output::key(&ctx.dispatch(AdminRequest::KeyShow { id: key }).await?, format.json)
        }
        KeysCmd::Sweep { format } => {
            let v = ctx.dispatch(AdminRequest::PolicySweep).await?;
            if format.json {
                return output::json(&v);
            }
            outln!(
                "key policies applied: {} warned, {} disabled, {} expired, {} suspended",
                v["warned"],
                v["disabled"],
                v["expired"],
                v["suspended"]
            );
            Ok(())
        }
        KeysCmd::Edit(f) => {
            let edit = EditArgs {
                label: f.label,
                permissions: f.permissions,
                ip: if f.clear_ip { Some(Vec::new()) } else { (!f.ip.is_empty()).then_some(f.ip) },
                symbols: if f.clear_symbols { Some(Vec::new()) } else { (!f.symbols.is_empty()).then_some(f.symbols) },
                expires: if f.no_expiry { Some(None) } else { f.expires.map(Some) },
                withdraw_addresses: if f.clear_withdraw_addresses {
                    Some(Vec::new())
                } else {
                    (!f.withdraw_address.is_empty()).then_some(f.withdraw_address)
                },
                withdraw_limit_24h: if f.no_withdraw_limit {
                    Some(None)
                } else {
                    limit_arg(f.withdraw_limit_24h).map(Some)
                },
                status: match (f.disable, f.enable) {
                    (true, _) => Some(KeyStatus::Disabled),
                    (_, true) => Some(KeyStatus::Active),
                    _ => None,
                },
            };
            output::key(&ctx.dispatch(AdminRequest::KeyEdit { id: f.key, edit }).await?, f.format.json)
        }
        KeysCmd::Revoke { key, format } => {
            let v = ctx.dispatch(AdminRequest::KeyRevoke { id: key }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!(
                "Revoked {}. Requests signed with it are refused from now on.",
                v["api_key"].as_str().unwrap_or("the key")
            );
            Ok(())
        }
        KeysCmd::RevokeAll { account } => {
            let v = ctx.dispatch(AdminRequest::KeyRevokeAll { account: account.clone() }).await?;
            outln!("Revoked {} key(s) of {account}.", v["revoked"]);
            Ok(())
        }
        KeysCmd::Keygen { out } => keygen::run(&out),
    }
}

async fn webhooks(ctx: &Context, cmd: WebhooksCmd) -> anyhow::Result<()> {
    match cmd {
        WebhooksCmd::Add { account, url, description, format } => {
            let v = ctx.dispatch(AdminRequest::WebhookCreate { account, url, description }).await?;
            match output::created_webhook(&v, format.json) {
                // The secret is shown once: say that it is lost rather than exit quietly.
                Err(e) if crate::closed_pipe(&e) => {
                    let id = &v["id"];
                    anyhow::bail!(
                        "the output closed before the webhook secret was printed: endpoint {id} exists, but its \
                         secret was shown to no one; delete it with `keygate webhooks delete {id}` and add another"
                    )
                }
                other => other,
            }
        }
        WebhooksCmd::List { account, format } => {
            output::webhooks(&ctx.dispatch(AdminRequest::WebhookList { account }).await?, format.json)
        }
        WebhooksCmd::Delete { id, format } => {
            let v = ctx.dispatch(AdminRequest::WebhookDelete { id }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!("Deleted webhook endpoint {id}; its pending deliveries will not be sent.");
            Ok(())
        }
        WebhooksCmd::Pause { id, format } => set_webhook_active(ctx, id, false, &format).await,
        WebhooksCmd::Resume { id, format } => set_webhook_active(ctx, id, true, &format).await,
        WebhooksCmd::Deliveries { id, limit, format } => output::deliveries(
            &ctx.dispatch(AdminRequest::WebhookDeliveries { id, limit: Some(limit) }).await?,
            format.json,
        ),
        WebhooksCmd::Redeliver { endpoint, delivery, format } => {
            let v = ctx.dispatch(AdminRequest::WebhookRedeliver { endpoint, delivery }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!("Delivery {delivery} of endpoint {endpoint} will be sent again.");
            Ok(())
        }
    }
}

async fn set_webhook_active(ctx: &Context, id: i64, active: bool, format: &Format) -> anyhow::Result<()> {
    let v = ctx.dispatch(AdminRequest::WebhookSetActive { id, active }).await?;
    if format.json {
        return output::json(&v);
    }
    if active {
        outln!("Webhook endpoint {id} is active again: events from now on are sent to it.");
    } else {
        outln!("Webhook endpoint {id} is paused: nothing is sent to it until `keygate webhooks resume {id}`.");
    }
    Ok(())
}

async fn invites(ctx: &Context, cmd: InvitesCmd) -> anyhow::Result<()> {
    match cmd {
        InvitesCmd::Create { expires, note, format } => {
            let v = ctx.dispatch(AdminRequest::InviteCreate { note, valid_ms: Some(expires) }).await?;
            match output::created_invite(&v, format.json) {
                // The code is shown once: say that it is lost rather than exit quietly.
                Err(e) if crate::closed_pipe(&e) => {
                    let id = &v["id"];
                    anyhow::bail!(
                        "the output closed before the invite code was printed: invite {id} exists, but its code was \
                         shown to no one; revoke it with `keygate invites revoke {id}` and create another"
                    )
                }
                other => other,
            }
        }
        InvitesCmd::List { format } => output::invites(&ctx.dispatch(AdminRequest::InviteList).await?, format.json),
        InvitesCmd::Revoke { id, format } => {
            let v = ctx.dispatch(AdminRequest::InviteRevoke { id }).await?;
            if format.json {
                return output::json(&v);
            }
            outln!("Revoked invite {id}; its code is refused from now on.");
            Ok(())
        }
    }
}

async fn audit(ctx: &Context, cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::List { after, limit, format } => {
            output::audit(&ctx.dispatch(AdminRequest::AuditList { after, limit }).await?, format.json)
        }
        AuditCmd::Ledger { format } => {
            let v = ctx.dispatch(AdminRequest::AuditLedger).await?;
            output::ledger(&v, format.json)
        }
        AuditCmd::Journal => {
            let v = ctx.dispatch(AdminRequest::AuditJournal).await?;
            let snapshot = v["snapshot_seq"].as_i64().map_or_else(|| "none".to_owned(), |s| format!("at entry {s}"));
            outln!(
                "Exchange journal intact: {} entries, last {}, latest snapshot {snapshot}.",
                v["entries"],
                v["last_seq"]
            );
            Ok(())
        }
        AuditCmd::Verify => {
            let v = ctx.dispatch(AdminRequest::AuditVerify).await?;
            outln!("Audit chain intact: {} record(s) verified.", v["records"]);
            Ok(())
        }
    }
}
