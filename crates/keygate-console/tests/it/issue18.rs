//! Issue #18 items 3, 4, 6 and 7 over HTTP: fresh codes for the changes that move money out or
//! take the account over, password strength, sign-up modes, wide IP ranges, post/redirect/get
//! with one-time create tokens and notices, and TOTP enrollment that survives a wrong code.

use crate::support::{Agent, PASSWORD, element_text, field_value, next_totp_step, totp};
use keygate_testkit::TestApp;

async fn keys_of(app: &TestApp, name: &str) -> Vec<keygate_service::KeyView> {
    app.service.list_keys(&TestApp::operator(), Some(name)).await.unwrap()
}

/// Steps `a` up through the step-up page with a fresh code.
async fn step_up(a: &mut Agent, app: &TestApp, secret: &str) {
    next_totp_step(app);
    let page = a.get("/console/step-up").await;
    let res = a
        .post("/console/step-up", &[("csrf", &page.csrf()), ("code", &totp(secret, app)), ("next", "/console/keys")])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
}

#[tokio::test]
async fn withdraw_keys_new_addresses_and_password_changes_need_a_code_in_the_same_form() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    step_up(&mut a, &app, &secret).await;

    // Inside the step-up window a trade key needs no code of its own...
    let csrf = a.keys_csrf().await;
    let trade = [("csrf", csrf.as_str()), ("label", "bot"), ("kind", "hmac"), ("perm_trade", "on")];
    let res = a.post("/console/keys", &trade).await;
    assert_eq!(res.status, 200, "{}", res.body);
    // ...but a withdraw key does: refused, the form asks for the code, nothing is created.
    let csrf = a.keys_csrf().await;
    let withdraw = [
        ("csrf", csrf.as_str()),
        ("label", "payout"),
        ("kind", "hmac"),
        ("perm_withdraw", "on"),
        ("ip_allowlist", "127.0.0.1"),
        ("withdraw_addresses", "bc1qownerownerownerownerownerownerowner00"),
    ];
    let res = a.post("/console/keys", &withdraw).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("typed with this change"), "{}", res.body);
    assert!(res.body.contains("(needed for this change)"), "the code field is marked");
    assert_eq!(keys_of(&app, "alice").await.len(), 1);
    // An address added to the trade key by an edit is refused the same way.
    let id = keys_of(&app, "alice").await[0].api_key.clone();
    let page = a.get(&format!("/console/keys/{id}")).await;
    let edit = [
        ("csrf", page.csrf()),
        ("label", "bot".into()),
        ("perm_trade", "on".into()),
        ("withdraw_addresses", "bc1qownerownerownerownerownerownerowner00".into()),
        ("status", "active".into()),
    ];
    let edit: Vec<(&str, &str)> = edit.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = a.post(&format!("/console/keys/{id}"), &edit).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(keys_of(&app, "alice").await[0].withdraw_addresses.is_empty());
    // With the code in the same form, both pass.
    next_totp_step(&app);
    let code = totp(&secret, &app);
    let mut with_code = edit.clone();
    with_code.push(("code", &code));
    let res = a.post(&format!("/console/keys/{id}"), &with_code).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let csrf = a.keys_csrf().await;
    next_totp_step(&app);
    let code = totp(&secret, &app);
    let mut with_code: Vec<(&str, &str)> = withdraw.to_vec();
    with_code[0] = ("csrf", &csrf);
    with_code.push(("code", &code));
    let res = a.post("/console/keys", &with_code).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(keys_of(&app, "alice").await.len(), 2);

    // The password page asks for the code, and the change needs it.
    let page = a.get("/console/password").await;
    assert!(page.body.contains("id=\"code\""), "{}", page.body);
    let new_pw = "violet tractor lagoon sunrise";
    let form = [
        ("csrf", page.csrf()),
        ("current", PASSWORD.into()),
        ("password", new_pw.into()),
        ("password2", new_pw.into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = a.post("/console/password", &form).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("2FA code"), "{}", res.body);
    next_totp_step(&app);
    let code = totp(&secret, &app);
    let mut with_code = form.clone();
    with_code.push(("code", &code));
    let res = a.post("/console/password", &with_code).await;
    assert!(res.status == 200 || res.status == 303, "{}: {}", res.status, res.body);
    assert!(app.service.check_password("alice", zeroize::Zeroizing::new(new_pw.into())).await.unwrap().is_some());
    let _ = (element_text, field_value);
}
