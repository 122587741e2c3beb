//! `keygate export`: the full trade, deposit and withdrawal history of vault entries, as JSONL,
//! Koinly universal CSV and CoinTracking CSV.
//!
//! How it reads (Binance Spot's rules, which keygate follows):
//! - trades: `GET /api/v3/myTrades` per symbol of `exchangeInfo`, `limit=1000`, paged by `fromId`
//!   (the last id seen + 1) until a short page;
//! - deposits and withdrawals: `GET /sapi/v1/capital/deposit/hisrec` and
//!   `/capital/withdraw/history` in windows of [`WINDOW_DAYS`] days (Binance refuses 90 or more),
//!   each paged by `offset` while a page is full;
//! - pacing: after each answer, when `X-MBX-USED-WEIGHT-1M` reaches nine tenths of the
//!   `REQUEST_WEIGHT` limit that `exchangeInfo.rateLimits` announces, it waits for the next
//!   minute; a 429 or 418 waits `Retry-After` (at least one second, doubling on each repeat) and
//!   asks again, up to [`Pacer::max_retries`] times.
//!
//! Records belong to an **account**, not to a vault entry: the exchange's origin and the `uid`
//! that `GET /api/v3/account` answers ([`account_id`]). Two entries holding keys of the same
//! account are exported once (the second is skipped and named in the summary), and renaming an
//! entry neither loses its cursors nor exports its history again.
//!
//! Resumable and idempotent: the records are kept in `history.jsonl` and the cursors (last trade
//! id per symbol, how far the deposit and withdrawal windows are final) per account in
//! `keygate-export-state.json`, both in the output directory. A run starts from the cursors,
//! drops every record whose key (account, kind, symbol, id) it already holds, then rewrites all
//! files atomically, the state last. A run cut short (a refusal past the retries, a crash) loses
//! nothing already written, and the next run carries on. Deposits and withdrawals are exported
//! once final (credited; completed); the window cursor stops before the oldest one still
//! pending, so it is picked up when it settles.
//!
//! Files: Koinly imports a CSV into one wallet and its universal format has no wallet column, so
//! each account gets its own `koinly-<entry>.csv`; CoinTracking's format names the exchange in a
//! column, so `cointracking.csv` holds every account.

use crate::HolderError;
use crate::vault::write_atomic;
use keygate_client::Client;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Deposit and withdrawal windows, in days: Binance refuses a span of 90 days or more.
pub const WINDOW_DAYS: u64 = 89;
/// Where history starts when no `--since` is given: Binance's launch, 2017-07-14T00:00:00Z.
pub const DEFAULT_SINCE_MS: u64 = 1_499_990_400_000;
/// Records a page asks for: Binance's maximum for trades, deposits and withdrawals.
pub const PAGE: u32 = 1000;
const DAY_MS: u64 = 86_400_000;
/// Each run reads the last day of windows again: records the exchange inserted late are then
/// found, and the dedupe drops those already held.
const OVERLAP_MS: u64 = DAY_MS;

/// The records file, one JSON object a line.
pub const JSONL: &str = "history.jsonl";
/// Koinly's universal CSV of one account: `koinly-<entry>.csv` ([`koinly_file`]).
pub const KOINLY_PREFIX: &str = "koinly-";
/// CoinTracking's CSV import.
pub const COINTRACKING: &str = "cointracking.csv";
/// The cursors.
pub const STATE: &str = "keygate-export-state.json";

/// Koinly universal CSV header, in template order (Koinly help article 9489976).
pub const KOINLY_HEADER: [&str; 12] = [
    "Date",
    "Sent Amount",
    "Sent Currency",
    "Received Amount",
    "Received Currency",
    "Fee Amount",
    "Fee Currency",
    "Net Worth Amount",
    "Net Worth Currency",
    "Label",
    "Description",
    "TxHash",
];

/// CoinTracking CSV import header: the eleven required columns, then `Tx-ID`.
pub const COINTRACKING_HEADER: [&str; 12] = [
    "Type",
    "Buy Amount",
    "Buy Currency",
    "Sell Amount",
    "Sell Currency",
    "Fee",
    "Fee Currency",
    "Exchange",
    "Trade-Group",
    "Comment",
    "Date",
    "Tx-ID",
];

/// What a record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A fill of one of the account's orders.
    Trade,
    /// A credited deposit.
    Deposit,
    /// A completed withdrawal.
    Withdrawal,
}

/// One history record, as written to `history.jsonl`. Amounts are the exchange's decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The account it belongs to ([`account_id`]).
    pub account: String,
    /// The vault entry that last exported the account (the name the files show).
    pub exchange: String,
    /// Trade, deposit or withdrawal.
    pub kind: Kind,
    /// The exchange's id (trade id, deposit or withdrawal id).
    pub id: String,
    /// When it happened, ms since the epoch (trade time, deposit insert time, withdrawal apply
    /// time).
    pub time: u64,
    /// Trades: the market.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Trades: `buy` or `sell`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    /// Trades: the base asset; deposits and withdrawals: the coin.
    pub asset: String,
    /// Trades: `qty`; deposits: the amount credited; withdrawals: the amount requested, fee
    /// included.
    pub amount: String,
    /// Trades: the quote asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_asset: Option<String>,
    /// Trades: `quoteQty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_amount: Option<String>,
    /// Trades: `price`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    /// Trades: `commission`; withdrawals: `transactionFee`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// The fee's asset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_asset: Option<String>,
    /// Trades: the order id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<u64>,
    /// Deposits and withdrawals: the chain transaction id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_id: Option<String>,
}

impl Record {
    /// The dedupe key: account, kind, symbol (trade ids are per market) and id.
    #[must_use]
    pub fn key(&self) -> String {
        format!("{}|{:?}|{}|{}", self.account, self.kind, self.symbol.as_deref().unwrap_or(""), self.id)
    }
}

impl Record {
    /// What must hold of a record before it is kept: every amount a plain decimal of at most
    /// eight places, a date the CSVs can print, a withdrawal's fee within its amount, and every
    /// text from the exchange short, free of control characters and starting with a letter or
    /// digit (so no cell opens with `=`, `+`, `-` or `@`, which spreadsheets run as formulas).
    ///
    /// # Errors
    /// [`HolderError::Invalid`] naming the field.
    pub fn check(&self) -> Result<(), HolderError> {
        let bad = |field: &str, why: &str| Err(HolderError::Invalid(format!("field {field} {why}")));
        let amount = |field: &str, v: &str| -> Result<u64, HolderError> {
            keygate_proto::Amount::parse(v)
                .map(keygate_proto::Amount::units)
                .map_err(|e| HolderError::Invalid(format!("field {field} {v:?}: {e}")))
        };
        let units = amount("amount", &self.amount)?;
        for (field, v) in [("quote_amount", &self.quote_amount), ("price", &self.price), ("fee", &self.fee)] {
            if let Some(v) = v {
                amount(field, v)?;
            }
        }
        if self.kind == Kind::Withdrawal
            && self.fee.as_deref().map(|f| amount("fee", f)).transpose()?.unwrap_or(0) > units
        {
            return bad("fee", "is larger than the withdrawal's amount");
        }
        if self.time > MAX_TIME_MS {
            return bad("time", "is past the year 9999");
        }
        let text_ok = |v: &str, max: usize, extra: &dyn Fn(char) -> bool| {
            v.len() <= max
                && v.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && v.chars().all(|c| c.is_ascii_alphanumeric() || extra(c))
        };
        let code = |c: char| matches!(c, '.' | '_' | '-');
        // Ids and transaction ids take any printable ASCII after their first character (chains
        // write them as they like: `0.0.123@1634567890.1`, `Internal transfer 123`).
        let id = |c: char| c.is_ascii_graphic() || c == ' ';
        if !text_ok(&self.exchange, 64, &code) {
            return bad("exchange", "is not a vault entry's name");
        }
        for (field, v) in [
            ("asset", Some(&self.asset)),
            ("quote_asset", self.quote_asset.as_ref()),
            ("fee_asset", self.fee_asset.as_ref()),
            ("symbol", self.symbol.as_ref()),
        ] {
            if let Some(v) = v
                && !text_ok(v, 32, &code)
            {
                return bad(field, "is not an asset or market code");
            }
        }
        for (field, v) in [("id", Some(&self.id)), ("tx_id", self.tx_id.as_ref())] {
            if let Some(v) = v
                && !text_ok(v, 128, &id)
            {
                return bad(field, "is not an id");
            }
        }
        Ok(())
    }
}

/// The latest time a record may have: 9999-12-31T23:59:59.999Z, the last the CSVs' dates print.
const MAX_TIME_MS: u64 = 253_402_300_799_999;

/// Who records belong to: the exchange's origin (scheme, host, port and path, as the URL parser
/// normalizes them) and the account's `uid`. Without a `uid` (an exchange that does not say) a
/// tag of the API key stands in: renaming the entry keeps the account, but two keys of one such
/// account cannot be told apart.
///
/// # Errors
/// [`HolderError::Invalid`] for a base URL that does not parse.
pub fn account_id(base_url: &str, uid: Option<i64>, api_key: &str) -> Result<String, HolderError> {
    let url = reqwest::Url::parse(base_url).map_err(|e| HolderError::Invalid(format!("base URL {base_url:?}: {e}")))?;
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let origin = format!("{}://{host}{port}{}", url.scheme(), url.path().trim_end_matches('/'));
    Ok(match uid {
        Some(uid) => format!("{origin}#uid={uid}"),
        None => format!("{origin}#key={}", digest_hex(api_key, 8)),
    })
}

/// A tag of an API key and the `uid` it answered, stored instead of the key id itself.
#[must_use]
pub fn key_tag(api_key: &str, uid: i64) -> String {
    digest_hex(&format!("{api_key}#uid={uid}"), 8)
}

/// A short, stable tag of an account for ids that other tools deduplicate on (CoinTracking's
/// `Tx-ID`): eight hex digits of the SHA-256 of [`account_id`].
#[must_use]
pub fn account_tag(account: &str) -> String {
    digest_hex(account, 4)
}

/// The first `bytes` bytes of the SHA-256 of `text`, in hex: a short stable name for something
/// that should not be written as itself (an API key) or is too long for an id (an account).
fn digest_hex(text: &str, bytes: usize) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(text.as_bytes())[..bytes])
}

/// Cursors of one vault entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryState {
    /// The highest trade id held, per symbol.
    pub trades: BTreeMap<String, u64>,
    /// Deposits before this time (ms) are all held.
    pub deposits_until: Option<u64>,
    /// Withdrawals before this time (ms) are all held.
    pub withdrawals_until: Option<u64>,
    /// The `--since` the cursors were built from: a run asking for earlier history starts the
    /// account over (what is held is kept, the dedupe drops it when read again).
    #[serde(default)]
    pub since: Option<u64>,
}

/// The state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Per account ([`account_id`]).
    pub accounts: BTreeMap<String, EntryState>,
    /// The Koinly files the last run wrote: the only files a later run removes (those of names
    /// no longer used), so nothing else in the directory is ever touched.
    #[serde(default)]
    pub koinly_files: Vec<String>,
    /// Accounts by [`key_tag`]: the same API key and `uid` reached under another origin
    /// (`localhost` and `127.0.0.1`, a changed URL) is the account it was first seen as.
    #[serde(default)]
    pub keys: BTreeMap<String, String>,
}

/// The lock file in the output directory: one export at a time writes there.
pub const LOCK: &str = ".keygate-export.lock";

/// A sleep the exporter calls when it must wait; the CLI sleeps, tests move a manual clock.
pub type Sleep = Arc<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// How the exporter waits for rate limits.
#[derive(Clone)]
pub struct Pacer {
    /// Waits this long.
    pub sleep: Sleep,
    /// 429/418/5xx answers in a row before an entry's export stops (to carry on next run).
    pub max_retries: u32,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer").field("max_retries", &self.max_retries).finish_non_exhaustive()
    }
}

impl Pacer {
    /// Real sleeps (tokio), five retries.
    #[must_use]
    pub fn tokio() -> Self {
        Self { sleep: Arc::new(|d| Box::pin(tokio::time::sleep(d))), max_retries: 5 }
    }
}

/// What one entry's run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EntrySummary {
    /// The vault entry.
    pub name: String,
    /// New trades.
    pub trades: usize,
    /// New deposits.
    pub deposits: usize,
    /// New withdrawals.
    pub withdrawals: usize,
    /// 429/418 answers waited out.
    pub rate_limited: u32,
    /// The account ([`account_id`]), once the exchange said whose the key is.
    pub account: Option<String>,
    /// Skipped: an earlier entry of this run holds a key of the same account.
    pub same_account_as: Option<String>,
    /// Why the entry stopped early, if it did (the next run carries on from where it stopped).
    pub error: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Per entry.
    pub entries: Vec<EntrySummary>,
    /// Records in the files after the run.
    pub total_records: usize,
    /// The files written, in the output directory.
    pub files: Vec<String>,
}

/// One entry to export.
#[derive(Debug)]
pub struct Source {
    /// The vault entry's name.
    pub name: String,
    /// A client for it.
    pub client: Client,
    /// How it waits.
    pub pacer: Pacer,
    /// Records per page ([`PAGE`]; tests use small pages to walk the paging).
    pub page: u32,
}

/// Reads the JSONL records in `dir` (none when there is no file yet).
///
/// # Errors
/// [`HolderError::Io`] or [`HolderError::Invalid`] for a file that is not ours.
pub fn read_records(dir: &Path) -> Result<Vec<Record>, HolderError> {
    let path = dir.join(JSONL);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HolderError::Io { path, msg: e.to_string() }),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let at =
                |e: &dyn std::fmt::Display| HolderError::Invalid(format!("{} line {}: {e}", path.display(), i + 1));
            let record: Record = serde_json::from_str(l).map_err(|e| at(&e))?;
            record.check().map_err(|e| at(&e))?;
            Ok(record)
        })
        .collect()
}

fn read_state(dir: &Path) -> Result<State, HolderError> {
    let path = dir.join(STATE);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| HolderError::Invalid(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(HolderError::Io { path, msg: e.to_string() }),
    }
}

/// Exports `sources` into `dir` (created if missing). Entries are read one after another, so
/// their pacing never competes; one entry failing stops only that entry, and what it read before
/// is kept. History before `since_ms` is left out.
///
/// # Errors
/// [`HolderError::Io`] when the output cannot be written; exchange failures are reported per
/// entry in the [`Summary`] instead.
pub async fn run(sources: &[Source], dir: &Path, since_ms: u64) -> Result<Summary, HolderError> {
    // Tax history says what an owner holds and trades: the directory is the owner's alone.
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| HolderError::Io { path: dir.to_owned(), msg: e.to_string() })?;
    // Two exports into one directory would each rewrite the files from what they read first.
    let _lock = crate::vault::lock_file(&dir.join(LOCK))?;
    for file in [JSONL, COINTRACKING, STATE] {
        crate::vault::remove_stale_temporaries(&dir.join(file))?;
    }
    let mut records = read_records(dir)?;
    let mut state = read_state(dir)?;
    let mut seen: BTreeSet<String> = records.iter().map(Record::key).collect();
    let mut summary = Summary::default();
    // The accounts this run exported, and the entry that did.
    let mut exported: BTreeMap<String, String> = BTreeMap::new();
    for source in sources {
        let mut s = EntrySummary { name: source.name.clone(), ..EntrySummary::default() };
        let mut reader = Reader {
            client: &source.client,
            pacer: &source.pacer,
            page: source.page.clamp(1, PAGE),
            weight_limit: None,
            rate_limited: 0,
        };
        let account = match identify(&mut reader, &mut state).await {
            Ok(a) => a,
            Err(e) => {
                s.rate_limited = reader.rate_limited;
                s.error = Some(e.to_string());
                summary.entries.push(s);
                continue;
            }
        };
        s.account = Some(account.clone());
        if let Some(first) = exported.get(&account) {
            s.same_account_as = Some(first.clone());
            summary.entries.push(s);
            continue;
        }
        exported.insert(account.clone(), source.name.clone());
        let mut es = state.accounts.get(&account).cloned().unwrap_or_default();
        let mut fresh = Vec::new();
        let target = Target { account: &account, name: &source.name, since_ms };
        let outcome = export_entry(&mut reader, &target, &mut es, &mut fresh).await;
        s.rate_limited = reader.rate_limited;
        if let Err(e) = outcome {
            s.error = Some(e.to_string());
        }
        // The files show the account under the name of the entry that exported it last.
        for r in records.iter_mut().filter(|r| r.account == account) {
            r.exchange.clone_from(&source.name);
        }
        for r in fresh {
            if seen.insert(r.key()) {
                match r.kind {
                    Kind::Trade => s.trades += 1,
                    Kind::Deposit => s.deposits += 1,
                    Kind::Withdrawal => s.withdrawals += 1,
                }
                records.push(r);
            }
        }
        state.accounts.insert(account, es);
        summary.entries.push(s);
        // Each entry's records are on disk before the next entry is read: a run killed later
        // keeps them.
        write_files(dir, &mut records, &mut state)?;
    }
    summary.files = write_files(dir, &mut records, &mut state)?;
    summary.total_records = records.len();
    Ok(summary)
}

/// Writes every file from `records` (sorted here) and `state`, each atomically, the state last;
/// returns the files' names.
fn write_files(dir: &Path, records: &mut [Record], state: &mut State) -> Result<Vec<String>, HolderError> {
    let mut files = Vec::new();
    records.sort_by(|a, b| {
        (a.time, &a.exchange, &a.account, a.kind, &a.symbol, &a.id).cmp(&(
            b.time,
            &b.exchange,
            &b.account,
            b.kind,
            &b.symbol,
            &b.id,
        ))
    });
    let mut jsonl = Vec::new();
    for r in records.iter() {
        serde_json::to_writer(&mut jsonl, r).map_err(|e| HolderError::Invalid(e.to_string()))?;
        jsonl.push(b'\n');
    }
    write_atomic(&dir.join(JSONL), &jsonl)?;
    files.push(JSONL.to_owned());
    let koinly = koinly_files(records)?;
    for (file, bytes) in &koinly {
        // A file of that name that no run of ours wrote is the owner's: never overwritten.
        if !state.koinly_files.contains(file) && std::fs::symlink_metadata(dir.join(file)).is_ok() {
            return Err(HolderError::Invalid(format!(
                "{} exists and was not written by keygate export; move it away or export to another --out",
                dir.join(file).display()
            )));
        }
        crate::vault::remove_stale_temporaries(&dir.join(file))?;
        write_atomic(&dir.join(file), bytes)?;
        files.push(file.clone());
    }
    let written: Vec<String> = koinly.into_iter().map(|(f, _)| f).collect();
    // Koinly files of accounts renamed since hold records the current files hold: an owner
    // importing every `koinly-*.csv` would import them twice.
    // The state file is only text on disk: a name in it that is not one of ours is left alone.
    for old in state.koinly_files.iter().filter(|f| !written.contains(f) && is_koinly_file(f)) {
        match std::fs::remove_file(dir.join(old)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(HolderError::Io { path: dir.join(old), msg: e.to_string() });
            }
            _ => {}
        }
    }
    state.koinly_files = written;
    write_atomic(&dir.join(COINTRACKING), &cointracking_csv(records)?)?;
    files.push(COINTRACKING.to_owned());
    let state_bytes = serde_json::to_vec_pretty(state).map_err(|e| HolderError::Invalid(e.to_string()))?;
    write_atomic(&dir.join(STATE), &state_bytes)?;
    files.push(STATE.to_owned());
    Ok(files)
}

/// Asks the exchange whose key this is (`GET /api/v3/account`, weight 20); a key and `uid`
/// seen before under another origin keep the account they were seen as.
async fn identify(reader: &mut Reader<'_>, state: &mut State) -> Result<String, HolderError> {
    let answer = reader.get("/api/v3/account", &[("omitZeroBalances", "true")]).await?;
    if !answer.is_object() {
        return Err(HolderError::Invalid(format!("/api/v3/account answered {}, not an account", kind_of(&answer))));
    }
    let uid = answer["uid"].as_i64();
    let account = account_id(reader.client.base_url(), uid, reader.client.api_key())?;
    let Some(uid) = uid else { return Ok(account) };
    let tag = key_tag(reader.client.api_key(), uid);
    Ok(state.keys.entry(tag).or_insert(account).clone())
}

/// One Koinly file per account, named after its entry; an entry name two accounts had (an
/// entry pointed at another account since) gets the account's tag as well, so neither file
/// overwrites the other.
///
/// # Errors
/// [`HolderError::Invalid`] for a record that cannot be written.
pub fn koinly_files(records: &[Record]) -> Result<Vec<(String, Vec<u8>)>, HolderError> {
    let mut by_account: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_account.entry(&r.account).or_default().push(r.clone());
    }
    // Counted without case: on a case-insensitive disk `koinly-x.csv` and `koinly-X.csv` are one.
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for rs in by_account.values() {
        *names.entry(rs[rs.len() - 1].exchange.to_ascii_lowercase()).or_insert(0) += 1;
    }
    let mut files = Vec::new();
    for (account, rs) in &by_account {
        let name = rs[rs.len() - 1].exchange.as_str();
        let file = if names.get(&name.to_ascii_lowercase()).copied().unwrap_or(0) > 1 {
            format!("{KOINLY_PREFIX}{name}-{}.csv", account_tag(account))
        } else {
            koinly_file(name)
        };
        // The name comes from history.jsonl, text on disk; one that is not a vault entry's
        // name does not make the file's path.
        let file = if is_koinly_file(&file) { file } else { format!("{KOINLY_PREFIX}{}.csv", account_tag(account)) };
        files.push((file, koinly_csv(rs)?));
    }
    Ok(files)
}

/// The Koinly file of the entry `name`.
#[must_use]
pub fn koinly_file(name: &str) -> String {
    format!("{KOINLY_PREFIX}{name}.csv")
}

/// A Koinly file name this module makes: `koinly-` and a vault entry name's characters
/// (letters, digits, `-`, `_`, `.`) and `.csv`, so never a path out of the directory.
fn is_koinly_file(file: &str) -> bool {
    let Some(middle) = file.strip_prefix(KOINLY_PREFIX).and_then(|f| f.strip_suffix(".csv")) else {
        return false;
    };
    !middle.is_empty()
        && middle.len() <= 80
        && middle != "."
        && middle != ".."
        && middle.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Signed GETs with pacing.
struct Reader<'a> {
    client: &'a Client,
    pacer: &'a Pacer,
    page: u32,
    /// `REQUEST_WEIGHT` per minute from `exchangeInfo`.
    weight_limit: Option<u32>,
    rate_limited: u32,
}

impl Reader<'_> {
    async fn get(&mut self, path: &str, params: &[(&str, &str)]) -> Result<serde_json::Value, HolderError> {
        self.request(path, params, true).await
    }

    async fn request(
        &mut self,
        path: &str,
        params: &[(&str, &str)],
        signed: bool,
    ) -> Result<serde_json::Value, HolderError> {
        let mut refusals = 0u32;
        loop {
            let (answer, info) = self.client.get_paced(path, params, signed).await?;
            let retry = matches!(answer.status, 429 | 418) || answer.status >= 500;
            if retry {
                if matches!(answer.status, 429 | 418) {
                    self.rate_limited += 1;
                }
                if refusals >= self.pacer.max_retries {
                    return Err(answer.parse::<serde_json::Value>().err().map_or_else(
                        || HolderError::Invalid(format!("HTTP {} from {path}", answer.status)),
                        HolderError::from,
                    ));
                }
                let backoff = 1u64 << refusals.min(6);
                let wait = info.retry_after_secs.unwrap_or(0).max(backoff);
                refusals += 1;
                (self.pacer.sleep)(Duration::from_secs(wait)).await;
                continue;
            }
            let value = answer.parse::<serde_json::Value>()?;
            if let (Some(used), Some(limit)) = (info.used_weight_1m, self.weight_limit)
                && u64::from(used) * 10 >= u64::from(limit) * 9
            {
                // Wait for the next minute window of the exchange's counters.
                let now = self.client.now().0;
                let wait_ms = 60_000 - now % 60_000 + 100;
                (self.pacer.sleep)(Duration::from_millis(wait_ms)).await;
            }
            return Ok(value);
        }
    }
}

/// A page of records: an answer that is not a list (an HTML error page with status 200, an
/// object) is an error, never an empty page, or the cursor would move past what it hid.
fn list(page: serde_json::Value, path: &str) -> Result<Vec<serde_json::Value>, HolderError> {
    match page {
        serde_json::Value::Array(items) => Ok(items),
        other => Err(HolderError::Invalid(format!("{path} answered {}, not a list", kind_of(&other)))),
    }
}

/// What kind of JSON an answer was, for messages (never the answer itself).
fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "no JSON",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

fn text(v: &serde_json::Value, field: &str) -> Result<String, HolderError> {
    match &v[field] {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(HolderError::Invalid(format!("field {field} is {other}, not text"))),
    }
}

fn number(v: &serde_json::Value, field: &str) -> Result<u64, HolderError> {
    v[field].as_u64().ok_or_else(|| HolderError::Invalid(format!("field {field} is {}, not a number", v[field])))
}

/// Whose records an entry's run makes.
struct Target<'a> {
    account: &'a str,
    name: &'a str,
    since_ms: u64,
}

async fn export_entry(
    reader: &mut Reader<'_>,
    target: &Target<'_>,
    es: &mut EntryState,
    out: &mut Vec<Record>,
) -> Result<(), HolderError> {
    let since_ms = target.since_ms;
    // The cursors move past what a run's `--since` leaves out: a run asking for anything earlier
    // than the last run did reads the account again.
    if es.since.is_some_and(|s| since_ms < s) {
        *es = EntryState::default();
    }
    es.since = Some(since_ms);
    let info = reader.request("/api/v3/exchangeInfo", &[], false).await?;
    reader.weight_limit = info["rateLimits"]
        .as_array()
        .and_then(|limits| {
            limits.iter().find_map(|l| {
                let minute = l["interval"] == "MINUTE" && l["intervalNum"] == 1;
                (l["rateLimitType"] == "REQUEST_WEIGHT" && minute).then(|| l["limit"].as_u64()).flatten()
            })
        })
        .and_then(|l| u32::try_from(l).ok());
    let mut markets = Vec::new();
    let Some(symbols) = info["symbols"].as_array() else {
        return Err(HolderError::Invalid(format!("/api/v3/exchangeInfo answered {}, no symbols", kind_of(&info))));
    };
    for s in symbols {
        markets.push((text(s, "symbol")?, text(s, "baseAsset")?, text(s, "quoteAsset")?));
    }
    markets.sort();
    let limit = reader.page.to_string();
    let page_len = reader.page as usize;
    for (symbol, base, quote) in &markets {
        loop {
            let from = es.trades.get(symbol).map_or(0, |last| last + 1).to_string();
            let page =
                reader.get("/api/v3/myTrades", &[("symbol", symbol), ("fromId", &from), ("limit", &limit)]).await?;
            let page = list(page, "/api/v3/myTrades")?;
            let before = es.trades.get(symbol).copied();
            for t in &page {
                let id = number(t, "id")?;
                let time = number(t, "time")?;
                if time < since_ms {
                    let last = es.trades.entry(symbol.clone()).or_insert(0);
                    *last = (*last).max(id);
                    continue;
                }
                let record = Record {
                    account: target.account.to_owned(),
                    exchange: target.name.to_owned(),
                    kind: Kind::Trade,
                    id: id.to_string(),
                    time,
                    symbol: Some(symbol.clone()),
                    side: Some(if t["isBuyer"].as_bool() == Some(true) { "buy" } else { "sell" }.to_owned()),
                    asset: base.clone(),
                    amount: text(t, "qty")?,
                    quote_asset: Some(quote.clone()),
                    quote_amount: Some(text(t, "quoteQty")?),
                    price: Some(text(t, "price")?),
                    fee: Some(text(t, "commission")?),
                    fee_asset: Some(text(t, "commissionAsset")?),
                    order_id: t["orderId"].as_u64(),
                    tx_id: None,
                };
                // Checked before the cursor moves past it: a record refused here is read
                // again by the next run.
                record.check().map_err(|e| HolderError::Invalid(format!("{symbol} trade {id}: {e}")))?;
                out.push(record);
                let last = es.trades.entry(symbol.clone()).or_insert(0);
                *last = (*last).max(id);
            }
            if page.len() < page_len {
                break;
            }
            if es.trades.get(symbol).copied() == before {
                return Err(HolderError::Invalid(format!(
                    "{symbol}: the exchange answered a full page of trades before fromId {from}; stopped"
                )));
            }
        }
    }
    let now = reader.client.now().0;
    for kind in [Kind::Deposit, Kind::Withdrawal] {
        let cursor = match kind {
            Kind::Deposit => es.deposits_until,
            _ => es.withdrawals_until,
        };
        let mut start = cursor.map_or(since_ms, |c| c.saturating_sub(OVERLAP_MS).max(since_ms));
        let mut pending_from: Option<u64> = None;
        while start <= now {
            let end = (start + WINDOW_DAYS * DAY_MS - 1).min(now);
            let mut offset = 0usize;
            let mut window_ids = BTreeSet::new();
            loop {
                let (s, e, o) = (start.to_string(), end.to_string(), offset.to_string());
                let path = match kind {
                    Kind::Deposit => "/sapi/v1/capital/deposit/hisrec",
                    _ => "/sapi/v1/capital/withdraw/history",
                };
                let page =
                    reader.get(path, &[("startTime", &s), ("endTime", &e), ("offset", &o), ("limit", &limit)]).await?;
                let page = list(page, path)?;
                let mut new_ids = 0usize;
                for r in &page {
                    if window_ids.insert(text(r, "id")?) {
                        new_ids += 1;
                    }
                    let status = number(r, "status")?;
                    let (time, final_ok, pending) = match kind {
                        Kind::Deposit => (number(r, "insertTime")?, matches!(status, 1 | 6), matches!(status, 0 | 8)),
                        _ => (withdraw_time(r)?, status == 6, matches!(status, 0 | 2 | 4)),
                    };
                    if pending {
                        pending_from = Some(pending_from.map_or(time, |p| p.min(time)));
                    }
                    if !final_ok {
                        continue;
                    }
                    let fee = match kind {
                        Kind::Withdrawal => Some(text(r, "transactionFee")?),
                        _ => None,
                    };
                    let record = Record {
                        account: target.account.to_owned(),
                        exchange: target.name.to_owned(),
                        kind,
                        id: text(r, "id")?,
                        time,
                        symbol: None,
                        side: None,
                        asset: text(r, "coin")?,
                        amount: text(r, "amount")?,
                        quote_asset: None,
                        quote_amount: None,
                        price: None,
                        fee_asset: fee.as_ref().map(|_| text(r, "coin")).transpose()?,
                        fee,
                        order_id: None,
                        tx_id: r["txId"].as_str().filter(|t| !t.is_empty()).map(str::to_owned),
                    };
                    record.check().map_err(|e| HolderError::Invalid(format!("{kind:?} {}: {e}", record.id)))?;
                    out.push(record);
                }
                if page.len() < page_len {
                    break;
                }
                if new_ids == 0 {
                    return Err(HolderError::Invalid(format!(
                        "{path}: the exchange answered a full page it had answered before (offset {offset}); stopped"
                    )));
                }
                offset += page.len();
            }
            // Everything up to `end` is read; the cursor moves only past windows read in full
            // and never past a record still pending.
            let until = pending_from.map_or(end + 1, |p| p.min(end + 1));
            match kind {
                Kind::Deposit => es.deposits_until = Some(until),
                _ => es.withdrawals_until = Some(until),
            }
            start = end + 1;
        }
    }
    Ok(())
}

/// A withdrawal's time: `applyTime` is a UTC text (`2026-01-01 00:00:00`) on Binance.
fn withdraw_time(r: &serde_json::Value) -> Result<u64, HolderError> {
    let t = text(r, "applyTime")?;
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let dt = time::PrimitiveDateTime::parse(&t, &format)
        .map_err(|e| HolderError::Invalid(format!("applyTime {t:?}: {e}")))?;
    u64::try_from(dt.assume_utc().unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| HolderError::Invalid(format!("applyTime {t:?} before 1970")))
}

fn date(ms: u64, with_utc: bool) -> Result<String, HolderError> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| HolderError::Invalid(e.to_string()))?;
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let s = t.format(&format).map_err(|e| HolderError::Invalid(e.to_string()))?;
    Ok(if with_utc { format!("{s} UTC") } else { s })
}

/// Decimal text plus or minus, exactly (eight decimal places, as Binance's amounts).
fn add_decimal(a: &str, b: &str, subtract: bool) -> Result<String, HolderError> {
    let parse =
        |s: &str| keygate_proto::Amount::parse(s).map_err(|e| HolderError::Invalid(format!("amount {s:?}: {e}")));
    let (x, y) = (parse(a)?.units(), parse(b)?.units());
    let units = if subtract { x.saturating_sub(y) } else { x.saturating_add(y) };
    Ok(keygate_proto::Amount::from_units(units).to_string())
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> Result<Vec<u8>, HolderError> {
    w.into_inner().map_err(|e| HolderError::Invalid(e.to_string()))
}

fn csv_err(e: csv::Error) -> HolderError {
    HolderError::Invalid(e.to_string())
}

/// Koinly universal CSV: a trade fills both sides (its gross `qty` and `quoteQty`) with the
/// commission in the fee columns; a deposit fills Received; a withdrawal fills Sent with the
/// amount that left for the address and its network fee in the fee columns. In every row,
/// Received − Sent − Fee is the change of the account's balance. Dates `YYYY-MM-DD HH:MM:SS UTC`.
///
/// # Errors
/// [`HolderError::Invalid`] for a record that cannot be written.
pub fn koinly_csv(records: &[Record]) -> Result<Vec<u8>, HolderError> {
    let mut w = writer();
    w.write_record(KOINLY_HEADER).map_err(csv_err)?;
    for r in records {
        let d = date(r.time, true)?;
        let fee = r.fee.clone().unwrap_or_default();
        let fee_asset = r.fee_asset.clone().unwrap_or_default();
        let quote = r.quote_amount.clone().unwrap_or_default();
        let quote_asset = r.quote_asset.clone().unwrap_or_default();
        let (sent, sent_c, recv, recv_c, desc, tx) = match r.kind {
            Kind::Trade if r.side.as_deref() == Some("buy") => {
                (quote, quote_asset, r.amount.clone(), r.asset.clone(), trade_comment(r), String::new())
            }
            Kind::Trade => (r.amount.clone(), r.asset.clone(), quote, quote_asset, trade_comment(r), String::new()),
            Kind::Deposit => (
                String::new(),
                String::new(),
                r.amount.clone(),
                r.asset.clone(),
                format!("deposit {}", r.id),
                r.tx_id.clone().unwrap_or_default(),
            ),
            // The exchange's amount includes the network fee: Sent is what left for the
            // address, so that Sent + Fee is what left the account.
            Kind::Withdrawal => (
                add_decimal(&r.amount, if fee.is_empty() { "0" } else { &fee }, true)?,
                r.asset.clone(),
                String::new(),
                String::new(),
                format!("withdrawal {}", r.id),
                r.tx_id.clone().unwrap_or_default(),
            ),
        };
        w.write_record([d.as_str(), &sent, &sent_c, &recv, &recv_c, &fee, &fee_asset, "", "", "", &desc, &tx])
            .map_err(csv_err)?;
    }
    finish(w)
}

fn trade_comment(r: &Record) -> String {
    format!(
        "{} {} trade {} order {}",
        r.symbol.as_deref().unwrap_or(""),
        r.side.as_deref().unwrap_or(""),
        r.id,
        r.order_id.map(|o| o.to_string()).unwrap_or_default()
    )
}

/// CoinTracking CSV, following its fee rules (amounts are the real balance changes, the fee
/// columns informative): a buy whose commission is in the bought coin books the net amount; a
/// sell whose commission is in the sold coin books the gross amount with the fee in it; a
/// commission in a third coin gets an `Other Fee` row of its own; a withdrawal's amount includes
/// its fee. Dates `YYYY-MM-DD HH:MM:SS`, UTC. `Exchange` is the vault entry's name.
///
/// `Tx-ID` is what tools deduplicate rows on, so it is unique per row across accounts: the
/// account's [`account_tag`], the kind and the exchange's id. A deposit and the withdrawal that
/// sent it share a chain transaction id, so that goes in the comment instead.
///
/// # Errors
/// [`HolderError::Invalid`] for a record that cannot be written.
pub fn cointracking_csv(records: &[Record]) -> Result<Vec<u8>, HolderError> {
    let mut w = writer();
    w.write_record(COINTRACKING_HEADER).map_err(csv_err)?;
    for r in records {
        let d = date(r.time, false)?;
        let fee = r.fee.clone().unwrap_or_default();
        let fee_asset = r.fee_asset.clone().unwrap_or_default();
        let tag = account_tag(&r.account);
        let chain = r.tx_id.as_ref().map_or(String::new(), |t| format!(" tx {t}"));
        match r.kind {
            Kind::Trade => {
                let quote = r.quote_amount.clone().unwrap_or_default();
                let quote_asset = r.quote_asset.clone().unwrap_or_default();
                let (mut buy, buy_c, mut sell, sell_c) = if r.side.as_deref() == Some("buy") {
                    (r.amount.clone(), r.asset.clone(), quote, quote_asset)
                } else {
                    (quote, quote_asset, r.amount.clone(), r.asset.clone())
                };
                let third = !fee.is_empty() && fee_asset != buy_c && fee_asset != sell_c;
                if fee_asset == buy_c && !fee.is_empty() {
                    buy = add_decimal(&buy, &fee, true)?;
                } else if fee_asset == sell_c && !fee.is_empty() {
                    sell = add_decimal(&sell, &fee, false)?;
                }
                let (f, fc) = if third { (String::new(), String::new()) } else { (fee.clone(), fee_asset.clone()) };
                let comment = trade_comment(r);
                w.write_record([
                    "Trade",
                    &buy,
                    &buy_c,
                    &sell,
                    &sell_c,
                    &f,
                    &fc,
                    &r.exchange,
                    "",
                    &comment,
                    &d,
                    &format!("{tag}-trade-{}-{}", r.symbol.as_deref().unwrap_or(""), r.id),
                ])
                .map_err(csv_err)?;
                if third {
                    w.write_record([
                        "Other Fee",
                        "",
                        "",
                        &fee,
                        &fee_asset,
                        "",
                        "",
                        &r.exchange,
                        "",
                        &comment,
                        &d,
                        &format!("{tag}-fee-{}-{}", r.symbol.as_deref().unwrap_or(""), r.id),
                    ])
                    .map_err(csv_err)?;
                }
            }
            Kind::Deposit => {
                w.write_record([
                    "Deposit",
                    &r.amount,
                    &r.asset,
                    "",
                    "",
                    "",
                    "",
                    &r.exchange,
                    "",
                    &format!("deposit {}{chain}", r.id),
                    &d,
                    &format!("{tag}-deposit-{}", r.id),
                ])
                .map_err(csv_err)?;
            }
            Kind::Withdrawal => {
                w.write_record([
                    "Withdrawal",
                    "",
                    "",
                    &r.amount,
                    &r.asset,
                    &fee,
                    &fee_asset,
                    &r.exchange,
                    "",
                    &format!("withdrawal {}{chain}", r.id),
                    &d,
                    &format!("{tag}-withdrawal-{}", r.id),
                ])
                .map_err(csv_err)?;
            }
        }
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn withdrawal_times_read_binances_text_and_dates_print_in_utc() {
        let r = serde_json::json!({"applyTime": "2026-01-01 00:00:01"});
        assert_eq!(withdraw_time(&r).unwrap(), 1_767_225_601_000);
        assert_eq!(date(1_767_225_601_000, true).unwrap(), "2026-01-01 00:00:01 UTC");
    }

    #[test]
    fn koinly_file_names_never_leave_the_directory() {
        assert!(is_koinly_file("koinly-main.csv") && is_koinly_file("koinly-a.b_c-1.csv"));
        for bad in ["koinly-../x.csv", "koinly-a/b.csv", "koinly-...csv", "koinly-.csv", "x.csv", "koinly-a b.csv"] {
            assert!(!is_koinly_file(bad), "{bad}");
        }
        let record = |exchange: &str| Record {
            account: "http://x#uid=1".into(),
            exchange: exchange.into(),
            kind: Kind::Deposit,
            id: "1".into(),
            time: 0,
            symbol: None,
            side: None,
            asset: "BTC".into(),
            amount: "1".into(),
            quote_asset: None,
            quote_amount: None,
            price: None,
            fee: None,
            fee_asset: None,
            order_id: None,
            tx_id: None,
        };
        let files = koinly_files(&[record("../../home/x")]).unwrap();
        assert_eq!(files[0].0, format!("koinly-{}.csv", account_tag("http://x#uid=1")));
        assert_eq!(koinly_files(&[record("main")]).unwrap()[0].0, "koinly-main.csv");
    }

    #[test]
    fn accounts_without_a_uid_are_named_by_their_key_and_records_name_a_vault_entry() {
        let a = account_id("http://ex.example/", None, "kg_one").unwrap();
        assert!(a.starts_with("http://ex.example#key=") && !a.contains("kg_one"), "{a}");
        assert_eq!(a, account_id("http://EX.example", None, "kg_one").unwrap());
        assert_ne!(a, account_id("http://ex.example", None, "kg_two").unwrap());
        let mut r: Record = serde_json::from_value(serde_json::json!({"account": a, "exchange": "main",
            "kind": "deposit", "id": "1", "time": 0, "asset": "BTC", "amount": "1"}))
        .unwrap();
        r.check().unwrap();
        r.exchange = "=HYPERLINK(\"http://evil\")".into();
        assert!(r.check().unwrap_err().to_string().contains("exchange"));
    }

    #[test]
    fn decimals_add_and_subtract_exactly() {
        assert_eq!(add_decimal("0.01000000", "0.00001000", true).unwrap(), "0.00999000");
        assert_eq!(add_decimal("1", "0.1", false).unwrap(), "1.10000000");
    }
}
