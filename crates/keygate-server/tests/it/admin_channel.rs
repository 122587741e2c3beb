//! The admin socket: operator commands reach the running server's cache at once.

use keygate_auth::{Permissions, Restrictions};
use keygate_service::admin::{AdminRequest, AdminResponse, RestrictionArgs, call};
use keygate_testkit::TestApp;
use reqwest::Method;

#[tokio::test]
async fn a_key_revoked_through_the_admin_socket_fails_its_next_request() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let client = app.hmac_client(&key);
    assert_eq!(client.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap().status, 200);
    let socket = app.data_dir.admin_socket();
    let answer = call(&socket, &AdminRequest::KeyRevoke { id: key.key.api_key.clone() }).await.unwrap();
    assert!(matches!(answer, AdminResponse::Ok(ref v) if v["status"] == "revoked"), "{answer:?}");
    let a = client.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
    assert_eq!(a.status, 401);
    app.shutdown().await;
}

#[tokio::test]
async fn admin_socket_refuses_withdraw_without_ip_allowlist_and_changes_nothing() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let socket = app.data_dir.admin_socket();
    let req = AdminRequest::KeyCreate {
        account: "alice".into(),
        label: "w".into(),
        key_type: "hmac".into(),
        public_key: None,
        permissions: "read,withdraw".into(),
        restrictions: RestrictionArgs::default(),
    };
    match call(&socket, &req).await.unwrap() {
        AdminResponse::Error { kind, message } => {
            assert_eq!(kind, "invalid");
            assert!(message.contains("IP allowlist"), "{message}");
        }
        AdminResponse::Ok(v) => panic!("created {v}"),
    }
    assert!(app.service.list_keys(&TestApp::operator(), None).await.unwrap().is_empty());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    app.shutdown().await;
}
