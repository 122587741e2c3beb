//! The read side: account state, order and trade history with Binance's query rules, market data.
//!
//! Every method takes `&self`; the server calls them on published snapshots of the engine.

use crate::config::{AssetSpec, MarketSpec};
use crate::error::ExchangeError;
use crate::exchange::{Exchange, UNIT};
use crate::order::{MyTrade, Order, OrderRef, PublicTrade, Side, Trade};
use crate::wallet::{DepositRecord, WithdrawalRecord};
use keygate_proto::{AccountId, Amount, AssetCode, ErrorCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};

// Market data and balances are answered in the wire shapes of the proto crate: the server sends
// them as they are, so each shape is written once.
pub use keygate_proto::binance::account::Balance as BalanceView;
pub use keygate_proto::binance::market::{AvgPrice, BookTicker, Depth, Kline, Ticker24hFull as Ticker24h};

/// 24 hours: the widest `startTime..endTime` of allOrders and myTrades.
const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// 90 days: the widest window of wallet histories.
const NINETY_DAYS_MS: u64 = 90 * DAY_MS;

/// `GET /api/v3/allOrders` optional parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderQuery {
    /// `orderId`: orders with id >= this.
    pub order_id: Option<u64>,
    /// `startTime`.
    pub start_time: Option<UnixMillis>,
    /// `endTime`.
    pub end_time: Option<UnixMillis>,
    /// `limit` (default 500, max 1000).
    pub limit: Option<u32>,
}

/// `GET /api/v3/myTrades` optional parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeQuery {
    /// `orderId`: only this order's trades.
    pub order_id: Option<u64>,
    /// `startTime`.
    pub start_time: Option<UnixMillis>,
    /// `endTime`.
    pub end_time: Option<UnixMillis>,
    /// `fromId`: trades with id >= this.
    pub from_id: Option<u64>,
    /// `limit` (default 500, max 1000).
    pub limit: Option<u32>,
}

/// Deposit/withdrawal history parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// `coin`.
    pub coin: Option<AssetCode>,
    /// `status`.
    pub status: Option<u8>,
    /// `startTime` (default: 90 days before `endTime`).
    pub start_time: Option<UnixMillis>,
    /// `endTime` (default: now).
    pub end_time: Option<UnixMillis>,
    /// `offset` (default 0).
    pub offset: Option<u32>,
    /// `limit` (default 1000, max 1000).
    pub limit: Option<u32>,
    /// `withdrawOrderId` (withdrawals only).
    pub withdraw_order_id: Option<String>,
}

fn limit_of(limit: Option<u32>, default: u32, max: u32) -> Result<usize, ExchangeError> {
    match limit {
        None => Ok(default as usize),
        Some(l) if l >= 1 && l <= max => Ok(l as usize),
        Some(_) => Err(ExchangeError::illegal("limit", &max.to_string())),
    }
}

/// Resolves `startTime`/`endTime` into a window of at most 24 hours (`None` when neither is set).
fn day_window(start: Option<UnixMillis>, end: Option<UnixMillis>) -> Result<Option<(u64, u64)>, ExchangeError> {
    match (start, end) {
        (None, None) => Ok(None),
        (Some(s), Some(e)) => {
            if e.0.saturating_sub(s.0) > DAY_MS {
                Err(ExchangeError::BadParam {
                    code: ErrorCode::MoreThanXxHours,
                    msg: "More than 24 hours between startTime and endTime.".to_owned(),
                })
            } else {
                Ok(Some((s.0, e.0)))
            }
        }
        (Some(s), None) => Ok(Some((s.0, s.0.saturating_add(DAY_MS)))),
        (None, Some(e)) => Ok(Some((e.0.saturating_sub(DAY_MS), e.0))),
    }
}

fn history_window(q: &HistoryQuery, now: UnixMillis) -> Result<(u64, u64), ExchangeError> {
    let (s, e) = match (q.start_time, q.end_time) {
        (None, None) => (now.0.saturating_sub(NINETY_DAYS_MS), now.0),
        (Some(s), None) => (s.0, s.0.saturating_add(NINETY_DAYS_MS).min(now.0.max(s.0))),
        (None, Some(e)) => (e.0.saturating_sub(NINETY_DAYS_MS), e.0),
        (Some(s), Some(e)) => (s.0, e.0),
    };
    if e < s || e - s > NINETY_DAYS_MS {
        return Err(ExchangeError::HistoryWindowTooLong);
    }
    Ok((s, e))
}

/// Signed decimal text of `units` (e.g. `-12.50000000`).
fn signed(units: i128) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let a = units.unsigned_abs();
    format!("{sign}{}.{:08}", a / UNIT, a % UNIT)
}

/// A kline interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KlineInterval {
    /// A fixed length in milliseconds, aligned to the epoch (with `offset`: weeks start Monday).
    Fixed {
        /// Length.
        ms: u64,
        /// Alignment offset.
        offset: u64,
    },
    /// Calendar months (UTC).
    Month,
}

impl KlineInterval {
    /// Parses Binance's interval names (`1s` .. `1M`); `None` for anything else (-1120).
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        const S: u64 = 1000;
        const M: u64 = 60 * S;
        const H: u64 = 60 * M;
        const D: u64 = 24 * H;
        let ms = match s {
            "1s" => S,
            "1m" => M,
            "3m" => 3 * M,
            "5m" => 5 * M,
            "15m" => 15 * M,
            "30m" => 30 * M,
            "1h" => H,
            "2h" => 2 * H,
            "4h" => 4 * H,
            "6h" => 6 * H,
            "8h" => 8 * H,
            "12h" => 12 * H,
            "1d" => D,
            "3d" => 3 * D,
            "1w" => return Some(Self::Fixed { ms: 7 * D, offset: 4 * D }),
            "1M" => return Some(Self::Month),
            _ => return None,
        };
        Some(Self::Fixed { ms, offset: 0 })
    }

    /// Start of the interval containing `t`.
    #[must_use]
    pub fn start_of(self, t: u64) -> u64 {
        match self {
            Self::Fixed { ms, offset } => {
                if t < offset {
                    0
                } else {
                    t - (t - offset) % ms
                }
            }
            Self::Month => {
                let (y, m, _) = civil_from_days(t / 86_400_000);
                days_from_civil(y, m, 1) * 86_400_000
            }
        }
    }

    /// Start of the interval after the one starting at `start`.
    #[must_use]
    pub fn next(self, start: u64) -> u64 {
        match self {
            Self::Fixed { ms, offset } => {
                if start < offset {
                    offset
                } else {
                    start.saturating_add(ms)
                }
            }
            Self::Month => {
                let (y, m, _) = civil_from_days(start / 86_400_000);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                // The month after the last one that starts within u64 milliseconds starts past
                // u64::MAX: saturate, so that callers' `next <= last` loops end there.
                days_from_civil(y, m, 1).saturating_mul(86_400_000)
            }
        }
    }

    /// Start of the interval before the one starting at `start`.
    fn prev(self, start: u64) -> u64 {
        match self {
            Self::Fixed { ms, .. } => start.saturating_sub(ms),
            Self::Month => self.start_of(start.saturating_sub(1)),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01 (for years >= 1970).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

impl Exchange {
    fn trade(&self, id: u64) -> Option<&Trade> {
        id.checked_sub(1).and_then(|i| self.trades.get(i as usize))
    }

    fn market_trades(&self, m: usize) -> Result<Vec<&Trade>, ExchangeError> {
        Ok(self.market(m)?.trades.iter().filter_map(|id| self.trade(*id)).collect())
    }

    /// Every asset's balance for the account (zeros included, as Binance lists them).
    #[must_use]
    pub fn balances(&self, account: AccountId) -> Vec<BalanceView> {
        self.ledger
            .balances_of(account)
            .into_iter()
            .map(|(asset, b)| BalanceView {
                asset,
                free: Amount::from_units(b.free),
                locked: Amount::from_units(b.locked),
            })
            .collect()
    }

    /// One order of the account on the symbol (by client id: the most recent with that id).
    ///
    /// # Errors
    /// -1121 for an unknown symbol, -2013 when the account has no such order there.
    pub fn order(&self, account: AccountId, symbol: &Symbol, r: &OrderRef) -> Result<&Order, ExchangeError> {
        let m = self.market_idx(symbol)? as u32;
        let found = match r {
            OrderRef::Id(id) => self.order_at(*id).filter(|o| o.account == account && o.market == m),
            OrderRef::ClientId(c) => self.accounts.get(&account).and_then(|a| a.get(&m)).and_then(|am| {
                am.orders.iter().rev().filter_map(|id| self.order_at(*id)).find(|o| &o.client_order_id == c)
            }),
        };
        found.ok_or(ExchangeError::OrderNotFound)
    }

    /// The account's open orders, on one symbol or all, in order id order.
    ///
    /// # Errors
    /// -1121 for an unknown symbol.
    pub fn open_orders(&self, account: AccountId, symbol: Option<&Symbol>) -> Result<Vec<&Order>, ExchangeError> {
        let only = symbol.map(|s| self.market_idx(s)).transpose()?;
        let Some(acct) = self.accounts.get(&account) else { return Ok(Vec::new()) };
        let mut out: Vec<&Order> = acct
            .iter()
            .filter(|(m, _)| only.is_none_or(|o| o as u32 == **m))
            .flat_map(|(_, am)| am.open.iter().filter_map(|id| self.order_at(*id)))
            .collect();
        out.sort_by_key(|o| o.order_id);
        Ok(out)
    }

    /// `GET /api/v3/allOrders`: from `orderId` up, or within a window of at most 24 hours, or the
    /// most recent; ascending by id; at most `limit`.
    ///
    /// # Errors
    /// -1121 unknown symbol, -1127 window over 24 h, -1100 limit out of 1..=1000.
    pub fn all_orders(
        &self,
        account: AccountId,
        symbol: &Symbol,
        q: &OrderQuery,
    ) -> Result<Vec<&Order>, ExchangeError> {
        let m = self.market_idx(symbol)? as u32;
        let limit = limit_of(q.limit, 500, 1000)?;
        let window = day_window(q.start_time, q.end_time)?;
        let ids: &[u64] = self.accounts.get(&account).and_then(|a| a.get(&m)).map_or(&[], |am| am.orders.as_slice());
        let orders = ids.iter().filter_map(|id| self.order_at(*id));
        let in_window = |o: &&Order| window.is_none_or(|(s, e)| o.time.0 >= s && o.time.0 <= e);
        let out: Vec<&Order> = match q.order_id {
            Some(from) => orders.filter(|o| o.order_id >= from).filter(in_window).take(limit).collect(),
            None if window.is_some() => orders.filter(in_window).take(limit).collect(),
            None => {
                let mut v: Vec<&Order> = orders.rev().take(limit).collect();
                v.reverse();
                v
            }
        };
        Ok(out)
    }

    fn my_view(&self, t: &Trade, is_buyer: bool) -> Option<MyTrade> {
        let spec = self.config.markets.get(t.market as usize)?;
        Some(MyTrade {
            symbol: t.symbol.clone(),
            id: t.id,
            order_id: if is_buyer { t.buyer_order_id } else { t.seller_order_id },
            order_list_id: -1,
            price: t.price,
            qty: t.qty,
            quote_qty: t.quote_qty,
            commission: if is_buyer { t.buyer_commission } else { t.seller_commission },
            commission_asset: if is_buyer { spec.base.clone() } else { spec.quote.clone() },
            time: t.time,
            is_buyer,
            is_maker: is_buyer == t.is_buyer_maker,
            is_best_match: true,
        })
    }

    /// `GET /api/v3/myTrades`: by `orderId`, from `fromId` up, within a window of at most 24 hours,
    /// or the most recent; ascending by id; at most `limit`.
    ///
    /// # Errors
    /// -1121 unknown symbol, -1127 window over 24 h, -1128 `fromId` with a time window, -1100
    /// limit out of 1..=1000.
    pub fn my_trades(
        &self,
        account: AccountId,
        symbol: &Symbol,
        q: &TradeQuery,
    ) -> Result<Vec<MyTrade>, ExchangeError> {
        let m = self.market_idx(symbol)? as u32;
        let limit = limit_of(q.limit, 500, 1000)?;
        if q.from_id.is_some() && (q.start_time.is_some() || q.end_time.is_some()) {
            return Err(ExchangeError::bad_combination());
        }
        let window = day_window(q.start_time, q.end_time)?;
        let refs: &[(u64, bool)] =
            self.accounts.get(&account).and_then(|a| a.get(&m)).map_or(&[], |am| am.trades.as_slice());
        let views = refs.iter().filter_map(|(id, b)| self.trade(*id).and_then(|t| self.my_view(t, *b)));
        let keep = |t: &MyTrade| {
            q.order_id.is_none_or(|o| t.order_id == o)
                && q.from_id.is_none_or(|f| t.id >= f)
                && window.is_none_or(|(s, e)| t.time.0 >= s && t.time.0 <= e)
        };
        let out = if q.from_id.is_some() || window.is_some() {
            views.filter(keep).take(limit).collect()
        } else {
            let mut v: Vec<MyTrade> = views.rev().filter(keep).take(limit).collect();
            v.reverse();
            v
        };
        Ok(out)
    }

    /// `GET /sapi/v1/capital/deposit/hisrec`, newest first.
    ///
    /// # Errors
    /// -4047 for a window over 90 days; -1100 for a limit out of 1..=1000.
    pub fn deposit_history(
        &self,
        account: AccountId,
        q: &HistoryQuery,
        now: UnixMillis,
    ) -> Result<Vec<&DepositRecord>, ExchangeError> {
        let (s, e) = history_window(q, now)?;
        let limit = limit_of(q.limit, 1000, 1000)?;
        Ok(self
            .deposits
            .iter()
            .rev()
            .filter(|d| d.account == account && d.insert_time.0 >= s && d.insert_time.0 <= e)
            .filter(|d| q.coin.as_ref().is_none_or(|c| &d.coin == c) && q.status.is_none_or(|st| d.status == st))
            .skip(q.offset.unwrap_or(0) as usize)
            .take(limit)
            .collect())
    }

    /// `GET /sapi/v1/capital/withdraw/history`, newest first.
    ///
    /// # Errors
    /// -4047 for a window over 90 days; -1100 for a limit out of 1..=1000.
    pub fn withdraw_history(
        &self,
        account: AccountId,
        q: &HistoryQuery,
        now: UnixMillis,
    ) -> Result<Vec<&WithdrawalRecord>, ExchangeError> {
        let (s, e) = history_window(q, now)?;
        let limit = limit_of(q.limit, 1000, 1000)?;
        Ok(self
            .withdrawals
            .iter()
            .rev()
            .filter(|w| w.account == account && w.apply_time.0 >= s && w.apply_time.0 <= e)
            .filter(|w| q.coin.as_ref().is_none_or(|c| &w.coin == c) && q.status.is_none_or(|st| w.status == st))
            .filter(|w| q.withdraw_order_id.as_ref().is_none_or(|id| w.withdraw_order_id.as_ref() == Some(id)))
            .skip(q.offset.unwrap_or(0) as usize)
            .take(limit)
            .collect())
    }

    /// `GET /api/v3/depth` (limit default 100, max 5000).
    ///
    /// # Errors
    /// -1121 unknown symbol; -1100 limit out of range.
    pub fn depth(&self, symbol: &Symbol, limit: Option<u32>) -> Result<Depth, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let limit = limit_of(limit, 100, 5000)?;
        let book = &self.market(m)?.book;
        let conv =
            |v: Vec<(u64, u64)>| v.into_iter().map(|(p, q)| (Amount::from_units(p), Amount::from_units(q))).collect();
        Ok(Depth {
            last_update_id: book.update_id(),
            bids: conv(book.levels(Side::Buy, limit)),
            asks: conv(book.levels(Side::Sell, limit)),
        })
    }

    /// `GET /api/v3/trades`: the most recent trades, oldest first (limit default 500, max 1000).
    ///
    /// # Errors
    /// -1121 unknown symbol; -1100 limit out of range.
    pub fn recent_trades(&self, symbol: &Symbol, limit: Option<u32>) -> Result<Vec<PublicTrade>, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let limit = limit_of(limit, 500, 1000)?;
        let ids = &self.market(m)?.trades;
        let from = ids.len().saturating_sub(limit);
        Ok(ids
            .get(from..)
            .unwrap_or(&[])
            .iter()
            .filter_map(|id| self.trade(*id))
            .map(|t| PublicTrade {
                id: t.id,
                price: t.price,
                qty: t.qty,
                quote_qty: t.quote_qty,
                time: t.time,
                is_buyer_maker: t.is_buyer_maker,
                is_best_match: true,
            })
            .collect())
    }

    /// `GET /api/v3/klines` built from this exchange's trades. Intervals without trades repeat
    /// the previous close with zero volume; nothing before the first trade is reported.
    ///
    /// # Errors
    /// -1121 unknown symbol; -1120 unknown interval; -1100 limit out of range.
    pub fn klines(
        &self,
        symbol: &Symbol,
        interval: &str,
        start: Option<UnixMillis>,
        end: Option<UnixMillis>,
        limit: Option<u32>,
        now: UnixMillis,
    ) -> Result<Vec<Kline>, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let iv = KlineInterval::parse(interval)
            .ok_or(ExchangeError::BadParam { code: ErrorCode::BadInterval, msg: "Invalid interval.".to_owned() })?;
        let limit = limit_of(limit, 500, 1000)?;
        let trades = self.market_trades(m)?;
        let Some(first) = trades.first() else { return Ok(Vec::new()) };
        let first_bucket = iv.start_of(first.time.0);
        let end_t = end.map_or(now.0, |e| e.0);
        let last_bucket = iv.start_of(end_t);
        if last_bucket < first_bucket {
            return Ok(Vec::new());
        }
        let mut starts = Vec::new();
        match start {
            Some(s) => {
                let mut b = iv.start_of(s.0).max(first_bucket);
                while b <= last_bucket && starts.len() < limit {
                    starts.push(b);
                    b = iv.next(b);
                }
            }
            None => {
                let mut b = last_bucket;
                while starts.len() < limit {
                    starts.push(b);
                    if b <= first_bucket {
                        break;
                    }
                    b = iv.prev(b);
                }
                starts.reverse();
            }
        }
        let mut out = Vec::with_capacity(starts.len());
        for open in starts {
            let close_at = iv.next(open);
            let lo = trades.partition_point(|t| t.time.0 < open);
            let hi = trades.partition_point(|t| t.time.0 < close_at);
            let slice = trades.get(lo..hi).unwrap_or(&[]);
            let prev_close = lo.checked_sub(1).and_then(|i| trades.get(i)).map_or(Amount::ZERO, |t| t.price);
            let mut k = Kline {
                open_time: UnixMillis(open),
                open: slice.first().map_or(prev_close, |t| t.price),
                high: prev_close,
                low: prev_close,
                close: slice.last().map_or(prev_close, |t| t.price),
                volume: Amount::ZERO,
                close_time: UnixMillis(close_at.saturating_sub(1)),
                quote_volume: Amount::ZERO,
                trades: slice.len() as u64,
                taker_buy_base: Amount::ZERO,
                taker_buy_quote: Amount::ZERO,
            };
            if !slice.is_empty() {
                k.high = slice.iter().map(|t| t.price).max().unwrap_or(prev_close);
                k.low = slice.iter().map(|t| t.price).min().unwrap_or(prev_close);
                let sum = |f: &dyn Fn(&Trade) -> u64, taker_buy: bool| {
                    Amount::from_units(
                        slice
                            .iter()
                            .filter(|t| !taker_buy || !t.is_buyer_maker)
                            .map(|t| f(t))
                            .fold(0u64, u64::saturating_add),
                    )
                };
                k.volume = sum(&|t| t.qty.units(), false);
                k.quote_volume = sum(&|t| t.quote_qty.units(), false);
                k.taker_buy_base = sum(&|t| t.qty.units(), true);
                k.taker_buy_quote = sum(&|t| t.quote_qty.units(), true);
            }
            out.push(k);
        }
        Ok(out)
    }

    /// `GET /api/v3/ticker/24hr` over `[now - 24h, now]`.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn ticker_24h(&self, symbol: &Symbol, now: UnixMillis) -> Result<Ticker24h, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let trades = self.market_trades(m)?;
        let open_time = now.0.saturating_sub(DAY_MS);
        let lo = trades.partition_point(|t| t.time.0 < open_time);
        let window = trades.get(lo..).unwrap_or(&[]);
        let prev_close = lo.checked_sub(1).and_then(|i| trades.get(i)).map_or(Amount::ZERO, |t| t.price);
        let last = window.last();
        let open = window.first().map_or(Amount::ZERO, |t| t.price);
        let last_price = last.map_or(prev_close, |t| t.price);
        let volume: u128 = window.iter().map(|t| u128::from(t.qty.units())).sum();
        let quote_volume: u128 = window.iter().map(|t| u128::from(t.quote_qty.units())).sum();
        let change = if window.is_empty() { 0 } else { i128::from(last_price.units()) - i128::from(open.units()) };
        let pct_milli = if open.units() == 0 { 0 } else { change * 100_000 / i128::from(open.units()) };
        let pct_sign = if pct_milli < 0 { "-" } else { "" };
        let book = &self.market(m)?.book;
        let (bid, bid_qty) = book.best(Side::Buy).unwrap_or((0, 0));
        let (ask, ask_qty) = book.best(Side::Sell).unwrap_or((0, 0));
        let to_amount = |v: u128| Amount::from_units(u64::try_from(v).unwrap_or(u64::MAX));
        Ok(Ticker24h {
            symbol: symbol.clone(),
            price_change: signed(change),
            price_change_percent: format!(
                "{pct_sign}{}.{:03}",
                pct_milli.unsigned_abs() / 1000,
                pct_milli.unsigned_abs() % 1000
            ),
            weighted_avg_price: (quote_volume * UNIT).checked_div(volume).map_or(Amount::ZERO, to_amount),
            prev_close_price: prev_close,
            last_price,
            last_qty: last.map_or(Amount::ZERO, |t| t.qty),
            bid_price: Amount::from_units(bid),
            bid_qty: Amount::from_units(bid_qty),
            ask_price: Amount::from_units(ask),
            ask_qty: Amount::from_units(ask_qty),
            open_price: open,
            high_price: window.iter().map(|t| t.price).max().unwrap_or(Amount::ZERO),
            low_price: window.iter().map(|t| t.price).min().unwrap_or(Amount::ZERO),
            volume: to_amount(volume),
            quote_volume: to_amount(quote_volume),
            open_time: UnixMillis(open_time),
            close_time: now,
            first_id: window.first().map_or(-1, |t| t.id as i64),
            last_id: last.map_or(-1, |t| t.id as i64),
            count: window.len() as u64,
        })
    }

    /// `GET /api/v3/ticker/bookTicker`.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn book_ticker(&self, symbol: &Symbol) -> Result<BookTicker, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let book = &self.market(m)?.book;
        let (bid, bid_qty) = book.best(Side::Buy).unwrap_or((0, 0));
        let (ask, ask_qty) = book.best(Side::Sell).unwrap_or((0, 0));
        Ok(BookTicker {
            symbol: symbol.clone(),
            bid_price: Amount::from_units(bid),
            bid_qty: Amount::from_units(bid_qty),
            ask_price: Amount::from_units(ask),
            ask_qty: Amount::from_units(ask_qty),
        })
    }

    /// `GET /api/v3/ticker/price`: the last trade price, or the reference price before any trade.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn last_price(&self, symbol: &Symbol) -> Result<Amount, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let ms = self.market(m)?;
        Ok(ms
            .trades
            .last()
            .and_then(|id| self.trade(*id))
            .map_or(Amount::from_units(ms.params.reference_price), |t| t.price))
    }

    /// `GET /api/v3/avgPrice`: volume-weighted over the last 5 minutes, else the last price, else
    /// the reference price.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn avg_price(&self, symbol: &Symbol, now: UnixMillis) -> Result<AvgPrice, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let close_time = self.market(m)?.trades.last().and_then(|id| self.trade(*id)).map_or(now, |t| t.time);
        Ok(AvgPrice { mins: 5, price: Amount::from_units(self.avg_price_units(m, now)), close_time })
    }

    /// The markets, for `exchangeInfo`.
    #[must_use]
    pub fn markets(&self) -> &[MarketSpec] {
        &self.config.markets
    }

    /// The assets and networks, for `capital/config/getall`.
    #[must_use]
    pub fn assets(&self) -> &[AssetSpec] {
        &self.config.assets
    }

    /// `(maker, taker)` commission rates of a market, for `account` and `asset/tradeFee`.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn fee_rates(&self, symbol: &Symbol) -> Result<(Amount, Amount), ExchangeError> {
        let m = self.market_idx(symbol)?;
        let spec = self.config.markets.get(m).ok_or(ExchangeError::UnknownSymbol)?;
        Ok((spec.maker_fee, spec.taker_fee))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kline_intervals_align_like_binance() {
        let iv = KlineInterval::parse("1m").unwrap();
        assert_eq!(iv.start_of(61_500), 60_000);
        assert_eq!(iv.next(60_000), 120_000);
        // 2024-03-15T12:00:00Z -> 2024-03-01, next 2024-04-01.
        let t = 1_710_504_000_000;
        let mo = KlineInterval::parse("1M").unwrap();
        assert_eq!(mo.start_of(t), 1_709_251_200_000);
        assert_eq!(mo.next(1_709_251_200_000), 1_711_929_600_000);
        // Weeks start on Monday: 2024-03-11T00:00:00Z.
        let w = KlineInterval::parse("1w").unwrap();
        assert_eq!(w.start_of(t), 1_710_115_200_000);
        assert!(KlineInterval::parse("2m").is_none());
    }

    #[test]
    fn signed_prints_binance_decimals() {
        assert_eq!(signed(-150_000_000), "-1.50000000");
        assert_eq!(signed(1), "0.00000001");
    }
}
