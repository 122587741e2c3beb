//! The exchange's wire format, both directions: reading parameters with Binance's strict rules
//! and error codes, and turning the exchange's records into the wire types of
//! [`keygate_proto::binance`] (which own the JSON shapes: field names, decimals as strings,
//! `orderListId: -1`, the misspelt `cummulativeQuoteQty`).

use crate::ApiError;
use keygate_auth::{ParamError, Params};
use keygate_exchange::{CanceledOrder, DepositRecord, Order, OrderRef, PlacedOrder, WithdrawalRecord};
use keygate_proto::{Amount, AssetCode, DecimalError, ErrorCode, Symbol, UnixMillis};

/// The wire types, one namespace for every family, so that `json::Order` (what the client reads)
/// stands apart from the exchange's `Order` (what the engine keeps).
pub(crate) mod json {
    pub(crate) use keygate_proto::binance::account::*;
    pub(crate) use keygate_proto::binance::general::*;
    pub(crate) use keygate_proto::binance::market::*;
    pub(crate) use keygate_proto::binance::trading::*;
    pub(crate) use keygate_proto::binance::wallet::*;
}

// ---------------------------------------------------------------------------------------------
// Reading parameters.
// ---------------------------------------------------------------------------------------------

/// Binance's legal range for a symbol, quoted in -1100 messages.
const SYMBOL_RANGE: &str = "^[A-Z0-9-_.]{1,20}$";
/// Binance's legal range for an integer parameter.
const INTEGER_RANGE: &str = "^[0-9]{1,20}$";
/// Binance's legal range for client order ids.
pub(crate) const CLIENT_ID_RANGE: &str = "^[.A-Z:/a-z0-9_-]{1,36}$";

/// -1100 for `name` with Binance's message naming `range`.
pub(crate) fn illegal(name: &str, range: &str) -> ApiError {
    ApiError::Param(ParamError::illegal_msg(format!(
        "Illegal characters found in parameter '{name}'; legal range is '{range}'."
    )))
}

/// -1130: a value outside the parameter's enumeration.
pub(crate) fn invalid(name: &str) -> ApiError {
    ApiError::binance(ErrorCode::InvalidParameter, format!("Data sent for parameter '{name}' is not valid."))
}

/// -1106: a parameter this request does not take.
pub(crate) fn not_required(name: &str) -> ApiError {
    ApiError::binance(ErrorCode::ParamNotRequired, format!("Parameter '{name}' sent when not required."))
}

/// A parameter's value; an empty value counts as not sent, so callers treat it as missing
/// (-1102 where it is mandatory).
pub(crate) fn opt<'a>(p: &'a Params, name: &str) -> Result<Option<&'a str>, ApiError> {
    match p.get(name) {
        None => Ok(None),
        Some("") => Err(ApiError::Param(ParamError::mandatory(name))),
        Some(v) => Ok(Some(v)),
    }
}

/// A mandatory parameter (-1102 when missing or empty).
pub(crate) fn req<'a>(p: &'a Params, name: &str) -> Result<&'a str, ApiError> {
    Ok(p.require(name)?)
}

/// Parses a symbol's text: -1100 when it cannot be a symbol at all (the exchange answers -1121
/// for a well-formed symbol it does not list).
pub(crate) fn symbol_text(name: &str, v: &str) -> Result<Symbol, ApiError> {
    Symbol::parse(v).map_err(|_| illegal(name, SYMBOL_RANGE))
}

/// The mandatory `symbol`.
pub(crate) fn symbol(p: &Params) -> Result<Symbol, ApiError> {
    symbol_text("symbol", req(p, "symbol")?)
}

/// The optional `symbol`.
pub(crate) fn opt_symbol(p: &Params) -> Result<Option<Symbol>, ApiError> {
    opt(p, "symbol")?.map(|v| symbol_text("symbol", v)).transpose()
}

/// `symbols=["BTCUSDT","ETHUSDT"]`, Binance's JSON list (spaces tolerated); a repeated symbol is
/// -1151 as on Binance.
pub(crate) fn opt_symbols(p: &Params) -> Result<Option<Vec<Symbol>>, ApiError> {
    let Some(raw) = opt(p, "symbols")? else { return Ok(None) };
    let range = r#"^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$"#;
    let names: Vec<String> = serde_json::from_str(raw).map_err(|_| illegal("symbols", range))?;
    if names.is_empty() {
        return Err(ApiError::Param(ParamError::mandatory("symbols")));
    }
    let mut out: Vec<Symbol> = Vec::with_capacity(names.len());
    for n in &names {
        let s = Symbol::parse(n).map_err(|_| illegal("symbols", range))?;
        if out.contains(&s) {
            return Err(ApiError::binance(
                ErrorCode::DuplicateSymbols,
                "Symbol is present multiple times in the list.",
            ));
        }
        out.push(s);
    }
    Ok(Some(out))
}

/// `symbol` or `symbols` (not both: -1128), or neither.
pub(crate) enum SymbolSelection {
    /// Neither: every market, answered as an array.
    All,
    /// `symbol`: one market, answered as an object.
    One(Symbol),
    /// `symbols`: these markets, answered as an array.
    Some(Vec<Symbol>),
}

/// Reads `symbol` / `symbols`.
pub(crate) fn symbol_selection(p: &Params) -> Result<SymbolSelection, ApiError> {
    match (opt_symbol(p)?, opt_symbols(p)?) {
        (Some(_), Some(_)) => Err(bad_combination()),
        (Some(s), None) => Ok(SymbolSelection::One(s)),
        (None, Some(v)) => Ok(SymbolSelection::Some(v)),
        (None, None) => Ok(SymbolSelection::All),
    }
}

/// -1128.
pub(crate) fn bad_combination() -> ApiError {
    ApiError::binance(ErrorCode::OptionalParamsBadCombo, "Combination of optional parameters invalid.")
}

/// Parses a Binance decimal (`^([0-9]{1,20})(\.[0-9]{1,20})?$`): exponents are -1100, more than
/// eight significant decimals -1111.
pub(crate) fn amount_text(name: &str, v: &str) -> Result<Amount, ApiError> {
    Amount::parse(v).map_err(|e| match e {
        DecimalError::TooPrecise => {
            ApiError::binance(ErrorCode::BadPrecision, "Precision is over the maximum defined for this asset.")
        }
        DecimalError::Malformed | DecimalError::TooLarge => ApiError::Param(ParamError::illegal(name)),
    })
}

/// An optional decimal parameter.
pub(crate) fn opt_amount(p: &Params, name: &str) -> Result<Option<Amount>, ApiError> {
    opt(p, name)?.map(|v| amount_text(name, v)).transpose()
}

/// An optional unsigned integer parameter (ids, times, limits).
pub(crate) fn opt_u64(p: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    let Some(v) = opt(p, name)? else { return Ok(None) };
    if v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(illegal(name, INTEGER_RANGE));
    }
    v.parse::<u64>()
        .map(Some)
        .map_err(|_| ApiError::binance(ErrorCode::ParamOverflow, format!("Parameter '{name}' overflowed.")))
}

/// An optional `u32` parameter (limits, offsets); larger values are -1108.
pub(crate) fn opt_u32(p: &Params, name: &str) -> Result<Option<u32>, ApiError> {
    opt_u64(p, name)?
        .map(|v| {
            u32::try_from(v)
                .map_err(|_| ApiError::binance(ErrorCode::ParamOverflow, format!("Parameter '{name}' overflowed.")))
        })
        .transpose()
}

/// Times at or above this are microseconds (as milliseconds they would lie past the year 5000):
/// Binance takes `startTime`/`endTime` in microseconds from a client that sent
/// `X-MBX-TIME-UNIT: MICROSECOND`.
const MICROS_FROM: u64 = 100_000_000_000_000;

/// An optional time in milliseconds, or in microseconds (then truncated to milliseconds).
pub(crate) fn opt_time(p: &Params, name: &str) -> Result<Option<UnixMillis>, ApiError> {
    Ok(opt_u64(p, name)?.map(|t| UnixMillis(if t >= MICROS_FROM { t / 1000 } else { t })))
}

/// An optional boolean (`true`/`false`, as the clients send them).
pub(crate) fn opt_bool(p: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match opt(p, name)? {
        None => Ok(None),
        Some("true" | "TRUE" | "True") => Ok(Some(true)),
        Some("false" | "FALSE" | "False") => Ok(Some(false)),
        Some(_) => Err(invalid(name)),
    }
}

/// An optional asset code; one that cannot be an asset is the exchange's -4018.
pub(crate) fn opt_coin(p: &Params, name: &str) -> Result<Option<AssetCode>, ApiError> {
    opt(p, name)?
        .map(|v| AssetCode::parse(v).map_err(|_| ApiError::Exchange(keygate_exchange::ExchangeError::UnknownAsset)))
        .transpose()
}

/// True if and only if `id` matches Binance's client order id pattern `^[.A-Z:/a-z0-9_-]{1,36}$`.
pub(crate) fn valid_client_id(id: &str) -> bool {
    (1..=36).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'))
}

/// An optional client order id parameter (`newClientOrderId`, `origClientOrderId`).
pub(crate) fn opt_client_id(p: &Params, name: &str) -> Result<Option<String>, ApiError> {
    match opt(p, name)? {
        None => Ok(None),
        Some(v) if valid_client_id(v) => Ok(Some(v.to_owned())),
        Some(_) => Err(illegal(name, CLIENT_ID_RANGE)),
    }
}

/// `orderId` or `origClientOrderId` (at least one: -1102 with Binance's message). When both are
/// sent the id is used and the client id must match the order found (checked by the caller).
pub(crate) fn order_ref(p: &Params) -> Result<(OrderRef, Option<String>), ApiError> {
    let id = opt_u64(p, "orderId")?;
    let client = opt_client_id(p, "origClientOrderId")?;
    match (id, client) {
        (Some(id), client) => Ok((OrderRef::Id(id), client)),
        (None, Some(c)) => Ok((OrderRef::ClientId(c), None)),
        (None, None) => Err(ApiError::binance(
            ErrorCode::MandatoryParamEmptyOrMalformed,
            "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
        )),
    }
}

/// `limit` for public market data: Binance truncates anything above `max` to `max`.
pub(crate) fn clamped_limit(p: &Params, max: u32) -> Result<Option<u32>, ApiError> {
    Ok(opt_u32(p, "limit")?.map(|l| l.min(max)))
}

// ---------------------------------------------------------------------------------------------
// Orders.
// ---------------------------------------------------------------------------------------------

/// Which shape `POST /api/v3/order` answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RespType {
    /// Ids and time only.
    Ack,
    /// The order after matching.
    Result,
    /// The order and its fills.
    Full,
}

/// The new-order answer in the requested shape.
pub(crate) fn new_order(placed: &PlacedOrder, resp: RespType) -> json::NewOrderResponse {
    let o = &placed.order;
    let result = (resp != RespType::Ack).then_some(json::OrderResult {
        price: o.price,
        orig_qty: o.orig_qty,
        executed_qty: o.executed_qty,
        orig_quote_order_qty: o.orig_quote_order_qty,
        cummulative_quote_qty: o.cummulative_quote_qty,
        status: o.status,
        time_in_force: o.time_in_force,
        order_type: o.order_type,
        side: o.side,
        working_time: o.working_time,
        self_trade_prevention_mode: o.self_trade_prevention_mode,
    });
    json::NewOrderResponse {
        symbol: o.symbol.clone(),
        order_id: o.order_id,
        order_list_id: o.order_list_id,
        client_order_id: o.client_order_id.clone(),
        transact_time: o.time,
        result,
        fills: (resp == RespType::Full).then(|| placed.fills.clone()),
    }
}

/// An order as `GET /api/v3/order`, `openOrders` and `allOrders` return it.
pub(crate) fn order(o: &Order) -> json::Order {
    json::Order {
        symbol: o.symbol.clone(),
        order_id: o.order_id,
        order_list_id: o.order_list_id,
        client_order_id: o.client_order_id.clone(),
        price: o.price,
        orig_qty: o.orig_qty,
        executed_qty: o.executed_qty,
        cummulative_quote_qty: o.cummulative_quote_qty,
        status: o.status,
        time_in_force: o.time_in_force,
        order_type: o.order_type,
        side: o.side,
        stop_price: o.stop_price,
        iceberg_qty: o.iceberg_qty,
        time: o.time,
        update_time: o.update_time,
        is_working: o.is_working,
        working_time: o.working_time,
        orig_quote_order_qty: o.orig_quote_order_qty,
        self_trade_prevention_mode: o.self_trade_prevention_mode,
    }
}

/// A canceled order: the order's own client id is `origClientOrderId`, the cancel's is
/// `clientOrderId`, and the cancel time is `transactTime`.
pub(crate) fn canceled(c: &CanceledOrder) -> json::CanceledOrder {
    let o = &c.order;
    json::CanceledOrder {
        symbol: o.symbol.clone(),
        orig_client_order_id: o.client_order_id.clone(),
        order_id: o.order_id,
        order_list_id: o.order_list_id,
        client_order_id: c.cancel_client_order_id.clone(),
        transact_time: o.update_time,
        price: o.price,
        orig_qty: o.orig_qty,
        executed_qty: o.executed_qty,
        orig_quote_order_qty: o.orig_quote_order_qty,
        cummulative_quote_qty: o.cummulative_quote_qty,
        status: o.status,
        time_in_force: o.time_in_force,
        order_type: o.order_type,
        side: o.side,
        self_trade_prevention_mode: o.self_trade_prevention_mode,
    }
}

// ---------------------------------------------------------------------------------------------
// Market data.
// ---------------------------------------------------------------------------------------------

/// The ticker in the requested shape.
pub(crate) fn ticker_24h(t: json::Ticker24hFull, mini: bool) -> json::Ticker24h {
    if mini {
        return json::Ticker24h::Mini(Box::new(json::Ticker24hMini {
            symbol: t.symbol,
            open_price: t.open_price,
            high_price: t.high_price,
            low_price: t.low_price,
            last_price: t.last_price,
            volume: t.volume,
            quote_volume: t.quote_volume,
            open_time: t.open_time,
            close_time: t.close_time,
            first_id: t.first_id,
            last_id: t.last_id,
            count: t.count,
        }));
    }
    json::Ticker24h::Full(Box::new(t))
}

/// A rolling-window ticker in the shape asked for, from the exchange's full 24-hour shape.
pub(crate) fn ticker_window(t: json::Ticker24hFull, mini: bool) -> json::TickerWindow {
    match ticker_24h(t, mini) {
        json::Ticker24h::Mini(m) => json::TickerWindow::Mini(m),
        json::Ticker24h::Full(t) => json::TickerWindow::Full(Box::new(json::TickerWindowFull {
            symbol: t.symbol,
            price_change: t.price_change,
            price_change_percent: t.price_change_percent,
            weighted_avg_price: t.weighted_avg_price,
            open_price: t.open_price,
            high_price: t.high_price,
            low_price: t.low_price,
            last_price: t.last_price,
            volume: t.volume,
            quote_volume: t.quote_volume,
            open_time: t.open_time,
            close_time: t.close_time,
            first_id: t.first_id,
            last_id: t.last_id,
            count: t.count,
        })),
    }
}

// ---------------------------------------------------------------------------------------------
// Account and wallet.
// ---------------------------------------------------------------------------------------------

/// `YYYY-MM-DD hh:mm:ss` in UTC, as Binance prints `applyTime` and `completeTime`.
pub(crate) fn wallet_time(t: UnixMillis) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let secs = i64::try_from(t.0 / 1000).unwrap_or(i64::MAX);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01 00:00:00".to_owned())
}

/// One entry of `GET /sapi/v1/capital/deposit/hisrec`.
pub(crate) fn deposit(d: &DepositRecord) -> json::Deposit {
    json::Deposit {
        id: d.id.clone(),
        amount: d.amount,
        coin: d.coin.clone(),
        network: d.network.clone(),
        status: d.status,
        address: d.address.clone(),
        address_tag: d.address_tag.clone(),
        tx_id: d.tx_id.clone(),
        insert_time: d.insert_time,
        complete_time: d.insert_time,
        transfer_type: d.transfer_type,
        confirm_times: d.confirm_times.clone(),
        unlock_confirm: d.unlock_confirm,
        wallet_type: d.wallet_type,
    }
}

/// One entry of `GET /sapi/v1/capital/withdraw/history`.
pub(crate) fn withdrawal(w: &WithdrawalRecord) -> json::Withdrawal {
    json::Withdrawal {
        id: w.id.clone(),
        amount: w.amount,
        transaction_fee: w.transaction_fee,
        coin: w.coin.clone(),
        status: w.status,
        address: w.address.clone(),
        tx_id: w.tx_id.clone(),
        apply_time: wallet_time(w.apply_time),
        network: w.network.clone(),
        transfer_type: w.transfer_type,
        withdraw_order_id: w.withdraw_order_id.clone(),
        info: w.info.clone(),
        confirm_no: w.confirm_no,
        wallet_type: w.wallet_type,
        tx_key: String::new(),
        complete_time: w.complete_time.map(wallet_time),
    }
}

/// Commission as Binance's account endpoint counts it: integer basis points of a fraction held
/// in 1e-8 units (`0.001` is 10).
pub(crate) fn basis_points(rate: Amount) -> u64 {
    rate.units() / 10_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wallet_times_print_like_binance() {
        assert_eq!(wallet_time(UnixMillis(1_767_225_600_999)), "2026-01-01 00:00:00");
        assert_eq!(wallet_time(UnixMillis(1_570_878_722_000)), "2019-10-12 11:12:02");
    }

    #[test]
    fn client_ids_follow_binances_pattern() {
        assert!(valid_client_id("x-TKT5PX2F0123456789abcdef012345"));
        assert!(valid_client_id("t:1/a.b_c-d"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("has space"));
        assert!(!valid_client_id(&"a".repeat(37)));
    }

    #[test]
    fn decimals_refuse_exponents_with_minus_1100_and_excess_precision_with_minus_1111() {
        let e = amount_text("quantity", "1e-05").unwrap_err();
        assert!(
            matches!(&e, ApiError::Param(p) if p.msg == "Illegal characters found in parameter 'quantity'; legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
        );
        assert!(matches!(amount_text("price", "0.000000001"), Err(ApiError::Exchange(x)) if x.code() == -1111));
        assert_eq!(basis_points(Amount::parse("0.001").unwrap()), 10);
    }
}
