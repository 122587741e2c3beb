//! Public market data (security type NONE): `exchangeInfo`, `depth`, `trades`,
//! `historicalTrades`, `aggTrades`, `klines`/`uiKlines`, the tickers and `avgPrice`. They ignore `X-MBX-APIKEY` (an empty one included) and parse their
//! query with the same strict parser as signed requests, so `-1100`/`-1101`/`-1104` mean the same
//! everywhere.

use super::BinanceJson;
use super::wire::{self, SymbolSelection, json, opt, req};
use crate::{ApiError, AppState};
use axum::extract::{RawQuery, State};
use json::{AggTrade, ExchangeInfo, OneOrMany, OrderType, StpMode, SymbolFilter, SymbolInfo};
use keygate_auth::Params;
use keygate_exchange::{ExchangeError, MarketSpec, PublicTrade};
use keygate_proto::{ErrorCode, Symbol, UnixMillis};

/// Parses a public endpoint's query and refuses parameters it does not read (-1104).
pub(crate) fn public_params(query: Option<&str>, known: &[&str]) -> Result<Params, ApiError> {
    let params = Params::parse(query.unwrap_or("").as_bytes(), b"")?;
    params.ensure_only(known)?;
    Ok(params)
}

/// Runs `f` over every selected market inside one engine query, so the answer is one consistent
/// state; an unknown symbol is -1121.
async fn per_symbol<T: Send + 'static>(
    state: &AppState,
    selection: SymbolSelection,
    f: impl Fn(&keygate_exchange::Exchange, &Symbol) -> Result<T, ExchangeError> + Send + 'static,
) -> Result<OneOrMany<T>, ApiError> {
    let answer = state
        .engine
        .query(move |ex| match selection {
            SymbolSelection::One(s) => f(ex, &s).map(OneOrMany::One),
            SymbolSelection::Some(list) => list.iter().map(|s| f(ex, s)).collect::<Result<_, _>>().map(OneOrMany::Many),
            SymbolSelection::All => {
                ex.markets().iter().map(|m| f(ex, &m.symbol)).collect::<Result<_, _>>().map(OneOrMany::Many)
            }
        })
        .await??;
    Ok(answer)
}

fn now(state: &AppState) -> UnixMillis {
    state.service.clock().now().as_millis()
}

// ---------------------------------------------------------------------------------------------
// exchangeInfo.
// ---------------------------------------------------------------------------------------------

/// The limits this server enforces (empty when they are off), so clients read what applies: the
/// values from the limiter's configuration, which is what is counted; whether a kind applies at
/// all from the endpoint table (`ORDERS` only while some route counts as an order,
/// `REQUEST_WEIGHT` only while some route weighs anything).
fn rate_limits(state: &AppState) -> Vec<json::RateLimit> {
    use crate::endpoints::Route;
    let routes = || Route::ALL.iter().map(|r| r.spec());
    let applies = |kind: &str| match kind {
        "ORDERS" => routes().any(|e| e.counts_as_order),
        "REQUEST_WEIGHT" => routes().any(|e| e.weight.max() > 0),
        _ => true,
    };
    state
        .limiter
        .config()
        .published()
        .into_iter()
        .filter(|(kind, ..)| applies(kind))
        .map(|(rate_limit_type, interval, interval_num, limit)| json::RateLimit {
            rate_limit_type: rate_limit_type.to_owned(),
            interval: interval.to_owned(),
            interval_num,
            limit,
        })
        .collect()
}

/// `exchangeInfo.rateLimitsScope`: `CLUSTER` while the limits are counted in counters every
/// node shares (configured, and answering), `NODE` otherwise.
fn scope(state: &AppState) -> &'static str {
    if state.limiter.shared_now() { "CLUSTER" } else { "NODE" }
}

fn symbol_info(m: &MarketSpec, permission_sets: bool) -> SymbolInfo {
    SymbolInfo {
        symbol: m.symbol.clone(),
        status: "TRADING".to_owned(),
        base_asset: m.base.clone(),
        base_asset_precision: 8,
        quote_asset: m.quote.clone(),
        quote_precision: 8,
        quote_asset_precision: 8,
        base_commission_precision: 8,
        quote_commission_precision: 8,
        order_types: vec![OrderType::Limit, OrderType::LimitMaker, OrderType::Market],
        iceberg_allowed: false,
        oco_allowed: false,
        oto_allowed: false,
        quote_order_qty_market_allowed: true,
        allow_trailing_stop: false,
        cancel_replace_allowed: false,
        is_spot_trading_allowed: true,
        is_margin_trading_allowed: false,
        filters: vec![
            SymbolFilter::Price { min_price: m.min_price, max_price: m.max_price, tick_size: m.tick_size },
            SymbolFilter::LotSize { min_qty: m.min_qty, max_qty: m.max_qty, step_size: m.step_size },
            SymbolFilter::MarketLotSize {
                min_qty: m.market_min_qty,
                max_qty: m.market_max_qty,
                step_size: m.step_size,
            },
            SymbolFilter::Notional {
                min_notional: m.min_notional,
                apply_min_to_market: true,
                max_notional: m.max_notional,
                apply_max_to_market: false,
                avg_price_mins: 5,
            },
            SymbolFilter::MaxNumOrders { max_num_orders: m.max_num_orders },
        ],
        permissions: Vec::new(),
        permission_sets: if permission_sets { vec![vec!["SPOT".to_owned()]] } else { Vec::new() },
        default_self_trade_prevention_mode: StpMode::ExpireMaker,
        allowed_self_trade_prevention_modes: vec![
            StpMode::None,
            StpMode::ExpireTaker,
            StpMode::ExpireMaker,
            StpMode::ExpireBoth,
        ],
    }
}

/// `GET /api/v3/exchangeInfo` (also `symbol=`, `symbols=[..]`, `symbolStatus=`,
/// `showPermissionSets=`): markets with Binance's filters, and only the order types the sandbox
/// supports.
pub(crate) async fn exchange_info(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<ExchangeInfo>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "symbols", "symbolStatus", "showPermissionSets"])?;
    let selection = wire::symbol_selection(&p)?;
    let show_sets = wire::opt_bool(&p, "showPermissionSets")?.unwrap_or(true);
    let trading = match opt(&p, "symbolStatus")? {
        None | Some("TRADING") => true,
        Some("HALT" | "BREAK" | "END_OF_DAY") => false,
        Some(_) => return Err(wire::invalid("symbolStatus")),
    };
    let markets = state.engine.query(|ex| ex.markets().to_vec()).await?;
    let find = |s: &Symbol| markets.iter().find(|m| &m.symbol == s).ok_or(ExchangeError::UnknownSymbol);
    let chosen: Vec<&MarketSpec> = match &selection {
        SymbolSelection::All => markets.iter().collect(),
        SymbolSelection::One(s) => vec![find(s)?],
        SymbolSelection::Some(list) => list.iter().map(find).collect::<Result<_, _>>()?,
    };
    let symbols = if trading { chosen.into_iter().map(|m| symbol_info(m, show_sets)).collect() } else { Vec::new() };
    Ok(BinanceJson(ExchangeInfo {
        timezone: "UTC".to_owned(),
        server_time: now(&state),
        rate_limits: rate_limits(&state),
        rate_limits_scope: state.limiter.config().enabled.then(|| scope(&state).to_owned()),
        exchange_filters: Vec::new(),
        symbols,
    }))
}

// ---------------------------------------------------------------------------------------------
// Book, trades, klines.
// ---------------------------------------------------------------------------------------------

/// `GET /api/v3/depth` (`symbol`, `limit` default 100, above 5000 truncated to 5000).
pub(crate) async fn depth(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<json::Depth>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "limit"])?;
    let symbol = wire::symbol(&p)?;
    let limit = wire::clamped_limit(&p, 5000)?;
    let d = state.engine.query(move |ex| ex.depth(&symbol, limit)).await??;
    Ok(BinanceJson(d))
}

/// `GET /api/v3/trades` (`symbol`, `limit` default 500, max 1000).
pub(crate) async fn trades(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<Vec<json::Trade>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "limit"])?;
    let symbol = wire::symbol(&p)?;
    let limit = wire::clamped_limit(&p, 1000)?;
    Ok(BinanceJson(state.engine.query(move |ex| ex.recent_trades(&symbol, limit)).await??))
}

/// `GET /api/v3/historicalTrades` (`symbol`, `limit` default 500, max 1000, `fromId`): older
/// trades, oldest first, from `fromId` up, the simulated market's history included. Without
/// `fromId`, the most recent ones, as `trades`.
pub(crate) async fn historical_trades(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<Vec<json::Trade>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "limit", "fromId"])?;
    let symbol = wire::symbol(&p)?;
    let limit = wire::clamped_limit(&p, 1000)?.unwrap_or(500).max(1) as usize;
    let from_id = wire::opt_u64(&p, "fromId")?;
    Ok(BinanceJson(state.engine.query(move |ex| ex.trades_since(&symbol, from_id, None, None, limit)).await??))
}

/// One aggregate per trade. Binance folds the fills of one taker order at one price into one
/// aggregate; the public trade view does not say which order took, and folding by time, price and
/// side alone could merge two orders, so keygate reports each fill on its own (quantities and
/// prices add up the same).
fn aggregate(trades: Vec<PublicTrade>) -> Vec<AggTrade> {
    trades
        .into_iter()
        .map(|t| AggTrade {
            id: t.id,
            price: t.price,
            qty: t.qty,
            first_trade_id: t.id,
            last_trade_id: t.id,
            time: t.time,
            is_buyer_maker: t.is_buyer_maker,
            is_best_match: true,
        })
        .collect()
}

/// `GET /api/v3/aggTrades` (`symbol`, `fromId`, `startTime`, `endTime`, `limit` default 500, max
/// 1000): ccxt's `fetch_trades` reads these. Without `fromId`/`startTime` the most recent
/// aggregates (up to `endTime`); otherwise the first `limit` from there, oldest first, the
/// simulated market's history included. `fromId` with a time is -1128; a window over one hour is
/// -1127, as on Binance.
pub(crate) async fn agg_trades(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<Vec<AggTrade>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "fromId", "startTime", "endTime", "limit"])?;
    let symbol = wire::symbol(&p)?;
    let from_id = wire::opt_u64(&p, "fromId")?;
    let start = wire::opt_time(&p, "startTime")?;
    let end = wire::opt_time(&p, "endTime")?;
    let limit = wire::clamped_limit(&p, 1000)?.unwrap_or(500).max(1) as usize;
    if from_id.is_some() && (start.is_some() || end.is_some()) {
        return Err(wire::bad_combination());
    }
    if let (Some(s), Some(e)) = (start, end)
        && e.0.saturating_sub(s.0) > 3_600_000
    {
        return Err(ApiError::binance(ErrorCode::MoreThanXxHours, "More than 1 hours between startTime and endTime."));
    }
    let trades = state.engine.query(move |ex| ex.trades_since(&symbol, from_id, start, end, limit)).await??;
    Ok(BinanceJson(aggregate(trades)))
}

/// `GET /api/v3/klines` and `GET /api/v3/uiKlines` (`symbol`, `interval`, `startTime`, `endTime`,
/// `limit` default 500, max 1000): the sandbox's candles need no presentation tweaks, so both
/// answer the same.
pub(crate) async fn klines(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<Vec<json::Kline>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "interval", "startTime", "endTime", "limit"])?;
    let symbol = wire::symbol(&p)?;
    let interval = req(&p, "interval")?.to_owned();
    let start = wire::opt_time(&p, "startTime")?;
    let end = wire::opt_time(&p, "endTime")?;
    let limit = wire::clamped_limit(&p, 1000)?;
    let at = now(&state);
    let rows = state.engine.query(move |ex| ex.klines(&symbol, &interval, start, end, limit, at)).await??;
    Ok(BinanceJson(rows))
}

// ---------------------------------------------------------------------------------------------
// Tickers.
// ---------------------------------------------------------------------------------------------

/// `GET /api/v3/ticker/price`: one (`symbol`), some (`symbols`) or all.
pub(crate) async fn ticker_price(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<OneOrMany<json::Price>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "symbols"])?;
    let selection = wire::symbol_selection(&p)?;
    let out =
        per_symbol(&state, selection, |ex, s| Ok(json::Price { symbol: s.clone(), price: ex.last_price(s)? })).await?;
    Ok(BinanceJson(out))
}

/// `GET /api/v3/ticker/24hr`: one, some or all; `type` FULL (default) or MINI.
pub(crate) async fn ticker_24hr(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<OneOrMany<json::Ticker24h>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "symbols", "type"])?;
    let selection = wire::symbol_selection(&p)?;
    let mini = match opt(&p, "type")? {
        None | Some("FULL") => false,
        Some("MINI") => true,
        Some(_) => return Err(wire::invalid("type")),
    };
    let at = now(&state);
    let out = per_symbol(&state, selection, move |ex, s| Ok(wire::ticker_24h(ex.ticker_24h(s, at)?, mini))).await?;
    Ok(BinanceJson(out))
}

/// `windowSize` of `GET /api/v3/ticker`: `1m`..`59m`, `1h`..`23h`, `1d`..`7d`, in ms.
fn window_size(text: &str) -> Option<u64> {
    let (num, unit) = text.split_at(text.len().checked_sub(1)?);
    if num.is_empty() || num.len() > 2 || !num.bytes().all(|b| b.is_ascii_digit()) || num.starts_with('0') {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let (max, ms) = match unit {
        "m" => (59, 60_000),
        "h" => (23, 3_600_000),
        "d" => (7, 86_400_000),
        _ => return None,
    };
    (1..=max).contains(&n).then_some(n * ms)
}

/// `GET /api/v3/ticker` (rolling window statistics): `symbol` or `symbols` (one is required),
/// `windowSize` (default `1d`), `type` FULL (default) or MINI.
pub(crate) async fn ticker_window(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<OneOrMany<json::TickerWindow>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "symbols", "windowSize", "type"])?;
    let selection = wire::symbol_selection(&p)?;
    if matches!(selection, SymbolSelection::All) {
        return Err(ApiError::binance(
            ErrorCode::MandatoryParamEmptyOrMalformed,
            "Param 'symbol' or 'symbols' must be sent, but both were empty/null!",
        ));
    }
    let window = match opt(&p, "windowSize")? {
        None => 86_400_000,
        Some(w) => window_size(w).ok_or_else(|| wire::invalid("windowSize"))?,
    };
    let mini = match opt(&p, "type")? {
        None | Some("FULL") => false,
        Some("MINI") => true,
        Some(_) => return Err(wire::invalid("type")),
    };
    let at = now(&state);
    let out =
        per_symbol(&state, selection, move |ex, s| Ok(wire::ticker_window(ex.ticker_window(s, window, at)?, mini)))
            .await?;
    Ok(BinanceJson(out))
}

/// `GET /api/v3/ticker/bookTicker`: one, some or all.
pub(crate) async fn book_ticker(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<OneOrMany<json::BookTicker>>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol", "symbols"])?;
    let selection = wire::symbol_selection(&p)?;
    let out = per_symbol(&state, selection, |ex, s| ex.book_ticker(s)).await?;
    Ok(BinanceJson(out))
}

/// `GET /api/v3/avgPrice` (`symbol`): the 5-minute volume-weighted price.
pub(crate) async fn avg_price(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<BinanceJson<json::AvgPrice>, ApiError> {
    let p = public_params(q.as_deref(), &["symbol"])?;
    let symbol = wire::symbol(&p)?;
    let at = now(&state);
    let a = state.engine.query(move |ex| ex.avg_price(&symbol, at)).await??;
    Ok(BinanceJson(a))
}
