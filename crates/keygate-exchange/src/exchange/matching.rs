//! Matching a taker against the book, one maker at a time.
//!
//! [`Exchange::match_order`] walks the opposite side of the book, best price first and in time
//! priority within a level. At each maker it either applies self-trade prevention or makes one
//! fill: the fill settles both sides in the ledger, takes its quantity off the book, and records
//! the trade. [`Exchange::preview`] walks the same way without changing anything, so that placing
//! an order can lock exactly what matching will spend. Both size a fill with [`Target::fill_qty`].

use super::{Exchange, MarketParams, UNIT, close_open, commission, notional};
use crate::error::{ExchangeError, OVERFLOW};
use crate::order::{Fill, OrderStatus, Side, StpMode, Trade};
use keygate_proto::{AccountId, Amount, AssetCode, UnixMillis};

/// How a taker's size is bounded while walking the book.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target {
    /// A base quantity (`quantity`).
    Qty(u64),
    /// A quote amount (`quoteOrderQty`, MARKET only).
    Quote(u64),
}

impl Target {
    /// How much a taker that has already filled `done` (base) for `spent` (quote) takes from a
    /// maker with `avail` left at `price`: up to the quantity asked for, or whole steps of what
    /// the rest of the quote amount buys. One function, so that the preview that decides what to
    /// lock and the matching that spends it cannot size a fill differently.
    fn fill_qty(self, avail: u64, done: u64, spent: u128, price: u64, step: u64) -> u64 {
        match self {
            Self::Qty(t) => avail.min(t.saturating_sub(done)),
            Self::Quote(t) => {
                let left = u128::from(t).saturating_sub(spent);
                let afford = u64::try_from(left * UNIT / u128::from(price.max(1))).unwrap_or(u64::MAX);
                avail.min(afford - afford % step)
            }
        }
    }
}

/// Whether a taker on `side` may not trade at `price` under its `limit`: a buy above it or a
/// sell below it. MARKET orders have no limit.
fn beyond_limit(side: Side, limit: Option<u64>, price: u64) -> bool {
    limit.is_some_and(|l| (side == Side::Buy && price > l) || (side == Side::Sell && price < l))
}

/// The side of the book a taker on `side` trades against.
fn opposite(side: Side) -> Side {
    match side {
        Side::Buy => Side::Sell,
        Side::Sell => Side::Buy,
    }
}

/// What matching needs to know about the taker that does not change while it matches.
#[derive(Debug, Clone, Copy)]
struct Taker {
    id: u64,
    /// Its index in the order table.
    idx: usize,
    side: Side,
    account: AccountId,
    stp: StpMode,
}

/// One fill agreed between the taker and the front maker, before anything is changed.
#[derive(Debug, Clone, Copy)]
struct Match {
    price: u64,
    maker_id: u64,
    /// The maker's remaining quantity before this fill: when it equals `qty`, the maker is done.
    maker_rem: u64,
    qty: u64,
    quote: u64,
}

/// Who bought and who sold in a settled fill, and what each paid in commission.
#[derive(Debug, Clone, Copy)]
struct Settled {
    buyer: AccountId,
    seller: AccountId,
    buyer_comm: u64,
    seller_comm: u64,
}

/// What the walk does after self-trade prevention acted on the front maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStp {
    /// Go on with the next maker (the maker expired, the taker did not).
    NextMaker,
    /// Stop: the taker expired.
    Stop,
}

impl Exchange {
    /// Walks the opposite book without changing it, applying the same self-trade rules as
    /// matching, and returns `(qty, quote)` that a taker would fill up to `target`.
    pub(super) fn preview(
        &self,
        m: usize,
        account: AccountId,
        side: Side,
        stp: StpMode,
        limit: Option<u64>,
        target: Target,
    ) -> (u64, u128) {
        let Ok(ms) = self.market(m) else { return (0, 0) };
        let step = ms.params.step.max(1);
        let levels: Box<dyn Iterator<Item = (&u64, &crate::book::Level)>> = match side {
            Side::Buy => Box::new(ms.book.asks.iter()),
            Side::Sell => Box::new(ms.book.bids.iter().rev()),
        };
        let (mut qty, mut quote) = (0u64, 0u128);
        for (&price, level) in levels {
            if beyond_limit(side, limit, price) {
                break;
            }
            for id in &level.queue {
                let Some(maker) = self.order_at(*id) else { continue };
                if !maker.status.is_open() {
                    continue;
                }
                if maker.account == account && stp != StpMode::None {
                    match stp {
                        StpMode::ExpireMaker => continue,
                        _ => return (qty, quote),
                    }
                }
                let q = target.fill_qty(maker.remaining(), qty, quote, price, step);
                if q == 0 {
                    return (qty, quote);
                }
                qty = qty.saturating_add(q);
                quote += notional(price, q);
            }
        }
        (qty, quote)
    }

    /// Matches the taker against the book; returns its fills. The taker's final status is set by
    /// [`Exchange::finish_taker`], except EXPIRED_IN_MATCH which self-trade prevention sets here.
    pub(super) fn match_order(
        &mut self,
        taker_id: u64,
        m: usize,
        limit: Option<u64>,
        target: Target,
        now: UnixMillis,
    ) -> Result<Vec<Fill>, ExchangeError> {
        let idx = (taker_id - 1) as usize;
        let taker = {
            let t = self.orders.get(idx).ok_or(ExchangeError::Internal("taker"))?;
            Taker { id: taker_id, idx, side: t.side, account: t.account, stp: t.self_trade_prevention_mode }
        };
        let p = self.market(m)?.params;
        let asset = |i: usize| self.ledger.assets().get(i).cloned().ok_or(ExchangeError::Internal("asset"));
        let (base_code, quote_code) = (asset(p.base)?, asset(p.quote)?);
        // The taker pays its commission in what it receives.
        let commission_asset = if taker.side == Side::Buy { base_code } else { quote_code };
        let mut fills = Vec::new();
        loop {
            let t = self.orders.get(idx).ok_or(ExchangeError::Internal("taker"))?;
            let (spent_quote, done_qty, taker_locked) =
                (t.cummulative_quote_qty.units(), t.executed_qty.units(), t.locked.units());
            let Some((price, maker_id)) = self.front_maker(m, &taker, limit)? else { break };
            let maker = self.order_at(maker_id).ok_or(ExchangeError::Internal("maker"))?;
            let maker_rem = maker.remaining();
            if maker.account == taker.account && taker.stp != StpMode::None {
                match self.prevent_self_trade(&taker, m, price, maker_id, maker_rem, now)? {
                    AfterStp::NextMaker => continue,
                    AfterStp::Stop => break,
                }
            }
            let q = target.fill_qty(maker_rem, done_qty, u128::from(spent_quote), price, p.step.max(1));
            let quote = u64::try_from(notional(price, q)).map_err(|_| OVERFLOW)?;
            // The taker never spends more than it locked (preview and matching agree; this is
            // the guard that keeps the ledger sound even if they did not).
            let affordable = match taker.side {
                Side::Buy => quote <= taker_locked,
                Side::Sell => q <= taker_locked,
            };
            if q == 0 || !affordable {
                break;
            }
            let fill = Match { price, maker_id, maker_rem, qty: q, quote };
            fills.push(self.fill(&taker, m, &p, &fill, &commission_asset, now)?);
        }
        Ok(fills)
    }

    /// The first live maker the taker may trade with, as `(price, order id)`, or `None` when the
    /// opposite side is empty or its best price is beyond the taker's limit. Ids of orders no
    /// longer open are dropped on the way ([`Book::front`](crate::book::Book::front)'s lazy
    /// deletion), but only at prices the taker may trade at, as the walk has always done.
    fn front_maker(
        &mut self,
        m: usize,
        taker: &Taker,
        limit: Option<u64>,
    ) -> Result<Option<(u64, u64)>, ExchangeError> {
        let orders = &self.orders;
        let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
        let is_open =
            |id: u64| id.checked_sub(1).and_then(|i| orders.get(i as usize)).is_some_and(|o| o.status.is_open());
        Ok(ms.book.front_within(opposite(taker.side), |price| !beyond_limit(taker.side, limit, price), is_open))
    }

    /// Self-trade prevention (Binance's STP modes), when the front maker belongs to the taker's
    /// account: EXPIRE_MAKER and EXPIRE_BOTH take the maker out of the book as EXPIRED_IN_MATCH;
    /// EXPIRE_TAKER and EXPIRE_BOTH end the taker as EXPIRED_IN_MATCH, which stops the walk.
    fn prevent_self_trade(
        &mut self,
        taker: &Taker,
        m: usize,
        price: u64,
        maker_id: u64,
        maker_rem: u64,
        now: UnixMillis,
    ) -> Result<AfterStp, ExchangeError> {
        if matches!(taker.stp, StpMode::ExpireMaker | StpMode::ExpireBoth) {
            let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
            // The maker's whole remainder leaves its level, as when a fill finishes it.
            ms.book.fill_front(opposite(taker.side), price, maker_rem, true);
            let p = ms.params;
            if let Some(o) = self.orders.get_mut((maker_id - 1) as usize) {
                o.status = OrderStatus::ExpiredInMatch;
                o.update_time = now;
            }
            self.release_maker(m, &p, maker_id)?;
        }
        if matches!(taker.stp, StpMode::ExpireTaker | StpMode::ExpireBoth) {
            if let Some(o) = self.orders.get_mut(taker.idx) {
                o.status = OrderStatus::ExpiredInMatch;
            }
            return Ok(AfterStp::Stop);
        }
        Ok(AfterStp::NextMaker)
    }

    /// One fill between the taker and the front maker: settles it, takes it off the book and
    /// records the trade. Returns the taker's view of it, for the FULL response.
    fn fill(
        &mut self,
        taker: &Taker,
        m: usize,
        p: &MarketParams,
        fill: &Match,
        commission_asset: &AssetCode,
        now: UnixMillis,
    ) -> Result<Fill, ExchangeError> {
        let settled = self.settle(taker, p, fill, now)?;
        self.take_off_book(taker, m, p, fill)?;
        self.record_trade(taker, m, fill, &settled, commission_asset, now)
    }

    /// Moves the money of one fill: the buyer pays the quote amount out of its locked quote and
    /// receives the quantity less its commission; the seller pays the quantity out of its locked
    /// base and receives the quote amount less its commission. Each side pays the fee rate of its
    /// role (the taker's or the maker's), and both orders count the fill.
    fn settle(
        &mut self,
        taker: &Taker,
        p: &MarketParams,
        fill: &Match,
        now: UnixMillis,
    ) -> Result<Settled, ExchangeError> {
        let (q, quote) = (fill.qty, fill.quote);
        let maker_idx = (fill.maker_id - 1) as usize;
        let (buyer_i, seller_i) = if taker.side == Side::Buy { (taker.idx, maker_idx) } else { (maker_idx, taker.idx) };
        let (buyer_rate, seller_rate) =
            if taker.side == Side::Buy { (p.taker_fee, p.maker_fee) } else { (p.maker_fee, p.taker_fee) };
        let buyer_comm = commission(q, buyer_rate);
        let seller_comm = commission(quote, seller_rate);
        let buyer = self.orders.get(buyer_i).map(|o| o.account).ok_or(ExchangeError::Internal("buyer"))?;
        let seller = self.orders.get(seller_i).map(|o| o.account).ok_or(ExchangeError::Internal("seller"))?;
        self.ledger.spend_locked(buyer, p.quote, quote)?;
        self.ledger.credit(buyer, p.base, q - buyer_comm)?;
        self.ledger.add_fee(p.base, buyer_comm)?;
        self.ledger.spend_locked(seller, p.base, q)?;
        self.ledger.credit(seller, p.quote, quote - seller_comm)?;
        self.ledger.add_fee(p.quote, seller_comm)?;
        for (i, spent) in [(buyer_i, quote), (seller_i, q)] {
            let o = self.orders.get_mut(i).ok_or(ExchangeError::Internal("order"))?;
            o.locked = Amount::from_units(o.locked.units().checked_sub(spent).ok_or(OVERFLOW)?);
            o.executed_qty = Amount::from_units(o.executed_qty.units().checked_add(q).ok_or(OVERFLOW)?);
            o.cummulative_quote_qty =
                Amount::from_units(o.cummulative_quote_qty.units().checked_add(quote).ok_or(OVERFLOW)?);
            o.update_time = now;
            o.status = if o.orig_qty.units() != 0 && o.remaining() == 0 {
                OrderStatus::Filled
            } else {
                OrderStatus::PartiallyFilled
            };
        }
        Ok(Settled { buyer, seller, buyer_comm, seller_comm })
    }

    /// Takes a fill's quantity off the maker's level; a maker the fill finishes leaves the book.
    fn take_off_book(&mut self, taker: &Taker, m: usize, p: &MarketParams, fill: &Match) -> Result<(), ExchangeError> {
        let done = fill.maker_rem == fill.qty;
        let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
        ms.book.fill_front(opposite(taker.side), fill.price, fill.qty, done);
        if done { self.release_maker(m, p, fill.maker_id) } else { Ok(()) }
    }

    /// Ends a maker's time in the book: it releases what it still locks (a buy locked at its own
    /// price may have spent less), and leaves its account's open orders, so its client id can be
    /// used again. Its status is already FILLED or EXPIRED_IN_MATCH.
    fn release_maker(&mut self, m: usize, p: &MarketParams, maker_id: u64) -> Result<(), ExchangeError> {
        let o = self.orders.get_mut((maker_id - 1) as usize).ok_or(ExchangeError::Internal("maker"))?;
        let locked = o.locked.units();
        o.locked = Amount::ZERO;
        let (account, side, client_id) = (o.account, o.side, o.client_order_id.clone());
        self.ledger.unlock(account, p.locked_asset(side), locked)?;
        close_open(&mut self.accounts, &mut self.ledger, account, m, maker_id, &client_id);
        Ok(())
    }

    /// Records one fill as a trade: in the trade table, the market's history and both accounts'
    /// histories (a self-trade appears twice in its account). Returns the taker's [`Fill`].
    fn record_trade(
        &mut self,
        taker: &Taker,
        m: usize,
        fill: &Match,
        s: &Settled,
        commission_asset: &AssetCode,
        now: UnixMillis,
    ) -> Result<Fill, ExchangeError> {
        let trade_id = self.trade_id_base + self.trades.len() as u64 + 1;
        let (buyer_order_id, seller_order_id) =
            if taker.side == Side::Buy { (taker.id, fill.maker_id) } else { (fill.maker_id, taker.id) };
        self.trades.push(Trade {
            id: trade_id,
            symbol: self.config.markets.get(m).map(|s| s.symbol.clone()).ok_or(ExchangeError::Internal("spec"))?,
            price: Amount::from_units(fill.price),
            qty: Amount::from_units(fill.qty),
            quote_qty: Amount::from_units(fill.quote),
            time: now,
            buyer_order_id,
            seller_order_id,
            buyer: s.buyer,
            seller: s.seller,
            buyer_commission: Amount::from_units(s.buyer_comm),
            seller_commission: Amount::from_units(s.seller_comm),
            is_buyer_maker: taker.side == Side::Sell,
            market: m as u32,
        });
        self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?.trades.push(trade_id);
        for (acct, is_buyer) in [(s.buyer, true), (s.seller, false)] {
            self.accounts.entry(acct).or_default().entry(m as u32).or_default().trades.push((trade_id, is_buyer));
        }
        let commission = if taker.side == Side::Buy { s.buyer_comm } else { s.seller_comm };
        Ok(Fill {
            price: Amount::from_units(fill.price),
            qty: Amount::from_units(fill.qty),
            commission: Amount::from_units(commission),
            commission_asset: commission_asset.clone(),
            trade_id,
        })
    }
}
