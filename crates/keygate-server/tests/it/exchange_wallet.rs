//! Wallet endpoints: coins, deposit address and history, withdrawals under the key's policy, and
//! ccxt's margin stubs.

use super::exchange_support::{assert_error, balance, fund, trader};
use keygate_auth::{IpAllowlist, Permission, Permissions, Restrictions, WithdrawLimit};
use keygate_exchange::{Command, Outcome};
use keygate_proto::{AccountId, Amount, AssetCode};
use keygate_testkit::TestApp;
use reqwest::Method;

const ALLOWED: &str = "bc1qallowedaddressallowedaddressallowed00";
const APPLY: &str = "/sapi/v1/capital/withdraw/apply";
const HISTORY: &str = "/sapi/v1/capital/withdraw/history";

#[tokio::test]
async fn a_withdraw_key_withdraws_to_an_allowed_address_and_the_withdrawal_completes() {
    let app = TestApp::spawn().await;
    let account = AccountId(app.account("dave").await.id);
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(),
        withdraw_addresses: vec![ALLOWED.to_owned()],
        withdraw_limit_24h: Some(WithdrawLimit {
            asset: AssetCode::parse("BTC").unwrap(),
            amount: Amount::parse("0.5").unwrap(),
        }),
        ..Restrictions::default()
    };
    let key = app.hmac_key("dave", Permissions::with(&[Permission::Withdraw]), r).await;
    let client = app.hmac_client(&key);
    fund(&app, account, "BTC", "1").await;

    let a = client
        .signed(
            Method::POST,
            APPLY,
            &[("coin", "BTC"), ("network", "BTC"), ("address", ALLOWED), ("amount", "0.1"), ("withdrawOrderId", "w-1")],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let id = a.body["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(a.body.as_object().unwrap().len(), 1);
    // The withdrawal is in the owner's activity, written with its journal entry (issue #12).
    let log = app.service.audit_log(&TestApp::operator(), 0, 1000).await.unwrap();
    let audited: Vec<_> = log.iter().filter(|r| r.action == "api.withdraw").collect();
    assert_eq!(audited.len(), 1, "{log:?}");
    assert_eq!(audited[0].target, key.key.api_key);
    assert_eq!(audited[0].details["id"].as_str(), Some(id.as_str()));
    assert_eq!(audited[0].details["amount"].as_str(), Some("0.10000000"));

    let h = client.signed(Method::GET, HISTORY, &[]).await.unwrap();
    assert_eq!(h.status, 200, "{:?}", h.body);
    let w = &h.body[0];
    assert_eq!((w["id"].as_str(), w["status"].as_u64()), (Some(id.as_str()), Some(4)));
    assert_eq!((w["amount"].as_str(), w["transactionFee"].as_str()), (Some("0.10000000"), Some("0.00002000")));
    assert_eq!((w["applyTime"].as_str(), w["network"].as_str()), (Some("2026-01-01 00:00:00"), Some("BTC")));
    assert_eq!((w["withdrawOrderId"].as_str(), w["transferType"].as_u64()), (Some("w-1"), Some(0)));
    assert_eq!(balance(&client, "BTC").await, ("0.90000000".into(), "0.10000000".into()));
    let coins = client.signed(Method::GET, "/sapi/v1/capital/config/getall", &[]).await.unwrap();
    let btc = coins.body.as_array().unwrap().iter().find(|c| c["coin"] == "BTC").unwrap().clone();
    assert_eq!((btc["withdrawing"].as_str(), btc["locked"].as_str()), (Some("0.10000000"), Some("0.00000000")));

    // Over the 24-hour limit of the key: refused by the engine, nothing locked.
    let over =
        client.signed(Method::POST, APPLY, &[("coin", "BTC"), ("address", ALLOWED), ("amount", "0.45")]).await.unwrap();
    assert_error(&over, 400, -4023);
    // An address outside the key's allowlist.
    let elsewhere = client
        .signed(Method::POST, APPLY, &[("coin", "BTC"), ("address", "bc1qsomewhereelse"), ("amount", "0.1")])
        .await
        .unwrap();
    assert_error(&elsewhere, 400, -4035);
    let exponent =
        client.signed(Method::POST, APPLY, &[("coin", "BTC"), ("address", ALLOWED), ("amount", "1e-3")]).await.unwrap();
    assert_error(&exponent, 400, -1100);
    let log = app.service.audit_log(&TestApp::operator(), 0, 1000).await.unwrap();
    assert_eq!(log.iter().filter(|r| r.action == "api.withdraw").count(), 1, "a refused withdrawal was audited");

    app.clock.advance_ms(3000);
    let done = app.engine.submit(Command::AdvanceWithdrawals, None).await.unwrap();
    assert!(matches!(done, Outcome::WithdrawalsCompleted(ref v) if v.len() == 1), "{done:?}");
    let h = client.signed(Method::GET, HISTORY, &[("coin", "BTC")]).await.unwrap();
    let w = &h.body[0];
    assert_eq!(w["status"].as_u64(), Some(6));
    assert!(!w["txId"].as_str().unwrap().is_empty());
    assert_eq!(w["completeTime"].as_str(), Some("2026-01-01 00:00:03"));
    assert_eq!(balance(&client, "BTC").await, ("0.90000000".into(), "0.00000000".into()));
    app.shutdown().await;
}

#[tokio::test]
async fn a_trading_key_cannot_withdraw() {
    let app = TestApp::spawn().await;
    let t = trader(&app, "erin", &[Permission::Trade]).await;
    fund(&app, t.account, "BTC", "1").await;
    let a = t
        .client
        .signed(Method::POST, APPLY, &[("coin", "BTC"), ("address", ALLOWED), ("amount", "0.1")])
        .await
        .unwrap();
    assert_error(&a, 401, -2015);
    assert_eq!(a.reason.as_deref(), Some("PERMISSION_MISSING_WITHDRAW"));
    assert_eq!(balance(&t.client, "BTC").await, ("1.00000000".into(), "0.00000000".into()));
    app.shutdown().await;
}

#[tokio::test]
async fn deposits_show_in_history_at_the_accounts_address() {
    let app = TestApp::spawn().await;
    let t = trader(&app, "frank", &[]).await;
    fund(&app, t.account, "USDT", "250").await;
    let addr = t.client.signed(Method::GET, "/sapi/v1/capital/deposit/address", &[("coin", "USDT")]).await.unwrap();
    assert_eq!(addr.status, 200, "{:?}", addr.body);
    assert_eq!(
        (addr.body["coin"].as_str(), addr.body["tag"].as_str(), addr.body["url"].as_str()),
        (Some("USDT"), Some(""), Some(""))
    );
    let address = addr.body["address"].as_str().unwrap().to_owned();
    assert!(address.starts_with('T'), "{address}");
    let bsc = t
        .client
        .signed(Method::GET, "/sapi/v1/capital/deposit/address", &[("coin", "USDT"), ("network", "BSC")])
        .await
        .unwrap();
    assert!(bsc.body["address"].as_str().unwrap().starts_with("0x"));
    let unknown = t.client.signed(Method::GET, "/sapi/v1/capital/deposit/address", &[("coin", "DOGE")]).await.unwrap();
    assert_error(&unknown, 400, -4018);

    let h = t.client.signed(Method::GET, "/sapi/v1/capital/deposit/hisrec", &[]).await.unwrap();
    assert_eq!(h.status, 200, "{:?}", h.body);
    let d = &h.body[0];
    assert_eq!(
        (d["coin"].as_str(), d["amount"].as_str(), d["status"].as_u64()),
        (Some("USDT"), Some("250.00000000"), Some(1))
    );
    assert_eq!((d["address"].as_str(), d["network"].as_str()), (Some(address.as_str()), Some("TRX")));
    assert!(d["insertTime"].is_u64() && d["id"].is_string() && d["txId"].is_string());
    let none = t.client.signed(Method::GET, "/sapi/v1/capital/deposit/hisrec", &[("coin", "BTC")]).await.unwrap();
    assert_eq!(none.body, serde_json::json!([]));
    app.shutdown().await;
}

#[tokio::test]
async fn coins_list_every_asset_with_its_networks() {
    let app = TestApp::spawn().await;
    let t = trader(&app, "gina", &[]).await;
    fund(&app, t.account, "ETH", "3").await;
    let a = t.client.signed(Method::GET, "/sapi/v1/capital/config/getall", &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let coins = a.body.as_array().unwrap();
    assert_eq!(coins.len(), 4);
    let eth = coins.iter().find(|c| c["coin"] == "ETH").unwrap();
    assert_eq!(
        (eth["name"].as_str(), eth["free"].as_str(), eth["freeze"].as_str()),
        (Some("Ethereum"), Some("3.00000000"), Some("0"))
    );
    assert_eq!((eth["trading"].as_bool(), eth["isLegalMoney"].as_bool()), (Some(true), Some(false)));
    let nets = eth["networkList"].as_array().unwrap();
    assert_eq!(nets.len(), 2);
    assert_eq!((nets[0]["network"].as_str(), nets[0]["isDefault"].as_bool()), (Some("ETH"), Some(true)));
    assert_eq!(nets[1]["isDefault"], false);
    assert_eq!(
        (nets[0]["withdrawFee"].as_str(), nets[0]["withdrawMin"].as_str()),
        (Some("0.00080000"), Some("0.00160000"))
    );
    assert_eq!(
        (nets[0]["minConfirm"].as_u64(), nets[0]["withdrawIntegerMultiple"].as_str()),
        (Some(1), Some("0.00000001"))
    );
    app.shutdown().await;
}

#[tokio::test]
async fn margin_pairs_are_empty_for_ccxt_and_need_a_signature() {
    let app = TestApp::spawn().await;
    let t = trader(&app, "hank", &[]).await;
    for path in ["/sapi/v1/margin/allPairs", "/sapi/v1/margin/isolated/allPairs"] {
        let a = t.client.signed(Method::GET, path, &[("recvWindow", "10000")]).await.unwrap();
        assert_eq!((a.status, &a.body), (200, &serde_json::json!([])), "{path}");
        let unsigned = reqwest::Client::new().get(format!("{}{path}", app.base_url)).send().await.unwrap();
        assert_eq!(unsigned.status(), 401);
    }
    app.shutdown().await;
}

#[tokio::test]
async fn withdrawals_are_refused_for_24_hours_after_a_password_change() {
    let app = TestApp::spawn().await;
    let account = AccountId(app.account("gina").await.id);
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(),
        withdraw_addresses: vec![ALLOWED.to_owned()],
        ..Restrictions::default()
    };
    let key = app.hmac_key("gina", Permissions::with(&[Permission::Withdraw]), r).await;
    let client = app.hmac_client(&key);
    fund(&app, account, "BTC", "1").await;
    let password = zeroize::Zeroizing::new("a brand new password".to_owned());
    app.service.set_password(&TestApp::operator(), "gina", password).await.unwrap();
    let params = [("coin", "BTC"), ("address", ALLOWED), ("amount", "0.1")];
    let a = client.signed(Method::POST, APPLY, &params).await.unwrap();
    assert_error(&a, 400, -4016);
    assert_eq!(balance(&client, "BTC").await, ("1.00000000".into(), "0.00000000".into()));
    app.clock.advance_ms(24 * 60 * 60 * 1000);
    let a = client.signed(Method::POST, APPLY, &params).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    app.shutdown().await;
}
