//! Helpers shared by the exchange endpoint tests: funded accounts, keys with a given permission,
//! and short ways to read Binance JSON.

use keygate_auth::{Permission, Permissions, Restrictions};
use keygate_client::{Answer, Client};
use keygate_exchange::{Command, Deposit, Outcome};
use keygate_proto::{AccountId, Amount, AssetCode};
use keygate_testkit::TestApp;
use reqwest::Method;

/// A trader: its account id and a client signing with a key of the given permissions.
pub struct Trader {
    pub account: AccountId,
    pub client: Client,
}

/// Creates account `name` with a key holding `extra` permissions (read is implied).
pub async fn trader(app: &TestApp, name: &str, extra: &[Permission]) -> Trader {
    let account = AccountId(app.account(name).await.id);
    let key = app.hmac_key(name, Permissions::with(extra), Restrictions::default()).await;
    Trader { account, client: app.hmac_client(&key) }
}

/// Credits `amount` of `coin` to `account` through the engine, as the operator's deposit does.
pub async fn fund(app: &TestApp, account: AccountId, coin: &str, amount: &str) {
    let deposit = Deposit {
        account,
        coin: AssetCode::parse(coin).unwrap(),
        network: None,
        amount: Amount::parse(amount).unwrap(),
    };
    let out = app.engine.submit(Command::Deposit(deposit), None).await.unwrap();
    assert!(matches!(out, Outcome::Deposited(_)));
}

/// A public GET, parsed as JSON, with its status.
pub async fn public(app: &TestApp, path_and_query: &str) -> (u16, serde_json::Value) {
    let res = reqwest::Client::new().get(format!("{}{path_and_query}", app.base_url)).send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers()["content-type"], "application/json;charset=UTF-8");
    (status, res.json().await.unwrap())
}

/// `free` and `locked` of `asset` in `GET /api/v3/account`.
pub async fn balance(client: &Client, asset: &str) -> (String, String) {
    let a = client.signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = a.body["balances"].as_array().unwrap().iter().find(|b| b["asset"] == asset).unwrap().clone();
    (b["free"].as_str().unwrap().to_owned(), b["locked"].as_str().unwrap().to_owned())
}

/// Asserts a Binance error: HTTP status and code.
#[track_caller]
pub fn assert_error(a: &Answer, status: u16, code: i32) {
    assert_eq!(a.status, status, "{:?}", a.body);
    assert_eq!(a.error().map(|e| e.code), Some(code), "{:?}", a.body);
}
