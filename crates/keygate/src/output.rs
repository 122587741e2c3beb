//! Human tables and JSON for command results.

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use serde_json::Value;

/// Prints `v` as pretty JSON.
///
/// # Errors
/// Never in practice (a `Value` always serialises).
pub fn json(v: &Value) -> anyhow::Result<()> {
    outln!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn time(v: &Value) -> String {
    v.as_u64()
        .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) if a.is_empty() => "-".into(),
        Value::Array(a) => a.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

/// One account.
pub fn account(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    accounts(&Value::Array(vec![v.clone()]), false)
}

/// A list of accounts.
pub fn accounts(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["ID", "NAME", "STATUS", "CREATED"]);
    for a in v.as_array().into_iter().flatten() {
        t.add_row(vec![text(&a["id"]), text(&a["name"]), text(&a["status"]), time(&a["created_at"])]);
    }
    outln!("{t}");
    Ok(())
}

fn restrictions_summary(k: &Value) -> String {
    let mut parts = Vec::new();
    if k["ip_allowlist"].as_array().is_some_and(|a| !a.is_empty()) {
        parts.push(format!("ip={}", text(&k["ip_allowlist"])));
    }
    if k["symbols"].as_array().is_some_and(|a| !a.is_empty()) {
        parts.push(format!("symbols={}", text(&k["symbols"])));
    }
    if !k["expires_at"].is_null() {
        parts.push(format!("expires={}", time(&k["expires_at"])));
    }
    if k["withdraw_addresses"].as_array().is_some_and(|a| !a.is_empty()) {
        parts.push(format!("withdraw-to={}", text(&k["withdraw_addresses"])));
    }
    if let Some(l) = k["withdraw_limit_24h"].as_object() {
        parts.push(format!("limit/24h={} {}", text(&l["amount"]), text(&l["asset"])));
    }
    if parts.is_empty() { "none (any IP)".into() } else { parts.join(" ") }
}

/// A list of keys.
pub fn keys(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t =
        table(&["API KEY", "ACCOUNT", "LABEL", "TYPE", "PERMISSIONS", "RESTRICTIONS", "STATUS", "LAST USED", "USES"]);
    for k in v.as_array().into_iter().flatten() {
        let last = if k["last_used_at"].is_null() {
            "never".into()
        } else {
            format!("{} from {}", time(&k["last_used_at"]), text(&k["last_used_ip"]))
        };
        t.add_row(vec![
            text(&k["api_key"]),
            text(&k["account"]),
            // A key issued to a connected app says so (issue #15).
            match k["app"].as_str() {
                Some(app) => format!("{} (app {app})", text(&k["label"])),
                None => text(&k["label"]),
            },
            text(&k["type"]),
            text(&k["permissions"]),
            restrictions_summary(k),
            // Why, when a policy or a security change made it so (`keys show` says it in words).
            match k["status_reason"].as_str().filter(|r| Some(*r) != k["status"].as_str()) {
                Some(reason) => format!("{} ({reason})", text(&k["status"])),
                None => text(&k["status"]),
            },
            last,
            text(&k["use_count"]),
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// One key, in detail.
pub fn key(k: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(k);
    }
    let rows = [
        ("API key", text(&k["api_key"])),
        ("Account", text(&k["account"])),
        ("Label", text(&k["label"])),
        ("Held by app", if k["app"].is_string() { text(&k["app"]) } else { "none (made by hand)".into() }),
        ("Type", text(&k["type"])),
        ("Permissions", text(&k["permissions"])),
        (
            "IP allowlist",
            if k["ip_allowlist"].as_array().is_some_and(|a| !a.is_empty()) {
                text(&k["ip_allowlist"])
            } else {
                "any address".into()
            },
        ),
        (
            "Symbols",
            if k["symbols"].as_array().is_some_and(|a| !a.is_empty()) { text(&k["symbols"]) } else { "all".into() },
        ),
        ("Expires", time(&k["expires_at"])),
        (
            "Withdraw to",
            if k["withdraw_addresses"].as_array().is_some_and(|a| !a.is_empty()) {
                text(&k["withdraw_addresses"])
            } else {
                "no address (withdrawals impossible)".into()
            },
        ),
        (
            "Withdraw limit/24h",
            k["withdraw_limit_24h"]
                .as_object()
                .map_or_else(|| "-".into(), |l| format!("{} {}", text(&l["amount"]), text(&l["asset"]))),
        ),
        (
            "Status",
            match k["status_reason"].as_str() {
                Some(reason) => format!("{} ({})", text(&k["status"]), keygate_service::policy::reason_words(reason)),
                None => text(&k["status"]),
            },
        ),
        (
            "Policy",
            match k["policy_deadline"].as_object() {
                Some(d) => format!(
                    "{} on {} ({})",
                    match d["action"].as_str() {
                        Some("expire") => "expires",
                        Some("suspend") => "suspended",
                        _ => "disabled",
                    },
                    time(&d["at"]),
                    keygate_service::policy::policy_words(d["policy"].as_str().unwrap_or_default())
                ),
                None => "-".into(),
            },
        ),
        ("Created", format!("{} by {}", time(&k["created_at"]), text(&k["created_by"]))),
        ("Updated", format!("{} by {}", time(&k["updated_at"]), text(&k["updated_by"]))),
        (
            "Last used",
            if k["last_used_at"].is_null() {
                "never".into()
            } else {
                format!("{} from {}", time(&k["last_used_at"]), text(&k["last_used_ip"]))
            },
        ),
        ("Uses", text(&k["use_count"])),
    ];
    for (name, value) in rows {
        outln!("{name:<20} {value}");
    }
    if let Some(pem) = k["public_key"].as_str() {
        outln!("Public key:\n{pem}");
    }
    Ok(())
}

/// An account's key policies.
pub fn key_policy(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let days = |x: &Value| {
        x.as_u64().map_or_else(|| "off".to_owned(), |d| format!("{d} day{}", if d == 1 { "" } else { "s" }))
    };
    let own = |field: &str, shown: &dyn Fn(&Value) -> String| {
        let o = &v["own"][field];
        if o.is_null() { "-".to_owned() } else { shown(o) }
    };
    let hours = |x: &Value| format!("{} hour{}", text(x), if x.as_u64() == Some(1) { "" } else { "s" });
    let count = |x: &Value| text(x);
    outln!("Key policies of {}", text(&v["account"]));
    outln!("{:<28} {:<12} {:<12} {}", "policy", "deployment", "account", "applies");
    type Shown<'a> = &'a dyn Fn(&Value) -> String;
    let rows: [(&str, &str, Shown<'_>); 5] = [
        ("disable unused keys after", "unused_days", &days),
        ("  ... without IP allowlist", "unrestricted_idle_days", &days),
        ("keys per account", "max_keys", &count),
        ("withdraw keys expire within", "withdraw_max_days", &days),
        ("re-confirm after password", "reconfirm_grace_hours", &hours),
    ];
    for (name, field, shown) in rows {
        outln!(
            "{name:<28} {:<12} {:<12} {}",
            shown(&v["deployment"][field]),
            own(field, shown),
            shown(&v["effective"][field])
        );
    }
    if let Some(r) = v["reconfirm"].as_object() {
        outln!(
            "Trade and withdraw keys not re-confirmed by {} are suspended ({}).",
            time(&r["due"]),
            text(&r["reason"])
        );
    }
    Ok(())
}

/// A created key, with its secret shown once.
pub fn created_key(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    key(v, false)?;
    if let Some(secret) = v["secret"].as_str() {
        outln!();
        outln!("Secret key: {secret}");
        outln!(
            "This secret is shown once and cannot be shown again. Store it now; anyone holding it can act with this key's permissions."
        );
    }
    Ok(())
}

/// Audit records.
pub fn audit(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["SEQ", "TIME", "ACTOR", "ACTION", "TARGET", "SOURCE", "DETAILS"]);
    for r in v.as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&r["seq"]),
            time(&r["at"]),
            text(&r["actor"]),
            text(&r["action"]),
            text(&r["target"]),
            text(&r["source"]),
            r["details"].to_string(),
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// The ledger report.
pub fn ledger(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["ASSET", "FREE", "LOCKED", "FEES", "DEPOSITS", "WITHDRAWALS"]);
    for a in v["assets"].as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&a["asset"]),
            text(&a["free"]),
            text(&a["locked"]),
            text(&a["fees"]),
            text(&a["deposits"]),
            text(&a["withdrawals"]),
        ]);
    }
    outln!("{t}");
    outln!("Invariant holds: per asset, balances + fees = deposits - withdrawals.");
    Ok(())
}

/// A list of invites (never their codes).
pub fn invites(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["ID", "NOTE", "STATUS", "CREATED", "EXPIRES", "USED BY", "USED AT"]);
    for i in v.as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&i["id"]),
            text(&i["note"]),
            text(&i["status"]),
            time(&i["created_at"]),
            time(&i["expires_at"]),
            text(&i["used_by"]),
            time(&i["used_at"]),
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// Webhook endpoints.
pub fn webhooks(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["ID", "ACCOUNT", "URL", "STATUS", "CREATED", "DESCRIPTION"]);
    for w in v.as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&w["id"]),
            text(&w["account"]),
            text(&w["url"]),
            text(&w["status"]),
            time(&w["created_at"]),
            text(&w["description"]),
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// A registered endpoint, with its secret shown once.
pub fn created_webhook(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    outln!("Webhook secret: {}", text(&v["secret"]));
    outln!(
        "Endpoint {} of {} posts to {}. The secret is shown once: give it to the receiver, which verifies the \
         webhook-signature header with it (Standard Webhooks). See `keygate webhooks deliveries {}`.",
        text(&v["id"]),
        text(&v["account"]),
        text(&v["url"]),
        text(&v["id"])
    );
    Ok(())
}

/// An endpoint's deliveries.
pub fn deliveries(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["ID", "WEBHOOK-ID", "EVENT", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "NEXT", "LAST ERROR"]);
    for d in v.as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&d["id"]),
            text(&d["webhook_id"]),
            text(&d["event_type"]),
            text(&d["status"]),
            text(&d["attempts"]),
            time(&d["last_attempt_at"]),
            time(&d["next_attempt_at"]),
            text(&d["last_error"]),
        ]);
    }
    outln!("{t}");
    Ok(())
}

/// An account's notices.
pub fn notices(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    let mut t = table(&["AT", "EVENT", "NOTICE"]);
    for n in v.as_array().into_iter().flatten() {
        t.add_row(vec![time(&n["at"]), text(&n["event_type"]), text(&n["summary"])]);
    }
    outln!("{t}");
    Ok(())
}

/// A created invite, with its code shown once.
pub fn created_invite(v: &Value, as_json: bool) -> anyhow::Result<()> {
    if as_json {
        return json(v);
    }
    outln!("Invite code: {}", text(&v["code"]));
    outln!(
        "Invite {} expires {}. The code is shown once: give it to the person invited; it creates one account at \
         /console/signup (`serve --signup invite`). Revoke it with `keygate invites revoke {}`.",
        text(&v["id"]),
        time(&v["expires_at"]),
        text(&v["id"])
    );
    Ok(())
}
