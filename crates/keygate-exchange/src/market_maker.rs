//! Simulated liquidity: a market-maker account that quotes around a random-walk reference price.
//!
//! In a fresh sandbox nobody else is quoting, so a bot's market order would find an empty book.
//! The market maker keeps a few price levels on both sides of every market. Its reference price
//! moves by a seeded random walk (the same seed gives the same path), and it requotes only when the
//! reference has moved by more than a threshold since its last quotes, or when its quotes are gone
//! (taken or canceled): not on every tick, so its order churn stays small.
//!
//! It is pure: [`MarketMaker::tick`] reads the exchange and returns the commands to submit. They go
//! through the engine and its journal like any other command, so a restart replays them exactly.

use crate::exchange::{Command, Exchange, NewOrder};
use crate::order::{OrderType, Side, StpMode};
use crate::wallet::Deposit;
use keygate_proto::{AccountId, Amount, Symbol};

/// How the market maker quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketMakerConfig {
    /// The account it trades as (funded by operator deposits it asks for itself).
    pub account: AccountId,
    /// Seed of the random walk.
    pub seed: u64,
    /// Price levels per side.
    pub levels: u32,
    /// Half the distance between best bid and best ask, in basis points of the reference.
    pub half_spread_bps: u64,
    /// Distance between consecutive levels, in basis points.
    pub level_step_bps: u64,
    /// Largest move of the reference per tick, in basis points.
    pub max_move_bps: u64,
    /// Requote once the reference has moved this far from the quoted one, in basis points.
    pub requote_bps: u64,
    /// Notional of each quote, as a multiple of the market's minimum notional.
    pub size_in_min_notionals: u64,
}

impl MarketMakerConfig {
    /// Defaults for `account`: five levels a side, 5 bps half-spread, 5 bps apart, walk of at most
    /// 3 bps a tick, requote after 10 bps, each quote 20 minimum notionals.
    #[must_use]
    pub fn new(account: AccountId, seed: u64) -> Self {
        Self {
            account,
            seed,
            levels: 5,
            half_spread_bps: 5,
            level_step_bps: 5,
            max_move_bps: 3,
            requote_bps: 10,
            size_in_min_notionals: 20,
        }
    }
}

#[derive(Debug, Clone)]
struct MarketState {
    symbol: Symbol,
    reference: u64,
    quoted_at: Option<u64>,
}

/// The market maker's state: the walk's position per market and the reference it last quoted at.
#[derive(Debug, Clone)]
pub struct MarketMaker {
    config: MarketMakerConfig,
    rng: u64,
    markets: Vec<MarketState>,
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
            .map(|m| MarketState { symbol: m.symbol.clone(), reference: m.reference_price.units(), quoted_at: None })
            .collect();
        Self { rng: config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, config, markets }
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

    /// Advances every market's walk by one step and returns the commands that bring the quotes
    /// and the funding up to date: deposits first, then per market a cancel of the old quotes and
    /// the new ones, for markets that need a requote.
    #[must_use]
    pub fn tick(&mut self, exchange: &Exchange) -> Vec<Command> {
        let cfg = self.config.clone();
        let mut commands = Vec::new();
        let mut needs: Vec<(keygate_proto::AssetCode, u128)> = Vec::new();
        for i in 0..self.markets.len() {
            let span = cfg.max_move_bps * 2 + 1;
            let step = self.next() % span;
            let Some(spec) = exchange.markets().iter().find(|m| m.symbol == self.markets[i].symbol).cloned() else {
                continue;
            };
            let m = &mut self.markets[i];
            let moved = scale_bps(m.reference, 10_000 + step).saturating_sub(scale_bps(m.reference, cfg.max_move_bps));
            m.reference = moved.clamp(spec.min_price.units().max(spec.tick_size.units()), spec.max_price.units());
            let open: Vec<_> = exchange
                .open_orders(cfg.account, Some(&spec.symbol))
                .map(|v| v.into_iter().map(|o| o.order_id).collect())
                .unwrap_or_default();
            let drift = m.quoted_at.map_or(u64::MAX, |q| {
                let d = m.reference.abs_diff(q);
                u64::try_from(u128::from(d) * 10_000 / u128::from(q.max(1))).unwrap_or(u64::MAX)
            });
            let want = 2 * cfg.levels as usize;
            if drift < cfg.requote_bps && open.len() == want {
                continue;
            }
            // Size: enough notional per quote, on the step grid, at least the minimum quantity.
            let notional = u128::from(spec.min_notional.units()) * u128::from(cfg.size_in_min_notionals);
            let qty_at = |price: u64| {
                let raw = u64::try_from(notional * 100_000_000 / u128::from(price.max(1))).unwrap_or(u64::MAX);
                round_up(raw, spec.step_size.units()).max(spec.min_qty.units()).min(spec.max_qty.units())
            };
            let mut quotes = Vec::new();
            let (mut base_need, mut quote_need) = (0u128, 0u128);
            for level in 0..u64::from(cfg.levels) {
                let off = cfg.half_spread_bps + level * cfg.level_step_bps;
                let bid = round_down(scale_bps(m.reference, 10_000 - off.min(9_999)), spec.tick_size.units());
                let ask = round_up(scale_bps(m.reference, 10_000 + off), spec.tick_size.units());
                for (side, price) in [(Side::Buy, bid), (Side::Sell, ask)] {
                    if price < spec.min_price.units() || price > spec.max_price.units() {
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
            needs.push((spec.base.clone(), base_need));
            needs.push((spec.quote.clone(), quote_need));
            if !open.is_empty() {
                commands.push(Command::CancelOpenOrders { account: cfg.account, symbol: spec.symbol.clone() });
            }
            commands.extend(quotes);
            m.quoted_at = Some(m.reference);
        }
        // Top up any asset the new quotes could need more of than the market maker holds.
        let balances = exchange.balances(cfg.account);
        let mut deposits = Vec::new();
        for (asset, need) in needs {
            let held = balances
                .iter()
                .find(|b| b.asset == asset)
                .map_or(0, |b| u128::from(b.free.units()) + u128::from(b.locked.units()));
            if held < need * 2
                && !deposits.iter().any(|d: &Command| matches!(d, Command::Deposit(x) if x.coin == asset))
            {
                let amount = u64::try_from(need.saturating_mul(FUNDING_MULTIPLE)).unwrap_or(u64::MAX / 4);
                deposits.push(Command::Deposit(Deposit {
                    account: cfg.account,
                    coin: asset,
                    network: None,
                    amount: Amount::from_units(amount),
                }));
            }
        }
        deposits.extend(commands);
        deposits
    }
}
