//! The wallet (`/sapi/v1/capital/*`, `/sapi/v1/asset/tradeFee`): coins and networks, deposit
//! addresses and history, withdrawals.
//!
//! A withdrawal carries the verified key's policy (address allowlist, 24-hour limit, key id) into
//! the engine, which checks it atomically with the balance: two concurrent withdrawals cannot both
//! pass a limit that only one fits under.

use super::BinanceJson;
use super::trading::fresh_until;
use super::wire::{self, json, opt, req};
use crate::extract::Signed;
use crate::{ApiError, AppState};
use axum::extract::State;
use keygate_auth::Params;
use keygate_exchange::wallet::WITHDRAW_PROCESSING;
use keygate_exchange::{AssetSpec, ExchangeError, HistoryQuery, NetworkSpec, WithdrawPolicy};
use keygate_proto::{Amount, AssetCode, ErrorCode, Symbol, UnixMillis};
use keygate_service::{ApiWithdrawal, HoldKind, ServiceError, WithdrawalBlock};
use std::collections::BTreeMap;

fn now(state: &AppState) -> UnixMillis {
    state.service.clock().now().as_millis()
}

// ---------------------------------------------------------------------------------------------
// capital/config/getall.
// ---------------------------------------------------------------------------------------------

/// The human name Binance gives a network code.
fn network_name(code: &str) -> String {
    match code {
        "BTC" => "Bitcoin",
        "ETH" => "Ethereum (ERC20)",
        "BSC" => "BNB Smart Chain (BEP20)",
        "TRX" => "Tron (TRC20)",
        other => other,
    }
    .to_owned()
}

fn coin_json(spec: &AssetSpec, free: Amount, locked: Amount, withdrawing: Amount) -> json::Coin {
    // The default network is the first withdraw-enabled one (the exchange's rule), else the first.
    let default = spec.networks.iter().position(|n| n.withdraw_enable).unwrap_or(0);
    let network = |(i, n): (usize, &NetworkSpec)| json::Network {
        network: n.network.clone(),
        coin: spec.coin.clone(),
        withdraw_integer_multiple: Amount::from_units(1),
        is_default: i == default,
        deposit_enable: n.deposit_enable,
        withdraw_enable: n.withdraw_enable,
        deposit_desc: String::new(),
        withdraw_desc: String::new(),
        special_tips: String::new(),
        name: network_name(&n.network),
        reset_address_status: false,
        address_regex: String::new(),
        memo_regex: String::new(),
        withdraw_fee: n.withdraw_fee,
        withdraw_min: n.withdraw_min,
        withdraw_max: n.withdraw_max,
        min_confirm: 1,
        un_lock_confirm: 0,
        same_address: false,
        estimated_arrival_time: 1,
        busy: false,
    };
    json::Coin {
        coin: spec.coin.clone(),
        deposit_all_enable: spec.networks.iter().any(|n| n.deposit_enable),
        withdraw_all_enable: spec.networks.iter().any(|n| n.withdraw_enable),
        name: spec.name.clone(),
        free,
        locked,
        freeze: "0".to_owned(),
        withdrawing,
        ipoing: "0".to_owned(),
        ipoable: "0".to_owned(),
        storage: "0".to_owned(),
        is_legal_money: false,
        trading: true,
        network_list: spec.networks.iter().enumerate().map(network).collect(),
    }
}

/// `GET /sapi/v1/capital/config/getall` (USER_DATA): every coin with its networks and the
/// account's balance; `withdrawing` is what processing withdrawals hold, `locked` the rest of the
/// locked balance (open orders).
pub(crate) async fn all_coins(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::Coin>>, ApiError> {
    signed.request.params().ensure_only(&[])?;
    let account = signed.request.account_id();
    let at = now(&state);
    let coins = state
        .engine
        .query(move |ex| {
            let processing = HistoryQuery { status: Some(WITHDRAW_PROCESSING), ..HistoryQuery::default() };
            let mut withdrawing: BTreeMap<AssetCode, u64> = BTreeMap::new();
            for w in ex.withdraw_history(account, &processing, at).unwrap_or_default() {
                let sum = withdrawing.entry(w.coin.clone()).or_default();
                *sum = sum.saturating_add(w.amount.units());
            }
            let balances = ex.balances(account);
            ex.assets()
                .iter()
                .map(|spec| {
                    let b = balances.iter().find(|b| b.asset == spec.coin);
                    let (free, locked) = b.map_or((0, 0), |b| (b.free.units(), b.locked.units()));
                    let w = withdrawing.get(&spec.coin).copied().unwrap_or(0).min(locked);
                    coin_json(spec, Amount::from_units(free), Amount::from_units(locked - w), Amount::from_units(w))
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(BinanceJson(coins))
}

// ---------------------------------------------------------------------------------------------
// Deposits.
// ---------------------------------------------------------------------------------------------

/// An optional `status` (a small integer).
fn opt_status(p: &Params) -> Result<Option<u8>, ApiError> {
    wire::opt_u64(p, "status")?.map(|s| u8::try_from(s).map_err(|_| wire::invalid("status"))).transpose()
}

/// `GET /sapi/v1/capital/deposit/hisrec` (USER_DATA): newest first (`coin`, `status`,
/// `startTime`, `endTime` within 90 days, `offset`, `limit`; `includeSource` is accepted and adds
/// nothing, the sandbox knows no source addresses).
pub(crate) async fn deposit_history(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::Deposit>>, ApiError> {
    let p = signed.request.params();
    p.ensure_only(&["coin", "status", "startTime", "endTime", "offset", "limit", "includeSource"])?;
    wire::opt_bool(p, "includeSource")?;
    let q = HistoryQuery {
        coin: wire::opt_coin(p, "coin")?,
        status: opt_status(p)?,
        start_time: wire::opt_time(p, "startTime")?,
        end_time: wire::opt_time(p, "endTime")?,
        offset: wire::opt_u32(p, "offset")?,
        limit: wire::opt_u32(p, "limit")?,
        withdraw_order_id: None,
    };
    let account = signed.request.account_id();
    let at = now(&state);
    let list = state
        .engine
        .query(move |ex| {
            ex.deposit_history(account, &q, at).map(|v| v.into_iter().map(wire::deposit).collect::<Vec<_>>())
        })
        .await??;
    Ok(BinanceJson(list))
}

/// `GET /sapi/v1/capital/deposit/address` (USER_DATA): `coin` (`network`, default the coin's
/// first deposit-enabled network).
pub(crate) async fn deposit_address(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::DepositAddress>, ApiError> {
    let p = signed.request.params();
    p.ensure_only(&["coin", "network"])?;
    req(p, "coin")?;
    let coin = wire::opt_coin(p, "coin")?.ok_or(ExchangeError::UnknownAsset)?;
    let network = opt(p, "network")?.map(str::to_owned);
    let account = signed.request.account_id();
    let address = state.engine.query(move |ex| ex.deposit_address(account, &coin, network.as_deref())).await??;
    Ok(BinanceJson(address))
}

// ---------------------------------------------------------------------------------------------
// Withdrawals.
// ---------------------------------------------------------------------------------------------

/// `GET /sapi/v1/capital/withdraw/history` (USER_DATA): newest first (`coin`,
/// `withdrawOrderId`, `status`, `startTime`, `endTime` within 90 days, `offset`, `limit`).
pub(crate) async fn withdraw_history(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::Withdrawal>>, ApiError> {
    let p = signed.request.params();
    p.ensure_only(&["coin", "withdrawOrderId", "status", "startTime", "endTime", "offset", "limit"])?;
    let q = HistoryQuery {
        coin: wire::opt_coin(p, "coin")?,
        status: opt_status(p)?,
        start_time: wire::opt_time(p, "startTime")?,
        end_time: wire::opt_time(p, "endTime")?,
        offset: wire::opt_u32(p, "offset")?,
        limit: wire::opt_u32(p, "limit")?,
        withdraw_order_id: opt(p, "withdrawOrderId")?.map(str::to_owned),
    };
    let account = signed.request.account_id();
    let at = now(&state);
    let list = state
        .engine
        .query(move |ex| {
            ex.withdraw_history(account, &q, at).map(|v| v.into_iter().map(wire::withdrawal).collect::<Vec<_>>())
        })
        .await??;
    Ok(BinanceJson(list))
}

/// Free text a withdrawal may carry (`address`, `withdrawOrderId`, `name`): printable, bounded.
fn text_param<'a>(p: &'a Params, name: &str, max: usize) -> Result<Option<&'a str>, ApiError> {
    match opt(p, name)? {
        Some(v) if v.len() > max || v.chars().any(char::is_control) => {
            Err(wire::illegal(name, &format!("printable text of at most {max} bytes")))
        }
        other => Ok(other),
    }
}

/// The Binance answer to a withdrawal that must wait: -4016 for the account's lock (Binance's own
/// text, which names password changes and 2FA removal) and for holds of the account or the key,
/// -4036 (Binance's code for a new address still in its waiting period) for an address hold. The
/// message says why and until when, in UTC.
fn withdrawal_refusal(block: &WithdrawalBlock, now: UnixMillis) -> ApiError {
    let until = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(block.until.0) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC")).ok()
        })
        .unwrap_or_else(|| format!("{} ms", block.until.0));
    let hours = block.until.0.saturating_sub(now.0).div_ceil(3_600_000);
    let (code, what) = match block.kind {
        HoldKind::AccountLocked => return ExchangeError::WithdrawLocked.into(),
        HoldKind::TwoFactorEnabled => (ErrorCode::WithdrawProhibited, "withdrawals of this account are held"),
        HoldKind::WithdrawKey => (ErrorCode::WithdrawProhibited, "withdrawals with this API key are held"),
        HoldKind::NewAddress => (ErrorCode::NewAddressWaiting, "withdrawals to this new address are held"),
    };
    ApiError::binance(
        code,
        format!(
            "Withdrawal prohibited: {} ({what} for security until {until}, about {hours} h from now).",
            block.kind.reason()
        ),
    )
}

/// `POST /sapi/v1/capital/withdraw/apply` (withdraw permission, IP allowlist, single-use
/// signature): `coin`, `address`, `amount` (`network`, `withdrawOrderId`, `name`, `walletType`
/// 0, `transactionFeeFlag`, an empty `addressTag`). The key's address allowlist, 24-hour limit
/// and the balance are checked by the engine in one step.
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::WithdrawApplied>, ApiError> {
    let r = &signed.request;
    let p = r.params();
    p.ensure_only(&[
        "coin",
        "network",
        "address",
        "addressTag",
        "amount",
        "withdrawOrderId",
        "walletType",
        "name",
        "transactionFeeFlag",
    ])?;
    req(p, "coin")?;
    let coin = wire::opt_coin(p, "coin")?.ok_or(ExchangeError::UnknownAsset)?;
    let address = text_param(p, "address", 128)?.ok_or_else(|| keygate_auth::ParamError::mandatory("address"))?;
    let amount = wire::amount_text("amount", req(p, "amount")?)?;
    let network = opt(p, "network")?.map(str::to_owned);
    let withdraw_order_id = text_param(p, "withdrawOrderId", 100)?.map(str::to_owned);
    // The sandbox's networks take no memo/tag, and it has only the spot wallet: refuse what it
    // cannot honour rather than drop it silently.
    match p.get("addressTag") {
        None | Some("") => {}
        Some(_) => return Err(wire::not_required("addressTag")),
    }
    match wire::opt_u64(p, "walletType")? {
        None | Some(0) => {}
        Some(_) => return Err(wire::invalid("walletType")),
    }
    // `name` labels the address in Binance's address book; `transactionFeeFlag` only concerns
    // internal transfers. Both are checked and otherwise have no effect here.
    text_param(p, "name", 200)?;
    wire::opt_bool(p, "transactionFeeFlag")?;
    let key = r.key();
    let policy = WithdrawPolicy {
        allowed_addresses: key.restrictions.withdraw_addresses.clone(),
        limit_24h: key.restrictions.withdraw_limit_24h.as_ref().map(|l| (l.asset.clone(), l.amount)),
        key_id: key.id.as_str().to_owned(),
    };
    let command = keygate_exchange::Withdraw {
        account: r.account_id(),
        coin,
        network,
        address: address.to_owned(),
        amount,
        withdraw_order_id,
        policy,
    };
    // Issues #6 and #19: no withdrawals for a while after a password change or 2FA removal (the
    // lock), after 2FA was turned on, after the key was given `withdraw`, or to an address added
    // to it lately (the holds). The service decides, from the store, and audits the withdrawal
    // with its journal entry.
    let withdrawal = ApiWithdrawal {
        command,
        key: key.id.clone(),
        fresh_until: fresh_until(&state, r),
        source: Some(signed.client_ip.to_string()),
        single_use: r.single_use_id(),
    };
    match state.service.withdraw(withdrawal).await {
        Ok(record) => Ok(BinanceJson(json::WithdrawApplied { id: record.id })),
        Err(ServiceError::WithdrawalHeld(block)) => Err(withdrawal_refusal(&block, now(&state))),
        Err(ServiceError::Exchange(e)) => Err(e.into()),
        Err(e) => Err(ApiError::Internal(format!("withdrawal: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Trade fees.
// ---------------------------------------------------------------------------------------------

/// `GET /sapi/v1/asset/tradeFee` (USER_DATA): maker and taker rates of one market (`symbol`) or
/// all, always as an array.
pub(crate) async fn trade_fee(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::TradeFee>>, ApiError> {
    let p = signed.request.params();
    p.ensure_only(&["symbol"])?;
    let only = wire::opt_symbol(p)?;
    let fees = state
        .engine
        .query(move |ex| {
            let symbols: Vec<Symbol> = match only {
                Some(s) => vec![s],
                None => ex.markets().iter().map(|m| m.symbol.clone()).collect(),
            };
            symbols
                .into_iter()
                .map(|s| {
                    let (maker, taker) = ex.fee_rates(&s)?;
                    Ok(json::TradeFee { symbol: s, maker_commission: maker, taker_commission: taker })
                })
                .collect::<Result<Vec<_>, ExchangeError>>()
        })
        .await??;
    Ok(BinanceJson(fees))
}
