//! Issue #18 items 5, 8, 9 and 10 as a person sees them, in headless Chromium at 1280 px and
//! 375 px, with the browser in India's time zone (UTC+05:30): the key list fits without a
//! horizontal scroll, revoked keys wait behind a toggle and the search works; activity reads as
//! sentences in local time with details on demand and filters; the wallet's cards label every
//! value and long addresses wrap; the faucet says what it sent and hides at its limit; the
//! expiry field means UTC; a form sent after the session ended comes back after the login;
//! focus is visible. Every page is saved as a screenshot at both widths.

use crate::browser::{
    browser, click, fill, overflows, path, shot, start_driver_in, text, unlabelled_controls, wait_for_path,
    wait_for_text,
};
use crate::support::{PASSWORD, next_totp_step, totp};
use fantoccini::{Client, Locator};
use keygate_auth::{IpAllowlist, Permissions, Restrictions};
use keygate_client::Signer;
use keygate_service::KeyEdit;
use keygate_testkit::TestApp;

const ADDRESS: &str = "bc1qlongwithdrawaladdresslongwithdrawaladdresslongwithdrawal0000";
const WIDTHS: [(u32, u32); 2] = [(1280, 900), (375, 812)];

type Res = Result<(), String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn run(c: &Client, script: &str) -> serde_json::Value {
    c.execute(script, vec![]).await.unwrap_or_else(|e| panic!("{script}: {e}"))
}

async fn set_width(c: &Client, (w, h): (u32, u32)) -> Res {
    c.set_window_size(w, h).await.map_err(err)?;
    let inner = run(c, "return window.innerWidth;").await;
    assert_eq!(inner.as_u64(), Some(u64::from(w)), "the viewport is {w} px wide");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_read_as_sentences_in_local_time_and_keep_forms_in_a_real_browser() {
    let Some((driver, chromium)) = start_driver_in(Some("Asia/Kolkata")).await else { return };
    let app = std::sync::Arc::new(TestApp::spawn_with(|c| c.faucet_per_day = 1).await);
    let c = browser(&driver, &chromium).await;
    let (c2, app2) = (c.clone(), std::sync::Arc::clone(&app));
    let outcome = tokio::spawn(async move { journey(&c2, &app2).await }).await;
    let _ = c.close().await;
    match outcome {
        Ok(result) => result.unwrap(),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Checks the key list at the current width: no horizontal scroll, every row's risks and
/// actions inside the window, each key prefix on one line.
async fn keys_fit(c: &Client, width: u32) {
    assert!(!overflows(c).await, "the key list scrolls sideways at {width} px");
    let script = "return Array.from(document.querySelectorAll('#live-keys tbody tr')).map(tr => {\
        const r = s => { const e = tr.querySelector(s); if (!e) return null; const b = e.getBoundingClientRect(); \
          return {left: b.left, right: b.right, w: b.width, lines: e.getClientRects().length, h: b.height}; };\
        return {risks: r('td[data-label=Risks]'), edit: r('td.actions a'), revoke: r('td.actions a.danger-link'), \
          prefix: r('code.key-prefix'), lineHeight: parseFloat(getComputedStyle(tr.querySelector('code.key-prefix')).lineHeight) || 20}; });";
    let rows = run(c, script).await;
    let rows = rows.as_array().expect("rows");
    assert!(rows.len() >= 3, "{rows:?}");
    for row in rows {
        for part in ["risks", "edit", "revoke", "prefix"] {
            let b = &row[part];
            let right = b["right"].as_f64().unwrap_or(f64::MAX);
            assert!(
                b["w"].as_f64().unwrap_or(0.0) > 0.0 && right <= f64::from(width),
                "{part} off screen at {width}: {row}"
            );
        }
        let prefix_height = row["prefix"]["h"].as_f64().unwrap();
        let line = row["lineHeight"].as_f64().unwrap();
        assert!(prefix_height < line * 1.5, "the key prefix wraps at {width} px: {row}");
    }
}

async fn journey(c: &Client, app: &TestApp) -> Res {
    let base = &app.base_url;
    // The pages before login, at both widths.
    for size in WIDTHS {
        set_width(c, size).await?;
        for (name, page) in [("login", "/console/login"), ("signup", "/console/signup")] {
            c.goto(&format!("{base}{page}")).await.map_err(err)?;
            assert!(!overflows(c).await, "{page} scrolls sideways at {} px", size.0);
            shot(c, &format!("page-{name}-{}", size.0)).await;
        }
    }
    set_width(c, WIDTHS[0]).await?;

    // Focus is visible: the first Tab lands on the skip link, outlined.
    c.goto(&format!("{base}/console/login")).await.map_err(err)?;
    c.find(Locator::Css("body")).await.map_err(err)?.send_keys("\u{E004}").await.map_err(err)?;
    let focus = run(
        c,
        "const e = document.activeElement, s = getComputedStyle(e); \
         return {tag: e.tagName, text: e.textContent, style: s.outlineStyle, width: parseFloat(s.outlineWidth), left: e.getBoundingClientRect().left};",
    )
    .await;
    assert_eq!(focus["text"], "Skip to the page", "{focus}");
    assert!(focus["style"] != "none" && focus["width"].as_f64().unwrap_or(0.0) >= 2.0, "{focus}");
    assert!(focus["left"].as_f64().unwrap_or(-1.0) >= 0.0, "the focused skip link is on screen: {focus}");

    // Sign up and enroll 2FA.
    c.goto(&format!("{base}/console/signup")).await.map_err(err)?;
    fill(c, "#name", "dana").await;
    fill(c, "#password", PASSWORD).await;
    fill(c, "#password2", PASSWORD).await;
    click(c, "form button[type=submit]").await;
    wait_for_path(c, "/console/2fa").await;
    click(c, "form[action='/console/2fa/enroll'] button").await;
    let secret = text(c, "#totp-secret").await;
    fill(c, "#code", &totp(&secret, app)).await;
    click(c, "form[action='/console/2fa/confirm'] button").await;
    text(c, "#recovery-codes").await;

    // A trade key "bot", made in the form with a code.
    c.goto(&format!("{base}/console/keys")).await.map_err(err)?;
    next_totp_step(app);
    fill(c, "#create-key #label", "bot").await;
    click(c, "#perm_trade").await;
    fill(c, "#create-key #code", &totp(&secret, app)).await;
    click(c, "#create-key button[type=submit]").await;
    let bot = text(c, "#api-key").await;
    let bot_secret = text(c, "#api-secret").await;
    for size in WIDTHS {
        set_width(c, size).await?;
        assert!(!overflows(c).await, "the new key's page scrolls sideways at {} px", size.0);
        shot(c, &format!("page-key-created-{}", size.0)).await;
    }
    set_width(c, WIDTHS[0]).await?;

    // The expiry field is read as UTC, and says so: whatever the browser's zone (here +05:30).
    c.goto(&format!("{base}/console/keys")).await.map_err(err)?;
    assert!(text(c, "#expires-hint").await.contains("read as UTC"));
    assert!(text(c, "#now-utc").await.ends_with("UTC"));
    fill(c, "#create-key #label", "expiring").await;
    run(c, "document.getElementById('expires').value = '2030-01-02T03:04'; return null;").await;
    click(c, "#create-key button[type=submit]").await;
    let expiring = text(c, "#api-key").await;
    let k = app.service.key(&TestApp::operator(), &expiring).await.map_err(err)?;
    assert_eq!(k.expires_at.map(|t| t.0), Some(1_893_553_440_000), "2030-01-02 03:04 UTC, not local time");

    // More keys for the list: a long label with restrictions, and a revoked one.
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["203.0.113.0/24", "198.51.100.0/24", "2001:db8::/48"]).map_err(err)?,
        symbols: vec![keygate_proto::Symbol::parse("BTCUSDT").map_err(err)?],
        ..Restrictions::default()
    };
    for (label, restrictions) in
        [("market maker for the long-weekend arbitrage strategy", r), ("old", Restrictions::default())]
    {
        let k = app.hmac_key("dana", Permissions::READ_ONLY, restrictions).await;
        let edit = KeyEdit { label: Some(label.into()), ..KeyEdit::default() };
        app.service.edit_key(&TestApp::operator(), &k.key.api_key, edit).await.map_err(err)?;
        if label == "old" {
            app.service.revoke_key(&TestApp::operator(), &k.key.api_key).await.map_err(err)?;
        }
    }

    // Widen "bot" to withdraw, with a code, from this browser (127.0.0.1).
    c.goto(&format!("{base}/console/keys/{bot}")).await.map_err(err)?;
    click(c, "#perm_withdraw").await;
    fill(c, "#ip_allowlist", "127.0.0.1").await;
    fill(c, "#withdraw_addresses", ADDRESS).await;
    next_totp_step(app);
    fill(c, "#code", &totp(&secret, app)).await;
    click(c, "#edit-key button[type=submit]").await;
    wait_for_text(c, "main", "Changes saved.", true).await;

    // The key list at both widths.
    for size in WIDTHS {
        set_width(c, size).await?;
        c.goto(&format!("{base}/console/keys")).await.map_err(err)?;
        keys_fit(c, size.0).await;
        let summary = c.find(Locator::Css("#revoked-keys summary")).await.map_err(err)?;
        assert_eq!(summary.text().await.map_err(err)?, "Show revoked (1)");
        let revoked = c.find(Locator::Css("#revoked-keys-table")).await.map_err(err)?;
        assert!(!revoked.is_displayed().await.map_err(err)?, "revoked keys wait behind the toggle");
        shot(c, &format!("page-keys-{}", size.0)).await;
        summary.click().await.map_err(err)?;
        assert!(revoked.is_displayed().await.map_err(err)?, "the toggle shows them");
        assert!(!overflows(c).await, "the revoked keys scroll sideways at {} px", size.0);
    }
    // Search by label, through the form.
    set_width(c, WIDTHS[0]).await?;
    fill(c, "#q", "BOT").await;
    click(c, "#key-search button[type=submit]").await;
    wait_for_text(c, "main", "with “BOT” in the label", true).await;
    let rows = run(c, "return document.querySelectorAll('#live-keys tbody tr').length;").await;
    assert_eq!(rows.as_u64(), Some(1), "only bot");
    assert!(text(c, "#live-keys").await.contains("bot"));

    // The faucet says what it sent, then hides at its limit (1 a day here) and says when it
    // gives again.
    c.goto(&format!("{base}/console/wallet")).await.map_err(err)?;
    assert!(text(c, "#faucet").await.contains("0 of 1 deposits used"));
    click(c, "#faucet button[type=submit]").await;
    wait_for_text(c, "main", "The faucet sent", true).await;
    assert!(text(c, "#notice").await.contains("The faucet sent 1.00000000 BTC"), "{}", text(c, "#notice").await);
    assert!(c.find(Locator::Css("#faucet")).await.is_err(), "the form is gone at the limit");
    let limit = text(c, "#faucet-limit").await;
    assert!(limit.contains("1 of 1") && limit.contains("gives again from 2026-01-02 05:3"), "{limit}");
    assert!(limit.contains("UTC+05:30"), "in the browser's time zone: {limit}");

    // A form typed while the session runs out is not lost: it comes back after the login.
    c.goto(&format!("{base}/console/keys")).await.map_err(err)?;
    fill(c, "#create-key #label", "typed before the timeout").await;
    fill(c, "#create-key #symbols", "ETHUSDT").await;
    app.clock.advance_ms(25 * 60 * 60 * 1000); // the session's idle timeout and the holds pass
    click(c, "#create-key button[type=submit]").await;
    wait_for_path(c, "/console/keys").await;
    assert!(text(c, "#draft-kept").await.contains("nothing was changed"));
    shot(c, "page-login-keeping-a-form-1280").await;
    fill(c, "#name", "dana").await;
    fill(c, "#password", PASSWORD).await;
    click(c, "form[action='/console/login'] button[type=submit]").await;
    wait_for_path(c, "/console/login").await;
    next_totp_step(app);
    fill(c, "#code", &totp(&secret, app)).await;
    click(c, "form[action='/console/login/totp'] button[type=submit]").await;
    wait_for_path(c, "/console/login/totp").await;
    wait_for_text(c, "main", "this form was not sent", true).await;
    let label = c.find(Locator::Css("#create-key #label")).await.map_err(err)?.prop("value").await.map_err(err)?;
    assert_eq!(label.as_deref(), Some("typed before the timeout"));
    let symbols = c.find(Locator::Css("#create-key #symbols")).await.map_err(err)?.prop("value").await.map_err(err)?;
    assert_eq!(symbols.as_deref(), Some("ETHUSDT"));

    // An API withdrawal with "bot" to its long address.
    let client = app.client(&bot, Signer::hmac(&bot_secret));
    let w = client
        .signed(
            reqwest::Method::POST,
            "/sapi/v1/capital/withdraw/apply",
            &[("coin", "BTC"), ("address", ADDRESS), ("amount", "0.1")],
        )
        .await
        .map_err(err)?;
    assert_eq!(w.status, 200, "{:?}", w.body);

    // The wallet on a phone: every value labelled, the address wrapped, no sideways scroll.
    set_width(c, WIDTHS[1]).await?;
    c.goto(&format!("{base}/console/wallet")).await.map_err(err)?;
    assert!(!overflows(c).await, "the wallet scrolls sideways on a phone");
    let labels = run(
        c,
        "return Array.from(document.querySelectorAll('#withdrawals td, #deposits td, #balances td'))\
         .map(td => [td.getAttribute('data-label') || '', getComputedStyle(td, '::before').content]);",
    )
    .await;
    let labels = labels.as_array().unwrap();
    assert!(labels.len() >= 14, "{labels:?}");
    for l in labels {
        let (name, content) = (l[0].as_str().unwrap_or(""), l[1].as_str().unwrap_or("none"));
        assert!(!name.is_empty() && content != "none" && content != "normal", "a value without its name: {labels:?}");
    }
    let names: Vec<&str> = labels.iter().filter_map(|l| l[0].as_str()).collect();
    assert!(names.contains(&"Amount") && names.contains(&"Fee") && names.contains(&"Address"), "{names:?}");
    let address = run(
        c,
        "const e = document.querySelector('#withdrawals code.address'); const b = e.getBoundingClientRect(); \
         return {right: b.right, lines: e.getClientRects().length, h: b.height};",
    )
    .await;
    assert!(address["right"].as_f64().unwrap() <= 375.0, "{address}");
    assert!(address["h"].as_f64().unwrap() > 30.0, "the long address wraps onto more lines: {address}");
    assert_eq!(text(c, "#withdrawals td[data-label=Status]").await, "processing");
    shot(c, "page-wallet-375").await;

    // Activity: sentences in local time (UTC+05:30 here), details on demand, filters.
    set_width(c, WIDTHS[0]).await?;
    c.goto(&format!("{base}/console/audit?type=keys&key={bot}")).await.map_err(err)?;
    let events = text(c, "#events").await;
    assert!(events.contains("Trade key 'bot' (HMAC) created from 127.0.0.1"), "{events}");
    assert!(
        events
            .contains("Trade key 'bot' widened to withdraw, IP allowlist changed, expiry changed, withdrawal address"),
        "{events}"
    );
    let first_time = c.find(Locator::Css("#events time")).await.map_err(err)?;
    let utc = first_time.attr("datetime").await.map_err(err)?.unwrap_or_default();
    let shown = first_time.text().await.map_err(err)?;
    let at = time::OffsetDateTime::parse(&utc, &time::format_description::well_known::Rfc3339).map_err(err)?;
    let local = at.to_offset(time::macros::offset!(+5:30));
    let want = format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC+05:30",
        local.year(),
        u8::from(local.month()),
        local.day(),
        local.hour(),
        local.minute()
    );
    assert_eq!(shown, want, "local time for {utc}");
    let pre = c.find(Locator::Css("#events li pre.details")).await.map_err(err)?;
    assert!(!pre.is_displayed().await.map_err(err)?, "details wait until asked for");
    click(c, "#events li details summary").await;
    assert!(pre.is_displayed().await.map_err(err)?, "details on demand");
    assert!(pre.text().await.map_err(err)?.contains("\"after\""));
    shot(c, "page-activity-keys-1280").await;
    // The type filter through the form finds the API withdrawal.
    c.goto(&format!("{base}/console/audit")).await.map_err(err)?;
    c.find(Locator::Css("#type option[value=withdrawals]")).await.map_err(err)?.click().await.map_err(err)?;
    click(c, "#activity-filter button[type=submit]").await;
    wait_for_text(c, "#events", "Withdrawal of", true).await;
    let events = text(c, "#events").await;
    assert!(
        events.contains(&format!("Withdrawal of 0.10000000 BTC to {ADDRESS} with key 'bot' from 127.0.0.1")),
        "{events}"
    );
    let csv =
        c.find(Locator::Css("#export-csv")).await.map_err(err)?.attr("href").await.map_err(err)?.unwrap_or_default();
    assert_eq!(csv, "/console/audit.csv?type=withdrawals");

    // Every logged-in page at both widths: no sideways scroll, every control labelled, saved.
    let pages = [
        ("keys", "/console/keys".to_owned()),
        ("key-edit", format!("/console/keys/{bot}")),
        ("key-revoke", format!("/console/keys/{bot}/revoke")),
        ("revoke-all", "/console/keys/revoke-all".to_owned()),
        ("wallet", "/console/wallet".to_owned()),
        ("activity", "/console/audit".to_owned()),
        ("password", "/console/password".to_owned()),
        ("2fa", "/console/2fa".to_owned()),
        ("step-up", "/console/step-up".to_owned()),
        ("not-found", "/console/nowhere".to_owned()),
    ];
    for size in WIDTHS {
        set_width(c, size).await?;
        for (name, page) in &pages {
            c.goto(&format!("{base}{page}")).await.map_err(err)?;
            assert_eq!(&path(c).await, page.split('?').next().unwrap(), "{name} stays on its page");
            assert!(!overflows(c).await, "{page} scrolls sideways at {} px", size.0);
            assert_eq!(
                unlabelled_controls(c).await,
                Vec::<serde_json::Value>::new(),
                "{page}: every control has a label"
            );
            shot(c, &format!("page-{name}-{}", size.0)).await;
        }
    }
    Ok(())
}
