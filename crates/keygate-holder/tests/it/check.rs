//! `check`: keys made to have each problem get that finding from a real keygate.

use keygate_auth::{IpAllowlist, Permission, Permissions, Restrictions};
use keygate_holder::check::{self, Context, Severity};
use keygate_holder::vault::Purpose;
use keygate_testkit::{START, TestApp};

fn cx(app: &TestApp, purpose: Option<Purpose>) -> Context {
    Context {
        now_ms: keygate_service::Clock::now(&*app.clock).as_millis().0,
        purpose,
        hmac: true,
        ed25519_offered: false,
        expiry_warn_days: 14,
        max_age_days: 90,
        usage_reported: false,
        unused_days: 30,
    }
}

fn codes(r: &check::Report) -> Vec<(&'static str, Severity)> {
    r.findings.iter().map(|f| (f.code, f.severity)).collect()
}

fn local() -> IpAllowlist {
    IpAllowlist::parse(&["127.0.0.0/8"]).unwrap()
}

async fn run(app: &TestApp, key: &keygate_service::CreatedKey, purpose: Option<Purpose>) -> check::Report {
    let client = app.hmac_client(key);
    check::check(&client, "k", &app.base_url, true, cx(app, purpose)).await.unwrap()
}

#[tokio::test]
async fn each_risky_key_gets_its_finding_and_a_refused_key_is_critical() {
    let app = TestApp::spawn().await;
    app.account("owner").await;
    // Read-only, IP-restricted: only the HMAC advice (keygate offers Ed25519).
    let good = app
        .hmac_key("owner", Permissions::default(), Restrictions { ip_allowlist: local(), ..Restrictions::default() })
        .await;
    let r = run(&app, &good, Some(Purpose::Read)).await;
    assert_eq!(codes(&r), vec![("never-used", Severity::Medium), ("hmac-where-ed25519-offered", Severity::Low)]);
    assert!(r.restrictions.as_ref().unwrap().ip_restrict);
    assert_eq!(r.restrictions.as_ref().unwrap().create_time, Some(START.0));
    assert_eq!(r.account.as_ref().unwrap().account_type, "SPOT");
    // That check used the key: once its use is written, it is no longer "never used".
    app.service.flush(true).await.unwrap();
    let r = run(&app, &good, Some(Purpose::Read)).await;
    assert_eq!(codes(&r), vec![("hmac-where-ed25519-offered", Severity::Low)]);
    assert_eq!(r.restrictions.as_ref().unwrap().last_used_time, Some(START.0));

    // A trade permission on a key used only for reading, from anywhere.
    let wide = app.hmac_key("owner", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
    let r = run(&app, &wide, Some(Purpose::Read)).await;
    assert_eq!(
        codes(&r),
        vec![
            ("no-ip-restriction", Severity::High),
            ("permission-beyond-purpose", Severity::High),
            ("never-used", Severity::Medium),
            ("hmac-where-ed25519-offered", Severity::Low)
        ]
    );

    // Withdrawals enabled (keygate requires an IP allowlist for them).
    let w = Restrictions { ip_allowlist: local(), withdraw_addresses: vec!["bc1qx".into()], ..Restrictions::default() };
    let withdraw = app.hmac_key("owner", Permissions::with(&[Permission::Withdraw]), w).await;
    let r = run(&app, &withdraw, Some(Purpose::Trade)).await;
    assert!(r.findings.iter().any(|f| (f.code, f.severity) == ("withdraw-enabled", Severity::High)), "{r:?}");
    assert_eq!(r.worst(), Some(Severity::High));
    assert!(r.findings.iter().any(|f| f.code == "permission-beyond-purpose"));

    // Expiring in three days.
    let e = Restrictions {
        ip_allowlist: local(),
        expires_at: Some(START.plus_millis(3 * 86_400_000)),
        ..Restrictions::default()
    };
    let expiring = app.hmac_key("owner", Permissions::default(), e).await;
    let r = run(&app, &expiring, None).await;
    assert_eq!(r.findings[0].code, "expires-soon");
    assert!(r.findings[0].message.contains("3 day"), "{r:?}");

    // Old: the clock moves 100 days; a key from the start is past 90 days.
    let old = app
        .hmac_key("owner", Permissions::default(), Restrictions { ip_allowlist: local(), ..Restrictions::default() })
        .await;
    app.clock.advance_ms(100 * 86_400_000);
    let r = run(&app, &old, None).await;
    assert!(r.findings.iter().any(|f| f.code == "old-key" && f.message.contains("100 days")), "{r:?}");
    assert!(r.findings.iter().any(|f| f.code == "never-used"), "{r:?}");
    // Long unused: `good` was last used at the start, 100 days ago (more than 30).
    let r = run(&app, &good, None).await;
    assert!(
        r.findings
            .iter()
            .any(|f| (f.code, f.severity) == ("long-unused", Severity::Medium) && f.message.contains("100 days")),
        "{r:?}"
    );

    // Revoked: the exchange refuses it, a critical finding rather than an error.
    app.service.revoke_key(&TestApp::operator(), &old.key.api_key).await.unwrap();
    let r = run(&app, &old, None).await;
    assert_eq!(codes(&r), vec![("key-refused", Severity::Critical)]);
    assert!(r.findings[0].message.contains("-2015"), "{r:?}");
    app.shutdown().await;
}
