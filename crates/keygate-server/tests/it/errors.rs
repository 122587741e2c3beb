//! Binance error codes, HTTP statuses and headers for every refusal.

use keygate_auth::{IpAllowlist, Permissions, Restrictions};
use keygate_client::{Signer, signed_query};
use keygate_testkit::TestApp;
use reqwest::Method;

const RESTRICTIONS: &str = "/sapi/v1/account/apiRestrictions";

#[tokio::test]
async fn public_endpoints_answer_json_with_a_request_id_and_ignore_an_empty_key_header() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let res = http.get(format!("{}/api/v3/ping", app.base_url)).header("X-MBX-APIKEY", "").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/json;charset=UTF-8");
    assert_eq!(res.headers()["x-request-id"].len(), 32);
    assert_eq!(res.text().await.unwrap(), "{}");
    let time: serde_json::Value =
        http.get(format!("{}/api/v3/time", app.base_url)).send().await.unwrap().json().await.unwrap();
    assert_eq!(time["serverTime"], keygate_testkit::START.0);
    let missing = http.get(format!("{}/api/v3/nothing", app.base_url)).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
    app.shutdown().await;
}

#[tokio::test]
async fn signed_endpoint_without_or_with_a_malformed_key_is_minus_2014() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let res = http.get(format!("{}{RESTRICTIONS}?timestamp=1", app.base_url)).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], -2014);
    let res = http
        .get(format!("{}{RESTRICTIONS}?timestamp=1", app.base_url))
        .header("X-MBX-APIKEY", "kg_abc")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(!res.headers().contains_key("x-keygate-reason"));
    app.shutdown().await;
}

#[tokio::test]
async fn unknown_key_is_minus_2015_without_a_reason() {
    let app = TestApp::spawn().await;
    let id = keygate_auth::ApiKeyId::generate(&mut keygate_service::OsEntropy).unwrap();
    let client = app.client(id.as_str(), Signer::hmac("kgs_whatever"));
    let a = client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (401, -2015));
    assert_eq!(a.reason, None);
    app.shutdown().await;
}

#[tokio::test]
async fn wrong_secret_is_minus_1022_and_stale_timestamp_is_minus_1021() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let wrong = app.client(&key.key.api_key, Signer::hmac("kgs_not_the_secret"));
    let a = wrong.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (400, -1022));
    assert_eq!(a.reason, None, "no specific reason before the signature verifies");

    let client = app.hmac_client(&key);
    let q = signed_query(&[], keygate_testkit::START.plus_millis(0), client.signer());
    app.clock.advance_ms(5_001);
    let a = client.raw(Method::GET, RESTRICTIONS, &q, "").await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (400, -1021));
    assert!(a.error().unwrap().msg.contains("5001 ms behind"), "{:?}", a.body);
    app.shutdown().await;
}

#[tokio::test]
async fn duplicate_and_missing_parameters_get_binance_parameter_codes() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let client = app.hmac_client(&key);
    let a = client.raw(Method::GET, RESTRICTIONS, "a=1&a=2&timestamp=1&signature=00", "").await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (400, -1101));
    let a = client.raw(Method::GET, RESTRICTIONS, "signature=00", "").await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (400, -1102));
    let a = client.raw(Method::GET, RESTRICTIONS, "recvWindow=60001&timestamp=1&signature=00", "").await.unwrap();
    assert_eq!(a.error().unwrap().code, -1131);
    app.shutdown().await;
}

#[tokio::test]
async fn ip_outside_the_allowlist_is_minus_2015_with_the_reason_after_a_valid_signature() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["10.0.0.0/8", "2001:db8::/32"]).unwrap(),
        ..Restrictions::default()
    };
    let key = app.hmac_key("alice", Permissions::READ_ONLY, r).await;
    let a = app.hmac_client(&key).signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (401, -2015));
    assert_eq!(a.reason.as_deref(), Some("IP_NOT_ALLOWED"));
    app.shutdown().await;
}

#[tokio::test]
async fn expired_key_is_refused_once_the_clock_passes_its_expiry() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let r = Restrictions { expires_at: Some(keygate_testkit::START.plus_millis(60_000)), ..Restrictions::default() };
    let key = app.hmac_key("alice", Permissions::READ_ONLY, r).await;
    let client = app.hmac_client(&key);
    assert_eq!(client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    app.clock.advance_ms(60_000);
    let a = client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!((a.status, a.reason.as_deref()), (401, Some("KEY_EXPIRED")));
    app.shutdown().await;
}

#[tokio::test]
async fn every_response_reports_the_weight_used_this_minute() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let used = |res: &reqwest::Response| res.headers()["x-mbx-used-weight-1m"].to_str().unwrap().to_owned();
    let first = http.get(format!("{}/api/v3/ping", app.base_url)).send().await.unwrap();
    assert_eq!(used(&first), "1");
    let info = http.get(format!("{}/api/v3/exchangeInfo", app.base_url)).send().await.unwrap();
    assert_eq!(used(&info), "21", "exchangeInfo weighs 20");
    let missing = http.get(format!("{}/api/v3/account", app.base_url)).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(used(&missing), "41", "refused requests count too, as on Binance");
    app.clock.advance_ms(60_000);
    let later = http.get(format!("{}/api/v3/ping", app.base_url)).send().await.unwrap();
    assert_eq!(used(&later), "1", "a new minute starts from zero");
    app.shutdown().await;
}

/// One key that sends many distinct signed requests fills only its share of the replay guard:
/// it gets 429 -1003 with `Retry-After`, and another key is still served.
#[tokio::test]
async fn a_key_over_its_replay_quota_gets_429_while_another_key_is_served() {
    let app = TestApp::spawn_with(|c| c.limits.replay_per_key = 3).await;
    app.account("alice").await;
    let greedy = app.hmac_client(&app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await);
    let other = app.hmac_client(&app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await);
    for i in 0..3 {
        let q = signed_query(&[("recvWindow", &(5000 + i).to_string())], greedy.now(), greedy.signer());
        assert_eq!(greedy.raw(Method::GET, RESTRICTIONS, &q, "").await.unwrap().status, 200);
    }
    let q = signed_query(&[("recvWindow", "6000")], greedy.now(), greedy.signer());
    let a = greedy.raw(Method::GET, RESTRICTIONS, &q, "").await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code), (429, -1003), "{:?}", a.body);
    assert_eq!(a.reason.as_deref(), Some("REPLAY_KEY_QUOTA"));
    assert_eq!(other.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    // Once its windows have ended (and their 16-second bucket with them), the key is served again.
    app.clock.advance_ms(32_000);
    assert_eq!(greedy.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    app.shutdown().await;
}
