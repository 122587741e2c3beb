//! Issue #19: withdrawal holds, end to end. A thief with the password alone logs in, turns on
//! their own 2FA, steps up, creates a withdraw key for their address and withdraws: refused until
//! the hold passes. A new address on a key is held while the key's old address keeps working,
//! the console shows the hold and removing the address ends it.

use crate::support::{Agent, PASSWORD, element_text, next_totp_step, totp};
use keygate_client::Signer;
use keygate_exchange::{Command, Deposit, Outcome};
use keygate_proto::{AccountId, Amount};
use keygate_service::Actor;
use keygate_testkit::TestApp;
use reqwest::Method;

const APPLY: &str = "/sapi/v1/capital/withdraw/apply";
const THIEF: &str = "bc1qthiefthiefthiefthiefthiefthiefthief00";
const OWN: &str = "bc1qownerownerownerownerownerownerowner00";
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

async fn fund(app: &TestApp, account: i64) {
    let deposit = Deposit {
        account: AccountId(account),
        coin: keygate_proto::AssetCode::parse("BTC").unwrap(),
        network: None,
        amount: Amount::parse("1").unwrap(),
    };
    let out = app.engine.submit(Command::Deposit(deposit), None).await.unwrap();
    assert!(matches!(out, Outcome::Deposited(_)), "{out:?}");
}

/// Creates a withdraw key through the keys form, stepping up with `secret`'s code; returns the
/// API key and its HMAC secret from the page that shows them once.
async fn create_withdraw_key(a: &mut Agent, app: &TestApp, secret: &str, address: &str) -> (String, String) {
    next_totp_step(app);
    let csrf = a.keys_csrf().await;
    let code = totp(secret, app);
    let res = a
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("label", "payout"),
                ("kind", "hmac"),
                ("perm_withdraw", "on"),
                ("ip_allowlist", "127.0.0.1"),
                ("withdraw_addresses", address),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let key = element_text(&res.body, "api-key").expect("the key id on the page");
    let hmac = element_text(&res.body, "api-secret").expect("the secret on the page");
    (key, hmac)
}

/// Logs `a` in as `name` with the password and a fresh code (sessions end after 30 idle minutes).
async fn login_with_code(a: &mut Agent, app: &TestApp, name: &str, password: &str, secret: &str) {
    next_totp_step(app);
    let page = a.get("/console/login").await;
    let res = a.post("/console/login", &[("csrf", &page.csrf()), ("name", name), ("password", password)]).await;
    assert_eq!(res.location.as_deref(), Some("/console/login/totp"), "{}", res.body);
    let prompt = a.get("/console/login/totp").await;
    let ok = a.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &totp(secret, app))]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
}

async fn withdraw(app: &TestApp, key: &str, hmac: &str, address: &str) -> keygate_client::Answer {
    let client = app.client(key, Signer::hmac(hmac));
    client.signed(Method::POST, APPLY, &[("coin", "BTC"), ("address", address), ("amount", "0.01")]).await.unwrap()
}

#[tokio::test]
async fn a_thief_with_the_password_alone_cannot_withdraw_until_the_hold_passes() {
    let app = TestApp::spawn().await;
    let victim = app.account("victim").await;
    fund(&app, victim.id).await;

    // The thief knows the password; the account has no 2FA yet.
    let mut thief = Agent::new(&app);
    let page = thief.get("/console/login").await;
    let res = thief
        .post("/console/login", &[("csrf", &page.csrf()), ("name", "victim"), ("password", "correct horse battery")])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let secret = thief.enroll_totp(&app).await;
    let (key, hmac) = create_withdraw_key(&mut thief, &app, &secret, THIEF).await;

    let refused = withdraw(&app, &key, &hmac, THIEF).await;
    assert_eq!((refused.status, refused.body["code"].as_i64()), (400, Some(-4016)), "{:?}", refused.body);
    let msg = refused.body["msg"].as_str().unwrap();
    assert!(msg.contains("held") && msg.contains("until 2026-01-0"), "{msg}");

    // The console shows what is held, why and until when.
    let keys = thief.get("/console/keys").await;
    assert!(keys.body.contains("id=\"withdrawal-holds\""), "{}", keys.body);
    assert!(keys.body.contains("2FA was turned on for this account"), "{}", keys.body);
    assert!(keys.body.contains("this API key was given the withdraw permission"), "{}", keys.body);

    // Still refused a minute before the end; withdrawn once the clock passes it.
    app.clock.advance_ms(DAY_MS - 2 * 60_000);
    assert_eq!(withdraw(&app, &key, &hmac, THIEF).await.status, 400);
    app.clock.advance_ms(3 * 60_000);
    let done = withdraw(&app, &key, &hmac, THIEF).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    login_with_code(&mut thief, &app, "victim", "correct horse battery", &secret).await;
    let keys = thief.get("/console/keys").await;
    assert_eq!(keys.status, 200);
    assert!(!keys.body.contains("id=\"withdrawal-holds\""), "the hold is still shown after it ended");
}

#[tokio::test]
async fn a_new_address_is_held_while_the_old_one_works_and_removing_it_ends_the_hold() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    let alice = app.service.account(&Actor::operator_cli(), "alice").await.unwrap();
    fund(&app, alice.id).await;
    let (key, hmac) = create_withdraw_key(&mut a, &app, &secret, OWN).await;
    app.clock.advance_ms(DAY_MS);
    assert_eq!(withdraw(&app, &key, &hmac, OWN).await.status, 200);
    login_with_code(&mut a, &app, "alice", PASSWORD, &secret).await;

    // Add a second address (a widening: the form carries a fresh code).
    next_totp_step(&app);
    let page = a.get(&format!("/console/keys/{key}")).await;
    let addresses = format!("{OWN}\n{THIEF}");
    let code = totp(&secret, &app);
    let res = a
        .post(
            &format!("/console/keys/{key}"),
            &[
                ("csrf", &page.csrf()),
                ("label", "payout"),
                ("perm_withdraw", "on"),
                ("ip_allowlist", "127.0.0.1"),
                ("withdraw_addresses", &addresses),
                ("status", "active"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);

    let held = withdraw(&app, &key, &hmac, THIEF).await;
    assert_eq!((held.status, held.body["code"].as_i64()), (400, Some(-4036)), "{:?}", held.body);
    assert!(held.body["msg"].as_str().unwrap().contains("until"), "{:?}", held.body);
    assert_eq!(withdraw(&app, &key, &hmac, OWN).await.status, 200, "the old address stopped working");

    // The key page shows the hold with a button that removes the address.
    let page = a.get(&format!("/console/keys/{key}")).await;
    assert!(page.body.contains("this address was added to the API key"), "{}", page.body);
    assert!(page.body.contains(&format!("action=\"/console/keys/{key}/remove-address\"")), "{}", page.body);
    let res =
        a.post(&format!("/console/keys/{key}/remove-address"), &[("csrf", &page.csrf()), ("address", THIEF)]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let view = app.service.key(&Actor::operator_cli(), &key).await.unwrap();
    assert_eq!(view.withdraw_addresses, vec![OWN.to_owned()]);
    let page = a.get(&format!("/console/keys/{key}")).await;
    assert!(!page.body.contains("id=\"withdrawal-holds\""), "{}", page.body);
    // The address is gone (not on the allowlist) and the old one still works. (A millisecond
    // later: the same withdrawal signed at the same instant would be a replay.)
    app.clock.advance_ms(1);
    assert_eq!(withdraw(&app, &key, &hmac, THIEF).await.body["code"].as_i64(), Some(-4035));
    assert_eq!(withdraw(&app, &key, &hmac, OWN).await.status, 200);
    // Start and end are both in the audit log, in the records of the changes.
    let audit = app.service.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    let edits: Vec<_> = audit.iter().filter(|r| r.action == "key.edit").collect();
    assert_eq!(edits.len(), 2, "{audit:?}");
    assert_eq!(edits[0].details["withdrawal_holds"]["started"]["addresses"][0]["address"], THIEF);
    assert_eq!(edits[1].details["withdrawal_holds"]["cancelled"]["addresses"][0]["address"], THIEF);
}
