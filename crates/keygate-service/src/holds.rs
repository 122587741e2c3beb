//! Withdrawal holds (issue #19): a waiting period after a change that would let someone who took
//! over the console move money out at once.
//!
//! With the password alone (no 2FA yet on the account) a thief could log in, enroll their own
//! TOTP, step up, create a withdraw key for their own address and withdraw, all in half a minute.
//! So each of these changes, made by the owner, starts a hold of
//! [`crate::ServiceConfig::withdrawal_hold_ms`] (24 h by default, 0 for none):
//!
//! * 2FA turned on (the first enrollment, or again after it was turned off) holds every
//!   withdrawal of the account: the thief's own 2FA must not open the door it was added for;
//! * a key given the `withdraw` permission (created with it, or widened to it) holds that key;
//! * an address added to a key holds withdrawals to that address with that key.
//!
//! Everything else keeps working: the key's other addresses, the account's other keys. Owners add
//! addresses often, and a hold on the whole account for each would teach them to ignore it.
//!
//! A hold cannot be lifted early, only its cause undone: revoking the key or removing the address
//! ends the hold with the change (and the audit record of that change says so). For 2FA turned on
//! by someone else the owner changes the password (which ends every other session), revokes the
//! keys and asks the operator to reset 2FA; the hold keeps withdrawals shut meanwhile.
//!
//! Holds are written in the same store transaction as the change that starts them (the key
//! record's holds, the account's hold column) and read from the store when a withdrawal is
//! decided, so they survive restarts and every node sees them. Operators and the system (the CLI
//! on the server's machine, the demo) start no holds: they act from where everything can be
//! changed anyway, and their changes are audited and marked on the key.

use crate::{Actor, Service, ServiceResult};
use keygate_auth::{AccountId, ApiKeyId, KeyStatus, Permission};
use keygate_proto::UnixMillis;
use keygate_store::{AddressHold, HoldPeriod, KeyRecord, WithdrawalHolds};
use serde::Serialize;

/// What a hold or lock covers, and why it was started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// Every withdrawal of the account: a password change or 2FA removed (the older 24-hour lock).
    AccountLocked,
    /// Every withdrawal of the account: 2FA was turned on.
    TwoFactorEnabled,
    /// Every withdrawal with one key: it was given the `withdraw` permission.
    WithdrawKey,
    /// Withdrawals with one key to one address: the address was added to the key.
    NewAddress,
}

impl HoldKind {
    /// Why withdrawals wait, in words, for messages and pages.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::AccountLocked => "the password was changed or 2FA was removed",
            Self::TwoFactorEnabled => "2FA was turned on for this account",
            Self::WithdrawKey => "this API key was given the withdraw permission",
            Self::NewAddress => "this address was added to the API key",
        }
    }
}

/// Why a withdrawal may not happen yet: the hold (or lock) that ends last among those that apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WithdrawalBlock {
    /// What holds it.
    pub kind: HoldKind,
    /// When it ends.
    pub until: UnixMillis,
}

/// One hold as the owner's console shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HoldView {
    /// What it covers and why.
    pub kind: HoldKind,
    /// The key, for key and address holds.
    pub key: Option<String>,
    /// The key's label.
    pub key_label: Option<String>,
    /// The address, for address holds.
    pub address: Option<String>,
    /// When the change was made, when known.
    pub since: Option<UnixMillis>,
    /// When withdrawals may begin.
    pub until: UnixMillis,
}

/// The holds a change to a key starts and ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct HoldChange {
    /// Holds started by this change.
    pub started: WithdrawalHolds,
    /// Holds still running that this change ended (the address was removed, `withdraw` taken
    /// away, the key revoked).
    pub cancelled: WithdrawalHolds,
}

impl HoldChange {
    pub(crate) fn is_empty(&self) -> bool {
        self.started == WithdrawalHolds::default() && self.cancelled == WithdrawalHolds::default()
    }
}

/// The holds of `key` still running at `now`.
fn running(h: &WithdrawalHolds, now: UnixMillis) -> WithdrawalHolds {
    WithdrawalHolds {
        key: h.key.filter(|p| p.active(now)),
        addresses: h.addresses.iter().filter(|a| a.period.active(now)).cloned().collect(),
    }
}

impl Service {
    /// The hold a change by `actor` at `now` starts, if any: owners only, and only when
    /// [`crate::ServiceConfig::withdrawal_hold_ms`] is not 0.
    pub(crate) fn hold_period(&self, actor: &Actor, now: UnixMillis) -> Option<HoldPeriod> {
        let ms = self.inner.config.withdrawal_hold_ms;
        (matches!(actor, Actor::Owner { .. }) && ms > 0).then(|| HoldPeriod { since: now, until: now.plus_millis(ms) })
    }

    /// Sets `after.withdrawal_holds` for the change from `before` (`None`: a new key) to `after`
    /// by `actor` at `now`, and says what started and what ended. Holds that have run out are
    /// dropped; a hold whose cause is gone (the address removed, `withdraw` taken away) ends.
    pub(crate) fn apply_holds(
        &self,
        actor: &Actor,
        before: Option<&KeyRecord>,
        after: &mut KeyRecord,
        now: UnixMillis,
    ) -> HoldChange {
        let had_withdraw = before.is_some_and(|b| b.permissions.contains(Permission::Withdraw));
        let has_withdraw = after.permissions.contains(Permission::Withdraw);
        let old = before.map(|b| running(&b.withdrawal_holds, now)).unwrap_or_default();
        let mut kept = WithdrawalHolds {
            key: old.key.filter(|_| has_withdraw),
            addresses: old
                .addresses
                .iter()
                .filter(|a| after.restrictions.withdraw_addresses.contains(&a.address))
                .cloned()
                .collect(),
        };
        let cancelled = WithdrawalHolds {
            key: old.key.filter(|_| kept.key.is_none()),
            addresses: old.addresses.iter().filter(|a| !kept.addresses.contains(a)).cloned().collect(),
        };
        let mut started = WithdrawalHolds::default();
        if let Some(period) = self.hold_period(actor, now) {
            if has_withdraw && !had_withdraw {
                // The whole key waits, every address on it included.
                started.key = Some(period);
                kept.key = Some(period);
            } else {
                let old_addresses = before.map(|b| b.restrictions.withdraw_addresses.as_slice()).unwrap_or_default();
                for address in &after.restrictions.withdraw_addresses {
                    if !old_addresses.contains(address) {
                        let hold = AddressHold { address: address.clone(), period };
                        kept.addresses.retain(|a| a.address != *address);
                        kept.addresses.push(hold.clone());
                        started.addresses.push(hold);
                    }
                }
            }
        }
        after.withdrawal_holds = kept;
        HoldChange { started, cancelled }
    }

    /// The running holds a revocation of `key` at `now` ends.
    pub(crate) fn holds_ended_by_revocation(key: &KeyRecord, now: UnixMillis) -> HoldChange {
        HoldChange { started: WithdrawalHolds::default(), cancelled: running(&key.withdrawal_holds, now) }
    }

    /// What keeps a withdrawal by `key` of `account` to `address` from happening at `now`: the
    /// hold or lock that ends last among the account's lock, the account's hold, the key's hold
    /// and the address's hold on the key; `None` when the withdrawal may go ahead.
    ///
    /// # Errors
    /// Storage errors; [`ServiceError::NotFound`] for an unknown account.
    pub async fn withdrawal_block(
        &self,
        account: AccountId,
        key: &ApiKeyId,
        address: &str,
        now: UnixMillis,
    ) -> ServiceResult<Option<WithdrawalBlock>> {
        let rec = self.account_by_id(account).await?;
        let mut blocks = vec![
            (HoldKind::AccountLocked, rec.withdrawals_locked_until),
            (HoldKind::TwoFactorEnabled, rec.withdrawals_held_until),
        ];
        if let Some(k) = self.inner.store.get_key(key).await? {
            let h = &k.withdrawal_holds;
            blocks.push((HoldKind::WithdrawKey, h.key.map(|p| p.until)));
            let address_hold = h.addresses.iter().filter(|a| a.address == address).map(|a| a.period.until).max();
            blocks.push((HoldKind::NewAddress, address_hold));
        }
        // The one that ends last is the one to wait for; on a tie, the widest (listed first).
        Ok(blocks
            .into_iter()
            .filter_map(|(kind, until)| until.filter(|u| *u > now).map(|until| WithdrawalBlock { kind, until }))
            .reduce(|a, b| if b.until > a.until { b } else { a }))
    }

    /// The running holds and locks of the actor's account (an owner's own; operators name the
    /// account): the account's, then each live key's, for the console to show.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for an unknown or foreign account; storage errors.
    pub async fn withdrawal_holds(&self, actor: &Actor, account: &str) -> ServiceResult<Vec<HoldView>> {
        let rec = self.account_record(actor, account).await?;
        let now = self.now_ms();
        let mut out = Vec::new();
        if let Some(until) = rec.withdrawals_locked_until.filter(|u| *u > now) {
            out.push(HoldView {
                kind: HoldKind::AccountLocked,
                key: None,
                key_label: None,
                address: None,
                since: None,
                until,
            });
        }
        if let Some(until) = rec.withdrawals_held_until.filter(|u| *u > now) {
            let since = self.inner.store.two_factor(rec.id).await?.and_then(|t| t.confirmed_at);
            out.push(HoldView {
                kind: HoldKind::TwoFactorEnabled,
                key: None,
                key_label: None,
                address: None,
                since,
                until,
            });
        }
        for k in self.inner.store.list_keys(Some(rec.id)).await? {
            if k.status == KeyStatus::Revoked {
                continue;
            }
            let h = running(&k.withdrawal_holds, now);
            let view = |kind, address: Option<&str>, p: HoldPeriod| HoldView {
                kind,
                key: Some(k.id.to_string()),
                key_label: Some(k.label.clone()),
                address: address.map(str::to_owned),
                since: Some(p.since),
                until: p.until,
            };
            if let Some(p) = h.key {
                out.push(view(HoldKind::WithdrawKey, None, p));
            }
            for a in &h.addresses {
                out.push(view(HoldKind::NewAddress, Some(&a.address), a.period));
            }
        }
        Ok(out)
    }
}
