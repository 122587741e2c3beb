//! The read side: account state, order and trade history with Binance's query rules, market data.
//!
//! Every method takes `&self`; the server calls them on published snapshots of the engine.

use crate::config::{AssetSpec, MarketSpec};
use crate::error::ExchangeError;
use crate::exchange::{Exchange, UNIT};
use crate::history::{Agg, History, MINUTE_MS};
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

/// A live trade as the public sees it.
fn public_of(t: &Trade) -> PublicTrade {
    PublicTrade {
        id: t.id,
        price: t.price,
        qty: t.qty,
        quote_qty: t.quote_qty,
        time: t.time,
        is_buyer_maker: t.is_buyer_maker,
        is_best_match: true,
    }
}

/// A sum in units as an amount (saturating: no market trades 1.8e11 of a coin).
fn to_amount(v: u128) -> Amount {
    Amount::from_units(u64::try_from(v).unwrap_or(u64::MAX))
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

    /// Market `m`'s live trade ids, ascending (and so in time order).
    fn live_ids(&self, m: usize) -> &[u64] {
        self.markets.get(m).map_or(&[], |ms| ms.trades.as_slice())
    }

    /// The first of market `m`'s live trades at or after `t`, as an index into [`Self::live_ids`].
    fn live_from(&self, m: usize, t: u64) -> usize {
        self.live_ids(m).partition_point(|id| self.trade(*id).is_some_and(|x| x.time.0 < t))
    }

    /// Sums over market `m`'s trades within `[from, to)`: the history's, then the live ones.
    pub(crate) fn agg(&self, m: usize, from: u64, to: u64) -> Agg {
        let mut agg = Agg::default();
        if let Some(h) = &self.history {
            h.add_to(m, from, to, &mut agg);
        }
        let ids = self.live_ids(m);
        for id in ids.get(self.live_from(m, from)..).unwrap_or(&[]) {
            let Some(t) = self.trade(*id) else { continue };
            if t.time.0 >= to {
                break;
            }
            agg.trade(t.id, t.price.units(), t.qty.units(), t.quote_qty.units(), t.is_buyer_maker);
        }
        agg
    }

    /// Market `m`'s trade `id`, from the history or live.
    fn public_trade(&self, m: usize, id: u64) -> Option<PublicTrade> {
        if id > self.trade_id_base {
            self.trade(id).filter(|t| t.market as usize == m).map(public_of)
        } else {
            self.history.as_ref()?.trade_by_id(m, id)
        }
    }

    /// Market `m`'s last trade, from the history or live.
    fn last_trade(&self, m: usize) -> Option<PublicTrade> {
        if let Some(t) = self.live_ids(m).last().and_then(|id| self.trade(*id)) {
            return Some(public_of(t));
        }
        let h = self.history.as_ref()?;
        let (_, past) = h.id_range(m)?;
        h.trade_by_id(m, past - 1)
    }

    /// Market `m`'s last trade before `t`, from the history or live.
    fn last_before(&self, m: usize, t: u64) -> Option<PublicTrade> {
        let ids = self.live_ids(m);
        if let Some(x) = self.live_from(m, t).checked_sub(1).and_then(|i| ids.get(i)).and_then(|id| self.trade(*id)) {
            return Some(public_of(x));
        }
        let h = self.history.as_ref()?;
        let mut i = h.minute_of(t.min(h.end()).checked_sub(1)?)?;
        loop {
            if let Some(x) = h.minute_trades(m, i).into_iter().rev().find(|x| x.time.0 < t) {
                return Some(x);
            }
            i = i.checked_sub(1)?;
        }
    }

    /// Market `m`'s last price: the last trade's, history included, else the reference price.
    pub(crate) fn last_price_units(&self, m: usize) -> u64 {
        if let Some(t) = self.live_ids(m).last().and_then(|id| self.trade(*id)) {
            return t.price.units();
        }
        self.history
            .as_ref()
            .and_then(|h| h.last_close(m))
            .or_else(|| self.markets.get(m).map(|ms| ms.params.reference_price))
            .unwrap_or(0)
    }

    /// Market `m`'s latest `limit` trades at or before `until`, oldest first, history included.
    fn latest_trades(&self, m: usize, limit: usize, until: u64) -> Vec<PublicTrade> {
        let ids = self.live_ids(m);
        let hi = self.live_from(m, until.saturating_add(1));
        let lo = hi.saturating_sub(limit);
        let live: Vec<PublicTrade> =
            ids.get(lo..hi).unwrap_or(&[]).iter().filter_map(|id| self.trade(*id)).map(public_of).collect();
        let Some(h) = self.history.as_ref().filter(|_| live.len() < limit) else { return live };
        let need = limit - live.len();
        let mut older = Vec::with_capacity(need);
        let mut i = if until >= h.end() {
            h.minutes(m)
        } else if until < h.start() {
            0
        } else {
            h.minute_of(until).map_or(0, |i| i + 1)
        };
        while older.len() < need && i > 0 {
            i -= 1;
            for t in h.minute_trades(m, i).into_iter().rev().filter(|t| t.time.0 <= until) {
                if older.len() < need {
                    older.push(t);
                }
            }
        }
        older.reverse();
        older.extend(live);
        older
    }

    /// `GET /api/v3/trades`: the most recent trades, oldest first (limit default 500, max 1000),
    /// the history's included.
    ///
    /// # Errors
    /// -1121 unknown symbol; -1100 limit out of range.
    pub fn recent_trades(&self, symbol: &Symbol, limit: Option<u32>) -> Result<Vec<PublicTrade>, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let limit = limit_of(limit, 500, 1000)?;
        Ok(self.latest_trades(m, limit, u64::MAX))
    }

    /// `GET /api/v3/historicalTrades` and `GET /api/v3/aggTrades`: trades from id `from_id` up,
    /// or from `start` up, or else the most recent ones; none after `end`; oldest first; at most
    /// `limit` (clamped to 1..=1000). The history's trades are included, with their ids.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn trades_since(
        &self,
        symbol: &Symbol,
        from_id: Option<u64>,
        start: Option<UnixMillis>,
        end: Option<UnixMillis>,
        limit: usize,
    ) -> Result<Vec<PublicTrade>, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let limit = limit.clamp(1, 1000);
        let until = end.map_or(u64::MAX, |e| e.0);
        if from_id.is_none() && start.is_none() {
            return Ok(self.latest_trades(m, limit, until));
        }
        let keep = |t: &PublicTrade| {
            from_id.is_none_or(|f| t.id >= f) && start.is_none_or(|s| t.time >= s) && t.time.0 <= until
        };
        let mut out = Vec::new();
        if let Some(h) = &self.history {
            let first_minute = match (from_id, start) {
                (Some(id), _) => match h.id_range(m) {
                    Some((lo, _)) if id <= lo => Some(0),
                    Some((_, past)) if id < past => h.minute_of_id(m, id),
                    _ => None,
                },
                (None, Some(s)) if s.0 < h.start() => Some(0),
                (None, Some(s)) => h.minute_of(s.0),
                (None, None) => None,
            };
            if let Some(mut i) = first_minute {
                while i < h.minutes(m) && out.len() < limit {
                    for t in h.minute_trades(m, i).into_iter().filter(|t| keep(t)) {
                        if out.len() < limit {
                            out.push(t);
                        }
                    }
                    i += 1;
                    if h.start().saturating_add(i as u64 * MINUTE_MS) > until {
                        break;
                    }
                }
            }
        }
        let ids = self.live_ids(m);
        let lo = match (from_id, start) {
            (Some(f), _) => ids.partition_point(|id| *id < f),
            (None, Some(s)) => self.live_from(m, s.0),
            (None, None) => ids.len(),
        };
        for id in ids.get(lo..).unwrap_or(&[]) {
            let Some(t) = self.trade(*id) else { continue };
            if out.len() >= limit || t.time.0 > until {
                break;
            }
            out.push(public_of(t));
        }
        Ok(out)
    }

    /// `GET /api/v3/klines`: candles from the history and the live trades. Intervals without
    /// trades repeat the previous close with zero volume; nothing before the first trade (the
    /// start of the history, when there is one) is reported.
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
        let history_start = self.history.as_ref().filter(|h| h.minutes(m) > 0).map(History::start);
        let live_start = self.live_ids(m).first().and_then(|id| self.trade(*id)).map(|t| t.time.0);
        let Some(first) = history_start.into_iter().chain(live_start).min() else { return Ok(Vec::new()) };
        let first_bucket = iv.start_of(first);
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
        let mut prev_close: Option<u64> = None;
        for open in starts {
            let close_at = iv.next(open);
            let a = self.agg(m, open, close_at);
            let prev = prev_close.unwrap_or_else(|| self.last_before(m, open).map_or(0, |t| t.price.units()));
            let (o, c) = match (a.first, a.last) {
                (Some((_, o)), Some((_, c))) => (o, c),
                _ => (prev, prev),
            };
            let empty = a.count == 0;
            out.push(Kline {
                open_time: UnixMillis(open),
                open: Amount::from_units(o),
                high: Amount::from_units(if empty { prev } else { a.high }),
                low: Amount::from_units(if empty { prev } else { a.low }),
                close: Amount::from_units(c),
                volume: to_amount(a.volume),
                close_time: UnixMillis(close_at.saturating_sub(1)),
                quote_volume: to_amount(a.quote),
                trades: a.count,
                taker_buy_base: to_amount(a.taker_buy_base),
                taker_buy_quote: to_amount(a.taker_buy_quote),
            });
            prev_close = Some(c);
        }
        Ok(out)
    }

    /// `GET /api/v3/ticker/24hr` over `[now - 24h, now]`.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn ticker_24h(&self, symbol: &Symbol, now: UnixMillis) -> Result<Ticker24h, ExchangeError> {
        self.ticker_window(symbol, DAY_MS, now)
    }

    /// `GET /api/v3/ticker` (the rolling window statistics): as `ticker/24hr`, over
    /// `[now - window_ms, now]`. History and live trades both count.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn ticker_window(&self, symbol: &Symbol, window_ms: u64, now: UnixMillis) -> Result<Ticker24h, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let open_time = now.0.saturating_sub(window_ms);
        let a = self.agg(m, open_time, now.0.saturating_add(1));
        let prev_close = self.last_before(m, open_time).map_or(Amount::ZERO, |t| t.price);
        let last = a.last.and_then(|(id, _)| self.public_trade(m, id));
        let open = a.first.map_or(Amount::ZERO, |(_, p)| Amount::from_units(p));
        let last_price = last.as_ref().map_or(prev_close, |t| t.price);
        let change = if a.count == 0 { 0 } else { i128::from(last_price.units()) - i128::from(open.units()) };
        let pct_milli = if open.units() == 0 { 0 } else { change * 100_000 / i128::from(open.units()) };
        let pct_sign = if pct_milli < 0 { "-" } else { "" };
        let book = &self.market(m)?.book;
        let (bid, bid_qty) = book.best(Side::Buy).unwrap_or((0, 0));
        let (ask, ask_qty) = book.best(Side::Sell).unwrap_or((0, 0));
        Ok(Ticker24h {
            symbol: symbol.clone(),
            price_change: signed(change),
            price_change_percent: format!(
                "{pct_sign}{}.{:03}",
                pct_milli.unsigned_abs() / 1000,
                pct_milli.unsigned_abs() % 1000
            ),
            weighted_avg_price: (a.quote * UNIT).checked_div(a.volume).map_or(Amount::ZERO, to_amount),
            prev_close_price: prev_close,
            last_price,
            last_qty: last.as_ref().map_or(Amount::ZERO, |t| t.qty),
            bid_price: Amount::from_units(bid),
            bid_qty: Amount::from_units(bid_qty),
            ask_price: Amount::from_units(ask),
            ask_qty: Amount::from_units(ask_qty),
            open_price: open,
            high_price: Amount::from_units(if a.count == 0 { 0 } else { a.high }),
            low_price: Amount::from_units(if a.count == 0 { 0 } else { a.low }),
            volume: to_amount(a.volume),
            quote_volume: to_amount(a.quote),
            open_time: UnixMillis(open_time),
            close_time: now,
            first_id: a.first.map_or(-1, |(id, _)| id as i64),
            last_id: a.last.map_or(-1, |(id, _)| id as i64),
            count: a.count,
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

    /// `GET /api/v3/ticker/price`: the last trade price (the history's included), or the
    /// reference price before any trade.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn last_price(&self, symbol: &Symbol) -> Result<Amount, ExchangeError> {
        let m = self.market_idx(symbol)?;
        Ok(Amount::from_units(self.last_price_units(m)))
    }

    /// `GET /api/v3/avgPrice`: volume-weighted over the last 5 minutes (the history's trades
    /// included), else the last price, else the reference price; `closeTime` is the last trade's.
    ///
    /// # Errors
    /// -1121 unknown symbol.
    pub fn avg_price(&self, symbol: &Symbol, now: UnixMillis) -> Result<AvgPrice, ExchangeError> {
        let m = self.market_idx(symbol)?;
        let close_time = self.last_trade(m).map_or(now, |t| t.time);
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
