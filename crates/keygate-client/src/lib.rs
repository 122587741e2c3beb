//! Signing and calling keygate (or any Binance Spot-compatible API) from Rust.
//!
//! Used by the key holder's tools and by keygate's own tests. It signs exactly the bytes it sends,
//! as Binance requires: the query string is built once, signed, and sent unchanged.
//!
//! Two levels: [`Client::signed`] and [`Client::raw`] return the [`Answer`] as it came (status,
//! headers, JSON), for tests that look at the wire; the endpoint methods ([`Client::account`],
//! [`Client::new_order`], ...) return the typed shapes of [`keygate_proto::binance`], the same
//! types the server writes, and a Binance error as [`ClientError::Api`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::DecodePrivateKey as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use keygate_proto::binance::account::{Account, AccountCommission, ApiRestrictions};
use keygate_proto::binance::general::{EmptyObject, ServerTime, SystemStatus};
use keygate_proto::binance::market::{
    AggTrade, AvgPrice, BookTicker, Depth, ExchangeInfo, Kline, Price, Ticker24h, Trade,
};
use keygate_proto::binance::trading::{
    CanceledOrder, MyTrade, NewOrderResponse, Order, OrderType, Side, TestOrderResponse, TimeInForce,
};
use keygate_proto::binance::wallet::{Coin, Deposit, DepositAddress, TradeFee, WithdrawApplied, Withdrawal};
use keygate_proto::{Amount, AssetCode, ErrorBody, Symbol, UnixMillis};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::de::DeserializeOwned;
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;

/// Characters left unescaped in parameter values, as `urllib.parse.urlencode` leaves them.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a parameter value.
#[must_use]
pub fn encode(value: &str) -> String {
    utf8_percent_encode(value, VALUE).to_string()
}

/// The largest answer body read: Binance's largest pages (1,000 trades, all tickers) are a few
/// MiB.
pub const MAX_ANSWER_BYTES: usize = 64 << 20;

/// Connecting gives up after this long: an exchange that is down is reported, not waited for.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A whole request, answer included, gives up after this long.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The HTTP client every [`Client`] uses: timeouts, so one exchange that never answers cannot
/// hang a tool that reads several; and no redirects, since a redirect would carry the
/// `X-MBX-APIKEY` header and the signed query to wherever the server points.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Why a client could not be built or a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The private key could not be read.
    #[error("unreadable private key: {0}")]
    Key(String),
    /// The HTTP request failed. The URL is left out: a signed request's URL carries its
    /// signature, which stays out of messages and logs.
    #[error("request failed: {}", causes(.0))]
    Http(reqwest::Error),
    /// The answer's body was larger than [`MAX_ANSWER_BYTES`]: no exchange answer is, and a
    /// server sending one without end would otherwise take all memory.
    #[error("the answer is larger than {} MiB", MAX_ANSWER_BYTES >> 20)]
    Oversized,
    /// The server refused the call with a Binance error.
    #[error("HTTP {status}, Binance error {}: {}", body.code, body.msg)]
    Api {
        /// HTTP status.
        status: u16,
        /// Binance's `{code, msg}`; [`ErrorBody::error_code`] reads the code as an
        /// [`ErrorCode`](keygate_proto::ErrorCode).
        body: ErrorBody,
    },
    /// The answer is not the shape the endpoint has: not JSON, or JSON of another shape.
    #[error("unexpected answer (HTTP {status}): {msg}")]
    Decode {
        /// HTTP status.
        status: u16,
        /// What did not match.
        msg: String,
    },
}

/// An error and its causes, `: `-joined: reqwest's own message ("error sending request") says
/// nothing of why (refused, a DNS name unknown, a TLS failure), which its sources say. The URL
/// is stripped before this is reached, and no cause below it carries one.
fn causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

impl From<reqwest::Error> for ClientError {
    fn from(e: reqwest::Error) -> Self {
        Self::Http(e.without_url())
    }
}

/// Signs payloads for one key.
pub enum Signer {
    /// HMAC-SHA256 keyed with the secret text; hex signatures.
    Hmac(Hmac<Sha256>),
    /// Ed25519; base64 signatures.
    Ed25519(ed25519_dalek::SigningKey),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Signer::Hmac(<hidden>)",
            Self::Ed25519(_) => "Signer::Ed25519(<hidden>)",
        })
    }
}

impl Signer {
    /// An HMAC signer for `secret`.
    #[must_use]
    pub fn hmac(secret: &str) -> Self {
        match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
            Ok(m) => Self::Hmac(m),
            Err(_) => unreachable!("HMAC takes keys of any length"),
        }
    }

    /// An Ed25519 signer from a PKCS#8 PEM private key.
    ///
    /// # Errors
    /// [`ClientError::Key`] when the PEM is not an unencrypted Ed25519 PKCS#8 key.
    pub fn ed25519_pem(pem: &str) -> Result<Self, ClientError> {
        ed25519_dalek::SigningKey::from_pkcs8_pem(pem).map(Self::Ed25519).map_err(|e| ClientError::Key(e.to_string()))
    }

    /// The signature of `payload` as it goes on the wire: hex for HMAC, percent-encoded base64
    /// for Ed25519.
    #[must_use]
    pub fn sign(&self, payload: &[u8]) -> String {
        match self {
            Self::Hmac(keyed) => {
                let mut mac = keyed.clone();
                mac.update(payload);
                hex::encode(mac.finalize().into_bytes())
            }
            Self::Ed25519(k) => encode(&STANDARD.encode(k.sign(payload).to_bytes())),
        }
    }
}

/// Builds `k=v&…` with values percent-encoded.
#[must_use]
pub fn query_string(params: &[(&str, &str)]) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&")
}

/// Appends `timestamp` to `params`, signs the result and returns the full query string.
#[must_use]
pub fn signed_query(params: &[(&str, &str)], timestamp: UnixMillis, signer: &Signer) -> String {
    let mut q = query_string(params);
    if !q.is_empty() {
        q.push('&');
    }
    q.push_str(&format!("timestamp={}", timestamp.0));
    let sig = signer.sign(q.as_bytes());
    q.push_str("&signature=");
    q.push_str(&sig);
    q
}

/// The answer to a call: HTTP status, headers of interest, and the JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// `x-keygate-reason`, when the server disclosed one.
    pub reason: Option<String>,
    /// `x-request-id`.
    pub request_id: Option<String>,
    /// The body as JSON (`Null` when it was not JSON).
    pub body: serde_json::Value,
}

impl Answer {
    /// The Binance error, if the body is one.
    #[must_use]
    pub fn error(&self) -> Option<ErrorBody> {
        serde_json::from_value(self.body.clone()).ok()
    }

    /// The body as the endpoint's type `T` when the call succeeded.
    ///
    /// # Errors
    /// [`ClientError::Api`] for a non-2xx answer with a Binance error body, and
    /// [`ClientError::Decode`] for any other answer that is not a `T`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ClientError> {
        let status = self.status;
        if !(200..300).contains(&status) {
            return Err(match self.error() {
                Some(body) => ClientError::Api { status, body },
                None => ClientError::Decode { status, msg: format!("no Binance error in {}", self.body) },
            });
        }
        T::deserialize(&self.body).map_err(|e| ClientError::Decode { status, msg: e.to_string() })
    }
}

/// The rate-limit headers of one answer ([`Client::get_paced`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateInfo {
    /// `X-MBX-USED-WEIGHT-1M`: request weight this address used in the current minute.
    pub used_weight_1m: Option<u32>,
    /// `Retry-After` in seconds, sent with 429 and 418 answers.
    pub retry_after_secs: Option<u64>,
}

/// Which order a query or cancel names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRef<'a> {
    /// `orderId`: the exchange's id.
    Id(u64),
    /// `origClientOrderId`: the client's id.
    ClientId(&'a str),
}

impl OrderRef<'_> {
    fn param(self) -> (&'static str, String) {
        match self {
            Self::Id(id) => ("orderId", id.to_string()),
            Self::ClientId(c) => ("origClientOrderId", c.to_owned()),
        }
    }
}

/// A new order's parameters, typed; [`Client::new_order`] and [`Client::test_order`] send them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// `symbol`.
    pub symbol: Symbol,
    /// `side`.
    pub side: Side,
    /// `type`.
    pub order_type: OrderType,
    /// `timeInForce` (LIMIT only).
    pub time_in_force: Option<TimeInForce>,
    /// `quantity`.
    pub quantity: Option<Amount>,
    /// `quoteOrderQty` (MARKET only).
    pub quote_order_qty: Option<Amount>,
    /// `price` (LIMIT and LIMIT_MAKER).
    pub price: Option<Amount>,
    /// `newClientOrderId`.
    pub new_client_order_id: Option<String>,
}

impl NewOrder {
    /// A good-till-canceled LIMIT order.
    #[must_use]
    pub fn limit(symbol: Symbol, side: Side, quantity: Amount, price: Amount) -> Self {
        Self {
            time_in_force: Some(TimeInForce::Gtc),
            quantity: Some(quantity),
            price: Some(price),
            ..Self::bare(symbol, side, OrderType::Limit)
        }
    }

    /// A MARKET order for `quantity` of the base asset.
    #[must_use]
    pub fn market(symbol: Symbol, side: Side, quantity: Amount) -> Self {
        Self { quantity: Some(quantity), ..Self::bare(symbol, side, OrderType::Market) }
    }

    /// A MARKET order spending (or receiving) `quote` of the quote asset.
    #[must_use]
    pub fn market_quote(symbol: Symbol, side: Side, quote: Amount) -> Self {
        Self { quote_order_qty: Some(quote), ..Self::bare(symbol, side, OrderType::Market) }
    }

    /// The same order with the client's own id.
    #[must_use]
    pub fn with_client_id(self, id: impl Into<String>) -> Self {
        Self { new_client_order_id: Some(id.into()), ..self }
    }

    fn bare(symbol: Symbol, side: Side, order_type: OrderType) -> Self {
        Self {
            symbol,
            side,
            order_type,
            time_in_force: None,
            quantity: None,
            quote_order_qty: None,
            price: None,
            new_client_order_id: None,
        }
    }

    /// The request parameters, in the order Binance documents them.
    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![
            ("symbol", self.symbol.to_string()),
            ("side", self.side.as_str().to_owned()),
            ("type", self.order_type.as_str().to_owned()),
        ];
        let optional = [
            ("timeInForce", self.time_in_force.map(|t| t.as_str().to_owned())),
            ("quantity", self.quantity.map(|q| q.to_string())),
            ("quoteOrderQty", self.quote_order_qty.map(|q| q.to_string())),
            ("price", self.price.map(|q| q.to_string())),
            ("newClientOrderId", self.new_client_order_id.clone()),
        ];
        p.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        p
    }
}

/// Borrows owned parameters as the `&[(&str, &str)]` the request methods take.
fn borrowed<'a>(params: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    params.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Source of the timestamp put on each request.
pub type TimeSource = Arc<dyn Fn() -> UnixMillis + Send + Sync>;

/// A signed-request client for one key.
pub struct Client {
    base_url: String,
    api_key: String,
    signer: Signer,
    time: TimeSource,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `base_url` (e.g. `http://127.0.0.1:8080`) signing as `api_key` with
    /// `signer`, stamping requests with `time`.
    #[must_use]
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>, signer: Signer, time: TimeSource) -> Self {
        Self { base_url: base_url.into(), api_key: api_key.into(), signer, time, http: http_client() }
    }

    async fn answer(res: reqwest::Response) -> Result<Answer, ClientError> {
        let status = res.status().as_u16();
        let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let reason = header("x-keygate-reason");
        let request_id = header("x-request-id");
        let mut res = res;
        if res.content_length().is_some_and(|n| n > MAX_ANSWER_BYTES as u64) {
            return Err(ClientError::Oversized);
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ClientError::Oversized);
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            reason,
            request_id,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        })
    }

    /// A signed request with every parameter in the query string.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached.
    pub async fn signed(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Answer, ClientError> {
        let q = signed_query(params, (self.time)(), &self.signer);
        self.raw(method, path, &q, "").await
    }

    /// A GET (signed, or public when `signed` is false) returning the rate-limit headers beside
    /// the answer: for tools that pace long runs of calls (history exports) by the weight the
    /// server says they used and wait as long as a 429 or 418 tells them to.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached.
    pub async fn get_paced(
        &self,
        path: &str,
        params: &[(&str, &str)],
        signed: bool,
    ) -> Result<(Answer, RateInfo), ClientError> {
        let q = if signed { signed_query(params, (self.time)(), &self.signer) } else { query_string(params) };
        let url =
            if q.is_empty() { format!("{}{path}", self.base_url) } else { format!("{}{path}?{q}", self.base_url) };
        let mut req = self.http.get(url);
        if signed {
            req = req.header("X-MBX-APIKEY", &self.api_key);
        }
        let res = req.send().await?;
        let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_owned());
        let info = RateInfo {
            used_weight_1m: header("x-mbx-used-weight-1m").and_then(|v| v.parse().ok()),
            retry_after_secs: header("retry-after").and_then(|v| v.parse().ok()),
        };
        Ok((Self::answer(res).await?, info))
    }

    /// Sends exactly `query` and `body`, with this client's key header: for tests that craft bytes.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached.
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &str,
        body: &str,
    ) -> Result<Answer, ClientError> {
        let url = if query.is_empty() {
            format!("{}{path}", self.base_url)
        } else {
            format!("{}{path}?{query}", self.base_url)
        };
        let mut req = self.http.request(method, url).header("X-MBX-APIKEY", &self.api_key);
        if !body.is_empty() {
            req = req.header("Content-Type", "application/x-www-form-urlencoded").body(body.to_owned());
        }
        Self::answer(req.send().await?).await
    }

    /// The exchange's base URL, as given: the key holder's export names accounts by it.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API key sent as `X-MBX-APIKEY`, for tests that send requests by hand.
    #[must_use]
    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// The signer, for tests that sign by hand.
    #[must_use]
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// The current timestamp of this client.
    #[must_use]
    pub fn now(&self) -> UnixMillis {
        (self.time)()
    }

    /// A public (unsigned) GET, read as the endpoint's type.
    ///
    /// # Errors
    /// [`ClientError::Http`] when the server cannot be reached, [`ClientError::Api`] when it
    /// refuses, [`ClientError::Decode`] when the answer is not a `T`.
    pub async fn public<T: DeserializeOwned>(&self, path: &str, params: &[(&str, &str)]) -> Result<T, ClientError> {
        self.raw(Method::GET, path, &query_string(params), "").await?.parse()
    }

    /// A signed request, read as the endpoint's type.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        self.signed(method, path, params).await?.parse()
    }

    // -----------------------------------------------------------------------------------------
    // Public market data. Every method's errors are those of [`Client::public`].
    // -----------------------------------------------------------------------------------------

    /// `GET /api/v3/ping`.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn ping(&self) -> Result<EmptyObject, ClientError> {
        self.public("/api/v3/ping", &[]).await
    }

    /// `GET /api/v3/time`: the server's clock, to measure this client's offset.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn server_time(&self) -> Result<ServerTime, ClientError> {
        self.public("/api/v3/time", &[]).await
    }

    /// `GET /sapi/v1/system/status`.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn system_status(&self) -> Result<SystemStatus, ClientError> {
        self.public("/sapi/v1/system/status", &[]).await
    }

    /// `GET /api/v3/exchangeInfo`: every market with its filters.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn exchange_info(&self) -> Result<ExchangeInfo, ClientError> {
        self.public("/api/v3/exchangeInfo", &[]).await
    }

    /// `GET /api/v3/depth` with the server's default `limit` unless one is given.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn depth(&self, symbol: &Symbol, limit: Option<u32>) -> Result<Depth, ClientError> {
        let limit = limit.map(|l| l.to_string());
        let mut p = vec![("symbol", symbol.as_str())];
        p.extend(limit.as_deref().map(|l| ("limit", l)));
        self.public("/api/v3/depth", &p).await
    }

    /// `GET /api/v3/trades`: the most recent public trades, oldest first.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn trades(&self, symbol: &Symbol) -> Result<Vec<Trade>, ClientError> {
        self.public("/api/v3/trades", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/aggTrades`: the most recent aggregate trades.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn agg_trades(&self, symbol: &Symbol) -> Result<Vec<AggTrade>, ClientError> {
        self.public("/api/v3/aggTrades", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/klines` for `interval` (`1m`, `1h`, `1d`, ...).
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn klines(&self, symbol: &Symbol, interval: &str) -> Result<Vec<Kline>, ClientError> {
        self.public("/api/v3/klines", &[("symbol", symbol.as_str()), ("interval", interval)]).await
    }

    /// `GET /api/v3/ticker/price` for one market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn ticker_price(&self, symbol: &Symbol) -> Result<Price, ClientError> {
        self.public("/api/v3/ticker/price", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/ticker/price` for every market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn ticker_prices(&self) -> Result<Vec<Price>, ClientError> {
        self.public("/api/v3/ticker/price", &[]).await
    }

    /// `GET /api/v3/ticker/24hr` for one market, FULL.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn ticker_24h(&self, symbol: &Symbol) -> Result<Ticker24h, ClientError> {
        self.public("/api/v3/ticker/24hr", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/ticker/bookTicker` for one market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn book_ticker(&self, symbol: &Symbol) -> Result<BookTicker, ClientError> {
        self.public("/api/v3/ticker/bookTicker", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/avgPrice`.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn avg_price(&self, symbol: &Symbol) -> Result<AvgPrice, ClientError> {
        self.public("/api/v3/avgPrice", &[("symbol", symbol.as_str())]).await
    }

    // -----------------------------------------------------------------------------------------
    // The account, its key and its orders (signed).
    // -----------------------------------------------------------------------------------------

    /// `GET /api/v3/account`: balances of every asset and what this key may do.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn account(&self) -> Result<Account, ClientError> {
        self.call(Method::GET, "/api/v3/account", &[]).await
    }

    /// `GET /api/v3/account/commission`: the account's rates on one market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn account_commission(&self, symbol: &Symbol) -> Result<AccountCommission, ClientError> {
        self.call(Method::GET, "/api/v3/account/commission", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /sapi/v1/account/apiRestrictions`: what this key may do.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn api_restrictions(&self) -> Result<ApiRestrictions, ClientError> {
        self.call(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await
    }

    /// `POST /api/v3/order`: places `order`; the answer is FULL for LIMIT and MARKET, ACK for
    /// LIMIT_MAKER (the server's defaults).
    ///
    /// # Errors
    /// As [`Client::public`]; a refused order is [`ClientError::Api`] (-2010, -1013, ...).
    pub async fn new_order(&self, order: &NewOrder) -> Result<NewOrderResponse, ClientError> {
        let p = order.params();
        self.call(Method::POST, "/api/v3/order", &borrowed(&p)).await
    }

    /// `POST /api/v3/order/test`: validates `order` without placing it; with `commission_rates`
    /// the answer carries the rates it would pay.
    ///
    /// # Errors
    /// As [`Client::new_order`].
    pub async fn test_order(&self, order: &NewOrder, commission_rates: bool) -> Result<TestOrderResponse, ClientError> {
        let mut p = order.params();
        if commission_rates {
            p.push(("computeCommissionRates", "true".to_owned()));
        }
        self.call(Method::POST, "/api/v3/order/test", &borrowed(&p)).await
    }

    /// `GET /api/v3/order`: one order of this account.
    ///
    /// # Errors
    /// As [`Client::public`]; an unknown order is [`ClientError::Api`] -2013.
    pub async fn query_order(&self, symbol: &Symbol, order: OrderRef<'_>) -> Result<Order, ClientError> {
        let (k, v) = order.param();
        self.call(Method::GET, "/api/v3/order", &[("symbol", symbol.as_str()), (k, v.as_str())]).await
    }

    /// `DELETE /api/v3/order`: cancels one open order.
    ///
    /// # Errors
    /// As [`Client::public`]; an order that is not open is [`ClientError::Api`] -2011.
    pub async fn cancel_order(&self, symbol: &Symbol, order: OrderRef<'_>) -> Result<CanceledOrder, ClientError> {
        let (k, v) = order.param();
        self.call(Method::DELETE, "/api/v3/order", &[("symbol", symbol.as_str()), (k, v.as_str())]).await
    }

    /// `DELETE /api/v3/openOrders`: cancels every open order of this account on `symbol`.
    ///
    /// # Errors
    /// As [`Client::public`]; no open order is [`ClientError::Api`] -2011.
    pub async fn cancel_open_orders(&self, symbol: &Symbol) -> Result<Vec<CanceledOrder>, ClientError> {
        self.call(Method::DELETE, "/api/v3/openOrders", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/openOrders`: open orders on `symbol`, or on every market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn open_orders(&self, symbol: Option<&Symbol>) -> Result<Vec<Order>, ClientError> {
        let p: Vec<(&str, &str)> = symbol.map(|s| ("symbol", s.as_str())).into_iter().collect();
        self.call(Method::GET, "/api/v3/openOrders", &p).await
    }

    /// `GET /api/v3/allOrders`: this account's orders on `symbol`, oldest first.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn all_orders(&self, symbol: &Symbol) -> Result<Vec<Order>, ClientError> {
        self.call(Method::GET, "/api/v3/allOrders", &[("symbol", symbol.as_str())]).await
    }

    /// `GET /api/v3/myTrades`: this account's trades on `symbol`, oldest first.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn my_trades(&self, symbol: &Symbol) -> Result<Vec<MyTrade>, ClientError> {
        self.call(Method::GET, "/api/v3/myTrades", &[("symbol", symbol.as_str())]).await
    }

    // -----------------------------------------------------------------------------------------
    // Wallet (signed).
    // -----------------------------------------------------------------------------------------

    /// `GET /sapi/v1/capital/config/getall`: every coin, its networks and this account's balance.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn all_coins(&self) -> Result<Vec<Coin>, ClientError> {
        self.call(Method::GET, "/sapi/v1/capital/config/getall", &[]).await
    }

    /// `GET /sapi/v1/capital/deposit/address` on the coin's default network.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn deposit_address(&self, coin: &AssetCode) -> Result<DepositAddress, ClientError> {
        self.call(Method::GET, "/sapi/v1/capital/deposit/address", &[("coin", coin.as_str())]).await
    }

    /// `GET /sapi/v1/capital/deposit/hisrec`: deposits, newest first.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn deposit_history(&self) -> Result<Vec<Deposit>, ClientError> {
        self.call(Method::GET, "/sapi/v1/capital/deposit/hisrec", &[]).await
    }

    /// `POST /sapi/v1/capital/withdraw/apply`: withdraws `amount` (fee included) of `coin` to
    /// `address` on the coin's default network.
    ///
    /// # Errors
    /// As [`Client::public`]; a withdrawal the key's policy or the balance refuses is
    /// [`ClientError::Api`] (-4xxx).
    pub async fn withdraw(
        &self,
        coin: &AssetCode,
        address: &str,
        amount: Amount,
    ) -> Result<WithdrawApplied, ClientError> {
        let amount = amount.to_string();
        let p = [("coin", coin.as_str()), ("address", address), ("amount", amount.as_str())];
        self.call(Method::POST, "/sapi/v1/capital/withdraw/apply", &p).await
    }

    /// `GET /sapi/v1/capital/withdraw/history`: withdrawals, newest first.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn withdraw_history(&self) -> Result<Vec<Withdrawal>, ClientError> {
        self.call(Method::GET, "/sapi/v1/capital/withdraw/history", &[]).await
    }

    /// `GET /sapi/v1/asset/tradeFee`: maker and taker rates of `symbol`, or of every market.
    ///
    /// # Errors
    /// As [`Client::public`].
    pub async fn trade_fee(&self, symbol: Option<&Symbol>) -> Result<Vec<TradeFee>, ClientError> {
        let p: Vec<(&str, &str)> = symbol.map(|s| ("symbol", s.as_str())).into_iter().collect();
        self.call(Method::GET, "/sapi/v1/asset/tradeFee", &p).await
    }
}
