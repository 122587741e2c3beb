//! The spot account and its orders: `GET /api/v3/account`, order placement, test orders,
//! cancellation, and the order and trade queries.
//!
//! Every handler reads its input only from the verified parameters, refuses parameters it does not
//! read (-1104), validates everything before the engine sees a command (so nothing is half
//! applied), and hands mutations to the engine with the end of the request's `recvWindow`, which
//! the engine checks again when the command reaches it, as Binance's matching engine does.

use super::BinanceJson;
use super::wire::{self, RespType, json, opt, req};
use crate::error::JSON;
use crate::extract::Signed;
use crate::{ApiError, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use json::{CommissionRates, Discount, MakerTaker};
use keygate_auth::{Params, Permission, VerifiedRequest};
use keygate_exchange::{
    Command, ExchangeError, NewOrder, OrderQuery, OrderRef, OrderType, Outcome, Side, StpMode, TimeInForce, TradeQuery,
};
use keygate_proto::{AccountId, Amount, ErrorCode, Symbol, UnixMicros};
use keygate_service::engine::AccountView;
use std::sync::OnceLock;

/// Parses `recvWindow` (milliseconds with up to three decimals) into microseconds, as the
/// verifier does; `None` if malformed (the verifier has refused those already).
fn recv_window_us(v: &str) -> Option<u64> {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || int.len() > 9 || !digits(int) || frac.len() > 3 || !digits(frac) {
        return None;
    }
    let ms: u64 = int.parse().ok()?;
    let mut us: u64 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    for _ in frac.len()..3 {
        us *= 10;
    }
    ms.checked_mul(1000)?.checked_add(us)
}

/// The end of the request's `recvWindow` (`timestamp + recvWindow`, default 5000 ms): the engine
/// refuses the command with -1021 if it reaches it later.
pub(crate) fn fresh_until(state: &AppState, request: &VerifiedRequest) -> Option<UnixMicros> {
    let default = state.verifier.limits().default_recv_window_ms.saturating_mul(1000);
    let window = request.params().get("recvWindow").and_then(recv_window_us).unwrap_or(default);
    Some(UnixMicros(request.timestamp().0.saturating_add(window)))
}

/// An outcome the command cannot produce: a bug, answered as a logged 500.
fn unexpected(outcome: &Outcome) -> ApiError {
    ApiError::Internal(format!("unexpected engine outcome {outcome:?}"))
}

// ---------------------------------------------------------------------------------------------
// Account.
// ---------------------------------------------------------------------------------------------

/// The serialized answers of `GET /api/v3/account` for one [`AccountView`], one per variant of
/// the request (`omitZeroBalances`, and the calling key's trade and withdraw permissions; the
/// account itself is fixed by the view). Kept in the view's `memo`, so it lives exactly as long as
/// the engine serves that view: a trading bot polling an unchanged account gets bytes serialized
/// once, and the first read after any change serializes afresh from the new view.
#[derive(Default)]
struct AccountBodies([OnceLock<Bytes>; 8]);

/// `GET /api/v3/account` (USER_DATA, `omitZeroBalances`): balances of every configured asset and
/// what the calling key may do. Commissions are those of the first market (the default config
/// charges every market the same).
pub(crate) async fn account(State(state): State<AppState>, signed: Signed) -> Result<Response, ApiError> {
    let r = &signed.request;
    r.params().ensure_only(&["omitZeroBalances"])?;
    let omit_zero = wire::opt_bool(r.params(), "omitZeroBalances")?.unwrap_or(false);
    let account = r.account_id();
    let (can_trade, can_withdraw) =
        (r.key().permissions.contains(Permission::Trade), r.key().permissions.contains(Permission::Withdraw));
    let variant = usize::from(omit_zero) | usize::from(can_trade) << 1 | usize::from(can_withdraw) << 2;
    let body = state
        .engine
        .with_account_view(account, |view| -> Result<Bytes, ApiError> {
            let bodies = view.memo.get_or_init(|| Box::new(AccountBodies::default())).downcast_ref::<AccountBodies>();
            let cell = bodies.map(|b| &b.0[variant]);
            if let Some(body) = cell.and_then(OnceLock::get) {
                // A copy (about 1 KB) rather than a shared reference: concurrent readers would
                // otherwise all update one reference count from different cores.
                return Ok(Bytes::copy_from_slice(body));
            }
            let json = account_json(view, account, omit_zero, can_trade, can_withdraw);
            let body = Bytes::from(
                serde_json::to_vec(&json).map_err(|e| ApiError::Internal(format!("serialising an account: {e}")))?,
            );
            if let Some(cell) = cell {
                // Another first read may have set it already; both serialized the same view.
                let _ = cell.set(body.clone());
            }
            Ok(body)
        })
        .await??;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], body).into_response())
}

/// The account answer for one view and request variant.
fn account_json(
    view: &AccountView,
    account: AccountId,
    omit_zero: bool,
    can_trade: bool,
    can_withdraw: bool,
) -> json::Account {
    let balances = view
        .balances
        .iter()
        .filter(|b| !omit_zero || b.free != Amount::ZERO || b.locked != Amount::ZERO)
        .cloned()
        .collect();
    let (maker, taker) = view.fees.unwrap_or((Amount::ZERO, Amount::ZERO));
    json::Account {
        maker_commission: wire::basis_points(maker),
        taker_commission: wire::basis_points(taker),
        buyer_commission: 0,
        seller_commission: 0,
        commission_rates: CommissionRates::maker_taker(maker, taker),
        can_trade,
        can_withdraw,
        can_deposit: true,
        brokered: false,
        require_self_trade_prevention: false,
        prevent_sor: false,
        update_time: view.update_time,
        account_type: "SPOT".to_owned(),
        balances,
        permissions: vec!["SPOT".to_owned()],
        uid: account.0,
    }
}

/// `GET /api/v3/account/commission` (USER_DATA, `symbol`): the market's commission rates for the
/// account, in Binance's shape (the SDK's `account_commission`, the connector's
/// `query_commission_rates`). The sandbox charges the market's maker/taker rates only: no buyer or
/// seller surcharge, no tax, no BNB discount.
pub(crate) async fn account_commission(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::AccountCommission>, ApiError> {
    let p = signed.request.params();
    p.ensure_only(&["symbol"])?;
    let symbol = wire::symbol(p)?;
    let (maker, taker) = state.engine.fee_rates(&symbol).await?;
    let zero = CommissionRates::maker_taker(Amount::ZERO, Amount::ZERO);
    Ok(BinanceJson(json::AccountCommission {
        symbol,
        standard_commission: CommissionRates::maker_taker(maker, taker),
        special_commission: zero,
        tax_commission: zero,
        discount: Discount::none(),
    }))
}

// ---------------------------------------------------------------------------------------------
// New orders.
// ---------------------------------------------------------------------------------------------

/// What `POST /api/v3/order/test` reads: a new order's parameters, then `computeCommissionRates`.
/// `stopPrice`, `icebergQty` and `trailingDelta` are read only to refuse them with Binance's
/// specific errors; anything else is -1104.
const TEST_ORDER_PARAMS: &[&str] = &[
    "symbol",
    "side",
    "type",
    "timeInForce",
    "quantity",
    "quoteOrderQty",
    "price",
    "newClientOrderId",
    "newOrderRespType",
    "selfTradePreventionMode",
    "stopPrice",
    "icebergQty",
    "trailingDelta",
    "computeCommissionRates",
];

/// What `POST /api/v3/order` reads: a test order's parameters but the last.
const ORDER_PARAMS: &[&str] = match TEST_ORDER_PARAMS.split_last() {
    Some((_, order)) => order,
    None => &[],
};

/// Binance's answer to an order type it knows but this market does not enable: -2010 for the
/// stop and take-profit types, -1116 for anything else.
fn unsupported_type(t: &str) -> ApiError {
    let what = match t {
        "STOP_LOSS" => "Stop loss",
        "STOP_LOSS_LIMIT" => "Stop loss limit",
        "TAKE_PROFIT" => "Take profit",
        "TAKE_PROFIT_LIMIT" => "Take profit limit",
        _ => return ApiError::binance(ErrorCode::InvalidOrderType, "Invalid orderType."),
    };
    ApiError::binance(ErrorCode::NewOrderRejected, format!("{what} orders are not supported for this symbol."))
}

/// Reads and checks a new order's parameters (everything but the market rules, which the
/// exchange applies atomically with the balance).
fn parse_new_order(p: &Params, account: AccountId) -> Result<(NewOrder, RespType), ApiError> {
    let symbol = wire::symbol(p)?;
    let side =
        Side::parse(req(p, "side")?).ok_or_else(|| ApiError::binance(ErrorCode::InvalidSide, "Invalid side."))?;
    let type_text = req(p, "type")?;
    let order_type = OrderType::parse(type_text).ok_or_else(|| unsupported_type(type_text))?;
    let time_in_force = opt(p, "timeInForce")?
        .map(|t| TimeInForce::parse(t).ok_or_else(|| ApiError::binance(ErrorCode::InvalidTif, "Invalid timeInForce.")))
        .transpose()?;
    let quantity = wire::opt_amount(p, "quantity")?;
    let quote_order_qty = wire::opt_amount(p, "quoteOrderQty")?;
    let price = wire::opt_amount(p, "price")?;
    let new_client_order_id = wire::opt_client_id(p, "newClientOrderId")?;
    let resp = match opt(p, "newOrderRespType")? {
        None if matches!(order_type, OrderType::Market | OrderType::Limit) => RespType::Full,
        None => RespType::Ack,
        Some("ACK") => RespType::Ack,
        Some("RESULT") => RespType::Result,
        Some("FULL") => RespType::Full,
        Some(_) => return Err(wire::invalid("newOrderRespType")),
    };
    let stp_mode = opt(p, "selfTradePreventionMode")?
        .map(|s| StpMode::parse(s).ok_or_else(|| wire::invalid("selfTradePreventionMode")))
        .transpose()?;
    if opt(p, "icebergQty")?.is_some() {
        return Err(ApiError::binance(
            ErrorCode::NewOrderRejected,
            "Iceberg orders are not supported for this symbol.",
        ));
    }
    if opt(p, "trailingDelta")?.is_some() {
        return Err(ApiError::binance(
            ErrorCode::NewOrderRejected,
            "Trailing stop orders are not supported for this symbol.",
        ));
    }
    if opt(p, "stopPrice")?.is_some() {
        return Err(wire::not_required("stopPrice"));
    }
    let order = NewOrder {
        account,
        symbol,
        side,
        order_type,
        time_in_force,
        quantity,
        quote_order_qty,
        price,
        new_client_order_id,
        stp_mode,
    };
    Ok((order, resp))
}

/// `POST /api/v3/order` (TRADE): places an order; answers ACK, RESULT or FULL (default FULL for
/// MARKET and LIMIT, ACK otherwise).
pub(crate) async fn new_order(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::NewOrderResponse>, ApiError> {
    let r = &signed.request;
    r.params().ensure_only(ORDER_PARAMS)?;
    let (order, resp) = parse_new_order(r.params(), r.account_id())?;
    match state.engine.submit_once(Command::PlaceOrder(order), fresh_until(&state, r), r.single_use_id()).await? {
        Outcome::Placed(placed) => Ok(BinanceJson(wire::new_order(&placed, resp))),
        other => Err(unexpected(&other)),
    }
}

/// `POST /api/v3/order/test` (TRADE): the same validation as a real order, changing nothing;
/// `{}`, or the commission rates with `computeCommissionRates=true`.
pub(crate) async fn test_order(State(state): State<AppState>, signed: Signed) -> Result<Response, ApiError> {
    let r = &signed.request;
    r.params().ensure_only(TEST_ORDER_PARAMS)?;
    let compute = wire::opt_bool(r.params(), "computeCommissionRates")?.unwrap_or(false);
    let (order, _) = parse_new_order(r.params(), r.account_id())?;
    let symbol = compute.then(|| order.symbol.clone());
    match state.engine.test_order(order, fresh_until(&state, r)).await? {
        Outcome::Tested => {}
        other => return Err(unexpected(&other)),
    }
    let Some(symbol) = symbol else {
        // The common answer, written once rather than serialized per request.
        return Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], Bytes::from_static(EMPTY_OBJECT))
            .into_response());
    };
    let (maker, taker) = state.engine.fee_rates(&symbol).await?;
    Ok(BinanceJson(json::TestOrderResponse::Commissions(json::TestOrderCommissions {
        standard_commission_for_order: MakerTaker { maker, taker },
        tax_commission_for_order: MakerTaker { maker: Amount::ZERO, taker: Amount::ZERO },
        discount: Discount::none(),
    }))
    .into_response())
}

/// `json::TestOrderResponse::Empty` serialized (a unit test holds them equal).
const EMPTY_OBJECT: &[u8] = b"{}";

// ---------------------------------------------------------------------------------------------
// Cancels.
// ---------------------------------------------------------------------------------------------

/// When both `orderId` and `origClientOrderId` are sent, Binance finds the order by id and
/// refuses the request unless its client id matches; this checks that (an order's client id
/// never changes, so the check cannot race the cancel that follows).
async fn check_both_ids(
    state: &AppState,
    account: AccountId,
    symbol: &Symbol,
    order: &OrderRef,
    client_id: Option<String>,
) -> Result<bool, ApiError> {
    let (OrderRef::Id(id), Some(client_id)) = (order, client_id) else { return Ok(true) };
    let (symbol, id) = (symbol.clone(), *id);
    let found = state
        .engine
        .query(move |ex| ex.order(account, &symbol, &OrderRef::Id(id)).map(|o| o.client_order_id == client_id))
        .await?;
    Ok(found.unwrap_or(false))
}

/// `DELETE /api/v3/order` (TRADE): `symbol` and `orderId` or `origClientOrderId`
/// (`newClientOrderId` names the cancel). Parameters may come in the query or, as python-binance
/// sends them, in a form body.
pub(crate) async fn cancel_order(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::CanceledOrder>, ApiError> {
    let r = &signed.request;
    let p = r.params();
    p.ensure_only(&["symbol", "orderId", "origClientOrderId", "newClientOrderId"])?;
    let symbol = wire::symbol(p)?;
    let (order, both) = wire::order_ref(p)?;
    let new_client_order_id = wire::opt_client_id(p, "newClientOrderId")?;
    let account = r.account_id();
    if !check_both_ids(&state, account, &symbol, &order, both).await? {
        return Err(ExchangeError::UnknownOrder.into());
    }
    let command = Command::CancelOrder { account, symbol, order, new_client_order_id };
    match state.engine.submit_once(command, fresh_until(&state, r), r.single_use_id()).await? {
        Outcome::Canceled(c) => Ok(BinanceJson(wire::canceled(&c))),
        other => Err(unexpected(&other)),
    }
}

/// `DELETE /api/v3/openOrders` (TRADE): cancels every open order of the account on `symbol`;
/// -2011 when there is none, as Binance answers.
pub(crate) async fn cancel_open_orders(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::CanceledOrder>>, ApiError> {
    let r = &signed.request;
    r.params().ensure_only(&["symbol"])?;
    let symbol = wire::symbol(r.params())?;
    let command = Command::CancelOpenOrders { account: r.account_id(), symbol };
    match state.engine.submit_once(command, fresh_until(&state, r), r.single_use_id()).await? {
        Outcome::CanceledAll(all) => Ok(BinanceJson(all.iter().map(wire::canceled).collect())),
        other => Err(unexpected(&other)),
    }
}

// ---------------------------------------------------------------------------------------------
// Queries.
// ---------------------------------------------------------------------------------------------

/// `GET /api/v3/order` (USER_DATA): one order by `orderId` or `origClientOrderId`; -2013 when the
/// account has no such order on the symbol.
pub(crate) async fn query_order(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<json::Order>, ApiError> {
    let r = &signed.request;
    let p = r.params();
    p.ensure_only(&["symbol", "orderId", "origClientOrderId"])?;
    let symbol = wire::symbol(p)?;
    let (order, both) = wire::order_ref(p)?;
    let account = r.account_id();
    let found = state.engine.query(move |ex| ex.order(account, &symbol, &order).map(wire::order)).await??;
    if let Some(c) = both
        && found.client_order_id != c
    {
        return Err(ExchangeError::OrderNotFound.into());
    }
    Ok(BinanceJson(found))
}

/// `GET /api/v3/openOrders` (USER_DATA): open orders on `symbol`, or on every market.
pub(crate) async fn open_orders(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::Order>>, ApiError> {
    let r = &signed.request;
    r.params().ensure_only(&["symbol"])?;
    let symbol = wire::opt_symbol(r.params())?;
    let account = r.account_id();
    let orders = state
        .engine
        .query(move |ex| ex.open_orders(account, symbol.as_ref()).map(|v| v.into_iter().map(wire::order).collect()))
        .await??;
    Ok(BinanceJson(orders))
}

/// `GET /api/v3/allOrders` (USER_DATA): `symbol` (`orderId`, `startTime`, `endTime`, `limit`).
pub(crate) async fn all_orders(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::Order>>, ApiError> {
    let r = &signed.request;
    let p = r.params();
    p.ensure_only(&["symbol", "orderId", "startTime", "endTime", "limit"])?;
    let symbol = wire::symbol(p)?;
    let q = OrderQuery {
        order_id: wire::opt_u64(p, "orderId")?,
        start_time: wire::opt_time(p, "startTime")?,
        end_time: wire::opt_time(p, "endTime")?,
        limit: wire::opt_u32(p, "limit")?,
    };
    let account = r.account_id();
    let orders = state
        .engine
        .query(move |ex| ex.all_orders(account, &symbol, &q).map(|v| v.into_iter().map(wire::order).collect()))
        .await??;
    Ok(BinanceJson(orders))
}

/// `GET /api/v3/myTrades` (USER_DATA): `symbol` (`orderId`, `startTime`, `endTime`, `fromId`,
/// `limit`).
pub(crate) async fn my_trades(
    State(state): State<AppState>,
    signed: Signed,
) -> Result<BinanceJson<Vec<json::MyTrade>>, ApiError> {
    let r = &signed.request;
    let p = r.params();
    p.ensure_only(&["symbol", "orderId", "startTime", "endTime", "fromId", "limit"])?;
    let symbol = wire::symbol(p)?;
    let q = TradeQuery {
        order_id: wire::opt_u64(p, "orderId")?,
        start_time: wire::opt_time(p, "startTime")?,
        end_time: wire::opt_time(p, "endTime")?,
        from_id: wire::opt_u64(p, "fromId")?,
        limit: wire::opt_u32(p, "limit")?,
    };
    let account = r.account_id();
    Ok(BinanceJson(state.engine.query(move |ex| ex.my_trades(account, &symbol, &q)).await??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_order_reads_the_test_orders_parameters_but_compute_commission_rates() {
        assert_eq!(ORDER_PARAMS.len() + 1, TEST_ORDER_PARAMS.len());
        assert!(!ORDER_PARAMS.contains(&"computeCommissionRates") && ORDER_PARAMS.contains(&"trailingDelta"));
    }

    #[test]
    fn the_empty_test_order_answer_is_the_serialized_empty_response() {
        let empty = json::TestOrderResponse::Empty(json::EmptyObject {});
        assert_eq!(serde_json::to_vec(&empty).unwrap(), EMPTY_OBJECT);
    }

    #[test]
    fn recv_window_parses_like_the_verifier() {
        assert_eq!(recv_window_us("5000"), Some(5_000_000));
        assert_eq!(recv_window_us("10000.5"), Some(10_000_500));
        assert_eq!(recv_window_us("1.234"), Some(1_234));
        assert_eq!(recv_window_us("1e3"), None);
        assert_eq!(recv_window_us(""), None);
    }

    #[test]
    fn unsupported_order_types_get_binances_errors() {
        let code = |t| match unsupported_type(t) {
            ApiError::Exchange(e) => (e.code(), e.message()),
            _ => (0, String::new()),
        };
        assert_eq!(code("STOP_LOSS"), (-2010, "Stop loss orders are not supported for this symbol.".to_owned()));
        assert_eq!(code("TAKE_PROFIT_LIMIT").0, -2010);
        assert_eq!(code("OCO"), (-1116, "Invalid orderType.".to_owned()));
    }
}
