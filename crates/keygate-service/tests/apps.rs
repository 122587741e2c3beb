//! Issue #15: connected apps, through the service (no HTTP): registration rules, the
//! authorization request's checks and where each refusal goes, consent and narrowing, the token
//! endpoint's checks (each refusal issues nothing), code reuse revoking what the code issued,
//! disconnect and the operator's kill switch.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_auth::oauth::{ErrorCode, Narrowing, s256_challenge};
use keygate_auth::{AccountId, KeyLookup as _, KeyStatus, Permission};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::apps::{AuthorizeParams, AuthorizeRefusal, AuthorizeRequest, Consent, NewApp, TokenParams};
use keygate_service::{Actor, Clock as _, ManualClock, PasswordParams, Service, ServiceConfig, ServiceError};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

const NOW: UnixMillis = UnixMillis(1_767_225_600_000);
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// RFC 8032 section 7.1, test 1: a valid Ed25519 public key.
const ED25519_PUB: &str = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=";
const CB: &str = "https://bot.example/cb";

async fn env() -> (Service, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    let store = SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(NOW.as_micros())));
    let config = ServiceConfig {
        password: PasswordParams::insecure_for_tests(),
        require_2fa_for_trading_keys: false,
        ..ServiceConfig::default()
    };
    let service = Service::start(Arc::new(store), clock.clone(), config).await.unwrap();
    for name in ["alice", "bob"] {
        service
            .create_account(&Actor::operator_cli(), name, Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap();
    }
    (service, clock, dir)
}

fn owner(id: i64, name: &str, clock: &ManualClock, stepped_up: bool) -> Actor {
    Actor::Owner {
        account_id: AccountId(id),
        name: name.into(),
        stepped_up_until: stepped_up.then(|| clock.now().as_millis().plus_millis(300_000)),
        source: Some("192.0.2.1".into()),
        fresh_code: None,
    }
}

fn new_app(max: &str, kind: &str) -> NewApp {
    NewApp {
        name: "Bot Co".into(),
        homepage: "https://bot.example".into(),
        publisher_domain: "bot.example".into(),
        redirect_uris: vec![CB.into(), "http://127.0.0.1:1/native".into()],
        max_permissions: max.into(),
        client_type: kind.into(),
        logo_url: None,
    }
}

fn params(client_id: &str, scope: &str) -> AuthorizeParams {
    AuthorizeParams {
        response_type: Some("code".into()),
        client_id: Some(client_id.into()),
        redirect_uri: Some(CB.into()),
        scope: Some(scope.into()),
        authorization_details: None,
        state: Some("st4te".into()),
        code_challenge: Some(s256_challenge(VERIFIER)),
        code_challenge_method: Some("S256".into()),
    }
}

fn code_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    assert_eq!(u.query_pairs().find(|(k, _)| k == "state").unwrap().1, "st4te", "{url}");
    u.query_pairs().find(|(k, _)| k == "code").unwrap_or_else(|| panic!("no code in {url}")).1.into_owned()
}

fn token_params(client_id: &str, secret: Option<&str>, code: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code.into()),
        redirect_uri: Some(CB.into()),
        client_id: Some(client_id.into()),
        client_secret: secret.map(|s| Zeroizing::new(s.to_owned())),
        basic: None,
        code_verifier: Some(VERIFIER.into()),
        public_key: Some(ED25519_PUB.into()),
    }
}

async fn request(s: &Service, p: &AuthorizeParams) -> AuthorizeRequest {
    s.authorization_request(p, &[]).await.unwrap()
}

async fn live_keys(s: &Service) -> usize {
    s.list_keys(&Actor::operator_cli(), None).await.unwrap().iter().filter(|k| k.status != KeyStatus::Revoked).count()
}

/// Exchanges every code at once, each in its own task; the handles answer whether it got a key.
fn exchange_all(s: &Service, id: &str, secret: &str, codes: &[String]) -> Vec<tokio::task::JoinHandle<bool>> {
    codes
        .iter()
        .map(|c| {
            let s = s.clone();
            let p = token_params(id, Some(secret), c);
            tokio::spawn(async move { s.token(p, None).await.is_ok() })
        })
        .collect()
}

/// How many of `handles` got a key.
async fn issued(handles: Vec<tokio::task::JoinHandle<bool>>) -> usize {
    let mut n = 0;
    for h in handles {
        n += usize::from(h.await.unwrap());
    }
    n
}

/// No key of the store is live, there or in the key cache.
async fn assert_no_live_key(s: &Service, issued: usize, context: &str) {
    assert_eq!(live_keys(s).await, 0, "{context}: {issued} exchanges answered with a key; none may still work");
    for k in s.list_keys(&Actor::operator_cli(), None).await.unwrap() {
        assert!(s.cache().lookup(&k.api_key).is_none_or(|e| e.status == KeyStatus::Revoked));
    }
}

/// `n` codes Alice consented to for app `id` (read only).
async fn alice_codes(s: &Service, clock: &ManualClock, id: &str, n: usize) -> Vec<String> {
    let alice = owner(1, "alice", clock, false);
    let mut codes = Vec::new();
    for _ in 0..n {
        let req = request(s, &params(id, "read")).await;
        codes.push(code_of(&s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap()));
    }
    codes
}

/// Registers a confidential trade app; returns (client id, secret).
async fn register(s: &Service) -> (String, String) {
    let r = s.register_app(&Actor::operator_cli(), new_app("read,trade", "confidential")).await.unwrap();
    assert!(!r.app.verified, "apps start unverified");
    (r.app.client_id, r.client_secret.expect("a confidential app gets a secret"))
}

#[tokio::test]
async fn consent_then_token_issues_an_ed25519_key_bound_to_the_app_as_narrowed() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, true);
    let mut p = params(&id, "");
    p.scope = None;
    p.authorization_details =
        Some(r#"[{"type":"keygate_api_key","actions":["read","trade"],"symbols":["BTCUSDT","ETHUSDT"]}]"#.into());
    let req = request(&s, &p).await;
    assert!(req.requested.permissions.contains(Permission::Trade));
    let narrowing = Narrowing { keep_trade: true, symbols: vec!["BTCUSDT".into()], ..Narrowing::default() };
    let url = s.consent(&alice, &req, Consent::Allow(narrowing)).await.unwrap();
    assert!(url.starts_with(CB), "{url}");
    let answer = s.token(token_params(&id, Some(&secret), &code_of(&url)), None).await.unwrap();
    assert_eq!(answer.key_type, "ed25519");
    assert!(answer.secret_key.is_none(), "no secret exists for an Ed25519 key");
    assert_eq!(answer.scope, "read trade");
    assert_eq!(answer.authorization_details[0]["symbols"], serde_json::json!(["BTCUSDT"]));
    let key = s.key(&alice, &answer.api_key).await.unwrap();
    assert_eq!(key.app.as_deref(), Some(id.as_str()), "the key is marked as the app's");
    assert_eq!(key.symbols.len(), 1);
    assert!(key.permissions.contains(Permission::Trade));
    let log = s.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    assert!(actions.contains(&"app.register") && actions.contains(&"app.consent") && actions.contains(&"app.token"));
    let consent = log.iter().find(|r| r.action == "app.consent").unwrap();
    assert_eq!(consent.details["narrowed"], true);
    let connected = s.connected_apps(&alice).await.unwrap();
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].keys, vec![answer.api_key.clone()]);
}

#[tokio::test]
async fn an_hmac_key_secret_appears_once_in_the_token_answer_and_a_public_client_needs_no_secret() {
    let (s, clock, _d) = env().await;
    let r = s.register_app(&Actor::operator_cli(), new_app("read", "public")).await.unwrap();
    assert!(r.client_secret.is_none());
    let alice = owner(1, "alice", &clock, false);
    let req = request(&s, &params(&r.app.client_id, "read")).await;
    let url = s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap();
    let mut t = token_params(&r.app.client_id, None, &code_of(&url));
    t.public_key = None;
    let answer = s.token(t, None).await.unwrap();
    assert_eq!(answer.key_type, "hmac");
    assert!(answer.secret_key.as_deref().is_some_and(|k| k.starts_with("kgs_")));
    let shown = serde_json::to_string(&s.key(&alice, &answer.api_key).await.unwrap()).unwrap();
    assert!(!shown.contains(answer.secret_key.as_deref().unwrap()), "never shown again");
}

#[tokio::test]
async fn refusals_before_consent_go_to_a_page_or_back_to_the_app_and_issue_nothing() {
    let (s, _clock, _d) = env().await;
    let (id, _) = register(&s).await;
    let read_only =
        s.register_app(&Actor::operator_cli(), new_app("read", "confidential")).await.unwrap().app.client_id;
    let page = |r: Result<AuthorizeRequest, AuthorizeRefusal>| match r {
        Err(AuthorizeRefusal::Page(e)) => e.code,
        other => panic!("expected a page, got {other:?}"),
    };
    let back = |r: Result<AuthorizeRequest, AuthorizeRefusal>| match r {
        Err(AuthorizeRefusal::Redirect(url)) => {
            assert!(url.starts_with(CB), "{url}");
            let u = url::Url::parse(&url).unwrap();
            u.query_pairs().find(|(k, _)| k == "error").unwrap().1.into_owned()
        }
        other => panic!("expected a redirect, got {other:?}"),
    };
    // Unknown client, redirect URI not registered: never redirected.
    assert_eq!(
        page(s.authorization_request(&params("kgapp_0000000000000000", "read"), &[]).await),
        ErrorCode::InvalidClient
    );
    let mut p = params(&id, "read");
    p.redirect_uri = Some("https://evil.example/cb".into());
    assert_eq!(page(s.authorization_request(&p, &[]).await), ErrorCode::InvalidRequest);
    p.redirect_uri = Some(format!("{CB}/x"));
    assert_eq!(page(s.authorization_request(&p, &[]).await), ErrorCode::InvalidRequest);
    // State missing, PKCE missing or plain, beyond the ceiling, withdraw: back to the app.
    let mut p = params(&id, "read");
    p.state = None;
    assert_eq!(back(s.authorization_request(&p, &[]).await), "invalid_request");
    let mut p = params(&id, "read");
    p.code_challenge_method = Some("plain".into());
    assert_eq!(back(s.authorization_request(&p, &[]).await), "invalid_request");
    let mut p = params(&id, "read");
    p.code_challenge = None;
    assert_eq!(back(s.authorization_request(&p, &[]).await), "invalid_request");
    assert_eq!(back(s.authorization_request(&params(&read_only, "read trade"), &[]).await), "invalid_scope");
    assert_eq!(back(s.authorization_request(&params(&id, "read withdraw"), &[]).await), "invalid_scope");
    assert_eq!(back(s.authorization_request(&params(&id, "read"), &["state".into()]).await), "invalid_request");
    let mut p = params(&id, "read");
    p.response_type = Some("token".into());
    assert_eq!(back(s.authorization_request(&p, &[]).await), "unsupported_response_type");
    assert_eq!(live_keys(&s).await, 0);
}

#[tokio::test]
async fn each_token_refusal_issues_nothing_and_a_reused_code_revokes_what_it_issued() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let code = || async {
        let req = request(&s, &params(&id, "read")).await;
        code_of(&s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap())
    };
    let refused = |r: Result<_, keygate_auth::oauth::OAuthError>| r.map(|_| ()).unwrap_err().code;
    // Wrong PKCE verifier, wrong redirect URI, wrong secret, wrong client, expired.
    let c = code().await;
    let mut t = token_params(&id, Some(&secret), &c);
    t.code_verifier = Some(VERIFIER.replace('d', "e"));
    assert_eq!(refused(s.token(t, None).await), ErrorCode::InvalidGrant);
    let mut t = token_params(&id, Some(&secret), &c);
    t.redirect_uri = Some("http://127.0.0.1:1/native".into());
    assert_eq!(refused(s.token(t, None).await), ErrorCode::InvalidGrant);
    assert_eq!(refused(s.token(token_params(&id, Some("kgcs_wrong"), &c), None).await), ErrorCode::InvalidClient);
    assert_eq!(refused(s.token(token_params(&id, None, &c), None).await), ErrorCode::InvalidClient);
    let mut t = token_params(&id, Some(&secret), &c);
    t.grant_type = Some("password".into());
    assert_eq!(refused(s.token(t, None).await), ErrorCode::UnsupportedGrantType);
    clock.advance_ms(60_001);
    assert_eq!(refused(s.token(token_params(&id, Some(&secret), &c), None).await), ErrorCode::InvalidGrant);
    assert_eq!(live_keys(&s).await, 0, "no refusal issued a key");

    // A good exchange, then the same code again: refused, and the first key revoked.
    let c = code().await;
    let first = s.token(token_params(&id, Some(&secret), &c), None).await.unwrap();
    assert_eq!(live_keys(&s).await, 1);
    assert_eq!(refused(s.token(token_params(&id, Some(&secret), &c), None).await), ErrorCode::InvalidGrant);
    assert_eq!(s.key(&alice, &first.api_key).await.unwrap().status, KeyStatus::Revoked);
    assert_eq!(live_keys(&s).await, 0);
    assert_eq!(s.cache().lookup(&first.api_key).unwrap().status, KeyStatus::Revoked, "the cache knows at once");
}

#[tokio::test]
async fn trade_consent_needs_a_step_up_and_refusal_is_audited_and_redirects_access_denied() {
    let (s, clock, _d) = env().await;
    let (id, _) = register(&s).await;
    let req = request(&s, &params(&id, "read trade")).await;
    let err = s
        .consent(
            &owner(1, "alice", &clock, false),
            &req,
            Consent::Allow(Narrowing { keep_trade: true, ..Narrowing::default() }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::StepUpRequired(_)), "{err:?}");
    // Dropping trade needs none.
    s.consent(&owner(1, "alice", &clock, false), &req, Consent::Allow(Narrowing::default())).await.unwrap();
    let url = s.consent(&owner(1, "alice", &clock, false), &req, Consent::Deny).await.unwrap();
    assert!(url.contains("error=access_denied") && url.contains("state=st4te"), "{url}");
    let log = s.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    assert!(log.iter().any(|r| r.action == "app.consent_refused"));
}

#[tokio::test]
async fn suspending_an_app_revokes_every_key_it_holds_and_stops_new_ones() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let mut issued = Vec::new();
    for (n, name) in [(1, "alice"), (2, "bob")] {
        let req = request(&s, &params(&id, "read")).await;
        let url = s.consent(&owner(n, name, &clock, false), &req, Consent::Allow(Narrowing::default())).await.unwrap();
        issued.push((n, url.clone()));
        s.token(token_params(&id, Some(&secret), &code_of(&url)), None).await.unwrap();
    }
    // One more code, not yet exchanged when the app is suspended.
    let req = request(&s, &params(&id, "read")).await;
    let pending = code_of(
        &s.consent(&owner(1, "alice", &clock, false), &req, Consent::Allow(Narrowing::default())).await.unwrap(),
    );
    assert_eq!(live_keys(&s).await, 2);
    let err = s.suspend_app(&owner(1, "alice", &clock, true), &id, false).await.unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(_)), "only the operator: {err:?}");
    let done = s.suspend_app(&Actor::operator_cli(), &id, false).await.unwrap();
    assert_eq!(done.keys_revoked, 2);
    assert_eq!(live_keys(&s).await, 0);
    assert!(matches!(s.authorization_request(&params(&id, "read"), &[]).await, Err(AuthorizeRefusal::Page(_))));
    let e = s.token(token_params(&id, Some(&secret), &pending), None).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidClient);
    assert_eq!(live_keys(&s).await, 0);
    let log = s.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    assert!(log.iter().any(|r| r.action == "app.suspend"));
    // Deleting works the same way and keeps the row for the record.
    let deleted = s.suspend_app(&Actor::operator_cli(), &id, true).await.unwrap();
    assert_eq!(deleted.app.status, keygate_store::AppStatus::Deleted);
    assert!(s.list_apps(&Actor::operator_cli(), false).await.unwrap().is_empty());
    assert_eq!(s.list_apps(&Actor::operator_cli(), true).await.unwrap().len(), 1);
}

#[tokio::test]
async fn disconnect_revokes_only_that_owners_keys_of_the_app_and_is_audited() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let bob = owner(2, "bob", &clock, false);
    for who in [&alice, &bob, &alice] {
        let req = request(&s, &params(&id, "read")).await;
        let url = s.consent(who, &req, Consent::Allow(Narrowing::default())).await.unwrap();
        s.token(token_params(&id, Some(&secret), &code_of(&url)), None).await.unwrap();
    }
    assert_eq!(s.connected_apps(&alice).await.unwrap()[0].keys.len(), 2);
    assert!(matches!(s.disconnect_app(&bob, "kgapp_0000000000000000").await, Err(ServiceError::NotFound(_))));
    assert_eq!(s.disconnect_app(&alice, &id).await.unwrap(), 2);
    assert!(s.connected_apps(&alice).await.unwrap().is_empty());
    assert_eq!(s.connected_apps(&bob).await.unwrap().len(), 1, "bob's connection stays");
    let log = s.audit_log(&Actor::operator_cli(), 0, 1000).await.unwrap();
    let d = log.iter().find(|r| r.action == "app.disconnect").unwrap();
    assert_eq!(d.actor, "owner:alice");
    assert_eq!(d.details["keys_revoked"], 2);
}

#[tokio::test]
async fn registration_rules_owners_need_the_operators_leave_and_withdraw_is_never_a_ceiling() {
    let (s, clock, _d) = env().await;
    let alice = owner(1, "alice", &clock, true);
    let err = s.register_app(&alice, new_app("read", "public")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(_)), "{err:?}");
    s.allow_app_developer(&Actor::operator_cli(), "alice", true).await.unwrap();
    let mine = s.register_app(&alice, new_app("read", "public")).await.unwrap();
    assert!(!mine.app.verified);
    assert!(s.set_app_verified(&alice, &mine.app.client_id, true).await.is_err(), "only the operator verifies");
    assert!(s.set_app_verified(&Actor::operator_cli(), &mine.app.client_id, true).await.unwrap().verified);
    assert_eq!(s.list_apps(&alice, false).await.unwrap().len(), 1);
    for bad in [
        NewApp { max_permissions: "read,withdraw".into(), ..new_app("", "public") },
        NewApp { redirect_uris: vec!["http://bot.example/cb".into()], ..new_app("read", "public") },
        NewApp { redirect_uris: vec!["https://bot.example/cb#x".into()], ..new_app("read", "public") },
        NewApp { redirect_uris: vec![], ..new_app("read", "public") },
        NewApp { homepage: "http://bot.example".into(), ..new_app("read", "public") },
        NewApp { client_type: "secretive".into(), ..new_app("read", "public") },
    ] {
        let e = s.register_app(&Actor::operator_cli(), bad.clone()).await.unwrap_err();
        assert!(matches!(e, ServiceError::Invalid(_)), "{bad:?}: {e:?}");
    }
}

/// The kill switch cannot be raced: codes exchanged while the app is being suspended either
/// fail or give keys that the suspension revokes (an outside review got 8 working keys out of a
/// suspended app by exchanging codes during the suspension).
#[tokio::test]
async fn codes_exchanged_while_the_app_is_suspended_leave_no_working_key() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let codes = alice_codes(&s, &clock, &id, 30).await;
    let handles = exchange_all(&s, &id, &secret, &codes);
    tokio::task::yield_now().await;
    s.suspend_app(&Actor::operator_cli(), &id, false).await.unwrap();
    let n = issued(handles).await;
    assert_no_live_key(&s, n, "suspended").await;
}

/// Resuming an app does not revive a code issued before its suspension; a deleted app stays
/// deleted.
#[tokio::test]
async fn a_code_from_before_a_suspension_stays_void_after_resume_and_a_deleted_app_is_not_resumed() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let req = request(&s, &params(&id, "read")).await;
    let url = s.consent(&owner(1, "alice", &clock, false), &req, Consent::Allow(Narrowing::default())).await.unwrap();
    clock.advance_ms(1);
    s.suspend_app(&Actor::operator_cli(), &id, false).await.unwrap();
    s.resume_app(&Actor::operator_cli(), &id).await.unwrap();
    let e = s.token(token_params(&id, Some(&secret), &code_of(&url)), None).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant, "{e:?}");
    assert_eq!(live_keys(&s).await, 0);
    s.suspend_app(&Actor::operator_cli(), &id, true).await.unwrap();
    let err = s.resume_app(&Actor::operator_cli(), &id).await.unwrap_err();
    assert!(matches!(err, ServiceError::Conflict(_)), "{err:?}");
}

/// A key held by an app cannot be widened past the app's registered ceiling, nor to withdraw.
#[tokio::test]
async fn a_key_held_by_an_app_cannot_be_widened_past_the_apps_ceiling() {
    let (s, clock, _d) = env().await;
    let r = s.register_app(&Actor::operator_cli(), new_app("read", "confidential")).await.unwrap();
    let (id, secret) = (r.app.client_id, r.client_secret.unwrap());
    let req = request(&s, &params(&id, "read")).await;
    let url = s.consent(&owner(1, "alice", &clock, false), &req, Consent::Allow(Narrowing::default())).await.unwrap();
    let key = s.token(token_params(&id, Some(&secret), &code_of(&url)), None).await.unwrap().api_key;
    for wider in [vec![Permission::Trade], vec![Permission::Trade, Permission::Withdraw]] {
        let edit = keygate_service::KeyEdit {
            permissions: Some(keygate_auth::Permissions::with(&wider)),
            ..keygate_service::KeyEdit::default()
        };
        let err = s.edit_key(&Actor::operator_cli(), &key, edit).await.unwrap_err();
        assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("held by the app")), "{err:?}");
    }
}

/// A code not yet exchanged when the owner disconnects the app makes no key afterwards.
#[tokio::test]
async fn disconnect_ends_the_owners_unexchanged_codes() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let mut urls = Vec::new();
    for _ in 0..2 {
        let req = request(&s, &params(&id, "read")).await;
        urls.push(s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap());
    }
    s.token(token_params(&id, Some(&secret), &code_of(&urls[0])), None).await.unwrap();
    clock.advance_ms(1);
    assert_eq!(s.disconnect_app(&alice, &id).await.unwrap(), 1);
    let e = s.token(token_params(&id, Some(&secret), &code_of(&urls[1])), None).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant, "{e:?}");
    assert_eq!(live_keys(&s).await, 0);
}

/// Codes exchanged while the owner disconnects the app leave no working key: an exchange that
/// had already taken its code when the disconnect ended the owner's codes either sees the
/// disconnect after storing its key and revokes it, or stored it before the disconnect listed the
/// app's keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn codes_exchanged_while_the_owner_disconnects_leave_no_working_key() {
    // The disconnect starts after a different number of scheduler turns each round, so that it
    // lands between different steps of the exchanges.
    for turns in 0..40 {
        let (s, clock, _d) = env().await;
        let (id, secret) = register(&s).await;
        let codes = alice_codes(&s, &clock, &id, 21).await;
        // Connected once, so the owner has an app to disconnect.
        s.token(token_params(&id, Some(&secret), &codes[0]), None).await.unwrap();
        let handles = exchange_all(&s, &id, &secret, &codes[1..]);
        for _ in 0..turns {
            tokio::task::yield_now().await;
        }
        s.disconnect_app(&owner(1, "alice", &clock, false), &id).await.unwrap();
        let n = issued(handles).await;
        assert_no_live_key(&s, n, &format!("turns {turns}")).await;
    }
}

/// A key an app gets counts towards the account's key policy maximum like any other: the owner
/// is told when consenting, and a code consented to before the account filled up is refused.
#[tokio::test]
async fn app_keys_count_towards_the_accounts_key_maximum() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let two = keygate_service::policy::AccountKeyPolicy { max_keys: Some(2), ..Default::default() };
    s.set_key_policy(&alice, "alice", two).await.unwrap();
    let codes = alice_codes(&s, &clock, &id, 3).await;
    s.token(token_params(&id, Some(&secret), &codes[0]), None).await.unwrap();
    s.token(token_params(&id, Some(&secret), &codes[1]), None).await.unwrap();
    let e = s.token(token_params(&id, Some(&secret), &codes[2]), None).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant, "{e:?}");
    assert!(e.description.contains("already has 2 keys"), "{e:?}");
    let req = request(&s, &params(&id, "read")).await;
    let err = s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap_err();
    assert!(matches!(err, ServiceError::Invalid(ref m) if m.contains("already has 2 keys")), "{err}");
    assert_eq!(live_keys(&s).await, 2);
}

/// Codes consented to while the account had room, exchanged at once, make no more keys than the
/// maximum allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exchanges_at_once_do_not_pass_the_accounts_key_maximum() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let two = keygate_service::policy::AccountKeyPolicy { max_keys: Some(2), ..Default::default() };
    s.set_key_policy(&alice, "alice", two).await.unwrap();
    let codes = alice_codes(&s, &clock, &id, 12).await;
    let n = issued(exchange_all(&s, &id, &secret, &codes)).await;
    assert_eq!((n, live_keys(&s).await), (2, 2));
}

/// Housekeeping deletes a code a day after it expired, and only then: a newer code still makes
/// its key, and the purged one is refused as any unknown code is.
#[tokio::test]
async fn codes_are_purged_a_day_after_they_expire_and_newer_ones_still_work() {
    let (s, clock, _d) = env().await;
    let (id, secret) = register(&s).await;
    let alice = owner(1, "alice", &clock, false);
    let req = request(&s, &params(&id, "read")).await;
    let old = code_of(&s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap());
    // Expired, but not yet a day ago: kept.
    clock.advance_ms(keygate_auth::oauth::CODE_TTL_MS + keygate_service::apps::CODE_RETENTION_MS);
    assert_eq!(s.purge_codes().await.unwrap(), 0);
    clock.advance_ms(1);
    let alice = owner(1, "alice", &clock, false);
    let req = request(&s, &params(&id, "read")).await;
    let fresh = code_of(&s.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap());
    assert_eq!(s.purge_codes().await.unwrap(), 1, "the old code, and only it");
    assert_eq!(s.purge_codes().await.unwrap(), 0);
    let e = s.token(token_params(&id, Some(&secret), &old), None).await.map(|_| ()).unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidGrant, "{e:?}");
    s.token(token_params(&id, Some(&secret), &fresh), None).await.unwrap();
    assert_eq!(live_keys(&s).await, 1);
}
