//! Issue #17, item 1, as an owner meets it in the console: the policies that apply, what a
//! policy will do to each key and when, the re-confirmation a password change asks for, and the
//! reason on a key a policy disabled.

use crate::support::{Agent, PASSWORD, next_totp_step, totp};
use keygate_service::policy::DAY_MS;
use keygate_testkit::TestApp;

#[tokio::test]
async fn owners_see_policies_reconfirm_after_a_password_change_and_read_why_a_key_was_disabled() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    next_totp_step(&app);
    let page = a.get("/console/step-up").await;
    let res = a
        .post("/console/step-up", &[("csrf", &page.csrf()), ("code", &totp(&secret, &app)), ("next", "/console/keys")])
        .await;
    assert_eq!(res.status, 303, "{}", res.body);
    let csrf = a.keys_csrf().await;
    let trade = [
        ("csrf", csrf.as_str()),
        ("label", "bot"),
        ("kind", "hmac"),
        ("perm_trade", "on"),
        ("ip_allowlist", "203.0.113.7"),
    ];
    assert_eq!(a.post("/console/keys", &trade).await.status, 200);

    // The policies, and what each does to this key next.
    let keys = a.get("/console/keys").await;
    assert!(keys.body.contains("A key not used for 90 days is disabled"), "{}", keys.body);
    assert!(keys.body.contains("disabled if not used by"), "{}", keys.body);
    assert!(!keys.body.contains("id=\"reconfirm\""), "nothing to re-confirm yet");
    // The owner tightens a policy from the page; loosening past the deployment is refused.
    let res = a.post("/console/key-policy", &[("csrf", &keys.csrf()), ("unused_days", "60")]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let keys = a.get("/console/keys?notice=policy").await;
    assert!(keys.body.contains("Your key policies are saved"), "{}", keys.body);
    assert!(keys.body.contains("A key not used for 60 days is disabled"), "{}", keys.body);
    let res = a.post("/console/key-policy", &[("csrf", &keys.csrf()), ("unused_days", "120")]).await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("would loosen"), "{}", res.body);
    // Back to the deployment's 90 days: relaxing her own tightening, inside her step-up window.
    let res = a.post("/console/key-policy", &[("csrf", &keys.csrf()), ("unused_days", "")]).await;
    assert_eq!(res.status, 303, "{}", res.body);

    // A password change asks to re-confirm the trade key, on the keys page.
    next_totp_step(&app);
    let page = a.get("/console/password").await;
    let new = "an entirely new passphrase";
    let form = [
        ("csrf", page.csrf()),
        ("current", PASSWORD.into()),
        ("password", new.into()),
        ("password2", new.into()),
        ("code", totp(&secret, &app)),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = a.post("/console/password", &form).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let keys = a.get("/console/keys").await;
    assert!(keys.body.contains("id=\"reconfirm\""), "{}", keys.body);
    assert!(keys.body.contains("Re-confirm your trade and withdraw keys by"), "{}", keys.body);
    // Re-confirming with a code: the banner goes, the page says what happened.
    next_totp_step(&app);
    let res = a.post("/console/keys/reconfirm", &[("csrf", &keys.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/keys?notice=reconfirmed"));
    let keys = a.get("/console/keys?notice=reconfirmed").await;
    assert!(keys.body.contains("Your trade and withdraw keys are re-confirmed"), "{}", keys.body);
    assert!(!keys.body.contains("id=\"reconfirm\""), "{}", keys.body);

    // 91 idle days later the sweeper disables the key, and the row says why.
    app.clock.advance_ms(91 * DAY_MS);
    let r = app.service.sweep_key_policies().await.unwrap();
    assert_eq!(r.disabled, 1, "{r:?}");
    let page = a.get("/console/login").await;
    let res = a.post("/console/login", &[("csrf", &page.csrf()), ("name", "alice"), ("password", new)]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    next_totp_step(&app);
    let prompt = a.get("/console/login/totp").await;
    let res = a.post("/console/login/totp", &[("csrf", &prompt.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let keys = a.get("/console/keys").await;
    assert!(keys.body.contains("disabled by the key policy: unused too long"), "{}", keys.body);
}
