//! The simulated market: a market-maker account that quotes around a random-walk reference price,
//! and a taker flow that trades against the book.
//!
//! In a fresh sandbox nobody else is quoting, so a bot's market order would find an empty book.
//! The market maker keeps a few price levels on both sides of every market. Its reference price
//! moves by a seeded random walk (the same seed gives the same path), and it requotes only when the
//! reference has moved by more than a threshold since its last quotes, or when its quotes are gone
//! (taken or canceled): not on every tick, so its order churn stays small.
//!
//! Once the exchange has its history ([`crate::history`]), the walk is the history's, continued
//! minute by minute from where it ended and read at the time of each tick
//! ([`MarketMaker::tick_at`]): the reference at a time is the same whoever computes it, so a new
//! writer after a failover quotes where the old one would have. Its quotes are LIMIT_MAKER: they
//! never take, so a quote the walk has moved past someone's resting order is refused and that
//! order is left at the touch, where the flow trades with it. The taker flow ([`MarketMakerConfig::flow`]) sends MARKET orders from
//! a separate account, at seeded times, sized to the market's daily volume and leaning towards the
//! walk, so that prices move through real trades and resting orders at the touch fill.
//!
//! It is pure: [`MarketMaker::tick_at`] reads the exchange and returns the commands to submit.
//! They go through the engine and its journal like any other command, so a restart replays them
//! exactly.

use crate::config::MarketSpec;
use crate::exchange::{Command, Exchange, NewOrder};
use crate::history::{MINUTE_MS, WalkParams};
use crate::order::{OrderType, Side, StpMode};
use crate::wallet::Deposit;
use keygate_proto::{AccountId, Amount, Symbol, UnixMillis};

/// How the market maker quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketMakerConfig {
    /// The account it trades as (funded by operator deposits it asks for itself).
    pub account: AccountId,
    /// Seed of the random walk.
    pub seed: u64,
    /// Price levels per side.
    pub levels: u32,
    /// Half the distance between best bid and best ask, in percent of the market's one-minute
    /// volatility (its daily volatility over the square root of 1440), and never under one basis
    /// point. Scaling with volatility keeps a live minute's range, which the bid-ask bounce and
    /// level sweeps make, as wide as a history minute of the same market.
    pub half_spread_pct: u64,
    /// Distance between consecutive levels, in percent of the one-minute volatility (at least
    /// one basis point).
    pub level_step_pct: u64,
    /// Largest move of the reference per tick, in basis points.
    pub max_move_bps: u64,
    /// Requote once the reference has moved this far from the quoted one, in basis points.
    pub requote_bps: u64,
    /// Notional of each quote, as a multiple of the market's minimum notional (at least one and
    /// a half average taker orders when the flow runs).
    pub size_in_min_notionals: u64,
    /// The simulated taker flow, if any.
    pub flow: Option<FlowConfig>,
    /// Days of history to give an exchange that has neither history nor trades, on the first
    /// tick ([`Command::SeedHistory`] with this market maker's seed); `None` gives none, and the
    /// reference then takes one step of its own walk per tick.
    pub history_days: Option<u32>,
}

/// The simulated taker flow: MARKET orders against the book from their own account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowConfig {
    /// The account the flow trades as (funded by operator deposits it asks for itself).
    pub account: AccountId,
    /// Taker orders per 1000 seconds on each market (1000 = one a second), at most 100,000.
    pub rate_milli: u64,
}

/// The flow's default rate: one taker order a second on each market.
pub const DEFAULT_FLOW_RATE_MILLI: u64 = 1000;
/// Most taker orders a second on each market (the flow draws arrivals per 10 ms slot).
pub const MAX_FLOW_RATE_MILLI: u64 = 100_000;
/// Length of one arrival slot of the flow, ms.
const FLOW_SLOT_MS: u64 = 10;
/// Most time the flow catches up on after a pause or a slow tick, ms: it does not replay a
/// backlog in a burst.
const FLOW_CATCH_UP_MS: u64 = 2_000;

impl MarketMakerConfig {
    /// Defaults for `account`: five levels a side, half-spread and level distance each 20 % of
    /// a one-minute move (calibrated in `tests/market_flow.rs` so that a live minute is as wide as
    /// a history minute), walk of at most 3 bps a tick, requote after 2 bps, each quote 20
    /// minimum notionals.
    #[must_use]
    pub fn new(account: AccountId, seed: u64) -> Self {
        Self {
            account,
            seed,
            levels: 5,
            half_spread_pct: 20,
            level_step_pct: 20,
            max_move_bps: 3,
            requote_bps: 2,
            size_in_min_notionals: 20,
            flow: None,
            history_days: None,
        }
    }
}

/// Where the history's walk is, per market: minute `k` (counted from the end of the history),
/// the closes of minutes `k - 1` and `k`.
#[derive(Debug, Clone, Copy)]
struct WalkAt {
    k: i64,
    prev: u64,
    cur: u64,
}

#[derive(Debug, Clone)]
struct MarketState {
    symbol: Symbol,
    reference: u64,
    quoted_at: Option<u64>,
    walk: Option<WalkAt>,
}

/// The market maker's state: the walk's position per market and the reference it last quoted at.
#[derive(Debug, Clone)]
pub struct MarketMaker {
    config: MarketMakerConfig,
    rng: u64,
    markets: Vec<MarketState>,
    /// The flow has drawn its arrivals up to this time (ms).
    flow_until: Option<u64>,
    /// The time of the last tick that followed the history's walk.
    walked_at: Option<u64>,
}

/// Funds the market maker keeps, in multiples of its total quote size per side.
const FUNDING_MULTIPLE: u128 = 50;

fn round_down(v: u64, step: u64) -> u64 {
    if step == 0 { v } else { v - v % step }
}

fn round_up(v: u64, step: u64) -> u64 {
    if step == 0 || v.is_multiple_of(step) { v } else { v.saturating_add(step - v % step) }
}

fn scale_bps(v: u64, bps_num: u64) -> u64 {
    u64::try_from(u128::from(v) * u128::from(bps_num) / 10_000).unwrap_or(u64::MAX)
}

impl MarketMaker {
    /// A market maker for every market of `exchange`, starting at each market's reference price.
    #[must_use]
    pub fn new(config: MarketMakerConfig, exchange: &Exchange) -> Self {
        let markets = exchange
            .markets()
            .iter()
            .map(|m| MarketState {
                symbol: m.symbol.clone(),
                reference: exchange.last_price(&m.symbol).map_or(m.reference_price.units(), Amount::units),
                quoted_at: None,
                walk: None,
            })
            .collect();
        Self {
            rng: config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            config,
            markets,
            flow_until: None,
            walked_at: None,
        }
    }

    /// The config it runs with.
    #[must_use]
    pub fn config(&self) -> &MarketMakerConfig {
        &self.config
    }

    /// Moves market `i`'s reference to the history's walk at `now` (piecewise linear between the
    /// walk's minute closes); false when the exchange has no history.
    fn follow_walk(&mut self, exchange: &Exchange, i: usize, now: u64) -> bool {
        let Some(h) = exchange.history() else { return false };
        let Some(p) = h.walk(i) else { return false };
        let Some(m) = self.markets.get_mut(i) else { return false };
        let end = h.end();
        if now < end {
            m.reference = p.last;
            return true;
        }
        let k = i64::try_from((now - end) / MINUTE_MS).unwrap_or(i64::MAX);
        let mut w = m.walk.unwrap_or(WalkAt { k: 0, prev: p.last, cur: h.forward_close(i, 0, p.last) });
        while w.k < k {
            w.k += 1;
            w.prev = w.cur;
            w.cur = h.forward_close(i, w.k, w.prev);
        }
        m.walk = Some(w);
        let frac = i128::from((now - end) % MINUTE_MS);
        let (prev, cur) = (i128::from(w.prev), i128::from(w.cur));
        m.reference = u64::try_from(prev + (cur - prev) * frac / i128::from(MINUTE_MS)).unwrap_or(w.prev);
        true
    }

    /// The current reference price of `symbol`.
    #[must_use]
    pub fn reference(&self, symbol: &Symbol) -> Option<Amount> {
        self.markets.iter().find(|m| &m.symbol == symbol).map(|m| Amount::from_units(m.reference))
    }

    fn next(&mut self) -> u64 {
        // xorshift64*: small, fast, and the same sequence for the same seed on every platform.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// [`MarketMaker::tick_at`] at the exchange's clock: for an exchange without history, whose
    /// walk takes one step per tick.
    #[must_use]
    pub fn tick(&mut self, exchange: &Exchange) -> Vec<Command> {
        self.tick_at(exchange, exchange.clock())
    }

    /// Brings the market up to `now`: moves every market's reference (to the history's walk at
    /// `now`, or one step of its own walk when the exchange has no history) and returns the
    /// commands to submit, in this order: deposits, then per market a cancel of the old quotes
    /// and the new ones (for markets that need a requote), then the taker flow's orders due by
    /// `now`.
    ///
    /// On a fresh exchange, when [`MarketMakerConfig::history_days`] asks for history, the first
    /// tick returns only the [`Command::SeedHistory`] that gives it; the next one quotes.
    #[must_use]
    pub fn tick_at(&mut self, exchange: &Exchange, now: UnixMillis) -> Vec<Command> {
        let cfg = self.config.clone();
        if let Some(days) = cfg.history_days
            && exchange.history().is_none()
            && !exchange.has_trades()
        {
            return vec![Command::SeedHistory(crate::history::HistorySpec { seed: cfg.seed, days })];
        }
        // Over a history the market is a function of time: a second tick at the same time has
        // nothing to add (however often a caller ticks, the same times give the same market).
        if exchange.history().is_some() {
            if self.walked_at == Some(now.0) {
                return Vec::new();
            }
            self.walked_at = Some(now.0);
        }
        let mut commands = Vec::new();
        let mut needs: Vec<(AccountId, keygate_proto::AssetCode, u128)> = Vec::new();
        for i in 0..self.markets.len() {
            let span = cfg.max_move_bps * 2 + 1;
            let step = self.next() % span;
            let Some(spec) = exchange.markets().iter().find(|m| m.symbol == self.markets[i].symbol).cloned() else {
                continue;
            };
            let walked = self.follow_walk(exchange, i, now.0);
            let m = &mut self.markets[i];
            if !walked {
                let moved =
                    scale_bps(m.reference, 10_000 + step).saturating_sub(scale_bps(m.reference, cfg.max_move_bps));
                m.reference = moved.clamp(spec.min_price.units().max(spec.tick_size.units()), spec.max_price.units());
            }
            let open: Vec<(Side, u64)> = exchange
                .open_orders(cfg.account, Some(&spec.symbol))
                .map(|v| v.into_iter().map(|o| (o.side, o.price.units())).collect())
                .unwrap_or_default();
            let drift = m.quoted_at.map_or(u64::MAX, |q| {
                let d = m.reference.abs_diff(q);
                u64::try_from(u128::from(d) * 10_000 / u128::from(q.max(1))).unwrap_or(u64::MAX)
            });
            let want = 2 * cfg.levels as usize;
            // Below the threshold the ladder stays where it was quoted and only the levels the
            // flow took are put back (one command each, not a cancel and ten places: the journal
            // grows by what happened, not by the ladder's size); past it, the whole ladder moves.
            let full = drift >= cfg.requote_bps;
            if !full && open.len() == want {
                continue;
            }
            let base = if full { m.reference } else { m.quoted_at.unwrap_or(m.reference) };
            // Size: enough notional per quote, on the step grid, at least the minimum quantity,
            // and more than the flow's average order, so that most taker orders take one level.
            let flow_notional = cfg.flow.map_or(0, |f| flow_mean_notional(exchange, &spec, i, f, m.reference));
            let notional = (u128::from(spec.min_notional.units()) * u128::from(cfg.size_in_min_notionals))
                .max(flow_notional * 3 / 2);
            let qty_at = |price: u64| {
                let raw = u64::try_from(notional * 100_000_000 / u128::from(price.max(1))).unwrap_or(u64::MAX);
                round_up(raw, spec.step_size.units()).max(spec.min_qty.units()).min(spec.max_qty.units())
            };
            let mut quotes = Vec::new();
            let (mut base_need, mut quote_need) = (0u128, 0u128);
            let sigma = minute_volatility_ppm(exchange, &spec, i);
            let half = (sigma * cfg.half_spread_pct / 100).clamp(100, 999_999);
            let tick = spec.tick_size.units().max(1);
            // Levels at least a tick apart, so that each is its own price level in the book.
            let level_step = round_up(scale_ppm(base, (sigma * cfg.level_step_pct / 100).max(100)), tick).max(tick);
            let best_bid = round_down(scale_ppm(base, 1_000_000 - half), tick);
            let best_ask = round_up(scale_ppm(base, 1_000_000 + half), tick);
            for level in 0..u64::from(cfg.levels) {
                let bid = best_bid.saturating_sub(level * level_step);
                let ask = best_ask.saturating_add(level * level_step);
                for (side, price) in [(Side::Buy, bid), (Side::Sell, ask)] {
                    if price < spec.min_price.units()
                        || price > spec.max_price.units()
                        || (!full && open.contains(&(side, price)))
                    {
                        continue;
                    }
                    let qty = qty_at(price);
                    match side {
                        Side::Buy => quote_need += u128::from(qty) * u128::from(price) / 100_000_000,
                        Side::Sell => base_need += u128::from(qty),
                    }
                    quotes.push(Command::PlaceOrder(NewOrder {
                        account: cfg.account,
                        symbol: spec.symbol.clone(),
                        side,
                        order_type: OrderType::LimitMaker,
                        time_in_force: None,
                        quantity: Some(Amount::from_units(qty)),
                        quote_order_qty: None,
                        price: Some(Amount::from_units(price)),
                        new_client_order_id: None,
                        stp_mode: Some(StpMode::None),
                    }));
                }
            }
            needs.push((cfg.account, spec.base.clone(), base_need));
            needs.push((cfg.account, spec.quote.clone(), quote_need));
            if full {
                if !open.is_empty() {
                    commands.push(Command::CancelOpenOrders { account: cfg.account, symbol: spec.symbol.clone() });
                }
                m.quoted_at = Some(m.reference);
            }
            commands.extend(quotes);
        }
        let flow = self.flow_orders(exchange, now.0, &mut needs);
        // Top up any asset the new quotes or orders could need more of than their account holds.
        let mut deposits = Vec::new();
        for (account, asset, need) in needs {
            let held = exchange
                .balances(account)
                .iter()
                .find(|b| b.asset == asset)
                .map_or(0, |b| u128::from(b.free.units()) + u128::from(b.locked.units()));
            if held < need * 2
                && !deposits
                    .iter()
                    .any(|d: &Command| matches!(d, Command::Deposit(x) if x.coin == asset && x.account == account))
            {
                let amount = u64::try_from(need.saturating_mul(FUNDING_MULTIPLE)).unwrap_or(u64::MAX / 4);
                deposits.push(Command::Deposit(Deposit {
                    account,
                    coin: asset,
                    network: None,
                    amount: Amount::from_units(amount),
                }));
            }
        }
        deposits.extend(commands);
        deposits.extend(flow);
        deposits
    }

    /// The flow's MARKET orders that arrive after the previous tick and by `now`, and what its
    /// account needs to hold for them (added to `needs`).
    fn flow_orders(
        &mut self,
        exchange: &Exchange,
        now: u64,
        needs: &mut Vec<(AccountId, keygate_proto::AssetCode, u128)>,
    ) -> Vec<Command> {
        let Some(flow) = self.config.flow else { return Vec::new() };
        let seed = self.config.seed;
        // Arrivals are drawn per 10 ms slot: slot s has one with probability rate * 10 ms.
        let first_slot = match self.flow_until {
            Some(t) => t.max(now.saturating_sub(FLOW_CATCH_UP_MS)) / FLOW_SLOT_MS + 1,
            None => now / FLOW_SLOT_MS + 1,
        };
        let last_slot = now / FLOW_SLOT_MS;
        self.flow_until = Some(now.max(self.flow_until.unwrap_or(0)));
        let per_slot = flow.rate_milli.min(MAX_FLOW_RATE_MILLI) * FLOW_SLOT_MS; // per 1e6
        let mut out = Vec::new();
        for (i, m) in self.markets.iter().enumerate() {
            let Some(spec) = exchange.markets().get(i).filter(|s| s.symbol == m.symbol) else { continue };
            let mean = flow_mean_qty(exchange, spec, i, flow);
            let (bid, ask) =
                exchange.book_ticker(&spec.symbol).map_or((0, 0), |b| (b.bid_price.units(), b.ask_price.units()));
            let mid = if bid > 0 && ask > 0 { (bid + ask) / 2 } else { m.reference };
            // Lean towards the walk: 1 % more buys per basis point the walk is above the book.
            let lean = i128::from(m.reference) - i128::from(mid);
            let lean_pct = (lean * 10_000 / i128::from(mid.max(1))).clamp(-20, 20);
            let buy_pct = u64::try_from(50 + lean_pct).unwrap_or(50);
            let (mut base_need, mut quote_need) = (0u128, 0u128);
            // The flow takes at most 70 % of a side as the book stood before this tick (the
            // market maker's commands of the tick only add to it), so it never empties a side:
            // a reader always finds a bid and an ask.
            let depth = exchange.depth(&spec.symbol, Some(5000)).ok();
            let room = |levels: Option<&Vec<(Amount, Amount)>>| {
                levels.map_or(0, |l| l.iter().map(|(_, q)| u128::from(q.units())).sum::<u128>() * 7 / 10)
            };
            let mut bid_room = room(depth.as_ref().map(|d| &d.bids));
            let mut ask_room = room(depth.as_ref().map(|d| &d.asks));
            for slot in first_slot..=last_slot {
                let h = flow_hash(seed, i, slot);
                if h % 1_000_000 >= per_slot {
                    continue;
                }
                let side = if (h >> 20) % 100 < buy_pct { Side::Buy } else { Side::Sell };
                // Sizes: 0.3 to 1.3 times the mean, and one in ten 2.3 to 5.3 times it.
                let big = if (h >> 27).is_multiple_of(10) { 200 + (h >> 31) % 200 } else { 0 };
                let pct = 30 + (h >> 40) % 100 + big;
                let price = m.reference.max(1);
                let min_qty = spec.market_min_qty.units().max(
                    u64::try_from(
                        u128::from(spec.min_notional.units()) * 2 * crate::exchange::UNIT / u128::from(price),
                    )
                    .unwrap_or(u64::MAX),
                );
                let qty = round_up(
                    u64::try_from(u128::from(mean) * u128::from(pct) / 100).unwrap_or(u64::MAX).max(min_qty),
                    spec.step_size.units(),
                )
                .min(spec.market_max_qty.units());
                let room = if side == Side::Buy { &mut ask_room } else { &mut bid_room };
                let qty = round_down(u64::try_from((*room).min(u128::from(qty))).unwrap_or(0), spec.step_size.units());
                if qty < min_qty {
                    continue;
                }
                *room -= u128::from(qty);
                match side {
                    Side::Buy => quote_need += u128::from(qty) * u128::from(price) * 2 / crate::exchange::UNIT,
                    Side::Sell => base_need += u128::from(qty),
                }
                out.push(Command::PlaceOrder(NewOrder {
                    account: flow.account,
                    symbol: spec.symbol.clone(),
                    side,
                    order_type: OrderType::Market,
                    time_in_force: None,
                    quantity: Some(Amount::from_units(qty)),
                    quote_order_qty: None,
                    price: None,
                    new_client_order_id: None,
                    stp_mode: None,
                }));
            }
            // Funding for a good while of orders, not only these.
            let ahead = u128::from(mean) * 20;
            needs.push((flow.account, spec.base.clone(), base_need.max(ahead)));
            needs.push((
                flow.account,
                spec.quote.clone(),
                quote_need.max(ahead * u128::from(m.reference) / crate::exchange::UNIT),
            ));
        }
        out
    }
}

/// Market `i`'s one-minute volatility in millionths of the price: its daily volatility (the
/// history's walk, else the market's own setting, else 300 bps) over the square root of 1440.
fn minute_volatility_ppm(exchange: &Exchange, spec: &MarketSpec, i: usize) -> u64 {
    let daily_bps = exchange
        .history()
        .and_then(|h| h.walk(i))
        .map_or_else(|| WalkParams::of(spec, spec.reference_price.units()).volatility_bps, |w| w.volatility_bps);
    // 1 bps = 100 ppm; sqrt(1440) = 37.947.
    u64::from(daily_bps) * 100 * 1000 / 37_947
}

/// `v` scaled by `ppm` millionths.
fn scale_ppm(v: u64, ppm: u64) -> u64 {
    u64::try_from(u128::from(v) * u128::from(ppm) / 1_000_000).unwrap_or(u64::MAX)
}

/// The random value of the flow's arrival slot `slot` on market `i`.
fn flow_hash(seed: u64, i: usize, slot: u64) -> u64 {
    let mut z =
        seed ^ 0x666c_6f77 ^ (i as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ slot.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The flow's average order on market `i`, base units: the market's daily volume spread over a
/// day of orders at the flow's rate.
fn flow_mean_qty(exchange: &Exchange, spec: &MarketSpec, i: usize, flow: FlowConfig) -> u64 {
    let daily = exchange
        .history()
        .and_then(|h| h.walk(i))
        .map_or_else(|| WalkParams::of(spec, spec.reference_price.units()).daily_volume, |w| w.daily_volume);
    let orders_a_day = u128::from(flow.rate_milli.clamp(1, MAX_FLOW_RATE_MILLI)) * 86_400 / 1000;
    u64::try_from(u128::from(daily) / orders_a_day.max(1)).unwrap_or(u64::MAX)
}

/// [`flow_mean_qty`] in quote units at `price`.
fn flow_mean_notional(exchange: &Exchange, spec: &MarketSpec, i: usize, flow: FlowConfig, price: u64) -> u128 {
    u128::from(flow_mean_qty(exchange, spec, i, flow)) * u128::from(price) / crate::exchange::UNIT
}
