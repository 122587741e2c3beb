//! The wallet page: balances, the sandbox faucet, order/trade/deposit/withdrawal history and
//! their CSV downloads. Reads go through the engine's query channel, as the exchange routes do.

use super::layout::{Nav, NoticeQuery, error_page, notice_url, render, see_other};
use crate::session::{Ctx, Viewer};
use crate::view::{iso, when};
use crate::{Console, ConsoleError};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keygate_exchange::{BalanceView, DepositRecord, HistoryQuery, Order, OrderQuery, WithdrawalRecord};
use keygate_exchange::{MyTrade, TradeQuery};
use keygate_proto::AccountId;
use serde::{Deserialize, Serialize};

/// Everything the wallet page and the JSON API show.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct WalletData {
    pub balances: Vec<BalanceView>,
    pub orders: Vec<Order>,
    pub trades: Vec<MyTrade>,
    pub deposits: Vec<DepositRecord>,
    pub withdrawals: Vec<WithdrawalRecord>,
}

/// The account's balances and recent history (orders and trades: the most recent 1000 per
/// market; deposits and withdrawals: the last 90 days).
pub(crate) async fn load(c: &Console, account: AccountId) -> Result<WalletData, ConsoleError> {
    let now = c.now_ms();
    let data = c
        .engine()
        .query(move |ex| {
            let mut orders = Vec::new();
            let mut trades = Vec::new();
            for m in ex.markets() {
                let oq = OrderQuery { limit: Some(1000), ..OrderQuery::default() };
                orders.extend(ex.all_orders(account, &m.symbol, &oq).unwrap_or_default().into_iter().cloned());
                let tq = TradeQuery { limit: Some(1000), ..TradeQuery::default() };
                trades.extend(ex.my_trades(account, &m.symbol, &tq).unwrap_or_default());
            }
            orders.sort_by_key(|o| std::cmp::Reverse(o.time));
            trades.sort_by_key(|t| std::cmp::Reverse(t.time));
            let hq = HistoryQuery::default();
            WalletData {
                balances: ex.balances(account),
                orders,
                trades,
                deposits: ex.deposit_history(account, &hq, now).unwrap_or_default().into_iter().cloned().collect(),
                withdrawals: ex.withdraw_history(account, &hq, now).unwrap_or_default().into_iter().cloned().collect(),
            }
        })
        .await?;
    Ok(data)
}

/// Credits the faucet amount of `asset` to the viewer's account, within the daily limit (the
/// service decides and counts; see `keygate_service::funds`).
pub(crate) async fn faucet(c: &Console, v: &Viewer, asset: &str) -> Result<DepositRecord, ConsoleError> {
    let cfg = &c.config().faucet;
    let per_day = if cfg.enabled { u32::try_from(cfg.per_day).unwrap_or(u32::MAX) } else { 0 };
    Ok(c.service().faucet(&v.actor, asset, per_day).await?)
}

#[derive(Template)]
#[template(path = "wallet.html")]
struct WalletPage {
    nav: Option<Nav>,
    csrf: String,
    faucet: bool,
    /// Each asset with the amount one faucet deposit sends.
    assets: Vec<(String, String)>,
    /// Faucet deposits used in the current window, and the limit.
    faucet_used: u32,
    faucet_limit: u32,
    /// The limit is reached: the form is hidden and the page says when it gives again.
    faucet_exhausted: bool,
    /// When the current window ends (UTC text, and ISO 8601), or empty.
    faucet_resets: String,
    faucet_resets_iso: String,
    balances: Vec<BalanceView>,
    orders: Vec<Order>,
    trades: Vec<MyTrade>,
    deposits: Vec<DepositRecord>,
    withdrawals: Vec<WithdrawalRecord>,
    error: Option<String>,
    /// What the faucet just sent (the redirect after its form).
    notice: Option<String>,
}

impl WalletPage {
    fn at(&self, t: &keygate_proto::UnixMillis) -> String {
        when(Some(*t))
    }

    fn iso_at(&self, t: &keygate_proto::UnixMillis) -> String {
        iso(Some(*t))
    }

    fn deposit_status(&self, s: &u8) -> &'static str {
        deposit_status(*s)
    }

    fn withdrawal_status(&self, s: &u8) -> &'static str {
        withdrawal_status(*s)
    }
}

/// A deposit's status in words (Binance's numeric codes: 0 pending, 6 credited but cannot
/// withdraw, 1 success, 7 wrong deposit, 8 waiting for confirmation).
pub(crate) fn deposit_status(s: u8) -> &'static str {
    match s {
        0 => "pending",
        1 => "credited",
        6 => "credited, not yet withdrawable",
        7 => "wrong deposit",
        8 => "waiting for confirmation",
        _ => "unknown",
    }
}

/// A withdrawal's status in words (Binance's numeric codes 0 to 6).
pub(crate) fn withdrawal_status(s: u8) -> &'static str {
    match s {
        0 => "email sent",
        1 => "cancelled",
        2 => "awaiting approval",
        3 => "rejected",
        4 => "processing",
        5 => "failed",
        6 => "completed",
        _ => "unknown",
    }
}

async fn wallet_view(c: &Console, v: &Viewer, status: StatusCode, error: Option<String>) -> Response {
    wallet_view_with(c, v, status, error, &NoticeQuery::default()).await
}

async fn wallet_view_with(
    c: &Console,
    v: &Viewer,
    status: StatusCode,
    error: Option<String>,
    q: &NoticeQuery,
) -> Response {
    let data = match load(c, v.info.account_id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(Nav::of(v, c.now_ms()))),
    };
    // The deposit is looked up in the viewer's own history, so the URL only names it.
    let notice = match (q.is("faucet"), q.key.as_deref()) {
        (true, Some(id)) => data.deposits.iter().find(|d| d.id == id).map(|d| {
            format!(
                "The faucet sent {} {} to your wallet (deposit {}); it is in your balance now.",
                d.amount, d.coin, d.id
            )
        }),
        _ => None,
    };
    let assets = c
        .engine()
        .query(|ex| {
            ex.assets()
                .iter()
                .map(|a| (a.coin.to_string(), keygate_service::funds::faucet_amount(&a.coin).to_string()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    let cfg = &c.config().faucet;
    let per_day = if cfg.enabled { u32::try_from(cfg.per_day).unwrap_or(u32::MAX) } else { 0 };
    let window = if cfg.enabled {
        match c.service().faucet_status(&v.actor, per_day).await {
            Ok(s) => Some(s),
            Err(e) => return error_page(&e.into(), Some(Nav::of(v, c.now_ms()))),
        }
    } else {
        None
    };
    let page = WalletPage {
        nav: Some(Nav::of(v, c.now_ms())),
        csrf: v.info.csrf_token.clone(),
        faucet: c.config().faucet.enabled && per_day > 0,
        assets,
        faucet_used: window.map_or(0, |s| s.used),
        faucet_limit: per_day,
        faucet_exhausted: window.is_some_and(|s| s.exhausted()),
        faucet_resets: window.and_then(|s| s.resets_at).map(|t| when(Some(t))).unwrap_or_default(),
        faucet_resets_iso: window.and_then(|s| s.resets_at).map(|t| iso(Some(t))).unwrap_or_default(),
        balances: data.balances,
        orders: data.orders.into_iter().take(100).collect(),
        trades: data.trades.into_iter().take(100).collect(),
        deposits: data.deposits.into_iter().take(100).collect(),
        withdrawals: data.withdrawals.into_iter().take(100).collect(),
        error,
        notice,
    };
    render(status, &page, &[])
}

pub(crate) async fn page(State(c): State<Console>, ctx: Ctx, Query(q): Query<NoticeQuery>) -> Response {
    match ctx.viewer(&c).await {
        Ok(v) => wallet_view_with(&c, &v, StatusCode::OK, None, &q).await,
        Err(e) => error_page(&e, None),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct FaucetForm {
    #[serde(default)]
    csrf: Option<String>,
    #[serde(default)]
    asset: String,
}

pub(crate) async fn faucet_form(State(c): State<Console>, ctx: Ctx, axum::Form(f): axum::Form<FaucetForm>) -> Response {
    let v = match ctx.viewer(&c).await {
        Ok(v) => v,
        Err(e) => return error_page(&e, None),
    };
    if let Err(e) = ctx.check_session_csrf(&v.token, f.csrf.as_deref()) {
        return error_page(&e, Some(Nav::of(&v, c.now_ms())));
    }
    match faucet(&c, &v, &f.asset).await {
        Ok(d) => see_other(&notice_url("/console/wallet", "faucet", Some(&d.id)), &[]),
        Err(e) => wallet_view(&c, &v, e.status(), Some(e.message())).await,
    }
}

/// One CSV cell: quoted when needed, and text that a spreadsheet would run as a formula is
/// prefixed with `'` (CSV injection).
pub(crate) fn cell(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_owned() };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

fn csv_rows(header: &[&str], rows: impl Iterator<Item = Vec<String>>) -> String {
    let mut out = header.join(",");
    out.push_str("\r\n");
    for r in rows {
        out.push_str(&r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The CSV text of one history (`orders`, `trades`, `deposits`, `withdrawals`).
pub(crate) fn to_csv(data: &WalletData, which: &str) -> Option<String> {
    let ms = |t: keygate_proto::UnixMillis| iso(Some(t));
    Some(match which {
        "orders" => csv_rows(
            &[
                "time",
                "symbol",
                "orderId",
                "clientOrderId",
                "side",
                "type",
                "timeInForce",
                "price",
                "origQty",
                "executedQty",
                "cummulativeQuoteQty",
                "status",
            ],
            data.orders.iter().map(|o| {
                vec![
                    ms(o.time),
                    o.symbol.to_string(),
                    o.order_id.to_string(),
                    o.client_order_id.clone(),
                    o.side.to_string(),
                    o.order_type.to_string(),
                    o.time_in_force.to_string(),
                    o.price.to_string(),
                    o.orig_qty.to_string(),
                    o.executed_qty.to_string(),
                    o.cummulative_quote_qty.to_string(),
                    o.status.to_string(),
                ]
            }),
        ),
        "trades" => csv_rows(
            &[
                "time",
                "symbol",
                "id",
                "orderId",
                "side",
                "price",
                "qty",
                "quoteQty",
                "commission",
                "commissionAsset",
                "maker",
            ],
            data.trades.iter().map(|t| {
                vec![
                    ms(t.time),
                    t.symbol.to_string(),
                    t.id.to_string(),
                    t.order_id.to_string(),
                    if t.is_buyer { "BUY".into() } else { "SELL".into() },
                    t.price.to_string(),
                    t.qty.to_string(),
                    t.quote_qty.to_string(),
                    t.commission.to_string(),
                    t.commission_asset.to_string(),
                    t.is_maker.to_string(),
                ]
            }),
        ),
        "deposits" => csv_rows(
            &["insertTime", "id", "coin", "network", "amount", "status", "address", "txId"],
            data.deposits.iter().map(|d| {
                vec![
                    ms(d.insert_time),
                    d.id.clone(),
                    d.coin.to_string(),
                    d.network.clone(),
                    d.amount.to_string(),
                    deposit_status(d.status).to_owned(),
                    d.address.clone(),
                    d.tx_id.clone(),
                ]
            }),
        ),
        "withdrawals" => csv_rows(
            &[
                "applyTime",
                "id",
                "coin",
                "network",
                "amount",
                "transactionFee",
                "status",
                "address",
                "txId",
                "withdrawOrderId",
            ],
            data.withdrawals.iter().map(|w| {
                vec![
                    ms(w.apply_time),
                    w.id.clone(),
                    w.coin.to_string(),
                    w.network.clone(),
                    w.amount.to_string(),
                    w.transaction_fee.to_string(),
                    withdrawal_status(w.status).to_owned(),
                    w.address.clone(),
                    w.tx_id.clone(),
                    w.withdraw_order_id.clone().unwrap_or_default(),
                ]
            }),
        ),
        _ => return None,
    })
}

/// A CSV download response.
pub(crate) fn csv_response(which: &str, body: String) -> Response {
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"keygate-{which}.csv\""))
        .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8")),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn csv(State(c): State<Console>, ctx: Ctx, Path(file): Path<String>) -> Response {
    let v = match ctx.viewer(&c).await {
        Ok(v) => v,
        Err(e) => return error_page(&e, None),
    };
    let Some(which) = file.strip_suffix(".csv") else {
        return error_page(&ConsoleError::BadRequest("no such download".into()), Some(Nav::of(&v, c.now_ms())));
    };
    let data = match load(&c, v.info.account_id).await {
        Ok(d) => d,
        Err(e) => return error_page(&e, Some(Nav::of(&v, c.now_ms()))),
    };
    match to_csv(&data, which) {
        Some(body) => csv_response(which, body),
        None => error_page(&ConsoleError::BadRequest("no such download".into()), Some(Nav::of(&v, c.now_ms()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }
}
