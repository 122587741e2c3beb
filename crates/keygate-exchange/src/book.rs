//! One market's order book: price levels in a `BTreeMap`, FIFO queues of order ids per level.
//!
//! Cancels are O(log n): the canceled id stays in its level's queue and is skipped when it
//! reaches the front (the level's live count and quantity are updated at once, and the level is
//! dropped when no live order remains). Orders themselves live in the exchange's order table.

use crate::order::Side;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// One price level.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// Order ids in time priority; may contain ids of orders no longer open (skipped lazily).
    pub(crate) queue: VecDeque<u64>,
    /// Sum of the live orders' remaining quantities, in units.
    pub(crate) qty: u64,
    /// Number of live orders.
    pub(crate) live: u32,
}

/// Bids and asks of one market.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Book {
    /// Bids by price (best = highest = last).
    pub(crate) bids: BTreeMap<u64, Level>,
    /// Asks by price (best = lowest = first).
    pub(crate) asks: BTreeMap<u64, Level>,
    /// Incremented on every change, reported as `lastUpdateId`.
    pub(crate) update_id: u64,
}

impl Book {
    /// The side's levels.
    pub(crate) fn side_mut(&mut self, side: Side) -> &mut BTreeMap<u64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// Best price of a side of the book.
    #[must_use]
    pub fn best(&self, side: Side) -> Option<(u64, u64)> {
        match side {
            Side::Buy => self.bids.iter().next_back().map(|(p, l)| (*p, l.qty)),
            Side::Sell => self.asks.iter().next().map(|(p, l)| (*p, l.qty)),
        }
    }

    /// Appends a resting order at the back of its level.
    ///
    /// Public so that the book can be driven without an [`Exchange`](crate::Exchange), e.g. by
    /// the book-only benchmark (`keygate-bench`, `benches/orderbook.rs`); the engine rests orders
    /// through this same function.
    pub fn insert(&mut self, side: Side, price: u64, order_id: u64, qty: u64) {
        let level = self.side_mut(side).entry(price).or_default();
        level.queue.push_back(order_id);
        level.qty = level.qty.saturating_add(qty);
        level.live = level.live.saturating_add(1);
        self.update_id += 1;
    }

    /// Takes a live order (with `qty` remaining) out of its level; the id is dropped lazily.
    ///
    /// Public for the same reason as [`Book::insert`]; the engine cancels through this function.
    pub fn remove(&mut self, side: Side, price: u64, qty: u64) {
        let levels = self.side_mut(side);
        if let Some(level) = levels.get_mut(&price) {
            level.qty = level.qty.saturating_sub(qty);
            level.live = level.live.saturating_sub(1);
            if level.live == 0 {
                levels.remove(&price);
            }
        }
        self.update_id += 1;
    }

    /// The front live order of the best level on `side`, as `(price, order id)`, for matching a
    /// taker against that side without an [`Exchange`](crate::Exchange).
    ///
    /// Ids for which `is_open` is false are popped from the front (lazy deletion), and a level
    /// with no live id left is dropped. Pair with [`Book::fill_front`]; the engine's matching runs
    /// through the same code, with the taker's price limit added.
    pub fn front(&mut self, side: Side, is_open: impl FnMut(u64) -> bool) -> Option<(u64, u64)> {
        self.front_within(side, |_| true, is_open)
    }

    /// [`Book::front`] for a taker with a price limit: `None` as soon as the best level's price
    /// is not `within` the limit, before anything at that level is touched.
    pub(crate) fn front_within(
        &mut self,
        side: Side,
        within: impl Fn(u64) -> bool,
        mut is_open: impl FnMut(u64) -> bool,
    ) -> Option<(u64, u64)> {
        loop {
            let levels = self.side_mut(side);
            let mut entry = match side {
                Side::Buy => levels.last_entry()?,
                Side::Sell => levels.first_entry()?,
            };
            let price = *entry.key();
            if !within(price) {
                return None;
            }
            let level = entry.get_mut();
            while let Some(&id) = level.queue.front() {
                if is_open(id) {
                    return Some((price, id));
                }
                level.queue.pop_front();
            }
            entry.remove();
        }
    }

    /// Fills `qty` of the order [`Book::front`] returned at `price` on `side`; `done` when that
    /// leaves it nothing, which takes it off the queue (and drops the level if it was the last).
    pub fn fill_front(&mut self, side: Side, price: u64, qty: u64, done: bool) {
        let levels = self.side_mut(side);
        if let Some(level) = levels.get_mut(&price) {
            level.qty = level.qty.saturating_sub(qty);
            if done {
                level.queue.pop_front();
                level.live = level.live.saturating_sub(1);
                if level.live == 0 {
                    levels.remove(&price);
                }
            }
        }
        self.update_id += 1;
    }

    /// Levels of a side, best first, as `(price, qty)` units, at most `limit`.
    #[must_use]
    pub fn levels(&self, side: Side, limit: usize) -> Vec<(u64, u64)> {
        match side {
            Side::Buy => self.bids.iter().rev().take(limit).map(|(p, l)| (*p, l.qty)).collect(),
            Side::Sell => self.asks.iter().take(limit).map(|(p, l)| (*p, l.qty)).collect(),
        }
    }

    /// The `lastUpdateId` of depth snapshots.
    #[must_use]
    pub fn update_id(&self) -> u64 {
        self.update_id
    }
}
