//! keygate's order book against two published Rust order books, `orderbook-rs` and `lobster`,
//! driven through the same message mix in the same run; and the whole engine
//! (`Exchange::apply`: filters, funds, ledger, fees, order and trade history) on that mix.
//!
//! # The mix
//!
//! exchange-core's published benchmark configuration (README of
//! <https://github.com/exchange-core/exchange-core>, "Benchmark configuration"): one order book;
//! inbound messages are 9 % GTC orders, 3 % IOC orders, 6 % cancel commands and 82 % move
//! commands; about 6 % of all messages trigger one or more trades; on average about 1,000 limit
//! orders are active, placed in about 750 different price slots.
//!
//! Our generator (deterministic xorshift64*, seed [`SEED`]) reproduces those proportions and that
//! depth; its own prices and sizes (exchange-core's generator is not reproduced):
//! - the book is first filled with [`PREFILL`] passive GTC orders (not timed): price `off` ticks
//!   away from the mid, `off` the smaller of two uniform draws in 1..=[`SPREAD_TICKS`] (denser
//!   near the touch), size uniform 1..=100 lots, side 50/50;
//! - **GTC** (9 %): a new limit order; passive as above while fewer than [`TARGET_DEPTH`] orders
//!   rest, otherwise marketable (limit 0..=4 ticks through the opposite best);
//! - **IOC** (3 %): a market order (IOC without a price limit, because `lobster` has no priced
//!   IOC), 1..=50 lots, so it may take several makers;
//! - **cancel** (6 %): a uniformly chosen resting order;
//! - **move** (82 %): a uniformly chosen resting order moves by ±1..=8 ticks (towards the mid when
//!   it drifted more than [`SPREAD_TICKS`] away), keeping its remaining size and losing its time
//!   priority; it trades if it crosses. No peer has an atomic move, so every book executes it as
//!   cancel + new limit order (with a new id): one message, two book operations.
//!
//! Achieved (printed by every run): 9.0 / 3.0 / 6.0 / 82.0 %, about 995 resting orders on about
//! 760 price levels, and 4.3 % of messages trade (exchange-core: about 6 %; our moves rarely cross,
//! the trading messages are mostly the IOCs and the marketable GTCs).
//!
//! The generator runs its own naive reference book (independent of all three) to know which orders
//! rest; the whole [`MAIN`]-message sequence is generated before anything is timed. One *op* below
//! is one message of the mix. The run prints the mix's achieved statistics (share of messages that
//! trade, average active orders and price levels).
//!
//! # Scope
//!
//! - `book/*`: book operations only: price-time matching, resting, cancelling. No balances, fees,
//!   filters or history. keygate's book is `keygate_exchange::book::Book` (a `BTreeMap` of levels
//!   with FIFO queues of ids and lazy cancel) with an order table indexed by order id, as in the
//!   engine, driven by [`KgBook`] through the public `Book::{insert, remove, front, fill_front}`.
//!   `orderbook-rs` is `OrderBook<()>` with a stub clock, no listeners, no STP (its defaults);
//!   `lobster` is `OrderBook::new(10_000, 10, false)` (its defaults).
//! - `engine/keygate`: `Exchange::apply` on the same messages, as `PlaceOrder` / `CancelOrder`
//!   commands (a move is two commands) from 1,000 funded accounts (order `id` belongs to account
//!   `1 + id % 1000`), BTCUSDT of the default config (tick 0.01, 1 lot = 0.0001 BTC, 0.1 % fees),
//!   self-trade prevention off (so it matches exactly like the books), clock +1 ms per message.
//!
//! Before timing, every book replays the mix once and must end with the reference's resting
//! depth (every level's price and quantity, both sides) and, where the API reports fills, the
//! reference's fill count; the engine must refuse no command. The run aborts otherwise.
//!
//! # Running
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/kg-ob-target cargo bench -p keygate-bench --bench orderbook
//! ```
//! prints a summary at the end: ops/s of each book from criterion's mean, the same from an
//! interleaved re-run (median of 5 rounds, books alternating, less sensitive to drift), and the
//! ratio keygate/peer.
//!
//! Instructions per op (callgrind; `BIN` is the `orderbook-*` bench executable that `cargo bench`
//! builds, e.g. `BIN=$(ls -t /tmp/kg-ob-target/release/deps/orderbook-* | grep -v '\.d$' | head -1)`):
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.keygate --toggle-collect='*orderbook::run_book*' \
//!     $BIN --bench --profile-time 1 '^book/keygate$'
//! ```
//! likewise `'^book/orderbook-rs$'`, `'^book/lobster$'`, `'^engine/keygate$'` (the engine's
//! function is `*orderbook::run_engine*`). Only the timed routine is collected (not the
//! generation, the set-up of each iteration, nor criterion); the binary prints how many ops the
//! routine ran (`profiled ops: N`), and instructions/op = the `Ir` total that `callgrind_annotate`
//! reports divided by N.

// A benchmark reports on stdout, and asserts its set-up.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BatchSize, Criterion, Throughput, black_box};
use keygate_exchange::book::Book;
use keygate_exchange::{Command, Deposit, Exchange, ExchangeConfig, NewOrder, OrderRef, OrderType, Outcome, Side};
use keygate_exchange::{StpMode, TimeInForce};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// PRNG seed of the mix.
const SEED: u64 = 0x6b67_6f62_2025_0001;
/// Passive orders resting before the timed messages.
const PREFILL: usize = 1_000;
/// Messages per timed iteration.
const MAIN: usize = 100_000;
/// Active orders the mix steers towards.
const TARGET_DEPTH: usize = 1_000;
/// Passive orders rest 1..=SPREAD_TICKS ticks from the mid.
const SPREAD_TICKS: u64 = 1_200;
/// The starting mid, in ticks (60,000.00 at a 0.01 tick).
const MID: u64 = 6_000_000;
/// Accounts of the engine benchmark.
const ACCOUNTS: u64 = 1_000;

// ---------------------------------------------------------------------------------------------
// The mix.

/// xorshift64* (Vigna): small, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi` (the modulo bias is irrelevant here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
    fn coin(&mut self) -> bool {
        self.next() & (1 << 40) != 0
    }
}

/// One message of the mix. Prices in ticks, sizes in lots, ids sequential from 1.
#[derive(Debug, Clone, Copy)]
enum Msg {
    /// GTC limit order.
    Limit { id: u64, buy: bool, price: u64, qty: u64 },
    /// IOC without a price limit.
    Market { id: u64, buy: bool, qty: u64 },
    /// Cancel a resting order.
    Cancel { id: u64 },
    /// Cancel resting order `id` and place its remaining `qty` at `price` as `new_id`.
    Move { id: u64, new_id: u64, buy: bool, price: u64, qty: u64 },
}

/// Resting depth: `(price, qty)` best first, bids then asks.
type Depth = (Vec<(u64, u64)>, Vec<(u64, u64)>);

/// What a book must end with after the prefill and the main messages.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Check {
    fills: u64,
    depth: Depth,
}

#[derive(Clone, Copy)]
struct RefOrder {
    buy: bool,
    price: u64,
    rem: u64,
}

/// The generator's naive reference book: price-time priority, eager cancel.
#[derive(Default)]
struct RefBook {
    orders: Vec<RefOrder>,
    bids: BTreeMap<u64, VecDeque<u64>>,
    asks: BTreeMap<u64, VecDeque<u64>>,
    /// Resting ids, for uniform picks; `pos[id]` is the index in `live` (or `usize::MAX`).
    live: Vec<u64>,
    pos: Vec<usize>,
    fills: u64,
}

impl RefBook {
    fn new_id(&mut self, buy: bool, price: u64, qty: u64) -> u64 {
        self.orders.push(RefOrder { buy, price, rem: qty });
        self.pos.push(usize::MAX);
        self.orders.len() as u64 // ids from 1: orders[id - 1]
    }
    fn best(&self, buy: bool) -> Option<u64> {
        if buy { self.bids.keys().next_back().copied() } else { self.asks.keys().next().copied() }
    }
    fn mid(&self) -> u64 {
        match (self.best(true), self.best(false)) {
            (Some(b), Some(a)) => (a + b) / 2,
            (Some(b), None) => b + 1,
            (None, Some(a)) => a - 1,
            (None, None) => MID,
        }
    }
    fn unlive(&mut self, id: u64) {
        let i = self.pos[id as usize - 1];
        self.live.swap_remove(i);
        if let Some(&moved) = self.live.get(i) {
            self.pos[moved as usize - 1] = i;
        }
        self.pos[id as usize - 1] = usize::MAX;
    }
    /// Matches taker `id` (limit `None` = market); rests the remainder of a limit order.
    /// Returns the number of fills.
    fn take(&mut self, id: u64, limit: Option<u64>) -> u64 {
        let RefOrder { buy, price, mut rem } = self.orders[id as usize - 1];
        let mut fills = 0;
        while rem > 0 {
            let Some(best) = self.best(!buy) else { break };
            if limit.is_some_and(|l| if buy { best > l } else { best < l }) {
                break;
            }
            let levels = if buy { &mut self.asks } else { &mut self.bids };
            let queue = levels.get_mut(&best).unwrap();
            let maker = *queue.front().unwrap();
            let m = &mut self.orders[maker as usize - 1];
            let q = m.rem.min(rem);
            m.rem -= q;
            rem -= q;
            fills += 1;
            if m.rem == 0 {
                queue.pop_front();
                if queue.is_empty() {
                    levels.remove(&best);
                }
                self.unlive(maker);
            }
        }
        self.orders[id as usize - 1].rem = rem;
        if rem > 0 && limit.is_some() {
            let levels = if buy { &mut self.bids } else { &mut self.asks };
            levels.entry(price).or_default().push_back(id);
            self.pos[id as usize - 1] = self.live.len();
            self.live.push(id);
        }
        self.fills += fills;
        fills
    }
    fn cancel(&mut self, id: u64) {
        let RefOrder { buy, price, .. } = self.orders[id as usize - 1];
        let levels = if buy { &mut self.bids } else { &mut self.asks };
        let queue = levels.get_mut(&price).unwrap();
        let i = queue.iter().position(|x| *x == id).unwrap();
        queue.remove(i);
        if queue.is_empty() {
            levels.remove(&price);
        }
        self.unlive(id);
    }
    fn depth(&self) -> Depth {
        let sum = |q: &VecDeque<u64>| q.iter().map(|id| self.orders[*id as usize - 1].rem).sum::<u64>();
        (
            self.bids.iter().rev().map(|(p, q)| (*p, sum(q))).collect(),
            self.asks.iter().map(|(p, q)| (*p, sum(q))).collect(),
        )
    }
}

/// The generated messages and what every book must end with.
struct Mix {
    prefill: Vec<Msg>,
    main: Vec<Msg>,
    check: Check,
    /// Fills during the main messages only.
    main_fills: u64,
    trading_msgs: u64,
    counts: [u64; 4],
    avg_orders: f64,
    avg_levels: f64,
}

fn passive_price(rng: &mut Rng, mid: u64, buy: bool) -> u64 {
    let off = rng.range(1, SPREAD_TICKS).min(rng.range(1, SPREAD_TICKS));
    if buy { mid - off } else { mid + off }
}

fn generate() -> Mix {
    let mut rng = Rng(SEED);
    let mut book = RefBook::default();
    let mut prefill = Vec::with_capacity(PREFILL);
    for _ in 0..PREFILL {
        let buy = rng.coin();
        let (price, qty) = (passive_price(&mut rng, MID, buy), rng.range(1, 100));
        let id = book.new_id(buy, price, qty);
        book.take(id, Some(price));
        prefill.push(Msg::Limit { id, buy, price, qty });
    }
    let fills0 = book.fills;
    let (mut main, mut trading_msgs, mut counts) = (Vec::with_capacity(MAIN), 0, [0u64; 4]);
    let (mut sum_orders, mut sum_levels) = (0u64, 0u64);
    for _ in 0..MAIN {
        let r = rng.range(0, 99);
        let kind = match r {
            0..=8 => 0,
            9..=11 => 1,
            12..=17 => 2,
            _ => 3,
        };
        // A cancel or move needs a resting order; with none (never at this depth), place one.
        let kind = if kind >= 2 && book.live.is_empty() { 0 } else { kind };
        counts[kind] += 1;
        let msg_fills = match kind {
            0 => {
                let buy = rng.coin();
                let qty = rng.range(1, 100);
                let price = match book.best(!buy) {
                    Some(opp) if book.live.len() >= TARGET_DEPTH => {
                        let through = rng.range(0, 4);
                        if buy { opp + through } else { opp.saturating_sub(through).max(1) }
                    }
                    _ => passive_price(&mut rng, book.mid(), buy),
                };
                let id = book.new_id(buy, price, qty);
                main.push(Msg::Limit { id, buy, price, qty });
                book.take(id, Some(price))
            }
            1 => {
                let (buy, qty) = (rng.coin(), rng.range(1, 50));
                let id = book.new_id(buy, 0, qty);
                main.push(Msg::Market { id, buy, qty });
                book.take(id, None)
            }
            2 => {
                let id = book.live[rng.range(0, book.live.len() as u64 - 1) as usize];
                book.cancel(id);
                main.push(Msg::Cancel { id });
                0
            }
            _ => {
                let id = book.live[rng.range(0, book.live.len() as u64 - 1) as usize];
                let RefOrder { buy, price, rem } = book.orders[id as usize - 1];
                let mid = book.mid();
                let step = rng.range(1, 8);
                let far = if buy { mid.saturating_sub(price) } else { price.saturating_sub(mid) } > SPREAD_TICKS;
                let up = if far { buy } else { rng.coin() };
                let price = if up { price + step } else { price.saturating_sub(step).max(1) };
                book.cancel(id);
                let new_id = book.new_id(buy, price, rem);
                main.push(Msg::Move { id, new_id, buy, price, qty: rem });
                book.take(new_id, Some(price))
            }
        };
        trading_msgs += u64::from(msg_fills > 0);
        sum_orders += book.live.len() as u64;
        sum_levels += (book.bids.len() + book.asks.len()) as u64;
    }
    Mix {
        prefill,
        main,
        check: Check { fills: book.fills, depth: book.depth() },
        main_fills: book.fills - fills0,
        trading_msgs,
        counts,
        avg_orders: sum_orders as f64 / MAIN as f64,
        avg_levels: sum_levels as f64 / MAIN as f64,
    }
}

// ---------------------------------------------------------------------------------------------
// The books under test.

/// A book driven by the mix. `apply` returns the fills it saw (0 where the API does not say).
trait MixBook {
    fn apply(&mut self, m: &Msg) -> u64;
    /// Fills are counted by `apply` (else only the depth is checked).
    fn counts_fills(&self) -> bool;
    fn depth(&self) -> Depth;
}

#[derive(Clone, Copy)]
struct KgOrder {
    side: Side,
    price: u64,
    rem: u64,
    open: bool,
}

/// keygate's `Book` with an order table indexed by id (`orders[id - 1]`), as in the engine.
#[derive(Default)]
struct KgBook {
    book: Book,
    orders: Vec<KgOrder>,
}

fn side(buy: bool) -> Side {
    if buy { Side::Buy } else { Side::Sell }
}

impl KgBook {
    #[inline]
    fn take(&mut self, id: u64, buy: bool, limit: Option<u64>, qty: u64) -> u64 {
        debug_assert_eq!(id, self.orders.len() as u64 + 1);
        let (taker, opp) = (side(buy), side(!buy));
        let Self { book, orders } = self;
        let (mut left, mut fills) = (qty, 0);
        while left > 0 {
            let Some((price, maker)) = book.front(opp, |id| orders[id as usize - 1].open) else { break };
            if limit.is_some_and(|l| if buy { price > l } else { price < l }) {
                break;
            }
            let m = &mut orders[maker as usize - 1];
            let q = m.rem.min(left);
            m.rem -= q;
            left -= q;
            fills += 1;
            let done = m.rem == 0;
            m.open = !done;
            book.fill_front(opp, price, q, done);
        }
        let price = limit.unwrap_or(0);
        let rests = left > 0 && limit.is_some();
        orders.push(KgOrder { side: taker, price, rem: left, open: rests });
        if rests {
            book.insert(taker, price, id, left);
        }
        fills
    }
    #[inline]
    fn cancel(&mut self, id: u64) {
        if let Some(o) = self.orders.get_mut(id as usize - 1)
            && o.open
        {
            o.open = false;
            self.book.remove(o.side, o.price, o.rem);
        }
    }
}

impl MixBook for KgBook {
    #[inline]
    fn apply(&mut self, m: &Msg) -> u64 {
        match *m {
            Msg::Limit { id, buy, price, qty } => self.take(id, buy, Some(price), qty),
            Msg::Market { id, buy, qty } => self.take(id, buy, None, qty),
            Msg::Cancel { id } => {
                self.cancel(id);
                0
            }
            Msg::Move { id, new_id, buy, price, qty } => {
                self.cancel(id);
                self.take(new_id, buy, Some(price), qty)
            }
        }
    }
    fn counts_fills(&self) -> bool {
        true
    }
    fn depth(&self) -> Depth {
        (self.book.levels(Side::Buy, usize::MAX), self.book.levels(Side::Sell, usize::MAX))
    }
}

#[derive(Default)]
struct Lobster(lobster::OrderBook);

fn lobster_fills(e: &lobster::OrderEvent) -> u64 {
    match e {
        lobster::OrderEvent::Filled { fills, .. } | lobster::OrderEvent::PartiallyFilled { fills, .. } => {
            fills.len() as u64
        }
        _ => 0,
    }
}

impl MixBook for Lobster {
    #[inline]
    fn apply(&mut self, m: &Msg) -> u64 {
        use lobster::{OrderType as L, Side as S};
        let s = |buy: bool| if buy { S::Bid } else { S::Ask };
        match *m {
            Msg::Limit { id, buy, price, qty } => {
                lobster_fills(&self.0.execute(L::Limit { id: u128::from(id), side: s(buy), qty, price }))
            }
            Msg::Market { id, buy, qty } => {
                lobster_fills(&self.0.execute(L::Market { id: u128::from(id), side: s(buy), qty }))
            }
            Msg::Cancel { id } => {
                black_box(self.0.execute(L::Cancel { id: u128::from(id) }));
                0
            }
            Msg::Move { id, new_id, buy, price, qty } => {
                black_box(self.0.execute(L::Cancel { id: u128::from(id) }));
                lobster_fills(&self.0.execute(L::Limit { id: u128::from(new_id), side: s(buy), qty, price }))
            }
        }
    }
    fn counts_fills(&self) -> bool {
        true
    }
    fn depth(&self) -> Depth {
        let d = self.0.depth(4096); // lobster returns every level; the argument is a capacity
        (d.bids.iter().rev().map(|l| (l.price, l.qty)).collect(), d.asks.iter().map(|l| (l.price, l.qty)).collect())
    }
}

/// `orderbook-rs` with its plain (fastest) calls; `counting` uses the `_with_result` variant of
/// limit orders so that the sanity pass can count their fills too.
struct OrderbookRs {
    book: orderbook_rs::OrderBook<()>,
    counting: bool,
}

impl OrderbookRs {
    fn new(counting: bool) -> Self {
        let clock = Arc::new(orderbook_rs::StubClock::new()) as Arc<dyn orderbook_rs::Clock>;
        Self { book: orderbook_rs::OrderBook::with_clock("BTCUSDT", clock), counting }
    }
    #[inline]
    fn limit(&self, id: u64, buy: bool, price: u64, qty: u64) -> u64 {
        use orderbook_rs::{Id, Side as S, TimeInForce as Tif};
        let s = if buy { S::Buy } else { S::Sell };
        if self.counting {
            match self.book.add_limit_order_with_result(Id::sequential(id), u128::from(price), qty, s, Tif::Gtc, None) {
                Ok((_, Some(t))) => t.match_result.trades().as_vec().len() as u64,
                _ => 0,
            }
        } else {
            black_box(self.book.add_limit_order(Id::sequential(id), u128::from(price), qty, s, Tif::Gtc, None)).ok();
            0
        }
    }
}

impl MixBook for OrderbookRs {
    #[inline]
    fn apply(&mut self, m: &Msg) -> u64 {
        use orderbook_rs::{Id, Side as S};
        match *m {
            Msg::Limit { id, buy, price, qty } => self.limit(id, buy, price, qty),
            Msg::Market { id, buy, qty } => {
                match self.book.submit_market_order(Id::sequential(id), qty, if buy { S::Buy } else { S::Sell }) {
                    Ok(r) => r.trades().as_vec().len() as u64,
                    Err(_) => 0,
                }
            }
            Msg::Cancel { id } => {
                black_box(self.book.cancel_order(Id::sequential(id))).ok();
                0
            }
            Msg::Move { id, new_id, buy, price, qty } => {
                black_box(self.book.cancel_order(Id::sequential(id))).ok();
                self.limit(new_id, buy, price, qty)
            }
        }
    }
    fn counts_fills(&self) -> bool {
        self.counting
    }
    fn depth(&self) -> Depth {
        let (mut bids, mut asks) = (BTreeMap::<u64, u64>::new(), BTreeMap::<u64, u64>::new());
        for o in self.book.get_all_orders() {
            let side = if o.side() == orderbook_rs::Side::Buy { &mut bids } else { &mut asks };
            let price = u64::try_from(o.price().as_u128()).unwrap();
            *side.entry(price).or_default() += o.visible_quantity().as_u64();
        }
        (bids.into_iter().rev().collect(), asks.into_iter().collect())
    }
}

/// Ops run by the timed routines (printed in profile mode, for instructions/op).
static OPS: AtomicU64 = AtomicU64::new(0);

/// The timed routine of `book/*`: every main message, in order.
#[inline(never)]
fn run_book<B: MixBook>(book: &mut B, msgs: &[Msg]) -> u64 {
    let mut fills = 0;
    for m in msgs {
        fills += book.apply(m);
    }
    OPS.fetch_add(msgs.len() as u64, Ordering::Relaxed);
    fills
}

fn prefilled<B: MixBook>(mut book: B, mix: &Mix) -> B {
    for m in &mix.prefill {
        book.apply(m);
    }
    book
}

/// Replays the whole mix once and checks the book against the reference.
fn check<B: MixBook>(name: &str, book: B, mix: &Mix) {
    let mut book = prefilled(book, mix);
    let prefill_fills = 0; // the prefill is passive
    let fills = prefill_fills + run_book(&mut book, &mix.main);
    let depth = book.depth();
    assert_eq!(depth, mix.check.depth, "{name}: resting depth differs from the reference");
    if book.counts_fills() {
        assert_eq!(fills, mix.check.fills, "{name}: fill count differs from the reference");
    }
    let orders: u64 = depth.0.iter().chain(&depth.1).map(|l| l.1).sum();
    println!(
        "  {name:<14} ok: {} bid + {} ask levels, {} lots resting, {} fills{}",
        depth.0.len(),
        depth.1.len(),
        orders,
        if book.counts_fills() { fills.to_string() } else { "-".into() },
        if book.counts_fills() { "" } else { " (not reported by the fast path)" }
    );
}

// ---------------------------------------------------------------------------------------------
// The whole engine.

/// Price unit per tick (0.01 USDT) and quantity unit per lot (0.0001 BTC).
const TICK: u64 = 1_000_000;
const LOT: u64 = 10_000;

fn account_of(id: u64) -> AccountId {
    AccountId(1 + (id % ACCOUNTS) as i64)
}

fn engine_commands(mix: &Mix, symbol: &Symbol) -> (Vec<Command>, Vec<(Command, UnixMillis)>) {
    let place = |id: u64, buy: bool, price: Option<u64>, qty: u64| {
        Command::PlaceOrder(NewOrder {
            account: account_of(id),
            symbol: symbol.clone(),
            side: side(buy),
            order_type: if price.is_some() { OrderType::Limit } else { OrderType::Market },
            time_in_force: price.map(|_| TimeInForce::Gtc),
            quantity: Some(Amount::from_units(qty * LOT)),
            quote_order_qty: None,
            price: price.map(|p| Amount::from_units(p * TICK)),
            new_client_order_id: None,
            stp_mode: Some(StpMode::None),
        })
    };
    let cancel = |id: u64| Command::CancelOrder {
        account: account_of(id),
        symbol: symbol.clone(),
        order: OrderRef::Id(id),
        new_client_order_id: None,
    };
    let prefill = mix
        .prefill
        .iter()
        .map(|m| match *m {
            Msg::Limit { id, buy, price, qty } => place(id, buy, Some(price), qty),
            _ => unreachable!("the prefill is limit orders"),
        })
        .collect();
    let mut main = Vec::with_capacity(mix.main.len() * 2);
    for (i, m) in mix.main.iter().enumerate() {
        let now = UnixMillis(1_767_225_600_000 + i as u64);
        match *m {
            Msg::Limit { id, buy, price, qty } => main.push((place(id, buy, Some(price), qty), now)),
            Msg::Market { id, buy, qty } => main.push((place(id, buy, None, qty), now)),
            Msg::Cancel { id } => main.push((cancel(id), now)),
            Msg::Move { id, new_id, buy, price, qty } => {
                main.push((cancel(id), now));
                main.push((place(new_id, buy, Some(price), qty), now));
            }
        }
    }
    (prefill, main)
}

/// A fresh exchange, every account funded, the prefill applied (none of it timed).
fn engine_setup(prefill: &[Command]) -> Exchange {
    let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
    let t0 = UnixMillis(1_767_225_000_000);
    for a in 1..=ACCOUNTS as i64 {
        for (coin, amount) in [("USDT", "100000000"), ("BTC", "1000")] {
            let d = Deposit {
                account: AccountId(a),
                coin: AssetCode::parse(coin).unwrap(),
                network: None,
                amount: Amount::parse(amount).unwrap(),
            };
            ex.apply(&Command::Deposit(d), t0).unwrap();
        }
    }
    for c in prefill {
        ex.apply(c, t0).unwrap();
    }
    ex
}

/// The timed routine of `engine/keygate`. Returns `(fills, refused commands)`.
#[inline(never)]
fn run_engine(ex: &mut Exchange, cmds: &[(Command, UnixMillis)], msgs: usize) -> (u64, u64) {
    let (mut fills, mut refused) = (0, 0);
    for (c, now) in cmds {
        match ex.apply(c, *now) {
            Ok(Outcome::Placed(p)) => fills += p.fills.len() as u64,
            Ok(_) => {}
            Err(_) => refused += 1,
        }
    }
    OPS.fetch_add(msgs as u64, Ordering::Relaxed);
    (fills, refused)
}

// ---------------------------------------------------------------------------------------------

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Seconds for one pass of the main messages through a fresh, prefilled book.
#[allow(clippy::disallowed_methods)] // `Instant` is for benchmarks.
fn time_book<B: MixBook>(make: impl Fn() -> B, mix: &Mix) -> f64 {
    let mut book = prefilled(make(), mix);
    let t = Instant::now();
    black_box(run_book(&mut book, &mix.main));
    let s = t.elapsed().as_secs_f64();
    drop(book);
    s
}

/// Seconds for one pass of the main commands through a fresh, funded, prefilled exchange.
#[allow(clippy::disallowed_methods)] // `Instant` is for benchmarks.
fn time_engine(prefill: &[Command], cmds: &[(Command, UnixMillis)], msgs: usize) -> f64 {
    let mut ex = engine_setup(prefill);
    let t = Instant::now();
    black_box(run_engine(&mut ex, cmds, msgs));
    let s = t.elapsed().as_secs_f64();
    drop(ex);
    s
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let profiling = std::env::args().any(|a| a == "--profile-time");
    let mix = generate();
    let symbol = Symbol::parse("BTCUSDT").unwrap();
    let (eng_prefill, eng_main) = engine_commands(&mix, &symbol);
    let n = mix.main.len();
    let pct = |x: u64| 100.0 * x as f64 / n as f64;

    println!(
        "mix (exchange-core proportions), {} prefill + {n} timed messages: GTC {:.1} %, IOC {:.1} %, cancel {:.1} %, \
         move {:.1} %; {:.1} % of messages trade ({} fills); on average {:.0} resting orders on {:.0} price levels",
        mix.prefill.len(),
        pct(mix.counts[0]),
        pct(mix.counts[1]),
        pct(mix.counts[2]),
        pct(mix.counts[3]),
        pct(mix.trading_msgs),
        mix.main_fills,
        mix.avg_orders,
        mix.avg_levels,
    );
    if !profiling {
        println!("sanity (every book vs the reference: full resting depth, fill count):");
        check("keygate", KgBook::default(), &mix);
        check("orderbook-rs", OrderbookRs::new(true), &mix);
        check("lobster", Lobster::default(), &mix);
        let mut ex = engine_setup(&eng_prefill);
        let (fills, refused) = run_engine(&mut ex, &eng_main, n);
        assert_eq!(refused, 0, "engine refused commands");
        assert_eq!(fills, mix.main_fills, "engine: fill count differs from the reference");
        let d = ex.depth(&symbol, Some(5000)).unwrap();
        let conv = |v: &[(Amount, Amount)]| v.iter().map(|(p, q)| (p.units() / TICK, q.units() / LOT)).collect();
        assert_eq!((conv(&d.bids), conv(&d.asks)), mix.check.depth, "engine: resting depth differs");
        println!("  {:<14} ok: same depth, {fills} fills, 0 commands refused", "engine");
        OPS.store(0, Ordering::Relaxed);
    }

    let mut g = c.benchmark_group("book");
    g.throughput(Throughput::Elements(n as u64)).sample_size(20);
    g.bench_function("keygate", |b| {
        b.iter_batched(
            || prefilled(KgBook::default(), &mix),
            |mut bk| (run_book(&mut bk, &mix.main), bk),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("orderbook-rs", |b| {
        b.iter_batched(
            || prefilled(OrderbookRs::new(false), &mix),
            |mut bk| (run_book(&mut bk, &mix.main), bk),
            BatchSize::PerIteration,
        );
    });
    g.bench_function("lobster", |b| {
        b.iter_batched(
            || prefilled(Lobster::default(), &mix),
            |mut bk| (run_book(&mut bk, &mix.main), bk),
            BatchSize::PerIteration,
        );
    });
    g.finish();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(n as u64)).sample_size(10);
    g.bench_function("keygate", |b| {
        b.iter_batched(
            || engine_setup(&eng_prefill),
            |mut ex| (run_engine(&mut ex, &eng_main, n), ex),
            BatchSize::PerIteration,
        );
    });
    g.finish();

    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    if profiling {
        println!("profiled ops: {}", OPS.load(Ordering::Relaxed));
        return;
    }
    c.final_summary();

    // Interleaved re-run: the books alternate, so that drift on this noisy machine hits all alike.
    let (mut kg, mut obr, mut lob, mut eng) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        kg.push(time_book(KgBook::default, &mix));
        obr.push(time_book(|| OrderbookRs::new(false), &mix));
        lob.push(time_book(Lobster::default, &mix));
        eng.push(time_engine(&eng_prefill, &eng_main, n));
    }
    let target = keygate_bench::criterion_target();
    let crit = |group: &str, name: &str| keygate_bench::mean_ns(&target, group, name).map(|ns| n as f64 / (ns * 1e-9));
    let rows = [
        ("book", "keygate", median(kg)),
        ("book", "orderbook-rs", median(obr)),
        ("book", "lobster", median(lob)),
        ("engine", "keygate", median(eng)),
    ];
    let kg_crit = crit("book", "keygate");
    let kg_inter = n as f64 / rows[0].2;
    println!("\norder book on the exchange-core mix ({n} messages per pass; ops/s = messages/s):");
    println!("{:<22} {:>14} {:>14} {:>18}", "", "criterion", "interleaved", "keygate/this");
    for (group, name, secs) in rows {
        let inter = n as f64 / secs;
        let cr = crit(group, name);
        let ratio = match (group, kg_crit, cr) {
            ("book", Some(k), Some(p)) => format!("{:.2}x / {:.2}x", k / p, kg_inter / inter),
            ("book", _, _) => format!("- / {:.2}x", kg_inter / inter),
            _ => "(whole engine)".into(),
        };
        let cr = cr.map_or_else(|| "-".into(), |v| format!("{:.0}", v));
        println!("{:<22} {:>14} {:>14.0} {:>18}", format!("{group}/{name}"), cr, inter, ratio);
    }
}
