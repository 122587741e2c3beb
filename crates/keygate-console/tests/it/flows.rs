//! Console flows over HTTP that the browser journey does not cover.

use crate::support::{Agent, PASSWORD, next_totp_step, totp};
use keygate_client::Signer;
use keygate_service::Actor;
use keygate_testkit::TestApp;

#[tokio::test]
async fn login_with_2fa_needs_the_code_and_a_pending_session_reaches_nothing() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;

    let mut b = Agent::new(&app);
    let page = b.get("/console/login").await;
    let res = b.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(res.status, 303);
    assert_eq!(res.location.as_deref(), Some("/console/login/totp"));
    // Half logged in: no page but the code prompt.
    assert_eq!(b.get("/console/keys").await.location.as_deref(), Some("/console/login/totp"));
    assert_eq!(b.get("/api/console/v1/keys").await.status, 401);

    let prompt = b.get("/console/login/totp").await;
    assert_eq!(prompt.status, 200);
    let wrong = b.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_eq!(b.get("/console/keys").await.location.as_deref(), Some("/console/login/totp"), "still not logged in");

    next_totp_step(&app);
    let prompt = b.get("/console/login/totp").await;
    let ok = b.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/console/keys"));
    assert!(!ok.set_cookies.is_empty(), "the session id rotates when the login completes");
    assert_eq!(b.get("/console/keys").await.status, 200);
}

#[tokio::test]
async fn logout_ends_the_session() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let stolen = a.cookies.clone();
    let csrf = a.keys_csrf().await;
    let res = a.post("/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(res.status, 303);
    assert!(res.set_cookies.iter().any(|c| c.starts_with("kg_session=;") && c.contains("Max-Age=0")));
    // A copy of the old cookie is worthless now.
    a.cookies = stolen;
    assert_eq!(a.get("/console/keys").await.location.as_deref(), Some("/console/login"));
}

#[tokio::test]
async fn another_accounts_key_is_not_found_and_untouched() {
    let app = TestApp::spawn().await;
    let mut alice = Agent::new(&app);
    alice.sign_up("alice", PASSWORD).await;
    let csrf = alice.keys_csrf().await;
    alice.post("/console/keys", &[("csrf", &csrf), ("label", "mine"), ("kind", "hmac")]).await;
    let key = app.service.list_keys(&Actor::operator_cli(), Some("alice")).await.unwrap().remove(0);

    let mut bob = Agent::new(&app);
    bob.sign_up("bob", PASSWORD).await;
    assert_eq!(bob.get(&format!("/console/keys/{}", key.api_key)).await.status, 404);
    let csrf = bob.keys_csrf().await;
    let res = bob.post(&format!("/console/keys/{}/revoke", key.api_key), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, 404);
    let list = bob.get("/console/keys").await;
    assert!(!list.body.contains(&key.api_key[..12]));
    let after = app.service.list_keys(&Actor::operator_cli(), Some("alice")).await.unwrap().remove(0);
    assert_eq!(after, key);
}

#[tokio::test]
async fn revoke_all_needs_the_confirmation_and_a_code() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    for label in ["one", "two"] {
        let csrf = a.keys_csrf().await;
        a.post("/console/keys", &[("csrf", &csrf), ("label", label), ("kind", "hmac")]).await;
    }
    let live = |app: &TestApp| {
        let app_service = app.service.clone();
        async move {
            app_service
                .list_keys(&Actor::operator_cli(), Some("alice"))
                .await
                .unwrap()
                .iter()
                .filter(|k| k.status != keygate_auth::KeyStatus::Revoked)
                .count()
        }
    };
    next_totp_step(&app);
    let page = a.get("/console/keys/revoke-all").await;
    let res = a
        .post("/console/keys/revoke-all", &[("csrf", &page.csrf()), ("confirm", "yes"), ("code", &totp(&secret, &app))])
        .await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert_eq!(live(&app).await, 2);
    let res =
        a.post("/console/keys/revoke-all", &[("csrf", &page.csrf()), ("confirm", "REVOKE ALL"), ("code", "")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(live(&app).await, 2);
    let res = a
        .post(
            "/console/keys/revoke-all",
            &[("csrf", &page.csrf()), ("confirm", "REVOKE ALL"), ("code", &totp(&secret, &app))],
        )
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(live(&app).await, 0);
}

#[tokio::test]
async fn faucet_deposits_show_in_the_wallet_and_csv_and_are_limited() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let page = a.get("/console/wallet").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for _ in 0..5 {
        let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "USDT")]).await;
        assert_eq!(res.status, 303, "{}", res.body);
    }
    let wallet = a.get("/console/wallet").await;
    assert!(wallet.body.contains("50000.00000000"), "five deposits of 10000 USDT: {}", wallet.body);
    let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "USDT")]).await;
    assert_eq!(res.status, 429, "{}", res.body);
    // A thousand and more other records since (label edits, failed logins) do not hide the
    // day's deposits from the count.
    let op = TestApp::operator();
    let alice = keygate_proto::AccountId(app.service.account(&op, "alice").await.unwrap().id);
    for _ in 0..1_100 {
        app.service.record_event(&op, "key.edit", "key:x", Some(alice), serde_json::json!({})).await.unwrap();
    }
    let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "USDT")]).await;
    assert_eq!(res.status, 429, "{}", res.body);
    let csv = a.get("/console/wallet/deposits.csv").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(lines[0].starts_with("insertTime,id,coin"), "{}", csv.body);
    assert_eq!(lines.len(), 6, "{}", csv.body);
    assert!(lines[1].contains(",USDT,"));
    // The day after, the faucet gives again.
    app.clock.advance_ms(24 * 60 * 60 * 1000 + 1);
    assert_eq!(a.get("/console/wallet").await.status, 303, "the session has expired meanwhile");
    let login = a.get("/console/login").await;
    let res = a.post("/console/login", &[("csrf", &login.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(res.status, 303);
    let page = a.get("/console/wallet").await;
    let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "BTC")]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    // Without the token, nothing.
    let res = a.post("/console/wallet/faucet", &[("asset", "BTC")]).await;
    assert_eq!(res.status, 403);
    assert_eq!(a.get("/console/wallet/nothing.csv").await.status, 400);
}

#[tokio::test]
async fn denied_api_requests_appear_on_the_activity_page() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let csrf = a.keys_csrf().await;
    let res = a
        .post(
            "/console/keys",
            &[("csrf", &csrf), ("label", "office only"), ("kind", "hmac"), ("ip_allowlist", "203.0.113.0/24")],
        )
        .await;
    let api_key = crate::support::element_text(&res.body, "api-key").unwrap();
    let secret = crate::support::element_text(&res.body, "api-secret").unwrap();
    let client = app.client(&api_key, Signer::hmac(&secret));
    let r = client.signed(reqwest::Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
    assert_eq!(r.error().map(|e| e.code), Some(-2015));
    app.service.flush(true).await.unwrap();
    let audit = a.get("/console/audit").await;
    assert!(audit.body.contains("api.denied"), "{}", audit.body);
    assert!(audit.body.contains("key.create"));
    assert!(audit.body.contains("auth.login") || audit.body.contains("account.sign_up"));
}

#[tokio::test]
async fn json_step_up_rotates_the_session_and_its_csrf_token() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    let s: serde_json::Value = serde_json::from_str(&a.get("/api/console/v1/session").await.body).unwrap();
    let old = s["csrf_token"].as_str().unwrap().to_owned();
    let res = a.post_json("/api/console/v1/step-up", Some(&old), serde_json::json!({})).await;
    assert_eq!(res.status, 400, "step-up without a code: {}", res.body);
    next_totp_step(&app);
    let res =
        a.post_json("/api/console/v1/step-up", Some(&old), serde_json::json!({ "code": totp(&secret, &app) })).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let s: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    let new = s["csrf_token"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    assert!(s["stepped_up_until"].as_u64().is_some());
    // Stepped up: a trade key needs no further code, but the old token is dead.
    let body = serde_json::json!({ "label": "bot", "permissions": ["read", "trade"] });
    let res = a.post_json("/api/console/v1/keys", Some(&old), body.clone()).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let res = a.post_json("/api/console/v1/keys", Some(&new), body).await;
    assert_eq!(res.status, 201, "{}", res.body);
}

#[tokio::test]
async fn an_ed25519_public_key_registered_in_the_console_signs_requests() {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, spki::der::pem::LineEnding};
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let private = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let csrf = a.keys_csrf().await;
    let res = a
        .post("/console/keys", &[("csrf", &csrf), ("label", "ed"), ("kind", "ed25519"), ("public_key", &public)])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let location = res.location.unwrap();
    let api_key = location.trim_start_matches("/console/keys/").trim_end_matches("?notice=created").to_owned();
    let page = a.get(&location).await;
    assert!(page.body.contains("ed25519"));
    let notice = crate::support::element_text(&page.body, "notice").expect("a notice says what happened");
    assert!(notice.starts_with("Key created. It is an Ed25519 key") && notice.contains("no secret"), "{notice}");
    let client = app.client(&api_key, Signer::ed25519_pem(&private).unwrap());
    let r = client.signed(reqwest::Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // A key that is not a public key is refused with a message, and nothing is created.
    let csrf = a.keys_csrf().await;
    let res = a
        .post("/console/keys", &[("csrf", &csrf), ("label", "bad"), ("kind", "rsa"), ("public_key", "not a key")])
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert_eq!(app.service.list_keys(&Actor::operator_cli(), Some("alice")).await.unwrap().len(), 1);
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let mut b = Agent::new(&app);
    let mut last = 0;
    for _ in 0..8 {
        let page = b.get("/console/login").await;
        let res = b
            .post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", "wrong password!!")])
            .await;
        last = res.status;
        if last == 429 {
            assert!(res.body.contains("role=\"alert\""));
            break;
        }
        assert_eq!(last, 401);
    }
    assert_eq!(last, 429, "throttled after a few failures");
    let res =
        b.post_json("/api/console/v1/login", None, serde_json::json!({"name": "alice", "password": PASSWORD})).await;
    assert_eq!(res.status, 403, "the JSON login needs its token too: {}", res.body);
}

#[tokio::test]
async fn changing_the_password_ends_other_sessions_and_needs_the_current_one() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let mut other = Agent::new(&app);
    let page = other.get("/console/login").await;
    other.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(other.get("/console/keys").await.status, 200);

    let page = a.get("/console/password").await;
    let new = "an entirely new passphrase";
    let res = a
        .post(
            "/console/password",
            &[("csrf", &page.csrf()), ("current", "not the password"), ("password", new), ("password2", new)],
        )
        .await;
    assert_eq!(res.status, 401, "{}", res.body);
    assert_eq!(other.get("/console/keys").await.status, 200, "nothing changed");

    let page = a.get("/console/password").await;
    let res = a
        .post(
            "/console/password",
            &[("csrf", &page.csrf()), ("current", PASSWORD), ("password", new), ("password2", new)],
        )
        .await;
    // Post/redirect/get: the new session rides on the redirect, the page says what happened.
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/password?notice=changed"));
    assert!(a.get("/console/password?notice=changed").await.body.contains("Password changed"));
    assert_eq!(a.get("/console/keys").await.status, 200, "this session goes on with a new id");
    assert_eq!(other.get("/console/keys").await.status, 303, "the other session has ended");
}

#[tokio::test]
async fn json_api_enrolls_2fa_and_logs_in_with_the_second_factor() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    let pre: serde_json::Value = serde_json::from_str(&a.get("/api/console/v1/session").await.body).unwrap();
    let pre = pre["csrf_token"].as_str().unwrap().to_owned();
    let creds = serde_json::json!({ "name": "alice", "password": PASSWORD });
    let s: serde_json::Value =
        serde_json::from_str(&a.post_json("/api/console/v1/signup", Some(&pre), creds.clone()).await.body).unwrap();
    let csrf = s["csrf_token"].as_str().unwrap().to_owned();
    let res = a.post_json("/api/console/v1/2fa/enroll", Some(&csrf), serde_json::json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.cache_control.as_deref(), Some("no-store"));
    let e: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let res = a
        .post_json("/api/console/v1/2fa/confirm", Some(&csrf), serde_json::json!({ "code": totp(&secret, &app) }))
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let codes: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(codes["recovery_codes"].as_array().unwrap().len(), 10);
    let res = a.post_json("/api/console/v1/logout", Some(&csrf), serde_json::json!({})).await;
    assert_eq!(res.status, 200, "{}", res.body);

    let mut b = Agent::new(&app);
    let pre: serde_json::Value = serde_json::from_str(&b.get("/api/console/v1/session").await.body).unwrap();
    let pre = pre["csrf_token"].as_str().unwrap().to_owned();
    let s: serde_json::Value =
        serde_json::from_str(&b.post_json("/api/console/v1/login", Some(&pre), creds).await.body).unwrap();
    assert_eq!(s["two_factor_pending"], true);
    assert_eq!(s["authenticated"], false);
    let pending_csrf = s["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(b.get("/api/console/v1/keys").await.status, 401);
    // A recovery code works once in place of a TOTP code.
    let recovery = codes["recovery_codes"][0].as_str().unwrap();
    let res =
        b.post_json("/api/console/v1/login/totp", Some(&pending_csrf), serde_json::json!({ "code": recovery })).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(b.get("/api/console/v1/keys").await.status, 200);
}

#[tokio::test]
async fn the_faucet_can_be_turned_off() {
    let app = TestApp::spawn_with(|c| c.faucet_per_day = 0).await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let page = a.get("/console/wallet").await;
    assert!(!page.body.contains("/console/wallet/faucet"), "no faucet form");
    let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "BTC")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let wallet = a.get("/console/wallet").await;
    assert!(!wallet.body.contains("1.00000000"));
}

#[tokio::test]
async fn new_recovery_codes_replace_the_old_ones() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    next_totp_step(&app);
    let page = a.get("/console/2fa").await;
    let res = a.post("/console/2fa/recovery-codes", &[("csrf", &page.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.cache_control.as_deref(), Some("no-store"));
    let codes = crate::support::element_text(&res.body, "recovery-codes").unwrap();
    assert_eq!(codes.lines().count(), 10);
    // Without a valid code, nothing is replaced.
    let page = a.get("/console/2fa").await;
    let res = a.post("/console/2fa/recovery-codes", &[("csrf", &page.csrf()), ("code", "000000")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
}

#[tokio::test]
async fn the_json_login_takes_the_name_in_any_case_like_the_form() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let mut b = Agent::new(&app);
    let pre: serde_json::Value = serde_json::from_str(&b.get("/api/console/v1/session").await.body).unwrap();
    let pre = pre["csrf_token"].as_str().unwrap().to_owned();
    let creds = serde_json::json!({"name": " Alice ", "password": PASSWORD});
    let res = b.post_json("/api/console/v1/login", Some(&pre), creds).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let s: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(s["authenticated"], true, "{s}");
    assert_eq!(b.get("/api/console/v1/keys").await.status, 200);
}

/// A trade key on an account without 2FA (the operator may create one, as the demo does) is
/// flagged where the owner sees it; once 2FA is on, the flag goes.
#[tokio::test]
async fn a_trade_key_on_an_account_without_2fa_is_flagged() {
    let app = TestApp::spawn().await;
    let mut alice = Agent::new(&app);
    alice.sign_up("alice", PASSWORD).await;
    let trade = keygate_auth::Permissions::with(&[keygate_auth::Permission::Trade]);
    let key = app.hmac_key("alice", trade, keygate_auth::Restrictions::default()).await;
    let list = alice.get("/console/keys").await;
    assert!(list.body.contains("no 2FA on the account"), "{}", list.body);
    let page = alice.get(&format!("/console/keys/{}", key.key.api_key)).await;
    assert!(page.body.contains("no 2FA on the account"), "{}", page.body);
    alice.enroll_totp(&app).await;
    let list = alice.get("/console/keys").await;
    assert!(!list.body.contains("no 2FA on the account"), "{}", list.body);
}

/// Issue #18, item 1: someone with only the password typed wrong codes from another client. The
/// owner's logged-in session still steps up (its attempts are its own), and the keys page tells
/// the owner, with how many, when and from where.
#[tokio::test]
async fn wrong_codes_from_someone_with_the_password_leave_the_owner_working_and_warned() {
    let app = TestApp::spawn().await;
    let mut owner = Agent::new(&app);
    owner.sign_up("alice", PASSWORD).await;
    let secret = owner.enroll_totp(&app).await;
    let keys = owner.get("/console/keys").await;
    assert!(!keys.body.contains("failed-codes"), "no warning before anything happened");

    let mut thief = Agent::new(&app);
    let page = thief.get("/console/login").await;
    thief.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    let mut refused = 0;
    for i in 0..8 {
        let prompt = thief.get("/console/login/totp").await;
        let code = format!("{:06}", 111_111 + i);
        let res = thief.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &code)]).await;
        if res.status == 429 {
            refused += 1;
        }
    }
    assert!(refused >= 3, "the thief's session is throttled after five codes");

    // The owner's session steps up at once with the right code.
    next_totp_step(&app);
    let s: serde_json::Value = serde_json::from_str(&owner.get("/api/console/v1/session").await.body).unwrap();
    let csrf = s["csrf_token"].as_str().unwrap().to_owned();
    let res = owner
        .post_json("/api/console/v1/step-up", Some(&csrf), serde_json::json!({ "code": totp(&secret, &app) }))
        .await;
    assert_eq!(res.status, 200, "the owner was locked out: {}", res.body);

    let keys = owner.get("/console/keys").await;
    let warning = crate::support::element_text(&keys.body, "failed-codes").expect("a warning on the keys page");
    assert!(warning.contains("5 wrong 2FA codes"), "{warning}");
    assert!(warning.contains("127.0.0.1") && warning.contains("change your password"), "{warning}");
}
