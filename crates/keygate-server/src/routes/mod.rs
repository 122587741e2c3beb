//! What answers requests: the endpoint table ([`crate::endpoints`]), each row paired with its
//! handler ([`table`], served by [`crate::front`]), and the router of the console, health checks
//! and the fallbacks ([`router`]).

mod account;
mod compat;
mod health;
mod leaks;
mod market;
mod public;
pub(crate) mod time_unit;
mod trading;
mod wallet;
mod wire;

use crate::endpoints::Route;
use crate::error::JSON;
use crate::extract::Signed;
use crate::front::{AnswerFuture, Endpoint, PathEntry, PathService};
use crate::weight::{self, Charging};
use crate::{ApiError, AppState};
use axum::Router;
use axum::extract::State;
use axum::handler::Handler;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

/// A JSON answer with Binance's content type.
pub(crate) struct BinanceJson<T>(pub T);

impl<T: Serialize> IntoResponse for BinanceJson<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(body) => ([(header::CONTENT_TYPE, HeaderValue::from_static(JSON))], body).into_response(),
            Err(e) => ApiError::Internal(format!("serialising a response: {e}")).into_response(),
        }
    }
}

/// The console's pages and JSON API, told the client address the same way the exchange routes
/// resolve it (trusted proxies included).
fn console_routes(state: &AppState) -> Router<AppState> {
    keygate_console::router(state.console.clone())
        .layer(axum::middleware::from_fn_with_state(state.clone(), console_client_addr))
}

async fn console_client_addr(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(ip) = crate::client_ip::request_client_ip(&req, &state.trusted_proxies) {
        req.extensions_mut().insert(keygate_console::ClientAddr(ip));
    }
    next.run(req).await
}

/// The handler of each Binance route: one arm per row of the endpoint table. The match is
/// exhaustive, so a row without a handler does not compile; [`table`] serves Binance paths only
/// from the table's rows, so a handler is only reachable at its row's method and path.
fn handler(route: Route) -> Endpoint {
    use Route as R;
    match route {
        R::Ping => public(route, public::ping),
        R::Time => public(route, public::time),
        R::SystemStatus => public(route, public::system_status),
        R::ApiRestrictions => signed(route, account::api_restrictions),
        R::ExchangeInfo => public(route, market::exchange_info),
        R::Depth => public(route, market::depth),
        R::Trades => public(route, market::trades),
        R::AggTrades => public(route, market::agg_trades),
        R::HistoricalTrades => public(route, market::historical_trades),
        R::Klines | R::UiKlines => public(route, market::klines),
        R::TickerPrice => public(route, market::ticker_price),
        R::Ticker24hr => public(route, market::ticker_24hr),
        R::BookTicker => public(route, market::book_ticker),
        R::TickerWindow => public(route, market::ticker_window),
        R::AvgPrice => public(route, market::avg_price),
        R::Account => signed(route, trading::account),
        R::AccountCommission => signed(route, trading::account_commission),
        R::QueryOrder => signed(route, trading::query_order),
        R::NewOrder => signed(route, trading::new_order),
        R::CancelOrder => signed(route, trading::cancel_order),
        R::TestOrder => signed(route, trading::test_order),
        R::OpenOrders => signed(route, trading::open_orders),
        R::CancelOpenOrders => signed(route, trading::cancel_open_orders),
        R::AllOrders => signed(route, trading::all_orders),
        R::MyTrades => signed(route, trading::my_trades),
        R::AllCoins => signed(route, wallet::all_coins),
        R::DepositHistory => signed(route, wallet::deposit_history),
        R::DepositAddress => signed(route, wallet::deposit_address),
        R::WithdrawHistory => signed(route, wallet::withdraw_history),
        R::Withdraw => signed(route, wallet::withdraw),
        R::TradeFee => signed(route, wallet::trade_fee),
        R::FuturesExchangeInfo | R::DeliveryExchangeInfo => public(route, compat::futures_exchange_info),
        R::MarginPairs | R::IsolatedMarginPairs => signed(route, compat::margin_pairs),
    }
}

/// A public route: `handler` answers the row's method, with axum's extractors. A row whose
/// security type is not `NONE` is answered 500 instead, never served unverified.
fn public<H, T>(route: Route, handler: H) -> Endpoint
where
    // Every async fn handler's future is this one boxed future: no second box around it.
    H: Handler<T, AppState, Future = AnswerFuture>,
    T: 'static,
{
    match route.spec().security.access() {
        None => Box::new(move |req, state, _peer| handler.clone().call(req, state)),
        Some(_) => misrouted(route),
    }
}

/// A signed route: every request is verified for the row's security type before `handler` sees
/// it (see [`crate::extract::serve`], which refuses a public row with a 500). Signed handlers take
/// `(State<AppState>, Signed)`; [`Signed`] is no extractor, so they cannot be routed any other way.
fn signed<H, Fut, Res>(route: Route, handler: H) -> Endpoint
where
    H: FnOnce(State<AppState>, Signed) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Res> + Send + 'static,
    Res: IntoResponse + 'static,
{
    Box::new(move |req, state, peer| Box::pin(crate::extract::serve(route, state, req, peer, handler.clone())))
}

/// A row whose handler does not fit it: answered 500 (`tests/it/endpoints.rs` requests every
/// row, so this never ships).
fn misrouted(route: Route) -> Endpoint {
    Box::new(move |_, _, _| {
        Box::pin(std::future::ready(ApiError::Internal(format!("{route:?} is routed against its row")).into_response()))
    })
}

/// The endpoint table's paths, each with its rows' handlers ([`crate::front`] serves them), and
/// the weight middleware in front of each when rate limits are on.
pub(crate) fn table(state: &AppState) -> Vec<(&'static str, PathEntry)> {
    let charge = state.limiter.config().enabled;
    let mut paths: Vec<(&'static str, PathEntry)> = Route::by_path()
        .filter_map(|rows| {
            let path = rows.first()?.spec().path;
            let methods = rows.iter().map(|&route| (route.spec().method.clone(), handler(route))).collect();
            let service = PathService::new(state.clone(), methods);
            Some((path, PathEntry::new(service, charge.then(|| Charging::path(state.clone(), rows)))))
        })
        .collect();
    paths.sort_by(|a, b| a.0.cmp(b.0));
    paths
}

/// The router of everything outside the endpoint table: the console, health checks, leak reports,
/// and the fallbacks (every unknown path, charged [`Weight::UNLISTED`](crate::endpoints::Weight)
/// with rate limits on), each with its access line. [`crate::front::Front`] hands it what the
/// table does not hold.
pub(crate) fn router(state: AppState) -> Router {
    let charge = state.limiter.config().enabled;
    let not_found = || async { ApiError::NotFound };
    let routes = Router::new()
        .merge(console_routes(&state))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/keygate/v1/leak-reports", axum::routing::post(leaks::report))
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });
    let routes = if charge {
        routes.fallback(not_found.layer(weight::WeightLayer::new(Charging::unrouted(state.clone()))))
    } else {
        routes.fallback(not_found)
    };
    // Outermost: one access line per answer, whoever answered (see access_log).
    routes.layer(crate::access_log::AccessLogLayer::new(state.clone())).with_state(state)
}
