//! Every refusal the console makes, over HTTP: each leaves the state as it was.

use crate::support::{Agent, PASSWORD, element_text, next_totp_step, totp};
use keygate_service::Actor;
use keygate_testkit::TestApp;

async fn keys_of(app: &TestApp, name: &str) -> Vec<keygate_service::KeyView> {
    app.service.list_keys(&Actor::operator_cli(), Some(name)).await.unwrap()
}

#[tokio::test]
async fn wrong_password_is_refused_and_sets_no_session() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let mut b = Agent::new(&app);
    let page = b.get("/console/login").await;
    let res =
        b.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", "wrong password!!")]).await;
    assert_eq!(res.status, 401, "{}", res.body);
    assert!(res.body.contains("role=\"alert\""));
    assert!(!b.cookies.contains_key("kg_session"), "no session after a wrong password");
    assert_eq!(b.get("/console/keys").await.status, 303, "still logged out");
}

#[tokio::test]
async fn login_needs_the_pre_session_token() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let mut b = Agent::new(&app);
    b.get("/console/login").await;
    let res = b.post("/console/login", &[("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(!b.cookies.contains_key("kg_session"));
}

#[tokio::test]
async fn missing_csrf_token_changes_nothing() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let res = a.post("/console/keys", &[("label", "no token"), ("kind", "hmac")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let res = a.post("/console/keys", &[("csrf", "forged"), ("label", "bad token"), ("kind", "hmac")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    // The JSON API: no header.
    let res = a.post_json("/api/console/v1/keys", None, serde_json::json!({ "label": "json" })).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("\"csrf\""));
    assert!(keys_of(&app, "alice").await.is_empty());
    // And with the token it works.
    let csrf = a.keys_csrf().await;
    let res = a.post("/console/keys", &[("csrf", &csrf), ("label", "ok"), ("kind", "hmac")]).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(keys_of(&app, "alice").await.len(), 1);
}

#[tokio::test]
async fn cross_origin_post_is_refused_even_with_a_token() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let csrf = a.keys_csrf().await;
    let http = reqwest::Client::new();
    let cookie = a.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
    let res = http
        .post(format!("{}/console/keys", app.base_url))
        .header("cookie", cookie)
        .header("origin", "http://evil.example")
        .form(&[("csrf", csrf.as_str()), ("label", "x"), ("kind", "hmac")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);
    assert!(keys_of(&app, "alice").await.is_empty());
}

#[tokio::test]
async fn trade_key_without_a_step_up_code_is_refused() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    a.enroll_totp(&app).await;
    let csrf = a.keys_csrf().await;
    let res =
        a.post("/console/keys", &[("csrf", &csrf), ("label", "bot"), ("kind", "hmac"), ("perm_trade", "on")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("needed for this change"), "the form asks for the code");
    assert!(res.body.contains("value=\"bot\""), "what was typed is kept");
    assert!(keys_of(&app, "alice").await.is_empty());
}

#[tokio::test]
async fn widening_a_key_without_a_code_leaves_it_as_it_was() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    a.enroll_totp(&app).await;
    let csrf = a.keys_csrf().await;
    a.post("/console/keys", &[("csrf", &csrf), ("label", "ro"), ("kind", "hmac")]).await;
    let key = keys_of(&app, "alice").await.remove(0);
    let edit = a.get(&format!("/console/keys/{}", key.api_key)).await;
    let res = a
        .post(
            &format!("/console/keys/{}", key.api_key),
            &[("csrf", &edit.csrf()), ("label", "ro"), ("perm_trade", "on"), ("status", "active")],
        )
        .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(keys_of(&app, "alice").await.remove(0), key);
}

#[tokio::test]
async fn reused_totp_code_is_refused() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    next_totp_step(&app);
    let code = totp(&secret, &app);
    let page = a.get("/console/step-up").await;
    let ok = a.post("/console/step-up", &[("csrf", &page.csrf()), ("code", &code), ("next", "/console/keys")]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(!ok.set_cookies.is_empty(), "step-up rotates the session");
    let session_after_first = a.cookies.clone();
    let page = a.get("/console/step-up").await;
    let again = a.post("/console/step-up", &[("csrf", &page.csrf()), ("code", &code), ("next", "/console/keys")]).await;
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.set_cookies.is_empty(), "no new session for a reused code");
    assert_eq!(a.cookies, session_after_first);
}

#[tokio::test]
async fn a_control_character_in_next_falls_back_to_the_key_list() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    next_totp_step(&app);
    let code = totp(&secret, &app);
    let page = a.get("/console/step-up?next=/console/%01x").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(!page.body.contains("/console/\u{1}x"));
    let ok = a.post("/console/step-up", &[("csrf", &page.csrf()), ("code", &code), ("next", "/console/\u{1}x")]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location.as_deref(), Some("/console/keys"));
    assert!(!ok.set_cookies.is_empty(), "the step-up went through");
}

#[tokio::test]
async fn withdraw_without_ip_allowlist_is_refused() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    next_totp_step(&app);
    let csrf = a.keys_csrf().await;
    let code = totp(&secret, &app);
    let res = a
        .post(
            "/console/keys",
            &[
                ("csrf", &csrf),
                ("label", "withdrawer"),
                ("kind", "hmac"),
                ("perm_withdraw", "on"),
                ("withdraw_addresses", "bc1qexampleaddress"),
                ("code", &code),
            ],
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("IP allowlist"), "{}", res.body);
    assert!(keys_of(&app, "alice").await.is_empty());
}

#[tokio::test]
async fn malformed_cidr_is_named_and_nothing_is_created() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let csrf = a.keys_csrf().await;
    let res = a
        .post(
            "/console/keys",
            &[("csrf", &csrf), ("label", "x"), ("kind", "hmac"), ("ip_allowlist", "203.0.113.0/24\n10.0.0.300/8")],
        )
        .await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.body.contains("10.0.0.300/8"), "{}", res.body);
    assert!(keys_of(&app, "alice").await.is_empty());
}

#[tokio::test]
async fn unknown_host_is_refused() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.host = Some(format!("rebound.evil.example:{}", app.addr.port()));
    let res = a.get("/console/login").await;
    assert_eq!(res.status, 421);
    assert!(a.cookies.is_empty());
    a.host = Some(format!("localhost:{}", app.addr.port()));
    assert_eq!(a.get("/console/login").await.status, 200);
}

#[tokio::test]
async fn secret_pages_are_not_stored_and_the_secret_is_never_in_a_url() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let csrf = a.keys_csrf().await;
    let res = a.post("/console/keys", &[("csrf", &csrf), ("label", "x"), ("kind", "hmac")]).await;
    assert_eq!(res.status, 200);
    assert_eq!(res.cache_control.as_deref(), Some("no-store"));
    let secret = element_text(&res.body, "api-secret").unwrap();
    assert!(secret.starts_with("kgs_"));
    assert!(res.location.is_none(), "the secret page is the answer itself, not a redirect");
    // The list never shows it again.
    let list = a.get("/console/keys").await;
    assert!(!list.body.contains(&secret));
    assert_eq!(list.cache_control.as_deref(), Some("no-store"));
}

#[tokio::test]
async fn session_cookie_is_httponly_and_strict() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    let page = a.get("/console/signup").await;
    let csrf = page.csrf();
    let res = a
        .post("/console/signup", &[("csrf", &csrf), ("name", "alice"), ("password", PASSWORD), ("password2", PASSWORD)])
        .await;
    let cookie = res.set_cookies.iter().find(|c| c.starts_with("kg_session=")).expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP on loopback: no Secure flag, or the browser would drop it");
}

#[tokio::test]
async fn behind_a_trusted_proxy_cookies_are_secure_with_the_host_prefix() {
    let app = TestApp::spawn_with(|c| c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()]).await;
    let mut a = Agent::new(&app);
    let page = a.get("/console/signup").await;
    let pre = page.set_cookies.iter().find(|c| c.starts_with("__Host-kg_pre=")).expect("a pre-session cookie");
    assert!(pre.contains("; Secure"), "{pre}");
    let res = a
        .post(
            "/console/signup",
            &[("csrf", &page.csrf()), ("name", "alice"), ("password", PASSWORD), ("password2", PASSWORD)],
        )
        .await;
    let cookie = res.set_cookies.iter().find(|c| c.starts_with("__Host-kg_session=")).expect("a session cookie");
    assert!(cookie.contains("; Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
}

#[tokio::test]
async fn openapi_document_is_served() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    let res = a.get("/api/console/v1/openapi.json").await;
    assert_eq!(res.status, 200);
    let doc: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert!(doc["paths"]["/api/console/v1/keys"]["post"].is_object());
}

#[tokio::test]
async fn json_api_creates_a_key_with_the_session_token() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    let s = a.get("/api/console/v1/session").await;
    let pre: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    let pre = pre["csrf_token"].as_str().unwrap().to_owned();
    let res = a
        .post_json("/api/console/v1/signup", Some(&pre), serde_json::json!({ "name": "alice", "password": PASSWORD }))
        .await;
    assert_eq!(res.status, 201, "{}", res.body);
    let session: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    let csrf = session["csrf_token"].as_str().unwrap().to_owned();
    let res = a
        .post_json(
            "/api/console/v1/keys",
            Some(&csrf),
            serde_json::json!({ "label": "api", "ip_allowlist": ["10.0.0.300/8"] }),
        )
        .await;
    // Well-formed JSON with a value the schema cannot check: 422; not the documented shape: 400.
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("10.0.0.300/8"));
    let res = a.post_json("/api/console/v1/keys", Some(&csrf), serde_json::json!({ "ip_allowlist": "x" })).await;
    assert_eq!(res.status, 400, "{}", res.body);
    // Every body is an object: serde alone would read `[]` as a struct of optional fields.
    for path in ["/api/console/v1/keys", "/api/console/v1/keys/revoke-all"] {
        let res = a.post_json(path, Some(&csrf), serde_json::json!([])).await;
        assert_eq!(res.status, 400, "{path}: {}", res.body);
    }
    // Permissions are the document's enum, exactly: no case folding, no comma lists.
    for perms in [serde_json::json!(["READ"]), serde_json::json!(["read,trade"]), serde_json::json!([" read"])] {
        let res = a.post_json("/api/console/v1/keys", Some(&csrf), serde_json::json!({ "permissions": perms })).await;
        assert_eq!(res.status, 422, "{perms}: {}", res.body);
    }
    assert!(keys_of(&app, "alice").await.is_empty());
    let res = a.post_json("/api/console/v1/keys", Some(&csrf), serde_json::json!({ "label": "api" })).await;
    assert_eq!(res.status, 201, "{}", res.body);
    let created: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert!(created["secret"].as_str().unwrap().starts_with("kgs_"));
    assert_eq!(created["permissions"], serde_json::json!(["read"]));
    // Lists are JSON arrays (the document once said objects).
    let list: Vec<serde_json::Value> = serde_json::from_str(&a.get("/api/console/v1/keys").await.body).unwrap();
    assert_eq!(list.len(), 1);
    let audit: Vec<serde_json::Value> = serde_json::from_str(&a.get("/api/console/v1/audit").await.body).unwrap();
    assert!(!audit.is_empty());
}

#[tokio::test]
async fn json_api_answers_404_for_a_path_that_names_no_key() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    // Neither text that is no key id nor a well-formed id the account does not own is a key of
    // the account: both are 404 (the first used to be 422).
    for id in ["0", "kg_", "kg_00000000000000000000000000000000000000"] {
        let res = a.get(&format!("/api/console/v1/keys/{id}")).await;
        assert_eq!(res.status, 404, "{id}: {}", res.body);
        assert!(res.body.contains("\"not_found\""), "{}", res.body);
    }
}

#[tokio::test]
async fn trade_key_without_2fa_enabled_is_refused_with_a_pointer_to_2fa() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let csrf = a.keys_csrf().await;
    let res =
        a.post("/console/keys", &[("csrf", &csrf), ("label", "bot"), ("kind", "hmac"), ("perm_trade", "on")]).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("2FA"), "{}", res.body);
    assert!(keys_of(&app, "alice").await.is_empty());
}

#[tokio::test]
async fn a_wrong_step_up_code_in_the_form_changes_nothing_and_asks_again() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    a.enroll_totp(&app).await;
    let csrf = a.keys_csrf().await;
    let res = a
        .post(
            "/console/keys",
            &[("csrf", &csrf), ("label", "bot"), ("kind", "hmac"), ("perm_trade", "on"), ("code", "123456")],
        )
        .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("needed for this change"), "{}", res.body);
    assert!(res.set_cookies.is_empty(), "no step-up, no new session");
    assert!(keys_of(&app, "alice").await.is_empty());
}
