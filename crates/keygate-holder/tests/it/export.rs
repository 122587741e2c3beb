//! `export`: golden files, re-import by a parser of each vendor format, idempotent second runs,
//! and a real 429 from keygate's rate limiter in the middle of an export.

use super::{Exchange, fund};
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

fn golden(dir: &Path, file: &str) {
    let want = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    let got = std::fs::read(dir.join(file)).unwrap();
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

#[tokio::test]
async fn two_exchanges_export_to_golden_files_that_reimport_to_the_balances_and_a_second_run_adds_only_new() {
    let (alpha, beta) = tokio::join!(Exchange::start(), Exchange::start());
    history(&alpha).await;
    history(&beta).await;
    let out = tempfile::tempdir().unwrap();
    // Pages of one record on alpha: every page is full, so trades page by fromId and deposits
    // and withdrawals by offset to the end; the files must still equal the golden ones.
    let sources = [export::Source { page: 1, ..alpha.source("alpha", 5) }, beta.source("beta", 5)];

    let first = export::run(&sources, out.path(), export::DEFAULT_SINCE_MS).await.unwrap();
    for e in &first.entries {
        assert_eq!((e.trades, e.deposits, e.withdrawals, e.error.as_deref()), (3, 1, 1, None), "{e:?}");
    }
    for f in [export::JSONL, export::KOINLY, export::COINTRACKING] {
        golden(out.path(), f);
    }

    // Re-imported, each format books exactly the balances the exchanges hold.
    let (ba, bb) = (balances(&alpha).await, balances(&beta).await);
    let mut both = ba.clone();
    for (k, v) in &bb {
        *both.entry(k.clone()).or_insert(0) += v;
    }
    assert_eq!(koinly_net(&out.path().join(export::KOINLY)), both);
    let ct = cointracking_net(&out.path().join(export::COINTRACKING));
    for (name, b) in [("alpha", &ba), ("beta", &bb)] {
        let mine: BTreeMap<String, i128> =
            ct.iter().filter(|((e, _), v)| e == name && **v != 0).map(|((_, c), v)| (c.clone(), *v)).collect();
        assert_eq!(&mine, b, "{name}");
    }

    // A second run with nothing new adds nothing and leaves the files as they were.
    let files = [export::JSONL, export::KOINLY, export::COINTRACKING];
    let read_all = || files.map(|f| std::fs::read(out.path().join(f)).unwrap());
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
    let mut both = balances(&alpha).await;
    for (k, v) in balances(&beta).await {
        *both.entry(k).or_insert(0) += v;
    }
    assert_eq!(koinly_net(&out.path().join(export::KOINLY)), both);
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
