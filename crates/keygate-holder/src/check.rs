//! `keygate check`: what a key may do and what is risky about it, read from the exchange.
//!
//! The facts come from `GET /sapi/v1/account/apiRestrictions` (what the key may do, whether it
//! has an IP allowlist, when it was made and when it expires) and `GET /api/v3/account` (the
//! account's own switches); [`assess`] turns them into findings without any I/O, so every rule
//! is tested on its own.

use crate::HolderError;
use crate::vault::Purpose;
use keygate_client::{Client, ClientError};
use serde::{Deserialize, Serialize};

/// How bad a finding is; `--fail-on` compares against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Good practice not followed.
    Low,
    /// A risk worth fixing soon.
    Medium,
    /// A risk to funds.
    High,
    /// The key does not work, or funds are exposed now.
    Critical,
}

impl Severity {
    /// The lowercase name, as printed and as `--fail-on` takes it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// One thing found about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier (`withdraw-enabled`, `no-ip-restriction`, ...), for scripts.
    pub code: &'static str,
    /// How bad it is.
    pub severity: Severity,
    /// What was found and what to do, in a sentence.
    pub message: String,
}

/// `apiRestrictions` as Binance and keygate answer it; every field optional, so an exchange that
/// leaves some out is still read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Restrictions {
    /// The key has an IP allowlist.
    pub ip_restrict: bool,
    /// The key's creation time (ms).
    pub create_time: Option<u64>,
    /// Reading allowed.
    pub enable_reading: bool,
    /// Withdrawals allowed.
    pub enable_withdrawals: bool,
    /// Spot (and margin) trading allowed.
    pub enable_spot_and_margin_trading: bool,
    /// Margin allowed.
    pub enable_margin: bool,
    /// Futures allowed.
    pub enable_futures: bool,
    /// Internal transfers allowed.
    pub enable_internal_transfer: bool,
    /// Universal transfers allowed.
    pub permits_universal_transfer: bool,
    /// When the key (keygate) or its trading authority (older Binance answers) expires (ms).
    pub trading_authority_expiration_time: Option<u64>,
    /// keygate's report of the key's last use before this check (ms); absent when never used.
    #[serde(rename = "keygateLastUsedTime", skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<u64>,
}

/// The account switches of `GET /api/v3/account` that concern a key check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AccountStatus {
    /// The account may trade.
    pub can_trade: bool,
    /// The account may withdraw.
    pub can_withdraw: bool,
    /// The account may deposit.
    pub can_deposit: bool,
    /// `SPOT`, ...
    pub account_type: String,
}

/// What [`assess`] needs besides the exchange's answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Now, in ms since the epoch.
    pub now_ms: u64,
    /// The entry's purpose, when the owner gave one.
    pub purpose: Option<Purpose>,
    /// The key signs with HMAC (not Ed25519).
    pub hmac: bool,
    /// The exchange is known to accept Ed25519 keys.
    pub ed25519_offered: bool,
    /// Warn when the key expires within this many days.
    pub expiry_warn_days: u64,
    /// Advise rotation of keys older than this many days.
    pub max_age_days: u64,
    /// The exchange reports each key's last use (keygate does, in `apiRestrictions`), so a key
    /// without one has never been used.
    pub usage_reported: bool,
    /// Flag keys not used for this many days.
    pub unused_days: u64,
}

const DAY_MS: u64 = 86_400_000;

/// Findings for a key from its restrictions and its account's status. Pure: every rule is here.
#[must_use]
pub fn assess(r: &Restrictions, account: Option<&AccountStatus>, cx: &Context) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |code, severity, message: String| out.push(Finding { code, severity, message });
    if r.enable_withdrawals {
        let (sev, extra) = if r.ip_restrict {
            (Severity::High, "")
        } else {
            (Severity::Critical, " and no IP allowlist: anyone holding it can move funds out")
        };
        let sev = if cx.purpose == Some(Purpose::Withdraw) && r.ip_restrict { Severity::Medium } else { sev };
        add(
            "withdraw-enabled",
            sev,
            format!("the key may withdraw funds{extra}; keep withdrawals on a key of their own"),
        );
    }
    if !r.ip_restrict {
        let trades = r.enable_spot_and_margin_trading || r.enable_margin || r.enable_futures;
        let sev = if trades { Severity::High } else { Severity::Medium };
        add(
            "no-ip-restriction",
            sev,
            "the key works from any IP address; restrict it to the addresses that use it".into(),
        );
    }
    if cx.purpose == Some(Purpose::Read) {
        for (on, what) in [
            (r.enable_spot_and_margin_trading, "trade"),
            (r.enable_margin, "margin"),
            (r.enable_futures, "futures"),
            (r.enable_internal_transfer || r.permits_universal_transfer, "transfer"),
        ] {
            if on {
                add(
                    "permission-beyond-purpose",
                    Severity::High,
                    format!("the key is used only for reading but may {what}; make a read-only key"),
                );
            }
        }
    }
    if cx.purpose == Some(Purpose::Trade) && r.enable_withdrawals {
        add("permission-beyond-purpose", Severity::High, "the key is used for trading but may withdraw".into());
    }
    if let Some(exp) = r.trading_authority_expiration_time {
        if exp <= cx.now_ms {
            add("expired", Severity::Critical, "the key has expired".into());
        } else if exp - cx.now_ms <= cx.expiry_warn_days.saturating_mul(DAY_MS) {
            let days = (exp - cx.now_ms) / DAY_MS;
            add("expires-soon", Severity::Medium, format!("the key expires in {days} day(s); rotate it before then"));
        }
    }
    if let Some(created) = r.create_time {
        let age = cx.now_ms.saturating_sub(created) / DAY_MS;
        if age > cx.max_age_days {
            add(
                "old-key",
                Severity::Low,
                format!("the key is {age} days old; rotate keys at least every {} days", cx.max_age_days),
            );
        }
    }
    if cx.usage_reported {
        match r.last_used_time {
            None => {
                add("never-used", Severity::Medium, "the key has never been used; revoke keys that nothing uses".into())
            }
            Some(t) if cx.now_ms.saturating_sub(t) > cx.unused_days.saturating_mul(DAY_MS) => {
                let days = cx.now_ms.saturating_sub(t) / DAY_MS;
                add(
                    "long-unused",
                    Severity::Medium,
                    format!("the key was last used {days} days ago; revoke keys that nothing uses any more"),
                );
            }
            Some(_) => {}
        }
    }
    if cx.hmac && cx.ed25519_offered {
        add(
            "hmac-where-ed25519-offered",
            Severity::Low,
            "the key is HMAC but the exchange accepts Ed25519 keys, whose secret never leaves your machine".into(),
        );
    }
    if let Some(a) = account {
        if r.enable_spot_and_margin_trading && !a.can_trade {
            add("account-cannot-trade", Severity::Info, "the key may trade but the account may not".into());
        }
        if r.enable_withdrawals && !a.can_withdraw {
            add(
                "account-cannot-withdraw",
                Severity::Info,
                "the key may withdraw but the account may not (a hold?)".into(),
            );
        }
    }
    out.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.code.cmp(b.code)));
    out
}

/// A check's result for one key.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The vault entry's name, or `-` for a key given on the command line.
    pub name: String,
    /// The exchange's base URL.
    pub url: String,
    /// The API key id.
    pub api_key: String,
    /// `HMAC` or `Ed25519`.
    pub key_type: &'static str,
    /// What the exchange said about the key, when it answered.
    pub restrictions: Option<Restrictions>,
    /// The account's switches, when the exchange answered.
    pub account: Option<AccountStatus>,
    /// Findings, worst first.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The worst finding's severity.
    #[must_use]
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Whether the exchange at `client` is keygate (its `exchangeInfo` carries `rateLimitsScope`).
async fn is_keygate(client: &Client) -> bool {
    match client.raw(reqwest::Method::GET, "/api/v3/exchangeInfo", "", "").await {
        Ok(a) => a.status == 200 && a.body.get("rateLimitsScope").is_some(),
        Err(_) => false,
    }
}

/// Whether the exchange at `url` is Binance (by host), which takes Ed25519 keys.
fn is_binance(url: &str) -> bool {
    reqwest::Url::parse(url).ok().and_then(|u| u.host_str().map(|h| h == "binance.com" || h.ends_with(".binance.com")))
        == Some(true)
}

/// Checks one key: reads its restrictions and account, then [`assess`]es them. A key the exchange
/// refuses is a critical finding, not an error, so a run over many keys reports every one.
///
/// # Errors
/// [`HolderError::Client`] only when the exchange cannot be reached at all.
pub async fn check(client: &Client, name: &str, url: &str, hmac: bool, mut cx: Context) -> Result<Report, HolderError> {
    let mut report = Report {
        name: name.to_owned(),
        url: url.to_owned(),
        api_key: client.api_key().to_owned(),
        key_type: if hmac { "HMAC" } else { "Ed25519" },
        restrictions: None,
        account: None,
        findings: Vec::new(),
    };
    let restrictions =
        match client.call::<Restrictions>(reqwest::Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await {
            Ok(r) => r,
            Err(ClientError::Api { status, body }) => {
                report.findings.push(Finding {
                    code: "key-refused",
                    severity: Severity::Critical,
                    message: format!("the exchange refused the key: HTTP {status}, {} {}", body.code, body.msg),
                });
                return Ok(report);
            }
            Err(e) => return Err(e.into()),
        };
    let account = client.call::<AccountStatus>(reqwest::Method::GET, "/api/v3/account", &[]).await.ok();
    cx.hmac = hmac;
    let keygate = is_keygate(client).await;
    cx.ed25519_offered = keygate || is_binance(url);
    cx.usage_reported = keygate;
    report.findings = assess(&restrictions, account.as_ref(), &cx);
    report.restrictions = Some(restrictions);
    report.account = account;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context {
        Context {
            now_ms: 100 * DAY_MS,
            purpose: None,
            hmac: false,
            ed25519_offered: false,
            expiry_warn_days: 14,
            max_age_days: 90,
            usage_reported: false,
            unused_days: 30,
        }
    }

    fn safe() -> Restrictions {
        Restrictions {
            ip_restrict: true,
            enable_reading: true,
            create_time: Some(99 * DAY_MS),
            ..Restrictions::default()
        }
    }

    fn codes(f: &[Finding]) -> Vec<&'static str> {
        f.iter().map(|f| f.code).collect()
    }

    #[test]
    fn a_read_only_ip_restricted_fresh_ed25519_key_has_no_finding() {
        assert_eq!(assess(&safe(), None, &cx()), vec![]);
    }

    #[test]
    fn withdraw_without_ip_is_critical_and_with_ip_high() {
        let r = Restrictions { enable_withdrawals: true, ip_restrict: false, ..safe() };
        let f = assess(&r, None, &cx());
        assert_eq!(f[0].code, "withdraw-enabled");
        assert_eq!(f[0].severity, Severity::Critical);
        let r = Restrictions { enable_withdrawals: true, ..safe() };
        assert_eq!(assess(&r, None, &cx())[0].severity, Severity::High);
    }

    #[test]
    fn trade_on_a_read_key_and_expiry_and_age_and_hmac_are_flagged() {
        let r = Restrictions {
            enable_spot_and_margin_trading: true,
            trading_authority_expiration_time: Some(103 * DAY_MS),
            create_time: Some(0),
            ..safe()
        };
        let c = Context { purpose: Some(Purpose::Read), hmac: true, ed25519_offered: true, ..cx() };
        assert_eq!(
            codes(&assess(&r, None, &c)),
            vec!["permission-beyond-purpose", "expires-soon", "hmac-where-ed25519-offered", "old-key"]
        );
    }

    #[test]
    fn never_and_long_unused_keys_are_flagged_where_the_exchange_reports_use() {
        let c = Context { usage_reported: true, ..cx() };
        assert_eq!(codes(&assess(&safe(), None, &c)), vec!["never-used"]);
        let recent = Restrictions { last_used_time: Some(95 * DAY_MS), ..safe() };
        assert_eq!(codes(&assess(&recent, None, &c)), Vec::<&str>::new());
        let stale = Restrictions { last_used_time: Some(60 * DAY_MS), ..safe() };
        let f = assess(&stale, None, &c);
        assert_eq!(codes(&f), vec!["long-unused"]);
        assert!(f[0].message.contains("40 days"), "{f:?}");
        // An exchange that does not report use (Binance) says nothing either way.
        assert_eq!(codes(&assess(&safe(), None, &cx())), Vec::<&str>::new());
        // Thresholds as large as a u64 holds neither overflow nor find anything.
        let huge = Context { unused_days: u64::MAX, expiry_warn_days: u64::MAX, ..c };
        assert_eq!(codes(&assess(&stale, None, &huge)), Vec::<&str>::new());
    }

    #[test]
    fn no_ip_restriction_is_high_on_a_trading_key() {
        let r = Restrictions { ip_restrict: false, enable_spot_and_margin_trading: true, ..safe() };
        let f = assess(&r, None, &cx());
        assert_eq!((f[0].code, f[0].severity), ("no-ip-restriction", Severity::High));
    }
}
