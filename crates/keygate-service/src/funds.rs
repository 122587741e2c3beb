//! Money into and out of the sandbox exchange: the operator's deposits, the owner's faucet, API
//! withdrawals, and the ledger audit.
//!
//! Each operation decides who may perform it (deposits and the ledger audit are the operator's;
//! the faucet is the owner's, for their own account) and has the engine write the exchange's
//! journal entry and the operation's audit record in one transaction
//! ([`Engine::submit_audited`]): a deposit is never credited without its audit record, nor
//! recorded without being credited.

use crate::engine::{Engine, EngineError};
use crate::{Actor, Service, ServiceError, ServiceResult};
use keygate_auth::ApiKeyId;
use keygate_exchange::{Command, Deposit, DepositRecord, Outcome, Withdraw, WithdrawalRecord};
use keygate_proto::{AccountId, Amount, AssetCode, UnixMicros};
use keygate_store::{AuditDraft, FaucetGrant};

/// How long the faucet's window lasts: its limit is per account per 24 hours.
pub const FAUCET_WINDOW_MS: u64 = 24 * 60 * 60 * 1000;

/// A deposit the operator credits to an account.
#[derive(Debug, Clone)]
pub struct DepositRequest {
    /// The account's name.
    pub account: String,
    /// The asset's code, any case (`btc`, `USDT`).
    pub asset: String,
    /// The amount, as decimal text.
    pub amount: String,
    /// The network it arrived on, if the operator names one.
    pub network: Option<String>,
}

/// A withdrawal requested through the API with a verified key: the command the exchange will
/// check (balance, the key's address allowlist and 24-hour limit) and what the audit record
/// names.
#[derive(Debug, Clone)]
pub struct ApiWithdrawal {
    /// The exchange command, with the key's policy.
    pub command: Withdraw,
    /// The key that signed the request.
    pub key: ApiKeyId,
    /// The end of the request's `recvWindow`, checked again when the engine takes it.
    pub fresh_until: Option<UnixMicros>,
    /// The client address.
    pub source: Option<String>,
    /// The request's single-use signature identity, recorded with the withdrawal so it is
    /// carried out at most once.
    pub single_use: Option<[u8; 32]>,
}

/// The faucet's amount for `asset`: enough to try trading, not a fortune.
#[must_use]
pub fn faucet_amount(asset: &AssetCode) -> Amount {
    let whole: u64 = match asset.as_str() {
        "BTC" => 1,
        "ETH" | "BNB" => 10,
        "USDT" | "USDC" | "BUSD" | "FDUSD" => 10_000,
        _ => 100,
    };
    let unit = Amount::parse("1").map_or(100_000_000, Amount::units);
    Amount::from_units(whole.saturating_mul(unit))
}

impl Service {
    /// The exchange engine, when this service runs one.
    ///
    /// # Errors
    /// [`ServiceError::Internal`] when the service was assembled without the exchange.
    pub fn engine(&self) -> ServiceResult<&Engine> {
        self.inner.engine.as_ref().ok_or_else(|| ServiceError::Internal("the exchange is not running".into()))
    }

    /// The audit record of an exchange operation on `account`; the engine adds the id of the
    /// record the exchange makes (see [`Engine::submit_audited`]).
    fn audit_of(
        &self,
        actor: &Actor,
        action: &'static str,
        target: String,
        account: AccountId,
        details: serde_json::Value,
    ) -> AuditDraft {
        AuditDraft {
            at: self.now_ms(),
            actor: actor.label(),
            action: action.into(),
            target,
            account_id: Some(account),
            source: actor.source(),
            details,
        }
    }

    /// Credits a deposit to an account: the operator's (or keygate's own, for the demo) action.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for an owner; [`ServiceError::NotFound`] for an unknown
    /// account; [`ServiceError::Invalid`] for an unknown asset or a bad amount;
    /// [`ServiceError::Exchange`] when the exchange refuses it or storage fails.
    pub async fn deposit(&self, actor: &Actor, req: DepositRequest) -> ServiceResult<DepositRecord> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("deposits are operator actions".into()));
        }
        let account = self.account_record(actor, &req.account).await?;
        let coin = AssetCode::parse(&req.asset.to_ascii_uppercase())
            .map_err(|e| ServiceError::Invalid(format!("asset {:?}: {e}", req.asset)))?;
        let amount =
            Amount::parse(&req.amount).map_err(|e| ServiceError::Invalid(format!("amount {:?}: {e}", req.amount)))?;
        let id = AccountId(account.id.0);
        let deposit = Deposit { account: id, coin, network: req.network, amount };
        let audit = self.audit_of(
            actor,
            "exchange.deposit",
            format!("account:{}", account.name),
            id,
            deposit_details(&deposit),
        );
        deposited(self.engine()?.submit_audited(Command::Deposit(deposit), None, None, audit).await?)
    }

    /// Credits the faucet's amount of `asset` to the owner's own account, at most `per_day`
    /// times per account in [`FAUCET_WINDOW_MS`] (a counted field in the store, so the limit
    /// holds across requests, restarts and nodes).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for anyone but an owner, or when `per_day` is 0 (the faucet
    /// is off); [`ServiceError::Throttled`] past the limit; [`ServiceError::Invalid`] for an
    /// asset code that is not one; [`ServiceError::Exchange`] when the exchange refuses it.
    pub async fn faucet(&self, actor: &Actor, asset: &str, per_day: u32) -> ServiceResult<DepositRecord> {
        let Actor::Owner { account_id, name, .. } = actor else {
            return Err(ServiceError::Forbidden("the faucet is for owners; operators credit deposits".into()));
        };
        if per_day == 0 {
            return Err(ServiceError::Forbidden(
                "the sandbox faucet is off on this server; ask the operator for a deposit".into(),
            ));
        }
        let coin = AssetCode::parse(&asset.trim().to_ascii_uppercase())
            .map_err(|e| ServiceError::Invalid(format!("asset {asset:?}: {e}")))?;
        let now = self.now_ms();
        let window_start = match self.inner.store.take_faucet_grant(*account_id, now, FAUCET_WINDOW_MS, per_day).await?
        {
            FaucetGrant::Granted { window_start, .. } => window_start,
            FaucetGrant::Refused { next_at } => {
                return Err(ServiceError::Throttled {
                    what: format!("the sandbox faucet gives at most {per_day} deposits per account in 24 hours"),
                    retry_after_ms: next_at.0.saturating_sub(now.0),
                });
            }
        };
        let id = AccountId(account_id.0);
        let deposit = Deposit { account: id, coin: coin.clone(), network: None, amount: faucet_amount(&coin) };
        let audit = self.audit_of(actor, "console.faucet", format!("account:{name}"), id, deposit_details(&deposit));
        match self.engine()?.submit_audited(Command::Deposit(deposit), None, None, audit).await {
            Ok(outcome) => deposited(outcome),
            Err(e) => {
                // Nothing was credited: the grant is given back.
                self.inner.store.return_faucet_grant(*account_id, window_start).await?;
                Err(e.into())
            }
        }
    }

    /// Carries out a withdrawal requested through the API, once no lock or hold stands in its
    /// way (see [`Service::withdrawal_block`]); audited as `api.withdraw` with its journal entry.
    ///
    /// # Errors
    /// [`ServiceError::WithdrawalHeld`] when a lock or hold applies; [`ServiceError::Exchange`]
    /// when the exchange refuses it (balance, the key's allowlist or limit) or storage fails.
    pub async fn withdraw(&self, w: ApiWithdrawal) -> ServiceResult<WithdrawalRecord> {
        let account = keygate_auth::AccountId(w.command.account.0);
        let now = self.now_ms();
        if let Some(block) = self.withdrawal_block(account, &w.key, &w.command.address, now).await? {
            return Err(ServiceError::WithdrawalHeld(block));
        }
        let (key, coin, amount, address) =
            (w.key.to_string(), w.command.coin.clone(), w.command.amount, w.command.address.clone());
        let audit = AuditDraft {
            at: now,
            actor: format!("api:{key}"),
            action: "api.withdraw".into(),
            target: key.clone(),
            account_id: Some(account),
            source: w.source,
            details: serde_json::json!({ "asset": coin, "amount": amount, "address": address }),
        };
        match self.engine()?.submit_audited(Command::Withdraw(w.command), w.fresh_until, w.single_use, audit).await? {
            Outcome::WithdrawApplied(record) => Ok(record),
            other => Err(ServiceError::Internal(format!("unexpected engine answer to a withdrawal: {other:?}"))),
        }
    }

    /// Checks the exchange's journal on the store (either backend): numbered from 1 without a
    /// gap, every command readable, times in order, the latest snapshot within it. The
    /// operator's action.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for an owner; [`ServiceError::Invalid`] saying where the
    /// journal breaks.
    pub async fn audit_journal(&self, actor: &Actor) -> ServiceResult<JournalAudit> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("only the operator can audit the journal".into()));
        }
        check_journal(&*self.inner.store).await
    }

    /// Checks the exchange's ledger: every asset's balances add up to its deposits minus its
    /// withdrawals. The operator's action. Returns the per-asset totals.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for an owner; [`ServiceError::Invalid`] naming the broken
    /// invariant.
    pub async fn audit_ledger(&self, actor: &Actor) -> ServiceResult<Vec<keygate_exchange::AssetReport>> {
        if matches!(actor, Actor::Owner { .. }) {
            return Err(ServiceError::Forbidden("only the operator can audit the ledger".into()));
        }
        let (check, report) = self
            .engine()?
            .query(|ex| {
                let ledger = ex.ledger();
                (ledger.check_invariant().map_err(|v| v.to_string()), ledger.report())
            })
            .await?;
        check.map_err(|broken| ServiceError::Invalid(format!("ledger invariant broken: {broken}")))?;
        Ok(report)
    }
}

/// What `keygate audit journal` found: an intact journal's extent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JournalAudit {
    /// Entries checked.
    pub entries: u64,
    /// The last entry's number (0 for an empty journal).
    pub last_seq: i64,
    /// The latest snapshot's number, if any (a restart replays the entries after it).
    pub snapshot_seq: Option<i64>,
}

/// Reads the whole journal and checks that its numbers run from 1 without a gap, that each
/// command decodes and that times never go backwards.
async fn check_journal(store: &dyn keygate_store::Store) -> ServiceResult<JournalAudit> {
    const PAGE: u32 = 10_000;
    let (mut last_seq, mut last_at, mut entries) = (0_i64, 0_u64, 0_u64);
    loop {
        let page = store.journal_after(last_seq, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            if e.seq != last_seq + 1 {
                return Err(ServiceError::Invalid(format!(
                    "the exchange journal has a gap: entry {} follows entry {last_seq} (expected {})",
                    e.seq,
                    last_seq + 1
                )));
            }
            serde_json::from_slice::<Command>(&e.command).map_err(|err| {
                ServiceError::Invalid(format!("journal entry {} does not decode as a command: {err}", e.seq))
            })?;
            if e.at.0 < last_at {
                return Err(ServiceError::Invalid(format!(
                    "journal entry {} is dated before entry {last_seq} ({} ms < {last_at} ms)",
                    e.seq, e.at.0
                )));
            }
            (last_seq, last_at, entries) = (e.seq, e.at.0, entries + 1);
        }
    }
    let snapshot_seq = store.latest_snapshot().await?.map(|(seq, _)| seq);
    if let Some(snap) = snapshot_seq
        && snap > last_seq
    {
        return Err(ServiceError::Invalid(format!(
            "the latest snapshot claims entry {snap}, but the journal ends at entry {last_seq}"
        )));
    }
    Ok(JournalAudit { entries, last_seq, snapshot_seq })
}

/// What a deposit's audit record says about it.
/// A deposit's audit details; the engine adds the deposit's `id`.
fn deposit_details(d: &Deposit) -> serde_json::Value {
    serde_json::json!({ "asset": d.coin, "amount": d.amount, "network": d.network })
}

/// The record of a deposit the engine carried out.
fn deposited(outcome: Outcome) -> ServiceResult<DepositRecord> {
    match outcome {
        Outcome::Deposited(record) => Ok(record),
        other => Err(ServiceError::Internal(format!("unexpected engine answer to a deposit: {other:?}"))),
    }
}

impl From<EngineError> for ServiceError {
    fn from(e: EngineError) -> Self {
        Self::Exchange(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::faucet_amount;
    use keygate_proto::{Amount, AssetCode};

    #[test]
    fn the_faucet_gives_whole_coins() {
        let amount = |code: &str| faucet_amount(&AssetCode::parse(code).unwrap());
        assert_eq!(amount("BTC"), Amount::parse("1").unwrap());
        assert_eq!(amount("USDT"), Amount::parse("10000").unwrap());
        assert_eq!(amount("DOGE"), Amount::parse("100").unwrap());
    }
}
