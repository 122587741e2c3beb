//! Price history from the first second: one-minute candles and their trades, computed from a
//! seed rather than stored.
//!
//! A trading bot asks for candles before it trades (freqtrade wants hundreds). A fresh sandbox has
//! none of its own, so when the simulated market starts, the exchange is told once
//! ([`crate::Command::SeedHistory`], journaled like any command) to take on `days` of history
//! ending at that moment. The history is the seeded random walk of each market run backwards from
//! its current price: the walk that the market maker then follows forwards
//! ([`History::forward_close`]), so the live market continues it without a gap.
//!
//! Nothing of it is stored but the seed, the number of days, the end and each market's walk
//! parameters ([`HistoryRecord`], a few hundred bytes in a snapshot or the journal). Every node and
//! every restart regenerates the same candles and trades from them: each minute's trades are a
//! pure function of `(seed, market, minute)`, and the candles are aggregated from those trades, so
//! klines, tickers and trade queries agree to the last unit. The one-minute bars are kept in memory
//! (about 88 bytes a minute a market: 15 MB for 30 days of four markets) so that a day's candles
//! are sums, not regenerations.

use crate::config::MarketSpec;
use crate::order::PublicTrade;
use keygate_proto::{Amount, UnixMillis};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One minute, in milliseconds: the resolution of the history and of the walk.
pub const MINUTE_MS: u64 = 60_000;
/// Days of history a new simulated market gets unless told otherwise.
pub const DEFAULT_HISTORY_DAYS: u32 = 30;
/// Most days of history (memory grows with it: about 127 KB a day a market).
pub const MAX_HISTORY_DAYS: u32 = 365;
/// Average trades a minute at average activity.
const TRADES_PER_MINUTE: u64 = 24;
/// Relative size of each hour of the UTC day's activity, in percent (quiet Asian night, busy
/// European afternoon and American morning).
const INTRADAY: [u64; 24] =
    [70, 65, 60, 60, 65, 75, 85, 95, 105, 110, 105, 100, 105, 115, 130, 140, 135, 125, 110, 100, 95, 90, 85, 75];
/// 1.0 in the walk's relative units (1e-8).
const ONE: i128 = 100_000_000;

/// What [`crate::Command::SeedHistory`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistorySpec {
    /// Seed of every market's walk (the market maker's seed: the same seed, the same market).
    pub seed: u64,
    /// Days of one-minute history before the moment the command is applied (0 to
    /// [`MAX_HISTORY_DAYS`]); 0 gives no candles but still fixes the walk the market follows.
    pub days: u32,
}

/// One market's walk: what its history and its live continuation are computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkParams {
    /// The price at the end of the history (the market's price when it was seeded), 1e-8 units.
    pub last: u64,
    /// Tick size (trade prices are multiples of it).
    pub tick: u64,
    /// Step size (trade quantities are multiples of it).
    pub step: u64,
    /// Lowest price the walk goes to.
    pub min_price: u64,
    /// Highest price the walk goes to.
    pub max_price: u64,
    /// Daily volatility, in basis points.
    pub volatility_bps: u32,
    /// Average daily volume, base units.
    pub daily_volume: u64,
}

impl WalkParams {
    /// The walk of `spec`'s market from `last`, with the spec's volatility and volume or their
    /// defaults (300 bps; two million minimum notionals a day).
    #[must_use]
    pub fn of(spec: &MarketSpec, last: u64) -> Self {
        let reference = spec.reference_price.units().max(1);
        let default_volume = u64::try_from(
            u128::from(spec.min_notional.units()) * 2_000_000 * crate::exchange::UNIT / u128::from(reference),
        )
        .unwrap_or(u64::MAX / 2);
        Self {
            last: last.max(spec.min_price.units()).max(spec.tick_size.units()),
            tick: spec.tick_size.units().max(1),
            step: spec.step_size.units().max(1),
            min_price: spec.min_price.units().max(spec.tick_size.units()).max(1),
            max_price: spec.max_price.units(),
            volatility_bps: spec.daily_volatility_bps.unwrap_or(300),
            daily_volume: spec.daily_volume.map_or(default_volume, Amount::units).max(1),
        }
    }

    /// Standard deviation of a one-minute move at normal activity, 1e-8 relative units:
    /// the daily volatility over the square root of 1440 minutes.
    fn sigma_minute(&self) -> i128 {
        // 1 bps = 10_000 units of 1e-8; 10_000 / sqrt(1440) = 263.523.
        i128::from(self.volatility_bps) * 263_523 / 1000
    }

    fn clamp(&self, price: i128) -> u64 {
        u64::try_from(price.clamp(i128::from(self.min_price), i128::from(self.max_price))).unwrap_or(self.min_price)
    }

    fn on_tick(&self, price: u64) -> u64 {
        let t = self.tick;
        let rounded = (price + t / 2) / t * t;
        rounded.clamp(self.min_price.div_ceil(t) * t, (self.max_price / t * t).max(t))
    }
}

/// splitmix64's finaliser: a well-mixed 64-bit value from any input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The random value for `(seed, market, minute, what)`: the same on every platform and node.
#[allow(clippy::cast_sign_loss)] // The minute index is reinterpreted as bits, on purpose.
fn hash(seed: u64, market: usize, minute: i64, what: u64) -> u64 {
    mix(seed ^ mix(market as u64 ^ mix(minute as u64 ^ mix(what))))
}

/// A normal-looking value with standard deviation 10_000 (the sum of four uniforms).
fn gauss(h: u64) -> i128 {
    let part = |s: u32| i128::from((h >> s) & 0xFFFF) - 32_768;
    // The sum of four uniforms on [-32768, 32768) has standard deviation 37_837.
    (part(0) + part(16) + part(32) + part(48)) * 10_000 / 37_837
}

/// Start of the minute with index `k` relative to `end` (k = -1 is the last minute before it).
fn minute_start(end: u64, k: i64) -> u64 {
    if k >= 0 {
        end.saturating_add(k.unsigned_abs() * MINUTE_MS)
    } else {
        end.saturating_sub(k.unsigned_abs() * MINUTE_MS)
    }
}

/// Activity of the hour containing minute `k`, in percent: the time of day times a slowly
/// changing regime (quiet and busy hours), which scales both volatility and volume.
fn activity(seed: u64, market: usize, end: u64, k: i64) -> u64 {
    let hour = k.div_euclid(60);
    let regime = 60 + hash(seed, market, hour, 1) % 101;
    let utc_hour = (minute_start(end, k) / 3_600_000 % 24) as usize;
    regime * INTRADAY.get(utc_hour).copied().unwrap_or(100) / 100
}

/// The walk's relative move into minute `k`, 1e-8 units.
fn step_return(seed: u64, market: usize, end: u64, p: &WalkParams, k: i64) -> i128 {
    let z = gauss(hash(seed, market, k, 2));
    z * p.sigma_minute() * i128::from(activity(seed, market, end, k)) / (10_000 * 100)
}

/// One minute of one market's history, aggregated from its trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bar {
    pub(crate) open: u64,
    pub(crate) high: u64,
    pub(crate) low: u64,
    pub(crate) close: u64,
    pub(crate) volume: u64,
    pub(crate) quote: u64,
    pub(crate) taker_buy_base: u64,
    pub(crate) taker_buy_quote: u64,
    pub(crate) trades: u32,
    /// Id of the minute's first trade.
    pub(crate) first_id: u64,
    /// The walk's exact close (`close` is it on the tick): the next minute starts from it.
    pub(crate) walk: u64,
}

/// One market's generated history.
#[derive(Debug)]
pub(crate) struct MarketHistory {
    /// The walk's close before the first minute.
    pre_close: u64,
    /// One per minute, oldest first.
    pub(crate) bars: Vec<Bar>,
    /// One past the id of the last trade.
    pub(crate) next_id: u64,
}

/// What a history is rebuilt from: all that snapshots and the journal carry of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryRecord {
    /// The seed.
    pub seed: u64,
    /// Days of history.
    pub days: u32,
    /// The end of the history, on a minute boundary (ms): live trading starts at or after it.
    pub end: u64,
    /// Each market's walk, in config order.
    pub markets: Vec<WalkParams>,
}

/// The generated history of every market (see the module documentation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "HistoryRecord", into = "HistoryRecord")]
pub struct History {
    record: HistoryRecord,
    markets: Arc<Vec<MarketHistory>>,
}

impl PartialEq for History {
    fn eq(&self, other: &Self) -> bool {
        // The generated part is a function of the record.
        self.record == other.record
    }
}

impl Eq for History {}

impl From<HistoryRecord> for History {
    fn from(record: HistoryRecord) -> Self {
        Self::build(record)
    }
}

impl From<History> for HistoryRecord {
    fn from(h: History) -> Self {
        h.record
    }
}

/// One minute's trades, before ids are given.
struct RawTrade {
    time: u64,
    price: u64,
    qty: u64,
    is_buyer_maker: bool,
}

impl History {
    /// Generates the history `record` describes.
    #[must_use]
    pub fn build(record: HistoryRecord) -> Self {
        let minutes = i64::from(record.days.min(MAX_HISTORY_DAYS)) * 1440;
        let mut next_id = 1u64;
        let mut markets = Vec::with_capacity(record.markets.len());
        for (m, p) in record.markets.iter().enumerate() {
            // Closes from the end backwards: close[k - 1] = close[k] / (1 + r[k]).
            let n = usize::try_from(minutes).unwrap_or(0);
            let mut closes = vec![0u64; n + 1];
            let mut price = i128::from(p.last);
            if let Some(last) = closes.last_mut() {
                *last = p.last;
            }
            for i in (0..n).rev() {
                let k = i as i64 - minutes;
                let r = step_return(record.seed, m, record.end, p, k);
                price = price * ONE / (ONE + r).max(1);
                price = i128::from(p.clamp(price));
                closes[i] = u64::try_from(price).unwrap_or(p.min_price);
            }
            let mut bars = Vec::with_capacity(n);
            for i in 0..n {
                let k = i as i64 - minutes;
                let raw = raw_trades(record.seed, m, record.end, p, k, closes[i], closes[i + 1]);
                bars.push(bar_of(&raw, next_id, closes[i + 1]));
                next_id += raw.len() as u64;
            }
            markets.push(MarketHistory { pre_close: closes.first().copied().unwrap_or(p.last), bars, next_id });
        }
        Self { record, markets: Arc::new(markets) }
    }

    /// What this history is rebuilt from.
    #[must_use]
    pub fn record(&self) -> &HistoryRecord {
        &self.record
    }

    /// The first millisecond of history.
    #[must_use]
    pub fn start(&self) -> u64 {
        self.record.end.saturating_sub(u64::from(self.record.days.min(MAX_HISTORY_DAYS)) * 1440 * MINUTE_MS)
    }

    /// The end of history: the live market trades from here on.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.record.end
    }

    /// The number of trades the history holds over every market: live trade ids come after them.
    #[must_use]
    pub fn trade_count(&self) -> u64 {
        self.markets.last().map_or(0, |m| m.next_id - 1)
    }

    /// The walk of market `m`.
    #[must_use]
    pub fn walk(&self, m: usize) -> Option<&WalkParams> {
        self.record.markets.get(m)
    }

    /// The walk's close of minute `k` (k >= 0 counts minutes from the end of history) given the
    /// close of minute `k - 1`: how the live market continues the history. Minute -1's close is
    /// [`WalkParams::last`].
    #[must_use]
    pub fn forward_close(&self, m: usize, k: i64, prev: u64) -> u64 {
        let Some(p) = self.record.markets.get(m) else { return prev };
        let r = step_return(self.record.seed, m, self.record.end, p, k);
        p.clamp(i128::from(prev) * (ONE + r) / ONE)
    }

    /// The trades of minute `i` (0 is the oldest) of market `m`, oldest first.
    pub(crate) fn minute_trades(&self, m: usize, i: usize) -> Vec<PublicTrade> {
        let (Some(mh), Some(p)) = (self.markets.get(m), self.record.markets.get(m)) else { return Vec::new() };
        let Some(bar) = mh.bars.get(i) else { return Vec::new() };
        let prev = if i == 0 { mh.pre_close } else { mh.bars.get(i - 1).map_or(mh.pre_close, |b| b.walk) };
        let k = i as i64 - mh.bars.len() as i64;
        raw_trades(self.record.seed, m, self.record.end, p, k, prev, bar.walk)
            .into_iter()
            .enumerate()
            .map(|(j, t)| PublicTrade {
                id: bar.first_id + j as u64,
                price: Amount::from_units(t.price),
                qty: Amount::from_units(t.qty),
                quote_qty: Amount::from_units(quote_of(t.price, t.qty)),
                time: UnixMillis(t.time),
                is_buyer_maker: t.is_buyer_maker,
                is_best_match: true,
            })
            .collect()
    }

    /// The index of the minute containing `t` in market `m`'s bars, if `t` is within history.
    pub(crate) fn minute_of(&self, t: u64) -> Option<usize> {
        let start = self.start();
        (t >= start && t < self.record.end).then(|| ((t - start) / MINUTE_MS) as usize)
    }
}

fn quote_of(price: u64, qty: u64) -> u64 {
    u64::try_from(u128::from(price) * u128::from(qty) / crate::exchange::UNIT).unwrap_or(u64::MAX)
}

/// The trades of minute `k`, from the walk's close `prev` before it to `close` at its end.
fn raw_trades(seed: u64, m: usize, end: u64, p: &WalkParams, k: i64, prev: u64, close: u64) -> Vec<RawTrade> {
    let act = activity(seed, m, end, k);
    let h = hash(seed, m, k, 3);
    // Volume: the day's average minute, times activity, times noise in [0.4, 1.6).
    let noise = 40 + h % 120;
    let minute_volume = u128::from(p.daily_volume) * u128::from(act) * u128::from(noise) / (1440 * 100 * 100);
    let steps = u64::try_from(minute_volume / u128::from(p.step)).unwrap_or(u64::MAX / 4).max(1);
    let count = (TRADES_PER_MINUTE * act * (50 + (h >> 8) % 100) / (100 * 100)).clamp(1, 240).min(steps);
    let start = minute_start(end, k);
    let slot = MINUTE_MS / count;
    let mut weights = Vec::with_capacity(count as usize);
    let mut draws = Vec::with_capacity(count as usize);
    for j in 0..count {
        let d = hash(seed, m, k, 1000 + j);
        weights.push(1 + (d & 31) * ((d >> 5) & 31));
        draws.push(d);
    }
    let total: u64 = weights.iter().sum();
    let spare = steps - count;
    let buy_pct = match close.cmp(&prev) {
        std::cmp::Ordering::Greater => 62,
        std::cmp::Ordering::Less => 38,
        std::cmp::Ordering::Equal => 50,
    };
    let wiggle = p.sigma_minute() / 2;
    let mut out = Vec::with_capacity(count as usize);
    let mut given = 0u64;
    for j in 0..count {
        let d = draws[j as usize];
        let last = j + 1 == count;
        let price = if last {
            p.on_tick(close)
        } else {
            let lerp = i128::from(prev) + (i128::from(close) - i128::from(prev)) * i128::from(j) / i128::from(count);
            let noise = gauss(mix(d)) * wiggle / 10_000;
            p.on_tick(p.clamp(lerp + lerp * noise / ONE))
        };
        let qty_steps = if last {
            steps - given
        } else {
            1 + u64::try_from(u128::from(spare) * u128::from(weights[j as usize]) / u128::from(total)).unwrap_or(0)
        };
        given += qty_steps;
        out.push(RawTrade {
            time: start + j * slot + (d >> 20) % slot,
            price,
            qty: qty_steps.saturating_mul(p.step),
            is_buyer_maker: (d >> 40) % 100 >= buy_pct,
        });
    }
    out
}

fn bar_of(trades: &[RawTrade], first_id: u64, walk: u64) -> Bar {
    let mut b = Bar {
        open: trades.first().map_or(0, |t| t.price),
        high: 0,
        low: u64::MAX,
        close: trades.last().map_or(0, |t| t.price),
        volume: 0,
        quote: 0,
        taker_buy_base: 0,
        taker_buy_quote: 0,
        trades: trades.len() as u32,
        first_id,
        walk,
    };
    for t in trades {
        let q = quote_of(t.price, t.qty);
        b.high = b.high.max(t.price);
        b.low = b.low.min(t.price);
        b.volume = b.volume.saturating_add(t.qty);
        b.quote = b.quote.saturating_add(q);
        if !t.is_buyer_maker {
            b.taker_buy_base = b.taker_buy_base.saturating_add(t.qty);
            b.taker_buy_quote = b.taker_buy_quote.saturating_add(q);
        }
    }
    b
}

/// Sums over trades taken oldest first: what a candle or a ticker is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agg {
    /// `(id, price)` of the first trade.
    pub(crate) first: Option<(u64, u64)>,
    /// `(id, price)` of the last trade.
    pub(crate) last: Option<(u64, u64)>,
    pub(crate) high: u64,
    pub(crate) low: u64,
    pub(crate) volume: u128,
    pub(crate) quote: u128,
    pub(crate) taker_buy_base: u128,
    pub(crate) taker_buy_quote: u128,
    pub(crate) count: u64,
}

impl Default for Agg {
    fn default() -> Self {
        Self {
            first: None,
            last: None,
            high: 0,
            low: u64::MAX,
            volume: 0,
            quote: 0,
            taker_buy_base: 0,
            taker_buy_quote: 0,
            count: 0,
        }
    }
}

impl Agg {
    /// Adds one trade, later than every one added before.
    pub(crate) fn trade(&mut self, id: u64, price: u64, qty: u64, quote: u64, is_buyer_maker: bool) {
        self.first.get_or_insert((id, price));
        self.last = Some((id, price));
        self.high = self.high.max(price);
        self.low = self.low.min(price);
        self.volume += u128::from(qty);
        self.quote += u128::from(quote);
        if !is_buyer_maker {
            self.taker_buy_base += u128::from(qty);
            self.taker_buy_quote += u128::from(quote);
        }
        self.count += 1;
    }

    fn public(&mut self, t: &PublicTrade) {
        self.trade(t.id, t.price.units(), t.qty.units(), t.quote_qty.units(), t.is_buyer_maker);
    }

    fn bar(&mut self, b: &Bar) {
        if b.trades == 0 {
            return;
        }
        self.first.get_or_insert((b.first_id, b.open));
        self.last = Some((b.first_id + u64::from(b.trades) - 1, b.close));
        self.high = self.high.max(b.high);
        self.low = self.low.min(b.low);
        self.volume += u128::from(b.volume);
        self.quote += u128::from(b.quote);
        self.taker_buy_base += u128::from(b.taker_buy_base);
        self.taker_buy_quote += u128::from(b.taker_buy_quote);
        self.count += u64::from(b.trades);
    }
}

impl History {
    /// Adds market `m`'s history trades within `[from, to)` to `agg`: whole minutes from their
    /// bars, the minutes the window cuts from their trades.
    pub(crate) fn add_to(&self, m: usize, from: u64, to: u64, agg: &mut Agg) {
        let (start, end) = (self.start(), self.end());
        let (from, to) = (from.max(start), to.min(end));
        let Some(mh) = self.markets.get(m) else { return };
        if from >= to {
            return;
        }
        let first = ((from - start) / MINUTE_MS) as usize;
        let past = ((to - start).div_ceil(MINUTE_MS) as usize).min(mh.bars.len());
        for i in first..past {
            let at = start + i as u64 * MINUTE_MS;
            if at >= from && at + MINUTE_MS <= to {
                if let Some(b) = mh.bars.get(i) {
                    agg.bar(b);
                }
            } else {
                for t in self.minute_trades(m, i).iter().filter(|t| t.time.0 >= from && t.time.0 < to) {
                    agg.public(t);
                }
            }
        }
    }

    /// Market `m`'s history trade with id `id`.
    pub(crate) fn trade_by_id(&self, m: usize, id: u64) -> Option<PublicTrade> {
        let i = self.minute_of_id(m, id)?;
        self.minute_trades(m, i).into_iter().find(|t| t.id == id)
    }

    /// The minute of market `m` holding trade `id` (None when `id` is not one of its trades).
    pub(crate) fn minute_of_id(&self, m: usize, id: u64) -> Option<usize> {
        let mh = self.markets.get(m)?;
        let first = mh.bars.first()?.first_id;
        if id < first || id >= mh.next_id {
            return None;
        }
        Some(mh.bars.partition_point(|b| b.first_id <= id).saturating_sub(1))
    }

    /// Market `m`'s minutes of history.
    pub(crate) fn minutes(&self, m: usize) -> usize {
        self.markets.get(m).map_or(0, |mh| mh.bars.len())
    }

    /// The first trade id of market `m`'s history, and one past its last.
    pub(crate) fn id_range(&self, m: usize) -> Option<(u64, u64)> {
        let mh = self.markets.get(m)?;
        Some((mh.bars.first()?.first_id, mh.next_id))
    }

    /// The close of market `m`'s last minute of history (on the tick).
    pub(crate) fn last_close(&self, m: usize) -> Option<u64> {
        self.markets.get(m)?.bars.last().map(|b| b.close)
    }
}
