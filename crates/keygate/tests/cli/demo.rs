//! `keygate serve --demo`: the keys file, the keys working, restart and reset, loopback only.

use crate::{Sandbox, system_time};
use keygate_client::{Client, Signer};
use reqwest::Method;
use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running demo server: the process, its base URL and what it printed.
struct DemoServer {
    child: Child,
    url: String,
    printed: String,
}

/// Starts `keygate serve --demo` (plus `extra`) on a free port and reads its output up to the
/// last demo line, by which time the keys file is written.
fn serve_demo(s: &Sandbox, extra: &[&str]) -> DemoServer {
    let mut args = vec!["serve", "--demo", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = s.command(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "serve --demo stopped early: {printed}");
        printed.push_str(&line);
        if line.starts_with("demo: console") {
            break;
        }
    }
    let url = printed.lines().next().unwrap().strip_prefix("keygate listening on ").unwrap().to_owned();
    DemoServer { child, url, printed }
}

fn stop(server: DemoServer) {
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut child = server.child;
    assert!(child.wait().unwrap().success());
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn keys_file(s: &Sandbox) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(s.data().join("demo-keys.json")).unwrap()).unwrap()
}

fn key<'a>(file: &'a serde_json::Value, label: &str) -> &'a serde_json::Value {
    file["keys"].as_array().unwrap().iter().find(|k| k["label"] == label).unwrap()
}

fn hmac_client(url: &str, k: &serde_json::Value) -> Client {
    let secret = k["secret"].as_str().unwrap();
    Client::new(url, k["api_key"].as_str().unwrap(), Signer::hmac(secret), system_time())
}

fn ed25519_client(url: &str, k: &serde_json::Value) -> Client {
    let pem = std::fs::read_to_string(k["private_key_file"].as_str().unwrap()).unwrap();
    Client::new(url, k["api_key"].as_str().unwrap(), Signer::ed25519_pem(&pem).unwrap(), system_time())
}

async fn buy(client: &Client, id: &str) -> keygate_client::Answer {
    let params = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.01"),
        ("price", "10000"),
        ("newClientOrderId", id),
    ];
    client.signed(Method::POST, "/api/v3/order", &params).await.unwrap()
}

async fn free(client: &Client, asset: &str) -> String {
    let a = client.signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = a.body["balances"].as_array().unwrap().iter().find(|b| b["asset"] == asset).unwrap();
    b["free"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn demo_writes_its_keys_0600_and_every_key_works_as_its_permissions_say() {
    let s = Sandbox::new();
    let server = serve_demo(&s, &[]);
    let path = s.data().join("demo-keys.json");
    let file = keys_file(&s);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(file["base_url"], server.url.as_str());
    assert_eq!(file["account"], "demo");
    assert_eq!(file["console"]["url"], format!("{}/console/", server.url));
    assert_eq!(file["console"]["account"], "demo");
    assert!(file["console"]["password"].as_str().unwrap().len() >= 16);
    // The terminal shows where the keys are, never the secrets.
    assert!(server.printed.contains(path.to_str().unwrap()), "{}", server.printed);
    assert!(!server.printed.contains(file["console"]["password"].as_str().unwrap()));
    for k in file["keys"].as_array().unwrap() {
        if let Some(secret) = k["secret"].as_str() {
            assert!(!server.printed.contains(secret));
        }
    }

    let read = key(&file, "demo-read");
    assert_eq!((read["type"].as_str(), &read["permissions"]), (Some("hmac"), &serde_json::json!(["read"])));
    let trade = key(&file, "demo-trade");
    assert_eq!(trade["permissions"], serde_json::json!(["read", "trade"]));
    let ed = key(&file, "demo-ed25519");
    assert_eq!((ed["type"].as_str(), ed.get("secret")), (Some("ed25519"), None));
    assert_eq!(ed["permissions"], serde_json::json!(["read", "trade"]));
    assert_eq!(mode(Path::new(ed["private_key_file"].as_str().unwrap())), 0o600);

    // Funded; the trading keys trade, HMAC and Ed25519 alike; the read-only key reads only.
    let trader = hmac_client(&server.url, trade);
    assert_eq!(free(&trader, "USDT").await, "1000000.00000000");
    let a = buy(&trader, "hmac-1").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = buy(&ed25519_client(&server.url, ed), "ed-1").await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let reader = hmac_client(&server.url, read);
    assert_eq!(free(&reader, "USDT").await, "999800.00000000");
    let refused = buy(&reader, "read-1").await;
    assert_eq!((refused.status, refused.error().map(|e| e.code)), (401, Some(-2015)));

    // Rate limits at ten times Binance's.
    let info: serde_json::Value =
        reqwest::get(format!("{}/api/v3/exchangeInfo", server.url)).await.unwrap().json().await.unwrap();
    assert_eq!(
        info["rateLimits"][0],
        serde_json::json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 60000})
    );
    // The keys are the system's, as the audit log says.
    let keys = s.json(&["keys", "list", "--json"]);
    assert!(keys.as_array().unwrap().iter().all(|k| k["created_by"] == "system"), "{keys}");
    stop(server);
}

#[tokio::test]
async fn demo_restart_keeps_the_keys_and_rewrites_base_url_and_reset_starts_over() {
    let s = Sandbox::new();
    let first = serve_demo(&s, &[]);
    let before = keys_file(&s);
    stop(first);

    let second = serve_demo(&s, &[]);
    let after = keys_file(&s);
    assert_eq!(after["base_url"], second.url.as_str());
    assert_eq!(after["keys"], before["keys"], "same keys, same secrets");
    assert_eq!(after["console"]["password"], before["console"]["password"]);
    let trader = hmac_client(&second.url, key(&after, "demo-trade"));
    assert_eq!(free(&trader, "USDT").await, "1000000.00000000", "funded once, not on every start");
    stop(second);

    let third = serve_demo(&s, &["--demo-reset"]);
    let reset = keys_file(&s);
    for label in ["demo-read", "demo-trade", "demo-ed25519"] {
        assert_ne!(key(&reset, label)["api_key"], key(&before, label)["api_key"], "{label}");
    }
    let old = hmac_client(&third.url, key(&before, "demo-trade"));
    let refused = old.signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(refused.status, 401);
    assert_eq!(free(&hmac_client(&third.url, key(&reset, "demo-trade")), "USDT").await, "1000000.00000000");
    stop(third);
}

#[test]
fn demo_refuses_to_listen_beyond_loopback() {
    let s = Sandbox::new();
    s.fails(&["serve", "--demo", "--listen", "0.0.0.0:0"], "listens only on loopback");
    s.fails(&["serve", "--demo", "--listen", "0.0.0.0:0", "--trusted-proxy", "10.0.0.1"], "listens only on loopback");
    assert!(!s.data().join("demo-keys.json").exists());
}

#[tokio::test]
async fn demo_keys_file_lost_gets_new_keys_and_a_foreign_demo_account_is_not_taken_over() {
    let s = Sandbox::new();
    let first = serve_demo(&s, &[]);
    let before = keys_file(&s);
    stop(first);
    std::fs::remove_file(s.data().join("demo-keys.json")).unwrap();
    let second = serve_demo(&s, &[]);
    let after = keys_file(&s);
    assert_ne!(key(&after, "demo-trade")["api_key"], key(&before, "demo-trade")["api_key"]);
    assert_ne!(after["console"]["password"], before["console"]["password"]);
    let trader = hmac_client(&second.url, key(&after, "demo-trade"));
    assert_eq!(free(&trader, "USDT").await, "1000000.00000000");
    // The keys of the lost file are revoked.
    let old = hmac_client(&second.url, key(&before, "demo-trade"));
    assert_eq!(old.signed(Method::GET, "/api/v3/account", &[]).await.unwrap().status, 401);
    let active = s.json(&["keys", "list", "--json"]);
    assert_eq!(active.as_array().unwrap().iter().filter(|k| k["status"] == "active").count(), 3, "{active}");
    stop(second);

    let other = Sandbox::new();
    other.account("demo");
    other.fails(&["serve", "--demo", "--listen", "127.0.0.1:0"], "that the demo did not create");
    assert!(!other.data().join("demo-keys.json").exists());
}

#[test]
fn demo_reset_refuses_a_sandbox_that_is_not_a_demo() {
    let s = Sandbox::new();
    s.account("alice");
    s.fails(&["serve", "--demo", "--demo-reset", "--listen", "127.0.0.1:0"], "is not a demo");
    assert_eq!(s.json(&["accounts", "list", "--json"]).as_array().unwrap().len(), 1);
    s.fails(&["serve", "--demo-reset", "--listen", "127.0.0.1:0"], "--demo");
}

#[tokio::test]
async fn rate_limits_come_from_a_file_or_are_switched_off() {
    let s = Sandbox::new();
    let bad = s.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[request_weight]]\ninterval = \"FORTNIGHT\"\ninterval_num = 1\nlimit = 5\n").unwrap();
    s.fails(&["serve", "--listen", "127.0.0.1:0", "--rate-limits-config", bad.to_str().unwrap()], "bad.toml");
    let good = s.dir.path().join("limits.toml");
    std::fs::write(&good, "[[request_weight]]\ninterval = \"MINUTE\"\ninterval_num = 1\nlimit = 25\n").unwrap();
    let limits = |url: String| async move {
        let res = reqwest::get(format!("{url}/api/v3/exchangeInfo")).await.unwrap();
        let weight = res.headers().get("x-mbx-used-weight-1m").map(|v| v.to_str().unwrap().to_owned());
        let body: serde_json::Value = res.json().await.unwrap();
        (body["rateLimits"].clone(), weight)
    };
    let (server, url) = s.serve_with(&["--rate-limits-config", good.to_str().unwrap()], "warn");
    let (published, _) = limits(url.clone()).await;
    assert_eq!(published[0]["limit"], 25);
    // exchangeInfo weighed 20: five pings fit, the sixth is over.
    for _ in 0..5 {
        assert_eq!(reqwest::get(format!("{url}/api/v3/ping")).await.unwrap().status(), 200);
    }
    assert_eq!(reqwest::get(format!("{url}/api/v3/ping")).await.unwrap().status(), 429);
    crate::stop(server);
    let (server, url) = s.serve_with(&["--rate-limits", "off"], "warn");
    assert_eq!(limits(url.clone()).await, (serde_json::json!([]), None));
    crate::stop(server);
}

/// Issue #19: setting the demo account's first console password is not a password change, so a
/// fresh demo withdraws at once (it answered -4016 for 24 hours to every client library).
#[tokio::test]
async fn a_fresh_demo_withdraws_at_once() {
    const ADDRESS: &str = "bc1qdemodemodemodemodemodemodemodemodemo00";
    let s = Sandbox::new();
    let server = serve_demo(&s, &[]);
    let created = s.json(&[
        "keys",
        "create",
        "--account",
        "demo",
        "--label",
        "payout",
        "--permissions",
        "read,withdraw",
        "--ip",
        "127.0.0.1",
        "--withdraw-address",
        ADDRESS,
        "--json",
    ]);
    let client = hmac_client(&server.url, &created);
    let a = client
        .signed(
            Method::POST,
            "/sapi/v1/capital/withdraw/apply",
            &[("coin", "BTC"), ("address", ADDRESS), ("amount", "0.1")],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    // The console password of the file is the account's first one, recorded as such.
    let audit = s.json(&["audit", "list", "--limit", "10000", "--json"]);
    let set = audit.as_array().unwrap().iter().find(|r| r["action"] == "account.password").expect("the first password");
    assert_eq!(set["details"]["first"], true, "{set}");
    stop(server);
}

#[test]
fn serve_refuses_a_withdrawal_hold_that_is_not_a_duration() {
    let s = Sandbox::new();
    s.fails(&["serve", "--listen", "127.0.0.1:0", "--withdrawal-hold", "24"], "is not a duration");
}

/// The last public trade id of `symbol`.
async fn last_trade_id(url: &str, symbol: &str) -> u64 {
    let t: serde_json::Value =
        reqwest::get(format!("{url}/api/v3/trades?symbol={symbol}&limit=1")).await.unwrap().json().await.unwrap();
    t[0]["id"].as_u64().unwrap()
}

/// Waits (wall time: the server runs on the system clock) until `check` holds, or fails saying
/// `what`.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    #[allow(clippy::disallowed_methods)] // The server's own clock is the system's.
    let start = std::time::Instant::now();
    while !check().await {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "{what}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A fresh demo is a living market: a thousand one-minute candles on every symbol at once, the
/// flow trading by itself, and `keygate market pause` / `resume` stopping and restarting it.
#[tokio::test]
async fn a_fresh_demo_has_history_and_trades_by_itself_and_pauses_from_the_cli() {
    let s = Sandbox::new();
    let server = serve_demo(&s, &["--market-seed", "5", "--history-days", "2"]);
    let url = server.url.clone();
    for symbol in ["BTCUSDT", "ETHUSDT", "ETHBTC", "BNBUSDT"] {
        until(&format!("{symbol}: a thousand candles"), || {
            let url = url.clone();
            async move {
                let k: serde_json::Value =
                    reqwest::get(format!("{url}/api/v3/klines?symbol={symbol}&interval=1m&limit=1000"))
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                k.as_array().is_some_and(|k| k.len() == 1000)
            }
        })
        .await;
    }
    // The flow trades: the last trade id moves on by itself.
    let first = last_trade_id(&url, "BTCUSDT").await;
    until("the flow trades", || async { last_trade_id(&url, "BTCUSDT").await > first }).await;

    let paused = s.json(&["market", "pause", "--json"]);
    assert_eq!((paused["running"].as_bool(), paused["paused"].as_bool()), (Some(true), Some(true)), "{paused}");
    // A step already under way finishes; after that, nothing trades.
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let still = last_trade_id(&url, "BTCUSDT").await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(last_trade_id(&url, "BTCUSDT").await, still, "a paused market trades nothing");
    let status = s.ok(&["market", "status"]);
    assert!(status.contains("paused") && status.contains("seed 5"), "{status}");

    s.ok(&["market", "resume"]);
    until("the resumed flow trades", || async { last_trade_id(&url, "BTCUSDT").await > still }).await;
    let audit = s.json(&["audit", "list", "--json", "--limit", "1000"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    assert!(actions.contains(&"market.pause") && actions.contains(&"market.resume"), "{actions:?}");
    stop(server);
    // With no server running there is no market to pause.
    s.fails(&["market", "pause"], "simulated market");
}
