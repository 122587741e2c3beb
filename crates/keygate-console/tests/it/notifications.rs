//! The notifications page and its JSON API (issue #17): notices are the account's events,
//! endpoints are registered with a secret shown once, and deleting one needs a step-up.

use crate::support::{Agent, PASSWORD, next_totp_step, totp};
use keygate_testkit::TestApp;

async fn app() -> TestApp {
    TestApp::spawn_configured(
        |s| {
            s.webhooks.allow_http = true;
            s.webhooks.allow_private_targets = true;
        },
        |_| {},
    )
    .await
}

#[tokio::test]
async fn owners_register_endpoints_see_notices_and_need_a_step_up_to_delete() {
    let app = app().await;
    let mut agent = Agent::new(&app);
    agent.sign_up("alice", PASSWORD).await;
    let secret = agent.enroll_totp(&app).await;
    app.service.ingest_events().await.unwrap();

    let page = agent.get("/console/notifications").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("account.2fa_enabled"), "the 2FA notice: {}", page.body);
    assert!(page.body.contains("Two-factor authentication was turned on"));

    // Register: the secret is on the answer, once.
    let created = agent
        .post(
            "/console/notifications/webhooks",
            &[("csrf", &page.csrf()), ("url", "http://127.0.0.1:9/hook"), ("description", "ops")],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let shown = crate::support::element_text(&created.body, "webhook-secret").expect("the secret");
    assert!(shown.starts_with("whsec_"), "{shown}");
    let again = agent.get("/console/notifications").await;
    assert!(again.body.contains("http://127.0.0.1:9/hook"));
    assert!(!again.body.contains(&shown), "the secret is shown once only");
    // A private target the operator did not allow is refused with a readable message.
    let strict = TestApp::spawn().await;
    let mut other = Agent::new(&strict);
    other.sign_up("bob", PASSWORD).await;
    let p = other.get("/console/notifications").await;
    let refused =
        other.post("/console/notifications/webhooks", &[("csrf", &p.csrf()), ("url", "http://127.0.0.1:9/x")]).await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert!(refused.body.contains("https://"), "{}", refused.body);
    strict.shutdown().await;

    // The JSON API shows the same.
    let list = agent.get("/api/console/v1/webhooks").await;
    assert_eq!(list.status, 200);
    let list: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["url"], "http://127.0.0.1:9/hook");
    assert!(list[0].get("secret").is_none());
    let notices: serde_json::Value = serde_json::from_str(&agent.get("/api/console/v1/notices").await.body).unwrap();
    assert!(notices.as_array().unwrap().iter().any(|n| n["event_type"] == "account.2fa_enabled"), "{notices}");

    // Deleting needs a step-up: refused without a code, done with one.
    let page = agent.get("/console/notifications").await;
    let path = format!("/console/notifications/webhooks/{id}/delete");
    let refused = agent.post(&path, &[("csrf", &page.csrf())]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(agent.get("/console/notifications").await.body.contains("http://127.0.0.1:9/hook"));
    next_totp_step(&app);
    let page = agent.get("/console/notifications").await;
    let done = agent.post(&path, &[("csrf", &page.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let after = agent.get("/console/notifications?notice=deleted").await;
    assert!(after.body.contains("Endpoint deleted"));
    assert!(!after.body.contains("http://127.0.0.1:9/hook"));
    app.shutdown().await;
}

#[tokio::test]
async fn a_wrong_code_after_the_right_password_and_a_login_from_a_new_address_are_notices() {
    let app = app().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    // Someone with the password, from the same machine (127.0.0.1): a wrong code, then the
    // owner's right one.
    let mut b = Agent::new(&app);
    let page = b.get("/console/login").await;
    b.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", PASSWORD)]).await;
    let prompt = b.get("/console/login/totp").await;
    let wrong = b.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    next_totp_step(&app);
    let prompt = b.get("/console/login/totp").await;
    let ok = b.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    app.service.ingest_events().await.unwrap();
    let notices = app.service.notices(&TestApp::operator(), "alice", 50).await.unwrap();
    let types: Vec<&str> = notices.iter().map(|n| n.event_type.as_str()).collect();
    let failed = notices
        .iter()
        .find(|n| n.event_type == "account.login_code_failed")
        .unwrap_or_else(|| panic!("no login_code_failed in {types:?}"));
    assert_eq!(failed.payload["data"]["address"], "127.0.0.1");
    assert!(failed.summary.contains("wrong 2FA code"), "{}", failed.summary);
    // 127.0.0.1 is new to the account once: its first completed login, not every login.
    assert_eq!(types.iter().filter(|t| **t == "account.login_new_address").count(), 1, "{types:?}");
    assert!(types.contains(&"account.2fa_enabled"), "{types:?}");
    app.shutdown().await;
}
