//! Usage counters and denial aggregates, flushed off the hot path into the store.

use keygate_auth::{Permissions, Restrictions};
use keygate_client::Signer;
use keygate_testkit::TestApp;
use reqwest::Method;

const RESTRICTIONS: &str = "/sapi/v1/account/apiRestrictions";

#[tokio::test]
async fn usage_is_counted_and_flushed_with_last_time_and_address() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let client = app.hmac_client(&key);
    for _ in 0..3 {
        assert_eq!(client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    }
    app.service.flush(true).await.unwrap();
    let view = app.service.key(&TestApp::operator(), &key.key.api_key).await.unwrap();
    assert_eq!(view.use_count, 3);
    assert_eq!(view.last_used_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(view.last_used_at, Some(keygate_testkit::START));
    app.shutdown().await;
}

#[tokio::test]
async fn denials_are_aggregated_per_key_reason_and_minute_in_the_audit_log() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let wrong = app.client(&key.key.api_key, Signer::hmac("kgs_wrong"));
    for _ in 0..3 {
        assert_eq!(wrong.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 400);
    }
    // Nothing is written for the current minute until it closes.
    app.service.flush(false).await.unwrap();
    let before = app.service.audit_log(&TestApp::operator(), 0, 100).await.unwrap();
    assert!(before.iter().all(|r| r.action != "api.denied"));
    app.clock.advance_ms(60_000);
    app.service.flush(false).await.unwrap();
    let log = app.service.audit_log(&TestApp::operator(), 0, 100).await.unwrap();
    let denied: Vec<_> = log.iter().filter(|r| r.action == "api.denied").collect();
    assert_eq!(denied.len(), 1, "{log:?}");
    assert_eq!(denied[0].target, key.key.api_key);
    assert_eq!(denied[0].details["reason"], "SIGNATURE_INVALID");
    assert_eq!(denied[0].details["count"], 3);
    assert_eq!(app.service.verify_audit_chain(&TestApp::operator()).await.unwrap(), log.len() as i64);
    app.shutdown().await;
}
