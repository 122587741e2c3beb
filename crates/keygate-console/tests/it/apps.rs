//! Issue #15 over HTTP: an app's authorize request sends the owner through login and 2FA to the
//! consent page, the owner narrows and allows, the app exchanges the code at `/oauth/token` for
//! an Ed25519 key bound to it, the key signs requests (and `apiRestrictions` names the app),
//! Disconnect on the Connected apps page makes the next request fail with -2015; refusals
//! redirect or show a page as RFC 6749 says, and issue nothing.

use crate::support::{Agent, PASSWORD, element_text, field_value, totp};
use keygate_auth::oauth::s256_challenge;
use keygate_client::Signer;
use keygate_service::Actor;
use keygate_service::apps::NewApp;
use keygate_testkit::TestApp;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CB: &str = "http://127.0.0.1:9/callback";

async fn register(app: &TestApp) -> (String, String) {
    let r = app
        .service
        .register_app(
            &Actor::operator_cli(),
            NewApp {
                name: "Grid Bot".into(),
                homepage: "https://gridbot.example".into(),
                publisher_domain: "gridbot.example".into(),
                redirect_uris: vec![CB.into()],
                max_permissions: "read,trade".into(),
                client_type: "confidential".into(),
                logo_url: None,
            },
        )
        .await
        .unwrap();
    (r.app.client_id, r.client_secret.unwrap())
}

fn authorize_path(client_id: &str, extra: &str) -> String {
    format!(
        "/oauth/authorize?response_type=code&client_id={client_id}&redirect_uri={}&scope=read%20trade&state=xyz&code_challenge={}&code_challenge_method=S256{extra}",
        keygate_client::encode(CB),
        s256_challenge(VERIFIER)
    )
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let u = url::Url::parse(url).unwrap();
    u.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

async fn token(app: &TestApp, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().post(format!("{}/oauth/token", app.base_url)).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    assert_eq!(res.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    (status, res.json().await.unwrap())
}

#[tokio::test]
async fn an_app_is_connected_through_login_2fa_and_consent_and_disconnected_with_one_click() {
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, spki::der::pem::LineEnding};
    let app = TestApp::spawn().await;
    let (client_id, secret) = register(&app).await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let totp_secret = a.enroll_totp(&app).await;
    let logout = a.get("/console/keys").await;
    a.post("/console/logout", &[("csrf", &logout.csrf())]).await;

    // The app sends the browser here; not logged in, so: login, 2FA, then back to consent.
    let path = authorize_path(&client_id, "");
    let res = a.get(&path).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/login"));
    let login = a.get("/console/login").await;
    let res = a.post("/console/login", &[("csrf", &login.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(res.location.as_deref(), Some("/console/login/totp"));
    crate::support::next_totp_step(&app);
    let prompt = a.get("/console/login/totp").await;
    let res = a.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &totp(&totp_secret, &app))]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some(path.as_str()), "the login goes back to the app's request");

    let consent = a.get(&path).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.body.contains("Grid Bot") && consent.body.contains("gridbot.example"));
    assert!(element_text(&consent.body, "warn-unverified").is_some(), "an unverified app is flagged");
    assert!(consent.body.contains("id=\"warn-trade\""), "trade is flagged");
    assert_eq!(element_text(&consent.body, "asked-permissions").as_deref(), Some("read, trade"));
    assert!(consent.body.contains("name=\"state\" value=\"xyz\""));

    // A form without the session's CSRF token is refused and issues nothing.
    let forged = a.post("/oauth/authorize", &[("decision", "allow"), ("client_id", &client_id)]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    // Allow, narrowed to one symbol and one address, trade kept with a 2FA code.
    crate::support::next_totp_step(&app);
    let mut form: Vec<(String, String)> =
        ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"]
            .iter()
            .map(|k| ((*k).to_owned(), field_value(&consent.body, k).unwrap()))
            .collect();
    form.push(("csrf".into(), consent.csrf()));
    form.push(("decision".into(), "allow".into()));
    form.push(("keep_trade".into(), "1".into()));
    form.push(("symbols".into(), "BTCUSDT".into()));
    form.push(("ip_allowlist".into(), "127.0.0.1".into()));
    form.push(("code".into(), totp(&totp_secret, &app)));
    let form_ref: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = a.post("/oauth/authorize", &form_ref).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let back = res.location.unwrap();
    assert!(back.starts_with(CB), "{back}");
    assert_eq!(query_value(&back, "state").as_deref(), Some("xyz"));
    let code = query_value(&back, "code").unwrap();

    // The app's server exchanges the code, with its public key.
    let signing = ed25519_dalek::SigningKey::from_bytes(&[21; 32]);
    let public = signing.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    let private = signing.to_pkcs8_pem(LineEnding::LF).unwrap();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
        ("public_key", public.as_str()),
    ];
    let (status, body) = token(&app, &form, Some((&client_id, &secret))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "urn:keygate:api-key");
    assert_eq!(body["key_type"], "ed25519");
    assert!(body.get("secret_key").is_none());
    assert_eq!(body["scope"], "read trade");
    let api_key = body["api_key"].as_str().unwrap().to_owned();

    let client = app.client(&api_key, Signer::ed25519_pem(&private).unwrap());
    let r = client.signed(reqwest::Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    let restrictions: serde_json::Value = r.parse().unwrap();
    assert_eq!(restrictions["keygateConnectedApp"], client_id.as_str());
    assert_eq!(restrictions["enableSpotAndMarginTrading"], true);
    assert_eq!(restrictions["ipRestrict"], true);

    // The same code again: refused, and the key it issued is revoked.
    // (Checked on another app below; here the owner disconnects instead.)
    let keys = a.get("/console/keys").await;
    assert!(keys.body.contains("held by app"), "the keys page names the app holding the key");
    let apps = a.get("/console/apps").await;
    assert_eq!(apps.status, 200, "{}", apps.body);
    assert!(apps.body.contains("Grid Bot") && apps.body.contains(&api_key));
    let res = a.post(&format!("/console/apps/{client_id}/disconnect"), &[("csrf", &apps.csrf())]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let after = a.get(res.location.as_deref().unwrap()).await;
    assert!(after.body.contains("id=\"no-apps\""), "{}", after.body);
    let r = client.signed(reqwest::Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(r.error().map(|e| e.code), Some(-2015), "the next request after Disconnect");
    let audit = app.service.audit_log(&Actor::operator_cli(), 0, 10_000).await.unwrap();
    for action in ["app.consent", "app.token", "app.disconnect"] {
        assert!(audit.iter().any(|r| r.action == action), "{action} audited");
    }
}

#[tokio::test]
async fn refusals_redirect_or_show_a_page_and_a_reused_code_revokes_its_key() {
    let app = TestApp::spawn().await;
    let (client_id, secret) = register(&app).await;
    let mut a = Agent::new(&app);
    a.sign_up("bob", PASSWORD).await;
    // No state: back to the app with invalid_request.
    let res = a.get(&authorize_path(&client_id, "").replace("&state=xyz", "")).await;
    assert_eq!(res.status, 303);
    let loc = res.location.unwrap();
    assert!(loc.starts_with(CB) && query_value(&loc, "error").as_deref() == Some("invalid_request"), "{loc}");
    // A redirect URI the app did not register: a page, never a redirect.
    let res = a.get(&authorize_path(&client_id, "").replace("9%2Fcallback", "9%2Fother")).await;
    assert_eq!(res.status, 400, "{}", res.body);
    assert!(res.location.is_none());
    // plain PKCE: back to the app.
    let res = a.get(&authorize_path(&client_id, "").replace("S256", "plain")).await;
    assert_eq!(query_value(&res.location.unwrap(), "error").as_deref(), Some("invalid_request"));

    // Read-only consent (bob has no 2FA), exchanged twice.
    let path = authorize_path(&client_id, "").replace("read%20trade", "read");
    let consent = a.get(&path).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    let mut form: Vec<(String, String)> =
        ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge", "code_challenge_method"]
            .iter()
            .map(|k| ((*k).to_owned(), field_value(&consent.body, k).unwrap()))
            .collect();
    form.push(("csrf".into(), consent.csrf()));
    form.push(("decision".into(), "allow".into()));
    let form_ref: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let res = a.post("/oauth/authorize", &form_ref).await;
    let code = query_value(res.location.as_deref().unwrap(), "code").unwrap();
    let good = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", VERIFIER),
    ];
    // Wrong secret: 401 invalid_client with WWW-Authenticate; nothing issued.
    let (status, body) = token(&app, &good, Some((&client_id, "kgcs_nope"))).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")));
    let bad_verifier = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", CB),
        ("code_verifier", &VERIFIER.replace('d', "D")),
    ];
    let (status, body) = token(&app, &bad_verifier, Some((&client_id, &secret))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    assert!(app.service.list_keys(&Actor::operator_cli(), Some("bob")).await.unwrap().is_empty(), "nothing issued");
    // An HMAC key (no public key): its secret appears in this answer.
    let (status, first) = token(&app, &good, Some((&client_id, &secret))).await;
    assert_eq!(status, 200, "{first}");
    assert!(first["secret_key"].as_str().is_some_and(|s| s.starts_with("kgs_")));
    let client = app.client(first["api_key"].as_str().unwrap(), Signer::hmac(first["secret_key"].as_str().unwrap()));
    assert_eq!(client.signed(reqwest::Method::GET, "/api/v3/account", &[]).await.unwrap().status, 200);
    let (status, body) = token(&app, &good, Some((&client_id, &secret))).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")));
    let r = client.signed(reqwest::Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(r.error().map(|e| e.code), Some(-2015), "a reused code revokes the key it issued");

    // Once the operator verifies the app, the consent page says so and drops the warning; its
    // CSP lets the form lead to the app's redirect URI and nowhere else.
    app.service.set_app_verified(&Actor::operator_cli(), &client_id, true).await.unwrap();
    let verified = a.get(&path).await;
    assert!(verified.body.contains("id=\"verified\"") && !verified.body.contains("id=\"warn-unverified\""));
    let csp = reqwest::Client::new()
        .get(format!("{}{path}", app.base_url))
        .header("cookie", a.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; "))
        .send()
        .await
        .unwrap()
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:9;") && csp.contains("frame-ancestors 'none'"), "{csp}");

    // Suspended: every key stops working, and the token endpoint says invalid_client.
    app.service.suspend_app(&Actor::operator_cli(), &client_id, false).await.unwrap();
    let res = a.get(&path).await;
    assert_eq!(res.status, 400, "a suspended app's request gets a page");
}

#[tokio::test]
async fn the_metadata_document_describes_the_endpoints() {
    let app = TestApp::spawn().await;
    let res = reqwest::get(format!("{}/.well-known/oauth-authorization-server", app.base_url)).await.unwrap();
    assert_eq!(res.status(), 200);
    let m: serde_json::Value = res.json().await.unwrap();
    assert_eq!(m["issuer"], app.base_url.as_str());
    assert_eq!(m["authorization_endpoint"], format!("{}/oauth/authorize", app.base_url));
    assert_eq!(m["token_endpoint"], format!("{}/oauth/token", app.base_url));
    assert_eq!(m["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(m["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(m["authorization_details_types_supported"], serde_json::json!(["keygate_api_key"]));
}

#[tokio::test]
async fn owners_the_operator_allows_register_unverified_apps_on_the_connected_apps_page() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("carol", PASSWORD).await;
    let page = a.get("/console/apps").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"no-apps\""));
    assert!(!page.body.contains("id=\"register-app\""), "not allowed: no registration form");
    let form = [
        ("csrf", page.csrf()),
        ("name", "Carol's Tracker".to_owned()),
        ("homepage", "https://tracker.example".to_owned()),
        ("publisher_domain", "tracker.example".to_owned()),
        ("redirect_uris", "https://tracker.example/cb".to_owned()),
        ("client_type", "confidential".to_owned()),
    ];
    let form_ref: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let refused = a.post("/console/apps/register", &form_ref).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(app.service.list_apps(&Actor::operator_cli(), true).await.unwrap().is_empty());

    app.service.allow_app_developer(&Actor::operator_cli(), "carol", true).await.unwrap();
    let page = a.get("/console/apps").await;
    assert!(page.body.contains("id=\"register-app\""));
    let done = a.post("/console/apps/register", &form_ref).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let secret = element_text(&done.body, "client-secret").expect("the client secret, shown once");
    assert!(secret.starts_with("kgcs_"));
    let apps = app.service.list_apps(&Actor::operator_cli(), false).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert!(!apps[0].verified, "apps registered from the console start unverified");
    let again = a.get("/console/apps").await;
    assert!(!again.body.contains(&secret), "never shown again");
    assert!(again.body.contains(&apps[0].client_id));
}

/// An account at its key policy's maximum is told so on the consent page, before answering, and
/// Allow is switched off; once a key is revoked the page lets the owner allow again.
#[tokio::test]
async fn the_consent_page_says_when_the_account_has_no_room_for_the_apps_key() {
    let app = TestApp::spawn().await;
    let (client_id, _) = register(&app).await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let one = keygate_service::policy::AccountKeyPolicy { max_keys: Some(1), ..Default::default() };
    app.service.set_key_policy(&Actor::operator_cli(), "alice", one).await.unwrap();
    let key = app.hmac_key("alice", keygate_auth::Permissions::READ_ONLY, keygate_auth::Restrictions::default()).await;
    let path = authorize_path(&client_id, "");
    let page = a.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let warning = element_text(&page.body, "warn-full").expect("the full account is flagged");
    assert!(warning.contains("already has 1 key,"), "{warning}");
    assert!(page.body.contains("id=\"allow\" disabled"), "Allow is off: {}", page.body);
    assert!(page.body.contains("id=\"deny\""), "Deny stays");

    app.service.revoke_key(&Actor::operator_cli(), &key.key.api_key).await.unwrap();
    let page = a.get(&path).await;
    assert!(element_text(&page.body, "warn-full").is_none(), "{}", page.body);
    assert!(!page.body.contains("id=\"allow\" disabled"));
}
