//! `export`: golden files, re-import by a parser of each vendor format, idempotent second runs,
//! and a real 429 from keygate's rate limiter in the middle of an export.

use super::{Exchange, fund};
use keygate_auth::{IpAllowlist, Permissions, Restrictions};
use keygate_holder::export::{self, COINTRACKING_HEADER, KOINLY_HEADER, Kind, Record};
use keygate_proto::{Amount, AssetCode};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Amounts as signed units of 1e-8, for sums that go below zero.
fn units(s: &str) -> i128 {
    if s.is_empty() { 0 } else { i128::from(Amount::parse(s).unwrap().units()) }
}

/// What Koinly would book: per currency, Received − Sent − Fee over every row.
fn koinly_net(path: &Path) -> BTreeMap<String, i128> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), KOINLY_HEADER);
    let mut net = BTreeMap::new();
    for row in r.deserialize::<BTreeMap<String, String>>() {
        let row = row.unwrap();
        assert!(row["Date"].ends_with(" UTC"), "{row:?}");
        *net.entry(row["Received Currency"].clone()).or_insert(0) += units(&row["Received Amount"]);
        *net.entry(row["Sent Currency"].clone()).or_insert(0) -= units(&row["Sent Amount"]);
        *net.entry(row["Fee Currency"].clone()).or_insert(0) -= units(&row["Fee Amount"]);
    }
    net.remove("");
    net
}

/// What CoinTracking would book: per exchange and currency, Buy − Sell (its amounts are the real
/// balance changes; the Fee column is informative).
fn cointracking_net(path: &Path) -> BTreeMap<(String, String), i128> {
    let mut r = csv::Reader::from_path(path).unwrap();
    assert_eq!(r.headers().unwrap().iter().collect::<Vec<_>>(), COINTRACKING_HEADER);
    let mut net = BTreeMap::new();
    for row in r.deserialize::<BTreeMap<String, String>>() {
        let row = row.unwrap();
        assert!(["Trade", "Deposit", "Withdrawal", "Other Fee"].contains(&row["Type"].as_str()), "{row:?}");
        let ex = row["Exchange"].clone();
        *net.entry((ex.clone(), row["Buy Currency"].clone())).or_insert(0) += units(&row["Buy Amount"]);
        *net.entry((ex, row["Sell Currency"].clone())).or_insert(0) -= units(&row["Sell Amount"]);
    }
    net.retain(|(_, c), _| !c.is_empty());
    net
}

async fn balances(x: &Exchange) -> BTreeMap<String, i128> {
    let a = x.app.hmac_client(&x.read).account().await.unwrap();
    a.balances
        .iter()
        .map(|b| (b.asset.to_string(), i128::from(b.free.units() + b.locked.units())))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// Compares `file` with its golden copy after `replace` (ports and the tags derived from them
/// differ from run to run).
fn golden(dir: &Path, file: &str, replace: &[(String, &str)]) {
    let want = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    let mut got = std::fs::read_to_string(dir.join(file)).unwrap();
    for (from, to) in replace {
        got = got.replace(from.as_str(), to);
    }
    let got = got.into_bytes();
    if std::env::var_os("KEYGATE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&want, &got).unwrap();
    }
    let want = std::fs::read(&want).unwrap_or_default();
    assert!(got == want, "{file} differs from tests/golden/{file}:\n{}", String::from_utf8_lossy(&got));
}

async fn history(x: &Exchange) {
    fund(&x.app, x.holder, "USDT", "10000").await;
    x.app.clock.advance_ms(1000);
    x.buy("BTCUSDT", "0.1", "50000").await;
    x.buy("ETHUSDT", "1", "2500").await;
    x.sell("ETHBTC", "0.5", "0.05").await;
    x.withdraw("USDT", "100").await;
}

fn trade_keys(records: &[Record]) -> Vec<String> {
    records.iter().filter(|r| r.kind == Kind::Trade).map(Record::key).collect()
}

/// What CoinTracking books for the entry `name`, without the zeros.
fn cointracking_of(dir: &Path, name: &str) -> BTreeMap<String, i128> {
    let ct = cointracking_net(&dir.join(export::COINTRACKING));
    ct.iter().filter(|((e, _), v)| e == name && **v != 0).map(|((_, c), v)| (c.clone(), *v)).collect()
}

/// A second read key of the exchange's holder account, as another vault entry would hold it.
async fn second_key(x: &Exchange, name: &str) -> export::Source {
    let ip = IpAllowlist::parse(&["127.0.0.0/8"]).unwrap();
    let key =
        x.app.hmac_key("holder", Permissions::default(), Restrictions { ip_allowlist: ip, ..Restrictions::default() });
    export::Source { client: x.app.hmac_client(&key.await), ..x.source(name, 5) }
}

#[tokio::test]
async fn two_exchanges_export_to_golden_files_that_reimport_to_the_balances_and_a_second_run_adds_only_new() {
    let (alpha, beta) = tokio::join!(Exchange::start(), Exchange::start());
    history(&alpha).await;
    history(&beta).await;
    let out = tempfile::tempdir().unwrap();
    // Pages of one record on alpha: every page is full, so trades page by fromId and deposits
    // and withdrawals by offset to the end; the files must still equal the golden ones. The
    // third entry holds another key of alpha's account: exported once, not twice.
    let sources = [
        export::Source { page: 1, ..alpha.source("alpha", 5) },
        beta.source("beta", 5),
        second_key(&alpha, "alpha-bot").await,
    ];

    // The owner's own file in the directory, and a temporary file of a run killed mid-write.
    std::fs::write(out.path().join("koinly-mine.csv"), "mine").unwrap();
    std::fs::write(out.path().join(".history.jsonl.tmp-0123456789ab"), "partial").unwrap();
    let first = export::run(&sources, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    assert!(!out.path().join(".history.jsonl.tmp-0123456789ab").exists(), "a stale temporary file is left");
    for e in &first.entries[..2] {
        assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (3, 1, 1, None), "{e:?}");
    }
    let copy = &first.entries[2];
    assert_eq!(copy.same_account_as.as_deref(), Some("alpha"), "{copy:?}");
    assert_eq!(copy.account, first.entries[0].account);
    assert_eq!(copy.trades + copy.deposits + copy.withdrawals, 0);
    let alpha_account = first.entries[0].account.clone().unwrap();
    let beta_account = first.entries[1].account.clone().unwrap();
    assert_eq!(alpha_account, format!("{}#uid={}", alpha.app.base_url, alpha.holder.0));
    let replace = [
        (alpha.app.base_url.clone(), "http://alpha.example"),
        (beta.app.base_url.clone(), "http://beta.example"),
        (export::account_tag(&alpha_account), "aaaaaaaa"),
        (export::account_tag(&beta_account), "bbbbbbbb"),
    ];
    let (koinly_alpha, koinly_beta) = (export::koinly_file("alpha"), export::koinly_file("beta"));
    for f in [export::JSONL, &koinly_alpha, &koinly_beta, export::COINTRACKING] {
        golden(out.path(), f, &replace);
    }

    // Re-imported, each file books exactly the balances its exchange holds: one Koinly file per
    // account (one wallet each), CoinTracking's rows by its Exchange column.
    let (ba, bb) = (balances(&alpha).await, balances(&beta).await);
    assert_eq!(koinly_net(&out.path().join(&koinly_alpha)), ba);
    assert_eq!(koinly_net(&out.path().join(&koinly_beta)), bb);
    assert_eq!(cointracking_of(out.path(), "alpha"), ba);
    assert_eq!(cointracking_of(out.path(), "beta"), bb);
    let ids = csv::Reader::from_path(out.path().join(export::COINTRACKING))
        .unwrap()
        .records()
        .map(|r| r.unwrap()[11].to_owned())
        .collect::<Vec<_>>();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "a Tx-ID repeats: {ids:?}");

    // A second run with nothing new adds nothing and leaves the files as they were.
    let files = [export::JSONL.to_owned(), koinly_alpha.clone(), koinly_beta.clone(), export::COINTRACKING.to_owned()];
    let read_all = || files.clone().map(|f| std::fs::read(out.path().join(f)).unwrap());
    let before = read_all();
    let again = export::run(&sources, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    assert!(again.entries.iter().all(|e| e.trades + e.deposits + e.withdrawals == 0), "{again:?}");
    assert!(read_all() == before, "a second run changed the files");

    // New activity on one exchange: only it is added, and every trade is there exactly once.
    alpha.buy("BTCUSDT", "0.04", "51000").await;
    fund(&alpha.app, alpha.holder, "BTC", "0.5").await;
    let third = export::run(&sources, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    assert_eq!((third.entries[0].trades, third.entries[0].deposits), (1, 1), "{third:?}");
    assert_eq!(third.entries[1].trades + third.entries[1].deposits + third.entries[1].withdrawals, 0);
    let records = export::read_records(out.path()).unwrap();
    let keys = trade_keys(&records);
    assert_eq!(keys.len(), 7);
    assert_eq!(keys.iter().collect::<BTreeSet<_>>().len(), 7, "a trade appears twice");
    assert_eq!(koinly_net(&out.path().join(&koinly_alpha)), balances(&alpha).await);
    assert_eq!(koinly_net(&out.path().join(&koinly_beta)), bb);

    // The entry renamed (or another key of the account in its place): nothing is exported
    // again, and the files name the account as the vault does now.
    let renamed = [second_key(&alpha, "main").await, beta.source("beta", 5)];
    let fourth = export::run(&renamed, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    assert!(fourth.entries.iter().all(|e| e.trades + e.deposits + e.withdrawals == 0), "{fourth:?}");
    assert_eq!(export::read_records(out.path()).unwrap().len(), records.len());
    assert!(!out.path().join(&koinly_alpha).exists(), "the old name's Koinly file would be imported twice");
    assert_eq!(std::fs::read_to_string(out.path().join("koinly-mine.csv")).unwrap(), "mine", "not ours to remove");
    assert_eq!(koinly_net(&out.path().join(export::koinly_file("main"))), balances(&alpha).await);
    assert_eq!(cointracking_of(out.path(), "main"), balances(&alpha).await);
    assert!(cointracking_of(out.path(), "alpha").is_empty());
    alpha.app.shutdown().await;
    beta.app.shutdown().await;
}

#[tokio::test]
async fn a_real_429_mid_export_is_waited_out_or_resumed_by_the_next_run() {
    // Request weight limited to 120 a minute by keygate's own limiter.
    let app = keygate_testkit::TestApp::spawn_with(|c| {
        c.rate_limits.request_weight[0].limit = 120;
        c.rate_limits.ban.after_refusals = 1000;
    })
    .await;
    let x = Exchange::from(app).await;
    history(&x).await;
    let ping = || async {
        let r = reqwest::get(format!("{}/api/v3/time", x.app.base_url)).await.unwrap();
        r.status().as_u16()
    };
    // Spend the minute's weight, so the export's first requests are refused with 429.
    x.app.clock.advance_ms(60_000);
    while ping().await != 429 {}

    // No retries allowed: the export stops at the 429, keeps nothing half-done, and says so.
    let out = tempfile::tempdir().unwrap();
    let stopped = export::run(&[x.source("x", 0)], out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    let e = &stopped.entries[0];
    assert!(e.error.as_deref().is_some_and(|m| m.contains("429")), "{e:?}");
    assert_eq!(e.rate_limited, 1);

    // Spend some weight again mid-way: the next run waits the 429 out (Retry-After moves the
    // exchange's clock here) and the pacing by X-MBX-USED-WEIGHT-1M keeps it going.
    while ping().await != 429 {}
    let resumed = export::run(&[x.source("x", 5)], out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    let e = &resumed.entries[0];
    assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (3, 1, 1, None), "{e:?}");
    assert!(e.rate_limited >= 1, "{e:?}");
    let records = export::read_records(out.path()).unwrap();
    assert_eq!(trade_keys(&records).len(), 3);
    assert_eq!(records.iter().filter(|r| r.kind == Kind::Withdrawal).count(), 1);
    assert_eq!(
        records.iter().find(|r| r.kind == Kind::Deposit).unwrap().asset,
        AssetCode::parse("USDT").unwrap().to_string()
    );
    x.app.shutdown().await;
}

#[tokio::test]
async fn history_before_since_is_left_out_and_the_files_are_the_owners_alone() {
    let x = Exchange::start().await;
    history(&x).await;
    // The deposit at START, trades at +1 s, +2 s and +3 s, the withdrawal at +4 s: from +2 s on.
    let since = keygate_testkit::START.0 + 2_000;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("tax");
    let run = export::run(&[x.source("x", 5)], &dir, since).await.unwrap();
    let e = &run.entries[0];
    assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (2, 0, 1, None), "{e:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "the owner's alone");
        let file = dir.join(export::COINTRACKING);
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let records = export::read_records(&dir).unwrap();
    assert!(records.iter().all(|r| r.time >= since), "{records:?}");
    // Asked later for the earlier history: the trade and the deposit left out come now, and
    // nothing twice.
    let earlier = export::run(&[x.source("x", 5)], &dir, export::DEFAULT_SINCE_MS).await.unwrap();
    let e = &earlier.entries[0];
    assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (1, 1, 0, None), "{e:?}");
    let records = export::read_records(&dir).unwrap();
    assert_eq!(records.len(), 5);
    assert_eq!(trade_keys(&records).iter().collect::<BTreeSet<_>>().len(), 3);
    // A trade, then one run with a later --since that leaves it out: the next run with the
    // usual --since still exports it.
    x.buy("BTCUSDT", "0.01", "50000").await;
    let later = keygate_testkit::START.0 + 10 * 86_400_000;
    let skipped = export::run(&[x.source("x", 5)], &dir, later).await.unwrap();
    assert_eq!(skipped.entries[0].trades, 0, "{skipped:?}");
    let usual = export::run(&[x.source("x", 5)], &dir, export::DEFAULT_SINCE_MS).await.unwrap();
    assert_eq!((usual.entries[0].trades, usual.entries[0].error.as_deref()), (1, None), "{usual:?}");
    assert_eq!(export::read_records(&dir).unwrap().len(), 6);
    x.app.shutdown().await;
}

#[tokio::test]
async fn the_same_key_under_another_host_name_is_the_same_account() {
    let x = Exchange::start().await;
    history(&x).await;
    let secret = x.read.secret.as_ref().unwrap().expose().to_owned();
    let clock = x.app.clock.clone();
    let localhost = x.app.base_url.replace("127.0.0.1", "localhost");
    let other = keygate_client::Client::new(
        localhost,
        x.read.key.api_key.clone(),
        keygate_client::Signer::hmac(&secret),
        std::sync::Arc::new(move || keygate_service::Clock::now(&*clock).as_millis()),
    );
    let out = tempfile::tempdir().unwrap();
    let sources = [x.source("x", 5), export::Source { client: other, ..x.source("x-localhost", 5) }];
    let run = export::run(&sources, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    assert_eq!(run.entries[1].same_account_as.as_deref(), Some("x"), "{run:?}");
    // And on its own, later (the vault entry's URL changed): nothing new.
    let later = export::run(&sources[1..], out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    let e = &later.entries[0];
    assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (0, 0, 0, None), "{e:?}");
    assert_eq!(export::read_records(out.path()).unwrap().len(), 5);
    x.app.shutdown().await;
}
