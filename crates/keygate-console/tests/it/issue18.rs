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
}

#[tokio::test]
async fn sign_up_refuses_an_easy_password_with_advice_and_can_be_closed() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    let page = a.get("/console/signup").await;
    assert!(page.body.contains("id=\"password\""), "the form is there when sign-up is open");
    let csrf = page.csrf();
    let weak = "password1234";
    let res =
        a.post("/console/signup", &[("csrf", &csrf), ("name", "alice"), ("password", weak), ("password2", weak)]).await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("too easy to guess"), "{}", res.body);
    assert!(res.body.contains("common password"), "zxcvbn's feedback is shown: {}", res.body);
    assert!(app.service.account(&TestApp::operator(), "alice").await.is_err(), "no account was made");
    // The JSON API says the same, as 422 invalid.
    let session = a.get("/api/console/v1/session").await;
    let token: serde_json::Value = serde_json::from_str(&session.body).unwrap();
    let res = a
        .post_json(
            "/api/console/v1/signup",
            token["csrf_token"].as_str(),
            serde_json::json!({"name": "alice", "password": "qwertyuiop123"}),
        )
        .await;
    assert_eq!(res.status, 422, "{}", res.body);

    // Closed: the page says who makes accounts, the login page offers no sign-up, and a posted
    // form is refused.
    let closed = TestApp::spawn_configured(|s| s.sign_up = keygate_service::SignUpMode::Closed, |_| {}).await;
    let mut b = Agent::new(&closed);
    let page = b.get("/console/signup").await;
    assert!(page.body.contains("id=\"signup-closed\"") && !page.body.contains("id=\"password\""), "{}", page.body);
    // No form on the page: post one anyway, with the pre-session token a form would carry.
    let csrf = b.cookies["kg_pre"].clone();
    let res = b
        .post("/console/signup", &[("csrf", &csrf), ("name", "bob"), ("password", PASSWORD), ("password2", PASSWORD)])
        .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(closed.service.account(&TestApp::operator(), "bob").await.is_err());
    assert!(!b.get("/console/login").await.body.contains("href=\"/console/signup\""));
}

#[tokio::test]
async fn a_wide_ip_range_on_a_trade_key_needs_the_confirmation_box_and_is_flagged() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    step_up(&mut a, &app, &secret).await;
    let csrf = a.keys_csrf().await;
    let form = [
        ("csrf", csrf.as_str()),
        ("label", "bot"),
        ("kind", "hmac"),
        ("perm_trade", "on"),
        ("ip_allowlist", "10.0.0.0/8"),
    ];
    let res = a.post("/console/keys", &form).await;
    assert_eq!(res.status, 422, "{}", res.body);
    assert!(res.body.contains("10.0.0.0/8") && res.body.contains("confirmation"), "{}", res.body);
    assert!(keys_of(&app, "alice").await.is_empty());
    let mut confirmed = form.to_vec();
    confirmed.push(("confirm_wide_ip", "on"));
    let res = a.post("/console/keys", &confirmed).await;
    assert_eq!(res.status, 200, "{}", res.body);
    let list = a.get("/console/keys").await;
    assert!(list.body.contains("wide IP range"), "the keys page flags it");
}

#[tokio::test]
async fn refreshing_the_answer_of_the_create_form_makes_no_second_key() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let page = a.get("/console/keys").await;
    let token = field_value(&page.body, "form_token").expect("a one-time token on the create form");
    assert_eq!(token.len(), 64);
    let csrf = page.csrf();
    let form = [("csrf", csrf.as_str()), ("form_token", token.as_str()), ("label", "tracker"), ("kind", "hmac")];
    let first = a.post("/console/keys", &form).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let key = element_text(&first.body, "api-key").unwrap();
    // The browser's "resubmit the form?" after a refresh posts the same fields again.
    let again = a.post("/console/keys", &form).await;
    assert_eq!(again.status, 303, "{}", again.body);
    let location = again.location.unwrap();
    assert!(location.starts_with("/console/keys?notice=already-created"), "{location}");
    assert_eq!(keys_of(&app, "alice").await.len(), 1, "no second key");
    let page = a.get(&location).await;
    let notice = element_text(&page.body, "notice").unwrap();
    assert!(notice.contains("already sent") && notice.contains(&key[..12]), "{notice}");
    assert!(!page.body.contains("kgs_"), "the secret is never shown again");
    // A new page load brings a new token, and a new key.
    let page = a.get("/console/keys").await;
    let token2 = field_value(&page.body, "form_token").unwrap();
    assert_ne!(token, token2);
    let csrf = page.csrf();
    let res = a
        .post("/console/keys", &[("csrf", &csrf), ("form_token", &token2), ("label", "second"), ("kind", "hmac")])
        .await;
    assert_eq!(res.status, 200);
    assert_eq!(keys_of(&app, "alice").await.len(), 2);
    // A create that stepped up with a code renewed the session and its CSRF token, so the
    // browser's re-send carries the old one: it is still told the key exists, not "expired".
    let stale = [("csrf", "a-stale-token"), ("form_token", token2.as_str()), ("label", "second"), ("kind", "hmac")];
    let res = a.post("/console/keys", &stale).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert!(res.location.unwrap().starts_with("/console/keys?notice=already-created"));
    assert_eq!(keys_of(&app, "alice").await.len(), 2, "no third key");
    // Without a token that made a key, a stale CSRF token is refused as before.
    let fresh = "f".repeat(64);
    let res = a
        .post("/console/keys", &[("csrf", "a-stale-token"), ("form_token", &fresh), ("label", "x"), ("kind", "hmac")])
        .await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert_eq!(keys_of(&app, "alice").await.len(), 2);
}

#[tokio::test]
async fn revoke_revoke_all_faucet_and_logout_redirect_to_a_page_that_says_what_happened() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let secret = a.enroll_totp(&app).await;
    for label in ["one", "two", "three"] {
        let csrf = a.keys_csrf().await;
        let res = a.post("/console/keys", &[("csrf", &csrf), ("label", label), ("kind", "hmac")]).await;
        assert_eq!(res.status, 200, "{}", res.body);
    }
    let id = keys_of(&app, "alice").await.into_iter().find(|k| k.label == "one").unwrap().api_key;
    // A made-up link claims nothing that is not true: not a live key revoked, not keys revoked
    // while some are live.
    for forged in [format!("/console/keys?notice=revoked&key={id}"), "/console/keys?notice=revoked-all&n=999".into()] {
        assert!(element_text(&a.get(&forged).await.body, "notice").is_none(), "{forged}");
    }

    let page = a.get(&format!("/console/keys/{id}/revoke")).await;
    let res = a.post(&format!("/console/keys/{id}/revoke"), &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, 303);
    let page = a.get(res.location.as_deref().unwrap()).await;
    let notice = element_text(&page.body, "notice").unwrap();
    assert!(notice.contains("“one”") && notice.contains("revoked") && notice.contains("-2015"), "{notice}");

    next_totp_step(&app);
    let page = a.get("/console/keys/revoke-all").await;
    let code = totp(&secret, &app);
    let res =
        a.post("/console/keys/revoke-all", &[("csrf", &page.csrf()), ("confirm", "REVOKE ALL"), ("code", &code)]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let page = a.get(res.location.as_deref().unwrap()).await;
    let notice = element_text(&page.body, "notice").unwrap();
    assert!(notice.starts_with("None of your keys is live any more"), "{notice}");

    let page = a.get("/console/wallet").await;
    let res = a.post("/console/wallet/faucet", &[("csrf", &page.csrf()), ("asset", "BTC")]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let page = a.get(res.location.as_deref().unwrap()).await;
    let notice = element_text(&page.body, "notice").unwrap();
    assert!(notice.starts_with("The faucet sent 1.00000000 BTC to your wallet"), "{notice}");
    // A made-up deposit id names nothing.
    assert!(element_text(&a.get("/console/wallet?notice=faucet&key=999").await.body, "notice").is_none());

    let page = a.get("/console/keys").await;
    let res = a.post("/console/logout", &[("csrf", &page.csrf())]).await;
    assert_eq!(res.status, 303);
    let page = a.get(res.location.as_deref().unwrap()).await;
    assert_eq!(
        element_text(&page.body, "notice").as_deref(),
        Some("You are logged out. Log in again to manage your keys.")
    );
}

#[tokio::test]
async fn a_wrong_enrollment_code_shows_the_same_secret_again_and_recovery_codes_download() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let page = a.get("/console/2fa").await;
    let res = a.post("/console/2fa/enroll", &[("csrf", &page.csrf())]).await;
    assert_eq!((res.status, res.location.as_deref()), (303, Some("/console/2fa/enroll")));
    let enroll = a.get("/console/2fa/enroll").await;
    let secret = element_text(&enroll.body, "totp-secret").unwrap();
    let wrong = a.post("/console/2fa/confirm", &[("csrf", &enroll.csrf()), ("code", "000000")]).await;
    assert_eq!(wrong.status, 403, "{}", wrong.body);
    assert_eq!(
        element_text(&wrong.body, "totp-secret").as_deref(),
        Some(secret.as_str()),
        "the same secret, no re-scan"
    );
    assert!(element_text(&wrong.body, "enroll-error").unwrap().contains("the QR code stays the same"));
    // A reload shows it too (read back from the store).
    assert_eq!(element_text(&a.get("/console/2fa/enroll").await.body, "totp-secret").as_deref(), Some(secret.as_str()));
    let done = a.post("/console/2fa/confirm", &[("csrf", &wrong.csrf()), ("code", &totp(&secret, &app))]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    let codes = element_text(&done.body, "recovery-codes").unwrap();
    assert_eq!(codes.lines().count(), 10);
    assert!(!codes.contains(['i', 'l', 'o', 'u']), "{codes}");
    // The download link holds the same codes as a text file.
    let at = done.body.find("id=\"download-recovery-codes\"").expect("a download link");
    let link = &done.body[at..];
    assert!(link.contains("download=\"keygate-recovery-codes.txt\""));
    let href = &link[link.find("href=\"").unwrap() + 6..];
    let href = &href[..href.find('"').unwrap()];
    let text = percent_decode(href.strip_prefix("data:text/plain;charset=utf-8,").unwrap());
    for c in codes.lines() {
        assert!(text.contains(c.trim()), "{c} in {text}");
    }
    // Once on, the enrollment page has nothing to show.
    assert_eq!(a.get("/console/2fa/enroll").await.status, 303);
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A form's fields as `Agent::post` takes them.
fn fields(f: &[(String, String)]) -> Vec<(&str, &str)> {
    f.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `serve --signup invite`: the sign-up form asks for the invite code; a sign-up without one, or
/// with a used or expired one, is refused in words for a person and creates nothing; a live code
/// creates one account and is spent. The JSON API answers the same.
#[tokio::test]
async fn sign_up_by_invitation_asks_for_a_code_and_accepts_each_live_code_once() {
    let app = TestApp::spawn_configured(|s| s.sign_up = keygate_service::SignUpMode::Invite, |_| {}).await;
    let op = TestApp::operator();
    let mut a = Agent::new(&app);
    assert!(a.get("/console/login").await.body.contains("href=\"/console/signup\""), "sign-up is offered");
    let page = a.get("/console/signup").await;
    assert!(page.body.contains("id=\"invite\"") && page.body.contains("id=\"password\""), "{}", page.body);
    let form = |csrf: &str, name: &str, invite: Option<&str>| {
        let mut f = vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("name".to_owned(), name.to_owned()),
            ("password".to_owned(), PASSWORD.to_owned()),
            ("password2".to_owned(), PASSWORD.to_owned()),
        ];
        if let Some(code) = invite {
            f.push(("invite".to_owned(), code.to_owned()));
        }
        f
    };

    // Without a code.
    let res = a.post("/console/signup", &fields(&form(&page.csrf(), "carol", None))).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("by invitation only: enter the invite code"), "{}", res.body);
    assert!(res.body.contains("id=\"invite\""), "the form comes back: {}", res.body);
    assert!(app.service.account(&op, "carol").await.is_err());

    // With a live code: the account is made, logged in, and the code is spent.
    let invite = app.service.create_invite(&op, "for carol", 3_600_000).await.unwrap();
    let code = invite.code().to_owned();
    let page = a.get("/console/signup").await;
    let res = a.post("/console/signup", &fields(&form(&page.csrf(), "carol", Some(&code)))).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/2fa"));
    let listed = app.service.list_invites(&op).await.unwrap();
    assert_eq!((listed[0].status, listed[0].used_by.as_deref()), ("used", Some("carol")));
    let activity = a.get("/console/audit").await;
    assert!(activity.body.contains("Invite code used to create the account"), "{}", activity.body);

    // The same code again, by someone else: refused, and what was typed is kept.
    let mut b = Agent::new(&app);
    let page = b.get("/console/signup").await;
    let res = b.post("/console/signup", &fields(&form(&page.csrf(), "dave", Some(&code)))).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(
        res.body.contains("This invite code has already been used: ask the operator for a new one."),
        "{}",
        res.body
    );
    assert_eq!(field_value(&res.body, "name").as_deref(), Some("dave"));
    assert_eq!(field_value(&res.body, "invite").as_deref(), Some(code.as_str()));

    // An expired code.
    let short = app.service.create_invite(&op, "", 60_000).await.unwrap();
    app.clock.advance_ms(60_000);
    let page = b.get("/console/signup").await;
    let res = b.post("/console/signup", &fields(&form(&page.csrf(), "dave", Some(short.code())))).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("This invite code has expired"), "{}", res.body);
    assert!(app.service.account(&op, "dave").await.is_err(), "no refused code made an account");

    // The JSON API: without a code, with a live one, with the spent one.
    let session = b.get("/api/console/v1/session").await;
    let token: serde_json::Value = serde_json::from_str(&session.body).unwrap();
    let csrf = token["csrf_token"].as_str();
    let res =
        b.post_json("/api/console/v1/signup", csrf, serde_json::json!({"name": "dave", "password": PASSWORD})).await;
    assert_eq!(res.status, 403, "{}", res.body);
    let body: serde_json::Value = serde_json::from_str(&res.body).unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    assert!(body["message"].as_str().unwrap().contains("invitation only"), "{body}");
    let fresh = app.service.create_invite(&op, "for dave", 3_600_000).await.unwrap();
    let body = serde_json::json!({"name": "dave", "password": PASSWORD, "invite": fresh.code()});
    let res = b.post_json("/api/console/v1/signup", csrf, body.clone()).await;
    assert_eq!(res.status, 201, "{}", res.body);
    let mut c = Agent::new(&app);
    let session = c.get("/api/console/v1/session").await;
    let token: serde_json::Value = serde_json::from_str(&session.body).unwrap();
    let again = serde_json::json!({"name": "erin", "password": PASSWORD, "invite": fresh.code()});
    let res = c.post_json("/api/console/v1/signup", token["csrf_token"].as_str(), again).await;
    assert_eq!(res.status, 403, "{}", res.body);
    assert!(res.body.contains("already been used"), "{}", res.body);
    assert!(app.service.account(&op, "erin").await.is_err());
}

/// Logs `a` in through the pages with the password; returns the code page's CSRF token.
async fn password_login(a: &mut Agent, name: &str) -> String {
    let page = a.get("/console/login").await;
    let res = a.post("/console/login", &[("csrf", &page.csrf()), ("name", name), ("password", PASSWORD)]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/login/totp"));
    a.get("/console/login/totp").await.csrf()
}

/// Issue #18, finding 1, the residual an outside review found: whoever has the password can
/// spend the account-wide ceiling on wrong login codes from enough addresses, and then no new
/// login is heard until the window passes, again and again. The browser that finished a login
/// before carries a known-device cookie, and its codes count on their own counter: the owner
/// still gets in while a browser the account has never seen is held to the ceiling.
#[tokio::test]
async fn the_owners_known_browser_logs_in_while_someone_with_the_password_spends_the_code_ceiling() {
    let app = TestApp::spawn_configured(
        // A ceiling of 3 stands for 50 spread over many addresses (every request here comes from
        // 127.0.0.1, so the per-address limit is raised out of the way).
        |s| {
            s.throttle.totp_login_per_account = 3;
            s.throttle.totp_login_per_ip = 1_000;
        },
        |_| {},
    )
    .await;
    let mut owner = Agent::new(&app);
    owner.sign_up("alice", PASSWORD).await;
    let secret = owner.enroll_totp(&app).await;
    let page = owner.get("/console/keys").await;
    owner.post("/console/logout", &[("csrf", &page.csrf())]).await;

    // A finished login gives the browser a long-lived, HttpOnly known-device cookie, which
    // logging out keeps.
    next_totp_step(&app);
    let csrf = password_login(&mut owner, "alice").await;
    let res = owner.post("/console/login/totp", &[("csrf", &csrf), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 303, "{}", res.body);
    let device = res.set_cookies.iter().find(|c| c.starts_with("kg_device=")).expect("a known-device cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=7776000"] {
        assert!(device.contains(flag), "{flag} missing: {device}");
    }
    let page = owner.get("/console/keys").await;
    let res = owner.post("/console/logout", &[("csrf", &page.csrf())]).await;
    assert!(res.set_cookies.iter().all(|c| !c.starts_with("kg_device=")), "logout keeps the device cookie");
    assert!(owner.cookies.contains_key("kg_device"));

    // Someone with the password spends the account's ceiling with wrong codes.
    let mut attacker = Agent::new(&app);
    let csrf = password_login(&mut attacker, "alice").await;
    for wrong in ["000001", "000002", "000003"] {
        let res = attacker.post("/console/login/totp", &[("csrf", &csrf), ("code", wrong)]).await;
        assert_eq!(res.status, 403, "{}", res.body);
        assert!(res.body.contains("Wrong 2FA code."), "{}", res.body);
    }
    // A new browser is now refused even with the right code, and told to wait ...
    next_totp_step(&app);
    let mut stranger = Agent::new(&app);
    let csrf = password_login(&mut stranger, "alice").await;
    let res = stranger.post("/console/login/totp", &[("csrf", &csrf), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 429, "{}", res.body);
    // ... and so is one carrying a forged device cookie ...
    let mut forger = Agent::new(&app);
    let mut forged = owner.cookies["kg_device"].clone();
    forged.replace_range(20..22, if &forged[20..22] == "00" { "11" } else { "00" });
    forger.cookies.insert("kg_device".into(), forged);
    let csrf = password_login(&mut forger, "alice").await;
    let res = forger.post("/console/login/totp", &[("csrf", &csrf), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 429, "{}", res.body);
    // ... while the owner's browser logs in at once.
    let csrf = password_login(&mut owner, "alice").await;
    let res = owner.post("/console/login/totp", &[("csrf", &csrf), ("code", &totp(&secret, &app))]).await;
    assert_eq!(res.status, 303, "the owner's known browser was locked out: {}", res.body);
    assert_eq!(res.location.as_deref(), Some("/console/keys"));
    assert_eq!(owner.get("/console/keys").await.status, 200);
}

/// The outside review's nits: the step-up page of an account without 2FA asked for a code there
/// is no app to read from, and a backwards date range on the activity page answered an empty
/// list without a word.
#[tokio::test]
async fn step_up_without_2fa_says_to_turn_it_on_and_a_backwards_date_range_is_said() {
    let app = TestApp::spawn().await;
    let mut a = Agent::new(&app);
    a.sign_up("alice", PASSWORD).await;
    let page = a.get("/console/step-up?next=/console/keys").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Turn on 2FA"), "{}", page.body);
    assert!(!page.body.contains("name=\"code\""), "no code field without 2FA: {}", page.body);

    let page = a.get("/console/audit?from=2026-03-02&to=2026-03-01").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.body.contains("The range runs backwards"), "{}", page.body);
}
