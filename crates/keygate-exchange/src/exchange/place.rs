//! Placing an order, step by step, in the order Binance checks a new order: its parameters, the
//! symbol's filters, the client order id and the per-account limits, then the funds it needs.
//! Everything that can refuse the order runs before anything changes, so a refused order leaves
//! the exchange as it was; then the order is recorded, matched (see
//! [`matching`](super::matching)), and its remainder rests in the book or ends.

use super::matching::Target;
use super::{Exchange, MarketParams, NEW_ORDER_SALT, NewOrder, Outcome, PlacedOrder, notional, valid_client_id};
use crate::error::ExchangeError;
use crate::order::{Order, OrderStatus, OrderType, Side, StpMode, TimeInForce};
use keygate_proto::{AccountId, Amount, Symbol, UnixMillis};

/// What an order asks for, once its parameters have been checked against its type.
#[derive(Debug, Clone, Copy)]
struct Terms {
    /// The time in force (GTC for MARKET and LIMIT_MAKER, as Binance reports it).
    tif: TimeInForce,
    /// The limit price, for LIMIT and LIMIT_MAKER.
    price: Option<u64>,
    /// The quantity or, for MARKET by `quoteOrderQty`, the quote amount.
    target: Target,
    /// Self-trade prevention (EXPIRE_MAKER unless asked otherwise, as on Binance).
    stp: StpMode,
}

impl Terms {
    /// The parameters each order type needs and refuses, checked as Binance checks them (a
    /// missing one is -1102, a superfluous one -1106).
    fn of(req: &NewOrder) -> Result<Self, ExchangeError> {
        let tif = match req.order_type {
            OrderType::Limit => req.time_in_force.ok_or_else(|| ExchangeError::missing("timeInForce"))?,
            OrderType::Market | OrderType::LimitMaker => {
                if req.time_in_force.is_some() {
                    return Err(ExchangeError::not_required("timeInForce"));
                }
                TimeInForce::Gtc
            }
        };
        let (price, target) = match req.order_type {
            OrderType::Limit | OrderType::LimitMaker => {
                if req.quote_order_qty.is_some() {
                    return Err(ExchangeError::not_required("quoteOrderQty"));
                }
                let price = req.price.ok_or_else(|| ExchangeError::missing("price"))?.units();
                let qty = req.quantity.ok_or_else(|| ExchangeError::missing("quantity"))?.units();
                (Some(price), Target::Qty(qty))
            }
            OrderType::Market => {
                if req.price.is_some() {
                    return Err(ExchangeError::not_required("price"));
                }
                match (req.quantity, req.quote_order_qty) {
                    (Some(q), None) => (None, Target::Qty(q.units())),
                    (None, Some(q)) => (None, Target::Quote(q.units())),
                    (None, None) => {
                        return Err(ExchangeError::BadParam {
                            code: keygate_proto::ErrorCode::MandatoryParamEmptyOrMalformed,
                            msg: "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                                .to_owned(),
                        });
                    }
                    (Some(_), Some(_)) => return Err(ExchangeError::bad_combination()),
                }
            }
        };
        Ok(Self { tif, price, target, stp: req.stp_mode.unwrap_or(StpMode::ExpireMaker) })
    }
}

/// What a new order's checks read of the exchange's state: the same checks run on the exchange
/// itself ([`Exchange::place_order`]) and on an [`OrderBoard`](super::board::OrderBoard) published
/// from it (`order/test` answered without the engine thread), so both answer alike by
/// construction.
pub(super) trait CheckSource {
    /// The market's index and fixed rules; [`ExchangeError::UnknownSymbol`] when not listed.
    fn market_params(&self, symbol: &Symbol) -> Result<(usize, MarketParams), ExchangeError>;
    /// How many orders `account` has open on market `m`.
    fn open_count(&self, account: AccountId, m: usize) -> usize;
    /// Whether an open order of `account` on market `m` has the client order id `client_id`.
    fn client_id_open(&self, account: AccountId, m: usize, client_id: &str) -> bool;
    /// The best price on `side` of market `m`'s book.
    fn best_price(&self, m: usize, side: Side) -> Option<u64>;
    /// The 5-minute average price of market `m` at `now`, when this source knows it.
    fn avg_price_units(&self, m: usize, now: UnixMillis) -> Option<u64>;
}

impl CheckSource for Exchange {
    fn market_params(&self, symbol: &Symbol) -> Result<(usize, MarketParams), ExchangeError> {
        let m = self.market_idx(symbol)?;
        Ok((m, self.market(m)?.params))
    }

    fn open_count(&self, account: AccountId, m: usize) -> usize {
        self.account_market(account, m).map_or(0, |a| a.open.len())
    }

    fn client_id_open(&self, account: AccountId, m: usize, client_id: &str) -> bool {
        self.account_market(account, m).is_some_and(|a| a.open_client_ids.contains_key(client_id))
    }

    fn best_price(&self, m: usize, side: Side) -> Option<u64> {
        self.markets.get(m).and_then(|ms| ms.book.best(side)).map(|(price, _)| price)
    }

    fn avg_price_units(&self, m: usize, now: UnixMillis) -> Option<u64> {
        Some(Exchange::avg_price_units(self, m, now))
    }
}

/// An order that passed every check that does not depend on funds: what placing it goes on with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Checked {
    /// The market's index.
    m: usize,
    /// The market's rules.
    p: MarketParams,
    /// What the order asks for.
    terms: Terms,
}

/// The checks of a new order, in Binance's order, up to (not including) its funds: market,
/// parameters, filters, client order id, MAX_NUM_ORDERS, and a LIMIT_MAKER that would take.
pub(super) fn check<S: CheckSource + ?Sized>(
    src: &S,
    req: &NewOrder,
    now: UnixMillis,
) -> Result<Checked, ExchangeError> {
    let (m, p) = src.market_params(&req.symbol)?;
    let terms = Terms::of(req)?;
    check_filters(src, m, &p, terms, now)?;
    admit(src, req, m, &p, terms)?;
    Ok(Checked { m, p, terms })
}

/// The symbol's filters, in Binance's order: PRICE_FILTER, LOT_SIZE (MARKET_LOT_SIZE for a
/// MARKET order by quantity), then NOTIONAL, which values a MARKET order by quantity at the
/// 5-minute average price.
fn check_filters<S: CheckSource + ?Sized>(
    src: &S,
    m: usize,
    p: &MarketParams,
    terms: Terms,
    now: UnixMillis,
) -> Result<(), ExchangeError> {
    if let Some(price) = terms.price
        && (price < p.min_price || price > p.max_price || price % p.tick != 0)
    {
        return Err(ExchangeError::Filter("PRICE_FILTER"));
    }
    let notional_units = match (terms.price, terms.target) {
        (Some(price), Target::Qty(q)) => {
            if q == 0 || q < p.min_qty || q > p.max_qty || q % p.step != 0 {
                return Err(ExchangeError::Filter("LOT_SIZE"));
            }
            notional(price, q)
        }
        (None, Target::Qty(q)) => {
            if q == 0 || q < p.market_min_qty || q > p.market_max_qty || q % p.step != 0 {
                return Err(ExchangeError::Filter("MARKET_LOT_SIZE"));
            }
            // Only the exchange itself knows the average price; a board sends such orders to it.
            let avg = src.avg_price_units(m, now).ok_or(ExchangeError::Internal("no average price here"))?;
            notional(avg, q)
        }
        (_, Target::Quote(q)) => u128::from(q),
    };
    if notional_units == 0 || notional_units < u128::from(p.min_notional) || notional_units > u128::from(p.max_notional)
    {
        return Err(ExchangeError::Filter("NOTIONAL"));
    }
    Ok(())
}

/// The checks that depend on the account and the book: a client order id the client gives must
/// be well formed and not used by an open order of the account, the account must be below
/// MAX_NUM_ORDERS, and a LIMIT_MAKER must not trade on arrival.
fn admit<S: CheckSource + ?Sized>(
    src: &S,
    req: &NewOrder,
    m: usize,
    p: &MarketParams,
    terms: Terms,
) -> Result<(), ExchangeError> {
    // An order without a client order id gets one no open order holds (see
    // `Exchange::generated_client_id`): only the client's own can be a duplicate.
    if let Some(c) = &req.new_client_order_id {
        if !valid_client_id(c) {
            return Err(ExchangeError::illegal("newClientOrderId", "^[a-zA-Z0-9-_]{1,36}$"));
        }
        if src.client_id_open(req.account, m, c) {
            return Err(ExchangeError::DuplicateOrder);
        }
    }
    let open = src.open_count(req.account, m);
    if open >= p.max_num_orders as usize {
        return Err(ExchangeError::Filter("MAX_NUM_ORDERS"));
    }
    if req.order_type == OrderType::LimitMaker
        && let Some(price) = terms.price
    {
        let takes = match req.side {
            Side::Buy => src.best_price(m, Side::Sell).is_some_and(|ask| price >= ask),
            Side::Sell => src.best_price(m, Side::Buy).is_some_and(|bid| price <= bid),
        };
        if takes {
            return Err(ExchangeError::WouldTake);
        }
    }
    Ok(())
}

impl Exchange {
    /// `POST /api/v3/order` (and, with `test`, `/api/v3/order/test`, which stops after the
    /// checks): the steps below, in order.
    pub(super) fn place_order(
        &mut self,
        req: &NewOrder,
        now: UnixMillis,
        test: bool,
    ) -> Result<Outcome, ExchangeError> {
        let Checked { m, p, terms } = check(self, req, now)?;
        if test {
            return Ok(Outcome::Tested);
        }
        let lock = self.funds_to_lock(req, m, &p, terms)?;

        // From here on the command succeeds.
        let fok_fails = terms.tif == TimeInForce::Fok
            && matches!(terms.target, Target::Qty(q)
                if self.preview(m, req.account, req.side, terms.stp, terms.price, terms.target).0 < q);
        self.ledger.lock(req.account, p.locked_asset(req.side), lock)?;
        // Sequential: its position in the order table, plus one.
        let order_id = self.orders.len() as u64 + 1;
        self.record_order(req, m, order_id, terms, lock, now);
        let fills = if fok_fails { Vec::new() } else { self.match_order(order_id, m, terms.price, terms.target, now)? };
        self.finish_taker(order_id, m, terms.price, terms.target, fok_fails, now)?;
        let order = self.order_at(order_id).cloned().ok_or(ExchangeError::Internal("order vanished"))?;
        Ok(Outcome::Placed(PlacedOrder { order, fills }))
    }

    /// How much of [`MarketParams::locked_asset`] the order locks, refused when the account's
    /// free balance does not cover it. A LIMIT buy locks its notional, a sell its quantity, a
    /// MARKET order by quote amount the amount; a MARKET buy by quantity (and a sell by quote
    /// amount) locks what walking the book now would cost, from [`Exchange::preview`].
    fn funds_to_lock(&self, req: &NewOrder, m: usize, p: &MarketParams, terms: Terms) -> Result<u64, ExchangeError> {
        let stp = terms.stp;
        let lock = match (req.side, terms.price, terms.target) {
            (Side::Buy, Some(price), Target::Qty(q)) => notional(price, q),
            (Side::Buy, None, Target::Qty(q)) => self.preview(m, req.account, Side::Buy, stp, None, Target::Qty(q)).1,
            (Side::Buy, _, Target::Quote(q)) => u128::from(q),
            (Side::Sell, _, Target::Qty(q)) => u128::from(q),
            (Side::Sell, _, Target::Quote(q)) => {
                u128::from(self.preview(m, req.account, Side::Sell, stp, None, Target::Quote(q)).0)
            }
        };
        let free = self.ledger.balance(req.account, p.locked_asset(req.side)).free;
        let lock = u64::try_from(lock).map_err(|_| ExchangeError::InsufficientBalance)?;
        if lock > free {
            return Err(ExchangeError::InsufficientBalance);
        }
        Ok(lock)
    }

    /// Enters the accepted order in the order table (its id is its position) and in its
    /// account's order history, as NEW, holding `lock`.
    fn record_order(&mut self, req: &NewOrder, m: usize, order_id: u64, terms: Terms, lock: u64, now: UnixMillis) {
        let (orig_qty, orig_quote) = match terms.target {
            Target::Qty(q) => (q, 0),
            Target::Quote(q) => (0, q),
        };
        self.orders.push(Order {
            symbol: req.symbol.clone(),
            order_id,
            order_list_id: -1,
            client_order_id: req
                .new_client_order_id
                .clone()
                .unwrap_or_else(|| self.generated_client_id(req.account, m, order_id)),
            account: req.account,
            price: Amount::from_units(terms.price.unwrap_or(0)),
            orig_qty: Amount::from_units(orig_qty),
            executed_qty: Amount::ZERO,
            cummulative_quote_qty: Amount::ZERO,
            orig_quote_order_qty: Amount::from_units(orig_quote),
            status: OrderStatus::New,
            time_in_force: terms.tif,
            order_type: req.order_type,
            side: req.side,
            stop_price: Amount::ZERO,
            iceberg_qty: Amount::ZERO,
            time: now,
            update_time: now,
            is_working: true,
            working_time: now,
            self_trade_prevention_mode: terms.stp,
            locked: Amount::from_units(lock),
            market: m as u32,
        });
        self.accounts.entry(req.account).or_default().entry(m as u32).or_default().orders.push(order_id);
    }

    /// The client order id of an order placed without one: derived from its order id, unless an
    /// open order of the account holds that id (a client may have chosen it for its own, since
    /// the derivation is no secret); then the first of the ids derived with the following salts
    /// that none holds. Binance never refuses an order for the id it generated itself. An order
    /// recorded before this rule got the first id (it was refused otherwise), so journals replay
    /// to the same ids.
    fn generated_client_id(&self, account: AccountId, m: usize, order_id: u64) -> String {
        let open = self.account_market(account, m);
        // At most MAX_NUM_ORDERS ids are held, so one of that many plus one salts is free.
        let mut salt = NEW_ORDER_SALT;
        loop {
            let id = crate::ids::client_order_id(order_id, salt);
            if open.is_none_or(|a| !a.open_client_ids.contains_key(&id)) {
                return id;
            }
            salt = salt.wrapping_add(1);
        }
    }

    /// After matching: a LIMIT GTC or LIMIT_MAKER order with quantity left rests in the book;
    /// any other order ends now, releasing what it no longer needs locked.
    fn finish_taker(
        &mut self,
        order_id: u64,
        m: usize,
        price: Option<u64>,
        target: Target,
        fok_failed: bool,
        now: UnixMillis,
    ) -> Result<(), ExchangeError> {
        let p = self.market(m)?.params;
        let o = self.orders.get((order_id - 1) as usize).ok_or(ExchangeError::Internal("taker"))?;
        let rests = !fok_failed
            && o.status != OrderStatus::ExpiredInMatch
            && o.remaining() > 0
            && (o.order_type == OrderType::LimitMaker
                || (o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc));
        if rests { self.rest(order_id, m, price) } else { self.end_taker(order_id, &p, target, now) }
    }

    /// Books the order's remainder at the back of its price level and counts it among its
    /// account's open orders, where its client order id now stays reserved.
    fn rest(&mut self, order_id: u64, m: usize, price: Option<u64>) -> Result<(), ExchangeError> {
        let o = self.orders.get((order_id - 1) as usize).ok_or(ExchangeError::Internal("taker"))?;
        let (side, rem, account, cid) = (o.side, o.remaining(), o.account, o.client_order_id.clone());
        let ms = self.markets.get_mut(m).ok_or(ExchangeError::Internal("market index"))?;
        ms.book.insert(side, price.unwrap_or(0), order_id, rem);
        self.ledger.note_changed(account);
        let am = self.accounts.entry(account).or_default().entry(m as u32).or_default();
        am.open.insert(order_id);
        am.open_client_ids.insert(cid, order_id);
        Ok(())
    }

    /// Ends an order that does not rest: sets its final status and releases what it still locks.
    fn end_taker(
        &mut self,
        order_id: u64,
        p: &MarketParams,
        target: Target,
        now: UnixMillis,
    ) -> Result<(), ExchangeError> {
        let o = self.orders.get_mut((order_id - 1) as usize).ok_or(ExchangeError::Internal("taker"))?;
        o.status = match (o.status, target) {
            (OrderStatus::ExpiredInMatch, _) => OrderStatus::ExpiredInMatch,
            (_, Target::Qty(_)) if o.remaining() == 0 => OrderStatus::Filled,
            (_, Target::Quote(q)) if o.executed_qty.units() > 0 => {
                // Filled when what is left of the quote cannot buy another step at the last price.
                let left = u128::from(q.saturating_sub(o.cummulative_quote_qty.units()));
                let last = self.trades.last().map_or(u64::MAX, |t| t.price.units());
                if left < notional(last, p.step) || left == 0 { OrderStatus::Filled } else { OrderStatus::Expired }
            }
            _ => OrderStatus::Expired,
        };
        // A quote-driven MARKET order asked for no quantity; once it ends, Binance reports the
        // quantity it bought or sold as `origQty` (clients such as ccxt read the order's amount
        // from it), and `origQuoteOrderQty` keeps the quote amount asked for.
        if matches!(target, Target::Quote(_)) {
            o.orig_qty = o.executed_qty;
        }
        o.update_time = now;
        let (account, leftover, side) = (o.account, o.locked.units(), o.side);
        o.locked = Amount::ZERO;
        self.ledger.unlock(account, p.locked_asset(side), leftover)
    }
}
