//! Free and locked balances per account and asset, in integer 1e-8 units, with per-asset totals.
//!
//! The ledger is the single place money moves. Every operation is checked arithmetic, and the
//! conservation law `sum(free + locked) + fees == deposits - withdrawals` (per asset) can be
//! verified at any time with [`Ledger::check_invariant`].

use crate::error::{ExchangeError, OVERFLOW};
use keygate_proto::{AccountId, AssetCode};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// One account's holding of one asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// Spendable now.
    pub free: u64,
    /// Reserved by open orders and processing withdrawals.
    pub locked: u64,
}

/// Money that entered, left, or was kept by the exchange, per asset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetTotals {
    /// Sum of all deposits credited.
    pub deposits: u64,
    /// Sum of all amounts sent out by completed withdrawals (net of their fees).
    pub withdrawals: u64,
    /// Trading commissions and withdrawal fees kept by the exchange.
    pub fees: u64,
}

/// One asset's books, as `keygate audit ledger` prints them (amounts in Binance decimals).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetReport {
    /// The asset.
    pub asset: AssetCode,
    /// Sum of free balances.
    pub free: String,
    /// Sum of locked balances.
    pub locked: String,
    /// Fees kept.
    pub fees: String,
    /// Deposits credited.
    pub deposits: String,
    /// Withdrawals sent (net of fees).
    pub withdrawals: String,
}

fn decimal(units: u128) -> String {
    format!("{}.{:08}", units / 100_000_000, units % 100_000_000)
}

/// The conservation law failed for an asset: both sides are named so that the log says how far off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvariantViolation {
    /// The asset whose books do not balance.
    pub asset: AssetCode,
    /// `sum(free + locked) + fees`.
    pub held: u128,
    /// `deposits - withdrawals` (negative if more left than came in).
    pub net_inflow: i128,
}

impl fmt::Display for InvariantViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ledger invariant broken for {}: balances + fees = {} units but deposits - withdrawals = {} units",
            self.asset, self.held, self.net_inflow
        )
    }
}

impl std::error::Error for InvariantViolation {}

/// Balances of every account in every asset, plus per-asset totals.
///
/// Assets are addressed by their index in the exchange config (`asset_idx`), so that the hot path
/// never compares strings; the codes are kept for reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    assets: Vec<AssetCode>,
    balances: BTreeMap<AccountId, Vec<Balance>>,
    totals: Vec<AssetTotals>,
    #[serde(skip)]
    changed: ChangedAccounts,
}

/// The accounts whose balances or open orders may have changed since [`Ledger::take_changed`]
/// last ran, so that a cache outside the exchange (the engine's account views) drops only what
/// went stale.
///
/// Bookkeeping, not state: never saved, and equal to any other (a replayed exchange equals the
/// original whatever either has handed out). Bounded: past [`ChangedAccounts::MAX`] distinct
/// entries without a take it stops listing and says "every account" instead, so an exchange
/// nobody takes from (a replay, a test) cannot grow it without limit.
///
/// A set, not a list: every balance change notes its account on the engine's hot path, so the
/// check for one already noted must not grow with the number of accounts.
#[derive(Debug, Clone, Default)]
pub struct ChangedAccounts {
    accounts: FxHashSet<AccountId>,
    all: bool,
}

impl ChangedAccounts {
    /// Listed accounts before the list gives up and means every account.
    pub const MAX: usize = 1024;

    fn note(&mut self, account: AccountId) {
        if !self.all && self.accounts.insert(account) && self.accounts.len() > Self::MAX {
            self.accounts = FxHashSet::default();
            self.all = true;
        }
    }

    /// Whether `account` may have changed.
    #[must_use]
    pub fn contains(&self, account: AccountId) -> bool {
        self.all || self.accounts.contains(&account)
    }

    /// The changed accounts (in no particular order), or `None` when there were too many to list
    /// and any may have changed.
    #[must_use]
    pub fn listed(&self) -> Option<impl Iterator<Item = AccountId> + '_> {
        (!self.all).then(|| self.accounts.iter().copied())
    }
}

impl PartialEq for ChangedAccounts {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ChangedAccounts {}

fn add(a: u64, b: u64) -> Result<u64, ExchangeError> {
    a.checked_add(b).ok_or(OVERFLOW)
}

fn sub(a: u64, b: u64) -> Result<u64, ExchangeError> {
    a.checked_sub(b).ok_or(ExchangeError::Internal("ledger underflow"))
}

impl Ledger {
    /// An empty ledger over these assets (in config order).
    #[must_use]
    pub fn new(assets: Vec<AssetCode>) -> Self {
        let totals = vec![AssetTotals::default(); assets.len()];
        Self { assets, balances: BTreeMap::new(), totals, changed: ChangedAccounts::default() }
    }

    /// The asset codes, in index order.
    #[must_use]
    pub fn assets(&self) -> &[AssetCode] {
        &self.assets
    }

    /// One account's balance of one asset (zero when never touched).
    #[must_use]
    pub fn balance(&self, account: AccountId, asset_idx: usize) -> Balance {
        self.balances.get(&account).and_then(|v| v.get(asset_idx)).copied().unwrap_or_default()
    }

    /// All of one account's balances, in asset order (zeros when never touched).
    #[must_use]
    pub fn balances_of(&self, account: AccountId) -> Vec<(AssetCode, Balance)> {
        self.assets.iter().enumerate().map(|(i, a)| (a.clone(), self.balance(account, i))).collect()
    }

    /// The accounts that hold or ever held anything.
    pub fn accounts(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.balances.keys().copied()
    }

    /// Every asset's books: sums of balances beside deposits, withdrawals and fees.
    #[must_use]
    pub fn report(&self) -> Vec<AssetReport> {
        self.assets
            .iter()
            .enumerate()
            .map(|(i, asset)| {
                let (mut free, mut locked) = (0u128, 0u128);
                for v in self.balances.values() {
                    if let Some(b) = v.get(i) {
                        free += u128::from(b.free);
                        locked += u128::from(b.locked);
                    }
                }
                let t = self.totals(i);
                AssetReport {
                    asset: asset.clone(),
                    free: decimal(free),
                    locked: decimal(locked),
                    fees: decimal(t.fees.into()),
                    deposits: decimal(t.deposits.into()),
                    withdrawals: decimal(t.withdrawals.into()),
                }
            })
            .collect()
    }

    /// Per-asset totals.
    #[must_use]
    pub fn totals(&self, asset_idx: usize) -> AssetTotals {
        self.totals.get(asset_idx).copied().unwrap_or_default()
    }

    /// The accounts whose balances may have changed since the last call, and a fresh list.
    pub fn take_changed(&mut self) -> ChangedAccounts {
        std::mem::take(&mut self.changed)
    }

    /// Notes that something cached per account besides its balances changed (its open orders):
    /// caches that drop an account's entry on a balance change then drop it on this one too.
    pub(crate) fn note_changed(&mut self, account: AccountId) {
        self.changed.note(account);
    }

    /// The one way to a mutable balance, so every change is noted in `changed`.
    fn slot(&mut self, account: AccountId, asset_idx: usize) -> Result<&mut Balance, ExchangeError> {
        self.changed.note(account);
        let n = self.assets.len();
        let v = self.balances.entry(account).or_insert_with(|| vec![Balance::default(); n]);
        v.get_mut(asset_idx).ok_or(ExchangeError::Internal("asset index out of range"))
    }

    fn total(&mut self, asset_idx: usize) -> Result<&mut AssetTotals, ExchangeError> {
        self.totals.get_mut(asset_idx).ok_or(ExchangeError::Internal("asset index out of range"))
    }

    /// Whether a deposit of `amount` keeps the asset's deposit total in range (every balance is
    /// bounded by that total, so later credits cannot overflow).
    #[must_use]
    pub fn can_deposit(&self, asset_idx: usize, amount: u64) -> bool {
        self.totals.get(asset_idx).is_some_and(|t| t.deposits.checked_add(amount).is_some())
    }

    /// Credits a deposit: free balance and the deposit total grow together.
    pub(crate) fn deposit(&mut self, account: AccountId, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        let t = self.total(asset_idx)?;
        t.deposits = add(t.deposits, amount)?;
        let b = self.slot(account, asset_idx)?;
        b.free = add(b.free, amount)?;
        Ok(())
    }

    /// Moves `amount` from free to locked.
    pub(crate) fn lock(&mut self, account: AccountId, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        let b = self.slot(account, asset_idx)?;
        let free = sub(b.free, amount)?;
        let locked = add(b.locked, amount)?;
        b.free = free;
        b.locked = locked;
        Ok(())
    }

    /// Moves `amount` from locked back to free.
    pub(crate) fn unlock(&mut self, account: AccountId, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        if amount == 0 {
            return Ok(());
        }
        let b = self.slot(account, asset_idx)?;
        let locked = sub(b.locked, amount)?;
        let free = add(b.free, amount)?;
        b.free = free;
        b.locked = locked;
        Ok(())
    }

    /// Removes `amount` from locked (it is being paid to someone else or sent out).
    pub(crate) fn spend_locked(
        &mut self,
        account: AccountId,
        asset_idx: usize,
        amount: u64,
    ) -> Result<(), ExchangeError> {
        let b = self.slot(account, asset_idx)?;
        b.locked = sub(b.locked, amount)?;
        Ok(())
    }

    /// Adds `amount` to free (the receiving side of a trade).
    pub(crate) fn credit(&mut self, account: AccountId, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        let b = self.slot(account, asset_idx)?;
        b.free = add(b.free, amount)?;
        Ok(())
    }

    /// Adds to the exchange's fee income.
    pub(crate) fn add_fee(&mut self, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        let t = self.total(asset_idx)?;
        t.fees = add(t.fees, amount)?;
        Ok(())
    }

    /// Records an amount sent out of the exchange.
    pub(crate) fn add_withdrawal(&mut self, asset_idx: usize, amount: u64) -> Result<(), ExchangeError> {
        let t = self.total(asset_idx)?;
        t.withdrawals = add(t.withdrawals, amount)?;
        Ok(())
    }

    /// Verifies, per asset, `sum(free + locked) + fees == deposits - withdrawals`.
    ///
    /// # Errors
    /// The first [`InvariantViolation`] found, naming the asset and both sides.
    pub fn check_invariant(&self) -> Result<(), InvariantViolation> {
        for (i, asset) in self.assets.iter().enumerate() {
            let mut held: u128 = 0;
            for v in self.balances.values() {
                if let Some(b) = v.get(i) {
                    held += u128::from(b.free) + u128::from(b.locked);
                }
            }
            let t = self.totals(i);
            held += u128::from(t.fees);
            let net_inflow = i128::from(t.deposits) - i128::from(t.withdrawals);
            if i128::try_from(held).ok() != Some(net_inflow) {
                return Err(InvariantViolation { asset: asset.clone(), held, net_inflow });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invariant_holds_through_deposit_lock_trade_and_fee_and_names_the_asset_when_broken() {
        let mut l = Ledger::new(vec![AssetCode::parse("BTC").unwrap(), AssetCode::parse("USDT").unwrap()]);
        let (a, b) = (AccountId(1), AccountId(2));
        l.deposit(a, 0, 100).unwrap();
        l.deposit(b, 1, 1000).unwrap();
        l.lock(a, 0, 40).unwrap();
        l.spend_locked(a, 0, 40).unwrap();
        l.credit(b, 0, 39).unwrap();
        l.add_fee(0, 1).unwrap();
        l.check_invariant().unwrap();
        assert!(l.lock(a, 0, 61).is_err());
        l.credit(a, 1, 5).unwrap();
        let v = l.check_invariant().unwrap_err();
        assert_eq!(v.asset.as_str(), "USDT");
        assert_eq!((v.held, v.net_inflow), (1005, 1000));
        assert!(v.to_string().contains("USDT"));
    }

    /// The listed accounts in order, or `None` for "all".
    fn listed(changed: &ChangedAccounts) -> Option<Vec<AccountId>> {
        changed.listed().map(|accounts| {
            let mut v: Vec<AccountId> = accounts.collect();
            v.sort_unstable();
            v
        })
    }

    #[test]
    fn every_balance_change_is_listed_once_until_taken_and_too_many_mean_all() {
        let mut l = Ledger::new(vec![AssetCode::parse("BTC").unwrap(), AssetCode::parse("USDT").unwrap()]);
        let (a, b, c) = (AccountId(1), AccountId(2), AccountId(3));
        l.deposit(a, 0, 100).unwrap();
        l.deposit(b, 1, 1000).unwrap();
        l.lock(a, 0, 40).unwrap();
        l.spend_locked(a, 0, 40).unwrap();
        l.credit(b, 0, 40).unwrap();
        let copy = l.clone();
        let changed = l.take_changed();
        assert_eq!(listed(&changed), Some(vec![a, b]));
        assert!(changed.contains(a) && !changed.contains(c));
        // Bookkeeping only: a ledger that handed its list out equals one that did not.
        assert_eq!(l, copy);
        assert_eq!(listed(&l.take_changed()), Some(vec![]));
        // A refused change is listed too (conservatively).
        assert!(l.lock(c, 0, 1).is_err());
        assert_eq!(listed(&l.take_changed()), Some(vec![c]));
        for i in 0..=ChangedAccounts::MAX {
            l.credit(AccountId(100 + i64::try_from(i).unwrap()), 1, 1).unwrap();
        }
        let changed = l.take_changed();
        assert_eq!(listed(&changed), None);
        assert!(changed.contains(c));
        assert_eq!(listed(&l.take_changed()), Some(vec![]));
    }
}
