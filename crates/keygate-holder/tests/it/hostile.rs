//! `export` against an exchange that answers badly, on purpose or by a bug: a small axum server
//! on port 0 whose answers a test switches. What it must never do: lose a record for good, keep
//! one a CSV cannot hold, loop for ever, or follow a redirect with the key.

use keygate_client::{Client, Signer};
use keygate_holder::export::{self, Pacer, Source};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What the fake exchange answers.
#[derive(Clone, Default)]
struct Script {
    /// `myTrades` pages in order (the last one repeats), each a JSON array.
    trades: Arc<Mutex<Vec<Value>>>,
    /// `deposit/hisrec` answer.
    deposits: Arc<Mutex<Value>>,
    /// `withdraw/history` answer.
    withdrawals: Arc<Mutex<Value>>,
    /// Requests that reached a redirect's target.
    landed: Arc<Mutex<usize>>,
}

impl Script {
    fn next_trades(&self) -> Value {
        let mut pages = self.trades.lock().unwrap();
        if pages.len() > 1 { pages.remove(0) } else { pages.first().cloned().unwrap_or(json!([])) }
    }
}

/// Starts the fake exchange; a second listener is where `/api/v3/account` redirects when
/// `redirect` is set.
async fn exchange(script: Script, redirect: bool) -> String {
    use axum::routing::get;
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target_url = format!("http://{}", target.local_addr().unwrap());
    let landed = script.landed.clone();
    let catch_all = axum::Router::new().fallback(move || {
        let landed = landed.clone();
        async move {
            *landed.lock().unwrap() += 1;
            axum::Json(json!({"uid": 9, "balances": []}))
        }
    });
    tokio::spawn(async move { axum::serve(target, catch_all).await });

    let s = script.clone();
    let app = axum::Router::new()
        .route(
            "/api/v3/exchangeInfo",
            get(|| async {
                axum::Json(json!({"rateLimits": [], "symbols": [{"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT"}]}))
            }),
        )
        .route(
            "/api/v3/account",
            get(move || async move {
                if redirect {
                    axum::response::Redirect::temporary(&format!("{target_url}/landed")).into_response()
                } else {
                    axum::Json(json!({"uid": 7, "balances": []})).into_response()
                }
            }),
        )
        .route("/api/v3/myTrades", get({
            let s = s.clone();
            move || async move { axum::Json(s.next_trades()) }
        }))
        .route("/sapi/v1/capital/deposit/hisrec", get({
            let s = s.clone();
            move || async move { axum::Json(s.deposits.lock().unwrap().clone()) }
        }))
        .route("/sapi/v1/capital/withdraw/history", get({
            let s = s.clone();
            move || async move { axum::Json(s.withdrawals.lock().unwrap().clone()) }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

use axum::response::IntoResponse as _;

fn trade(id: u64, qty: Value) -> Value {
    json!({"id": id, "orderId": id, "price": "50000", "qty": qty, "quoteQty": "500", "commission": "0.00001",
           "commissionAsset": "BTC", "time": keygate_testkit::START.0 + id, "isBuyer": true})
}

fn source(url: &str, page: u32) -> Source {
    let time: keygate_client::TimeSource = Arc::new(|| keygate_testkit::START);
    Source {
        name: "odd".into(),
        client: Client::new(url, "kg_odd", Signer::hmac("kgs_odd"), time),
        pacer: Pacer { sleep: Arc::new(|_| Box::pin(async {})), max_retries: 0 },
        page,
    }
}

async fn run(url: &str, page: u32, dir: &std::path::Path) -> export::EntrySummary {
    export::run(&[source(url, page)], dir, keygate_testkit::START.0).await.unwrap().entries.remove(0)
}

#[tokio::test]
async fn a_malformed_trade_stops_the_entry_and_is_read_again_once_the_exchange_answers_it_well() {
    let script = Script::default();
    *script.trades.lock().unwrap() = vec![json!([trade(1, json!("0.01")), trade(2, Value::Null)])];
    *script.deposits.lock().unwrap() = json!([]);
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    let out = tempfile::tempdir().unwrap();
    let first = run(&url, 1000, out.path()).await;
    assert!(first.error.as_deref().is_some_and(|e| e.contains("qty")), "{first:?}");
    assert_eq!(first.trades, 1);
    // Fixed on the exchange's side: the next run reads trade 2.
    *script.trades.lock().unwrap() = vec![json!([trade(2, json!("0.02"))])];
    let second = run(&url, 1000, out.path()).await;
    assert_eq!((second.trades, second.error.as_deref()), (1, None), "{second:?}");
    assert_eq!(export::read_records(out.path()).unwrap().len(), 2);
}

#[tokio::test]
async fn amounts_a_csv_cannot_hold_and_formulas_are_refused_and_never_stored() {
    let script = Script::default();
    *script.deposits.lock().unwrap() = json!([]);
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    let out = tempfile::tempdir().unwrap();
    let mut formula = trade(2, json!("0.01"));
    formula["commissionAsset"] = json!("=HYPERLINK(\"http://evil\",\"x\")");
    let wd = |amount: &str, fee: &str| {
        json!([{"id": "w1", "amount": amount, "transactionFee": fee, "coin": "BTC", "status": 6,
                "applyTime": "2026-01-01 00:00:09", "txId": "0xab"}])
    };
    for (trades, withdrawals, field) in [
        (json!([trade(1, json!("-5"))]), json!([]), "field amount"),
        (json!([formula]), json!([]), "fee_asset"),
        (json!([]), wd("0.5", "0.6"), "fee"),
    ] {
        *script.trades.lock().unwrap() = vec![trades];
        *script.withdrawals.lock().unwrap() = withdrawals;
        let e = run(&url, 1000, out.path()).await;
        assert!(e.error.as_deref().is_some_and(|m| m.contains(field)), "{field}: {e:?}");
        assert_eq!(e.trades + e.withdrawals, 0, "{e:?}");
    }
    // Nothing bad was stored, so the files are whole and the next good answer is exported.
    assert!(export::read_records(out.path()).unwrap().is_empty());
    *script.trades.lock().unwrap() = vec![json!([trade(3, json!("0.01"))])];
    *script.withdrawals.lock().unwrap() = json!([]);
    let e = run(&url, 1000, out.path()).await;
    assert_eq!((e.trades, e.error.as_deref()), (1, None), "{e:?}");
}

#[tokio::test]
async fn an_exchange_that_repeats_full_pages_is_stopped_not_followed_for_ever() {
    let script = Script::default();
    // Every trades page is the same full page (page size 2); every deposits page too.
    *script.trades.lock().unwrap() = vec![json!([trade(1, json!("0.01")), trade(2, json!("0.01"))])];
    *script.deposits.lock().unwrap() = json!([]);
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    let out = tempfile::tempdir().unwrap();
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), run(&url, 2, out.path())).await.unwrap();
    assert!(e.error.as_deref().is_some_and(|m| m.contains("full page")), "{e:?}");
    assert_eq!(e.trades, 2);

    *script.trades.lock().unwrap() = vec![json!([])];
    let dep = |id: &str| json!({"id": id, "amount": "1", "coin": "BTC", "status": 1, "insertTime": keygate_testkit::START.0, "txId": "0x1"});
    *script.deposits.lock().unwrap() = json!([dep("d1"), dep("d2")]);
    let e = tokio::time::timeout(std::time::Duration::from_secs(10), run(&url, 2, out.path())).await.unwrap();
    assert!(e.error.as_deref().is_some_and(|m| m.contains("full page")), "{e:?}");
}

#[tokio::test]
async fn a_redirect_is_not_followed_with_the_key_and_signature() {
    let script = Script::default();
    let url = exchange(script.clone(), true).await;
    let out = tempfile::tempdir().unwrap();
    let e = run(&url, 1000, out.path()).await;
    assert!(e.error.is_some(), "{e:?}");
    assert_eq!(*script.landed.lock().unwrap(), 0, "the signed request went to the redirect's target");
}

#[tokio::test]
async fn an_answer_that_is_not_a_list_stops_the_entry_and_hides_nothing() {
    let script = Script::default();
    *script.trades.lock().unwrap() = vec![json!([])];
    // An HTML error page served with status 200 reads as a JSON string or as nothing.
    *script.deposits.lock().unwrap() = json!("<html>502 Bad Gateway</html>");
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    let out = tempfile::tempdir().unwrap();
    let e = run(&url, 1000, out.path()).await;
    assert!(e.error.as_deref().is_some_and(|m| m.contains("not a list")), "{e:?}");
    // Answered well later: the deposit it hid is exported (with a chain's own id form).
    let dep = json!({"id": "d1", "amount": "1", "coin": "HBAR", "status": 1, "insertTime": keygate_testkit::START.0 + 5,
                     "txId": "0.0.12345@1634567890.123456789"});
    *script.deposits.lock().unwrap() = json!([dep]);
    let e = run(&url, 1000, out.path()).await;
    assert_eq!((e.deposits, e.error.as_deref()), (1, None), "{e:?}");
}

#[tokio::test]
async fn a_koinly_file_the_export_did_not_write_is_never_overwritten() {
    let script = Script::default();
    *script.trades.lock().unwrap() = vec![json!([trade(1, json!("0.01"))])];
    *script.deposits.lock().unwrap() = json!([]);
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    let out = tempfile::tempdir().unwrap();
    let mine = out.path().join(export::koinly_file("odd"));
    std::fs::write(&mine, "the owner's own").unwrap();
    let err = export::run(&[source(&url, 1000)], out.path(), keygate_testkit::START.0).await.unwrap_err();
    assert!(err.to_string().contains("was not written by keygate export"), "{err}");
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), "the owner's own");
    // Moved away, the export writes it, and from then on it is the export's.
    std::fs::remove_file(&mine).unwrap();
    export::run(&[source(&url, 1000)], out.path(), keygate_testkit::START.0).await.unwrap();
    export::run(&[source(&url, 1000)], out.path(), keygate_testkit::START.0).await.unwrap();
    assert!(std::fs::read_to_string(&mine).unwrap().contains("BTCUSDT buy trade 1"));
}

#[tokio::test]
async fn what_earlier_entries_read_is_on_disk_when_a_later_entry_never_answers() {
    let script = Script::default();
    *script.trades.lock().unwrap() = vec![json!([trade(1, json!("0.01"))])];
    *script.deposits.lock().unwrap() = json!([]);
    *script.withdrawals.lock().unwrap() = json!([]);
    let url = exchange(script.clone(), false).await;
    // A listener that never accepts: the second entry's first request hangs.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let out = tempfile::tempdir().unwrap();
    let sources = [source(&url, 1000), Source { name: "silent".into(), ..source(&silent_url, 1000) }];
    // The run is stopped in the middle of the second entry, as a kill would stop it.
    let cut = tokio::time::timeout(std::time::Duration::from_secs(2), export::run(&sources, out.path(), 0)).await;
    assert!(cut.is_err(), "the silent exchange answered");
    let records = export::read_records(out.path()).unwrap();
    assert_eq!(records.len(), 1, "the first entry's trade is not on disk: {records:?}");
    assert!(out.path().join(export::koinly_file("odd")).exists());
    drop(silent);
}
