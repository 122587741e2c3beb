//! Deposits (operator actions) and withdrawals (with the key's policy checked atomically).

use crate::error::ExchangeError;
use crate::exchange::Exchange;
use crate::ids;
use keygate_proto::{AccountId, Amount, AssetCode, ErrorCode, UnixMillis};
use serde::{Deserialize, Serialize};

/// Binance deposit status: success.
pub const DEPOSIT_SUCCESS: u8 = 1;
/// Binance withdrawal status: processing.
pub const WITHDRAW_PROCESSING: u8 = 4;
/// Binance withdrawal status: completed.
pub const WITHDRAW_COMPLETED: u8 = 6;
/// Binance withdrawal status: rejected (not produced: refusals are errors).
pub const WITHDRAW_REJECTED: u8 = 3;

/// 24 hours in milliseconds: the window of per-key withdrawal limits.
pub const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// An operator deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    /// Credited account.
    pub account: AccountId,
    /// Coin.
    pub coin: AssetCode,
    /// Network (default: the coin's first deposit-enabled network).
    pub network: Option<String>,
    /// Amount credited.
    pub amount: Amount,
}

/// One deposit, as `GET /sapi/v1/capital/deposit/hisrec` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositRecord {
    /// Id (a decimal string, like Binance's).
    pub id: String,
    /// Credited account.
    pub account: AccountId,
    /// Amount.
    pub amount: Amount,
    /// Coin.
    pub coin: AssetCode,
    /// Network.
    pub network: String,
    /// 1 (success).
    pub status: u8,
    /// The account's deposit address for the coin and network.
    pub address: String,
    /// Always empty.
    pub address_tag: String,
    /// A deterministic hash-like transaction id.
    pub tx_id: String,
    /// When it was credited.
    pub insert_time: UnixMillis,
    /// 0 (external transfer).
    pub transfer_type: u8,
    /// "1/1".
    pub confirm_times: String,
    /// 0.
    pub unlock_confirm: u32,
    /// 0 (spot wallet).
    pub wallet_type: u8,
}

/// The key's withdrawal policy, passed in by the service with each withdrawal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawPolicy {
    /// Addresses this key may withdraw to; empty allows none.
    pub allowed_addresses: Vec<String>,
    /// Most this key may withdraw in 24 hours, in one asset (`None`: no limit).
    pub limit_24h: Option<(AssetCode, Amount)>,
    /// The key, so that its last 24 hours can be summed.
    pub key_id: String,
}

/// `POST /sapi/v1/capital/withdraw/apply`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Withdraw {
    /// The paying account.
    pub account: AccountId,
    /// `coin`.
    pub coin: AssetCode,
    /// `network` (default: the coin's first withdraw-enabled network).
    pub network: Option<String>,
    /// `address`.
    pub address: String,
    /// `amount`, fee included (net sent = amount - fee).
    pub amount: Amount,
    /// `withdrawOrderId`, echoed in history.
    pub withdraw_order_id: Option<String>,
    /// The key's policy.
    pub policy: WithdrawPolicy,
}

/// One withdrawal, as `GET /sapi/v1/capital/withdraw/history` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalRecord {
    /// 32 hex characters.
    pub id: String,
    /// The paying account.
    pub account: AccountId,
    /// The key that applied.
    pub key_id: String,
    /// Requested amount (the fee is taken from it).
    pub amount: Amount,
    /// The network fee.
    pub transaction_fee: Amount,
    /// Coin.
    pub coin: AssetCode,
    /// 4 PROCESSING, 6 COMPLETED.
    pub status: u8,
    /// Destination.
    pub address: String,
    /// Always empty.
    pub address_tag: String,
    /// Set on completion.
    pub tx_id: String,
    /// When it was applied (the server prints `YYYY-MM-DD hh:mm:ss`).
    pub apply_time: UnixMillis,
    /// Network.
    pub network: String,
    /// 0 (external).
    pub transfer_type: u8,
    /// The client's `withdrawOrderId`.
    pub withdraw_order_id: Option<String>,
    /// Always empty.
    pub info: String,
    /// Confirmations so far.
    pub confirm_no: u32,
    /// 0 (spot wallet).
    pub wallet_type: u8,
    /// When it completed.
    pub complete_time: Option<UnixMillis>,
}

impl WithdrawalRecord {
    /// What arrives at the address: amount minus fee.
    #[must_use]
    pub fn net_amount(&self) -> Amount {
        Amount::from_units(self.amount.units().saturating_sub(self.transaction_fee.units()))
    }
}

/// A deposit address, in the wire shape of `GET /sapi/v1/capital/deposit/address`.
pub use keygate_proto::binance::wallet::DepositAddress;

impl Exchange {
    pub(crate) fn asset_idx(&self, coin: &AssetCode) -> Result<usize, ExchangeError> {
        self.asset_index.get(coin).map(|i| *i as usize).ok_or(ExchangeError::UnknownAsset)
    }

    fn network_of(
        &self,
        coin: &AssetCode,
        network: Option<&str>,
        for_withdraw: bool,
    ) -> Result<&crate::config::NetworkSpec, ExchangeError> {
        let spec = self.config.asset(coin).ok_or(ExchangeError::UnknownAsset)?;
        let enabled = |n: &crate::config::NetworkSpec| if for_withdraw { n.withdraw_enable } else { n.deposit_enable };
        let what = if for_withdraw { "withdrawal" } else { "deposit" };
        match network {
            Some(name) => {
                let n = spec.networks.iter().find(|n| n.network == name).ok_or_else(|| {
                    ExchangeError::NetworkClosed { msg: format!("Network {name} is not supported for {coin}.") }
                })?;
                if enabled(n) {
                    Ok(n)
                } else {
                    Err(ExchangeError::NetworkClosed { msg: format!("Current asset is not open for {what}.") })
                }
            }
            None => {
                spec.networks.iter().find(|n| enabled(n)).ok_or_else(|| ExchangeError::NetworkClosed {
                    msg: format!("Current asset is not open for {what}."),
                })
            }
        }
    }

    /// The account's deposit address for a coin (and network, default the first deposit-enabled).
    ///
    /// # Errors
    /// -4018 for an unknown coin, -4019 for an unknown or closed network.
    pub fn deposit_address(
        &self,
        account: AccountId,
        coin: &AssetCode,
        network: Option<&str>,
    ) -> Result<DepositAddress, ExchangeError> {
        let n = self.network_of(coin, network, false)?;
        Ok(DepositAddress {
            address: ids::deposit_address(account.0, coin.as_str(), &n.network),
            coin: coin.clone(),
            tag: String::new(),
            url: String::new(),
        })
    }

    pub(crate) fn deposit(&mut self, d: &Deposit, now: UnixMillis) -> Result<DepositRecord, ExchangeError> {
        let a = self.asset_idx(&d.coin)?;
        let network = self.network_of(&d.coin, d.network.as_deref(), false)?.network.clone();
        if d.amount == Amount::ZERO {
            return Err(ExchangeError::BadParam {
                code: ErrorCode::MandatoryParamEmptyOrMalformed,
                msg: "Deposit amount must be positive.".to_owned(),
            });
        }
        if !self.ledger.can_deposit(a, d.amount.units()) {
            return Err(ExchangeError::BadParam {
                code: ErrorCode::IllegalChars,
                msg: "Deposit amount is too large.".to_owned(),
            });
        }
        let seq = self.deposits.len() as u64 + 1;
        let record = DepositRecord {
            id: ids::deposit_id(seq),
            account: d.account,
            amount: d.amount,
            coin: d.coin.clone(),
            address: ids::deposit_address(d.account.0, d.coin.as_str(), &network),
            tx_id: ids::tx_hash(&network, ids::mix64(seq ^ 0xD0D0)),
            network,
            status: DEPOSIT_SUCCESS,
            address_tag: String::new(),
            insert_time: now,
            transfer_type: 0,
            confirm_times: "1/1".to_owned(),
            unlock_confirm: 0,
            wallet_type: 0,
        };
        self.ledger.deposit(d.account, a, d.amount.units())?;
        self.deposits.push(record.clone());
        Ok(record)
    }

    pub(crate) fn withdraw(&mut self, w: &Withdraw, now: UnixMillis) -> Result<WithdrawalRecord, ExchangeError> {
        let a = self.asset_idx(&w.coin)?;
        if !w.policy.allowed_addresses.iter().any(|x| x == &w.address) {
            return Err(ExchangeError::AddressNotAllowed);
        }
        let n = self.network_of(&w.coin, w.network.as_deref(), true)?;
        let (fee, network) = (n.withdraw_fee, n.network.clone());
        if w.amount < n.withdraw_min {
            return Err(ExchangeError::BelowWithdrawMin { min: n.withdraw_min });
        }
        if w.amount > n.withdraw_max {
            return Err(ExchangeError::AboveWithdrawMax { max: n.withdraw_max });
        }
        if w.amount <= fee {
            return Err(ExchangeError::AmountNotAboveFee);
        }
        if let Some((limit_coin, limit)) = &w.policy.limit_24h {
            if limit_coin != &w.coin {
                return Err(ExchangeError::WithdrawLimitOtherAsset);
            }
            let from = now.0.saturating_sub(DAY_MS);
            let used: u128 = self
                .withdrawals
                .iter()
                .rev()
                .take_while(|r| r.apply_time.0 > from)
                .filter(|r| r.key_id == w.policy.key_id && r.coin == w.coin && r.status != WITHDRAW_REJECTED)
                .map(|r| u128::from(r.amount.units()))
                .sum();
            if used + u128::from(w.amount.units()) > u128::from(limit.units()) {
                return Err(ExchangeError::WithdrawLimitExceeded);
            }
        }
        if self.ledger.balance(w.account, a).free < w.amount.units() {
            return Err(ExchangeError::WithdrawInsufficientBalance);
        }
        let seq = self.withdrawals.len() as u64 + 1;
        let record = WithdrawalRecord {
            id: ids::withdrawal_id(seq),
            account: w.account,
            key_id: w.policy.key_id.clone(),
            amount: w.amount,
            transaction_fee: fee,
            coin: w.coin.clone(),
            status: WITHDRAW_PROCESSING,
            address: w.address.clone(),
            address_tag: String::new(),
            tx_id: String::new(),
            apply_time: now,
            network,
            transfer_type: 0,
            withdraw_order_id: w.withdraw_order_id.clone(),
            info: String::new(),
            confirm_no: 0,
            wallet_type: 0,
            complete_time: None,
        };
        self.ledger.lock(w.account, a, w.amount.units())?;
        self.withdrawals.push(record.clone());
        Ok(record)
    }

    /// True if and only if `AdvanceWithdrawals` at `now` would complete at least one withdrawal,
    /// so the engine submits it (and journals it) only when it changes something.
    #[must_use]
    pub fn withdrawals_due(&self, now: UnixMillis) -> bool {
        let delay = self.config.withdraw_delay_ms;
        self.withdrawals[self.next_withdrawal.min(self.withdrawals.len())..]
            .iter()
            .any(|r| r.status == WITHDRAW_PROCESSING && r.apply_time.0.saturating_add(delay) <= now.0)
    }

    pub(crate) fn advance_withdrawals(&mut self, now: UnixMillis) -> Result<Vec<WithdrawalRecord>, ExchangeError> {
        let delay = self.config.withdraw_delay_ms;
        let mut done = Vec::new();
        // Withdrawals are applied in time order with one delay, so they complete in order.
        while let Some(r) = self.withdrawals.get(self.next_withdrawal) {
            if r.status == WITHDRAW_PROCESSING && r.apply_time.0.saturating_add(delay) > now.0 {
                break;
            }
            let i = self.next_withdrawal;
            self.next_withdrawal += 1;
            if r.status != WITHDRAW_PROCESSING {
                continue;
            }
            let a = self.asset_idx(&r.coin)?;
            let (account, amount, fee) = (r.account, r.amount.units(), r.transaction_fee.units());
            self.ledger.spend_locked(account, a, amount)?;
            self.ledger.add_fee(a, fee)?;
            self.ledger.add_withdrawal(a, amount - fee)?;
            let seed = ids::mix64(i as u64 ^ 0x7777);
            if let Some(r) = self.withdrawals.get_mut(i) {
                r.status = WITHDRAW_COMPLETED;
                r.tx_id = ids::tx_hash(&r.network, seed);
                r.complete_time = Some(now);
                r.confirm_no = 1;
                done.push(r.clone());
            }
        }
        Ok(done)
    }
}
