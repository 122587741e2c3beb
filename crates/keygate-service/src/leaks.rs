//! Leak reports (issue #17): a secret scanner (GitHub's secret scanning partner program, or any
//! that signs the same way) POSTs the keygate secrets it found in public; keygate revokes each
//! live one, audits it, tells the owner (`key.leaked` event) and answers which were live.
//!
//! **The request.** A JSON array of `{"token", "type", "url", "source"}`, signed with ECDSA P-256
//! / SHA-256 by a key the operator configured (`serve --leak-report-key ID=FILE`). GitHub's
//! headers (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`) sign the raw body;
//! keygate's own (`Keygate-Leak-Key-Id`, `Keygate-Leak-Signature`, `Keygate-Leak-Timestamp`)
//! sign `{timestamp}.{body}` and the timestamp must be within [`LEAK_REPORT_TOLERANCE_MS`] of
//! the server's clock.
//!
//! **Replays.** The SHA-256 of the signed bytes is stored when a report is accepted; the same
//! signed bytes again are refused (`Conflict`), whenever they come. So a captured report cannot
//! be replayed (with the timestamped headers not even after the digests are pruned), while a
//! scanner's new report of the same token (another URL, another time) is new bytes and is heard.
//!
//! **The answer** is GitHub's feedback format: `[{"token_raw", "token_type", "label"}]`, label
//! `true_positive` for a token that was a live keygate secret when reported (now revoked) and
//! `false_positive` for anything else (unknown, already revoked, not a keygate secret).

use crate::{Actor, Service, ServiceError, ServiceResult};
use keygate_auth::HmacSecret;
use keygate_auth::leak::{LeakSignatureError, verify_report};
use keygate_store::events::secret_digest;
use serde::{Deserialize, Serialize};

/// How far a keygate-style report's timestamp may be from the server's clock: 5 minutes.
pub const LEAK_REPORT_TOLERANCE_MS: u64 = 5 * 60 * 1000;
/// The most tokens one report may carry.
pub const MAX_TOKENS_PER_REPORT: usize = 1_000;

/// A report as received: the signature headers and the raw body.
#[derive(Debug, Clone, Copy)]
pub struct LeakReport<'a> {
    /// The reporter's key identifier.
    pub key_id: &'a str,
    /// Base64 of the DER ECDSA signature.
    pub signature: &'a str,
    /// Unix seconds, when the reporter signs `{timestamp}.{body}` (keygate's headers); `None`
    /// when it signs the body alone (GitHub's).
    pub timestamp: Option<&'a str>,
    /// The raw body.
    pub body: &'a [u8],
}

/// One reported token.
#[derive(Debug, Clone, Deserialize)]
struct Reported {
    token: String,
    #[serde(rename = "type", default)]
    token_type: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    source: String,
}

/// The answer for one token, in GitHub's feedback format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeakVerdict {
    /// The token as reported.
    pub token_raw: String,
    /// Its type as reported.
    pub token_type: String,
    /// `true_positive` (a live keygate secret, now revoked) or `false_positive`.
    pub label: &'static str,
}

impl Service {
    /// Whether leak reports are accepted here (a reporter key is configured).
    #[must_use]
    pub fn accepts_leak_reports(&self) -> bool {
        !self.inner.config.leak_reporters.is_empty()
    }

    /// Handles a leak report: checks its signature and freshness, revokes every live keygate
    /// secret in it (audited as `key.leaked` by `system:leak-report`, which notifies the owner),
    /// then remembers the report, refusing one received before, and answers which tokens were
    /// live.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] when no reporter key is configured;
    /// [`ServiceError::Unauthenticated`] for a signature that does not verify or a stale
    /// timestamp; [`ServiceError::Invalid`] for a body that is not a JSON array of tokens (or
    /// too many); [`ServiceError::Conflict`] for a replayed report.
    pub async fn handle_leak_report(&self, report: LeakReport<'_>) -> ServiceResult<Vec<LeakVerdict>> {
        let keys = &self.inner.config.leak_reporters;
        if keys.is_empty() {
            return Err(ServiceError::NotFound("leak reports are not accepted here".into()));
        }
        let now = self.now_ms();
        let mut message = Vec::with_capacity(report.body.len() + 24);
        if let Some(ts) = report.timestamp {
            let secs: u64 = ts
                .trim()
                .parse()
                .map_err(|_| ServiceError::Unauthenticated("the report timestamp is not a number".into()))?;
            if secs.saturating_mul(1000).abs_diff(now.0) > LEAK_REPORT_TOLERANCE_MS {
                return Err(ServiceError::Unauthenticated(
                    "the report timestamp is too far from the server's time".into(),
                ));
            }
            message.extend_from_slice(ts.trim().as_bytes());
            message.push(b'.');
        }
        message.extend_from_slice(report.body);
        verify_report(keys, report.key_id, report.signature, &message).map_err(|e| {
            ServiceError::Unauthenticated(match e {
                LeakSignatureError::UnknownKey => "the report names an unknown public key".into(),
                other => format!("the report's signature is not valid: {other}"),
            })
        })?;
        let tokens: Vec<Reported> = serde_json::from_slice(report.body).map_err(|e| {
            ServiceError::Invalid(format!("a leak report is a JSON array of {{token, type, url, source}}: {e}"))
        })?;
        if tokens.len() > MAX_TOKENS_PER_REPORT {
            return Err(ServiceError::Invalid(format!("a leak report carries at most {MAX_TOKENS_PER_REPORT} tokens")));
        }
        let digest = {
            use sha2::Digest as _;
            <[u8; 32]>::from(sha2::Sha256::digest(&message))
        };
        // Revoke first, remember the report after: a report cut short (a crash, a store error)
        // is not yet remembered, so the reporter's resend of the same signed bytes revokes the
        // rest (outside review: recording it first left the remaining keys live for good).
        // Revoking is idempotent, so a replay changes nothing before it is refused.
        let actor = Actor::System { policy: "leak-report".into() };
        let mut verdicts = Vec::with_capacity(tokens.len());
        for t in tokens {
            let live = self.revoke_reported(&actor, &t).await?;
            verdicts.push(LeakVerdict {
                token_raw: t.token,
                token_type: t.token_type,
                label: if live { "true_positive" } else { "false_positive" },
            });
        }
        if !self.inner.store.record_leak_report(&digest, now).await? {
            return Err(ServiceError::Conflict("this report was received before (a replay)".into()));
        }
        Ok(verdicts)
    }

    /// Revokes the key of a reported token if it is a live keygate secret; true if it was.
    async fn revoke_reported(&self, actor: &Actor, t: &Reported) -> ServiceResult<bool> {
        // Only a well-formed secret (prefix and checksum) is looked up: random text never is.
        if HmacSecret::check(t.token.as_bytes()).is_err() {
            return Ok(false);
        }
        let Some(key) = self.inner.store.key_by_secret_digest(&secret_digest(&t.token)).await? else {
            return Ok(false);
        };
        let mut details = serde_json::Map::new();
        details.insert("url".into(), t.url.clone().into());
        details.insert("source".into(), t.source.clone().into());
        details.insert("token_type".into(), t.token_type.clone().into());
        details.insert("revoked".into(), true.into());
        let (_, revoked) = self.revoke_leaked(actor, key.as_str(), details).await?;
        if revoked {
            tracing::warn!(key = %key.prefix(), source = %t.source, "key reported leaked: revoked");
        }
        Ok(revoked)
    }
}
