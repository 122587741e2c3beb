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
