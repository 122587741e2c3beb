//! Target `engine`: sequences of commands applied to a `keygate_exchange::Exchange`.
//!
//! The first bytes tweak the default config (fees of 0, 0.1 % or 100 %, a small
//! `MAX_NUM_ORDERS`, an instant or slow withdrawal delay); the rest is read as up to 200 commands:
//! orders of every type with every time in force and self-trade-prevention mode (prices near the
//! reference or arbitrary, quantities in steps or arbitrary, valid or broken parameter
//! combinations, client ids valid, invalid or repeated), tests, cancels by id and client id,
//! cancel-all, deposits and withdrawals of any coin and network (including unknown ones, limits
//! and address policies), advancing withdrawals, read-only queries with arbitrary arguments, and
//! time steps.
//!
//! Properties after every step: no panic; no `Internal` error; a refused command, and any test
//! order, leaves the exchange exactly as it was; the ledger balances (`check_invariant`); each
//! account's locked balance of each asset is exactly what its open orders and processing
//! withdrawals hold; each book level's quantity is the remaining quantity of the open orders at
//! that price, and the book is never crossed; a placed order's fills add up to its executed
//! quantity and quote, which never exceed what it asked for; a FOK order fills completely or not
//! at all, a LIMIT_MAKER never fills on arrival, and only GTC limit orders rest. At the end,
//! replaying the successful commands into a fresh exchange and restoring a snapshot both give the
//! same exchange.

use crate::Input;
use keygate_exchange::{
    Command, Deposit, Exchange, ExchangeConfig, ExchangeError, HistoryQuery, MarketSpec, NewOrder, OrderQuery,
    OrderRef, OrderStatus, OrderType, Outcome, Side, StpMode, TimeInForce, TradeQuery, Withdraw, WithdrawPolicy,
};
use keygate_proto::{AccountId, Amount, AssetCode, Symbol, UnixMillis};
use std::collections::BTreeMap;

/// Most commands one input applies.
const MAX_COMMANDS: usize = 200;
const ACCOUNTS: [AccountId; 4] = [AccountId(1), AccountId(2), AccountId(3), AccountId(4)];

fn name<T>(parse: impl Fn(&str) -> Result<T, keygate_proto::NameError>, s: &str) -> T {
    match parse(s) {
        Ok(v) => v,
        Err(e) => panic!("fixed name {s:?} refused: {e}"),
    }
}

fn config(input: &mut Input<'_>) -> ExchangeConfig {
    let mut cfg = ExchangeConfig::default();
    let flags = input.byte();
    let fee = |bits: u8| Amount::from_units([0, 100_000, 100_000_000, 50_000][usize::from(bits & 3)]);
    for m in &mut cfg.markets {
        m.maker_fee = fee(flags);
        m.taker_fee = fee(flags >> 2);
        if flags & 0x10 != 0 {
            m.max_num_orders = 2;
        }
    }
    if flags & 0x20 != 0 {
        cfg.withdraw_delay_ms = 0;
    }
    if flags & 0x40 != 0 {
        // Withdrawals all on one network with a fee of zero.
        for a in &mut cfg.assets {
            for n in &mut a.networks {
                n.withdraw_fee = Amount::ZERO;
            }
        }
    }
    cfg
}

/// What the driver remembers to aim later commands at existing things.
#[derive(Default)]
struct Memory {
    orders: u64,
    client_ids: Vec<String>,
}

fn account(input: &mut Input<'_>) -> AccountId {
    *input.choose(&ACCOUNTS)
}

fn market<'c>(input: &mut Input<'_>, cfg: &'c ExchangeConfig) -> (Symbol, Option<&'c MarketSpec>) {
    let i = input.index(cfg.markets.len() + 1);
    match cfg.markets.get(i) {
        Some(m) => (m.symbol.clone(), Some(m)),
        None => (name(Symbol::parse, "DOGEUSDT"), None),
    }
}

fn price(input: &mut Input<'_>, spec: Option<&MarketSpec>) -> Amount {
    let Some(spec) = spec else { return Amount::from_units(input.u64()) };
    let tick = spec.tick_size.units().max(1);
    match input.byte() % 8 {
        0 => Amount::from_units(input.u64()),
        1 => Amount::from_units(spec.reference_price.units() + u64::from(input.byte())),
        k => {
            let scale = [1i128, 3, 50, 1000, 1, 2][usize::from(k - 2)];
            let offset = i128::from(input.byte() as i8) * scale;
            let steps = (i128::from(spec.reference_price.units() / tick) + offset).max(1);
            Amount::from_units(u64::try_from(steps).unwrap_or(1).saturating_mul(tick))
        }
    }
}

fn quantity(input: &mut Input<'_>, spec: Option<&MarketSpec>) -> Amount {
    let Some(spec) = spec else { return Amount::from_units(input.u64()) };
    let step = spec.step_size.units().max(1);
    match input.byte() % 8 {
        0 => Amount::from_units(input.u64()),
        1 => Amount::from_units(u64::from(input.u32())),
        2 => spec.max_qty,
        _ => {
            let min_steps = spec.min_qty.units().div_ceil(step).max(1);
            Amount::from_units((min_steps + u64::from(input.u16() % 2000)).saturating_mul(step))
        }
    }
}

fn quote(input: &mut Input<'_>, spec: Option<&MarketSpec>) -> Amount {
    match (input.byte() % 4, spec) {
        (0, _) | (_, None) => Amount::from_units(input.u64()),
        (_, Some(spec)) => Amount::from_units(spec.min_notional.units().saturating_mul(1 + u64::from(input.byte()))),
    }
}

fn client_id(input: &mut Input<'_>, memory: &Memory) -> Option<String> {
    match input.byte() % 8 {
        0 => Some(String::new()),
        1 => Some("x".repeat(37)),
        2 => Some("bad id".to_owned()),
        3 => Some((*input.choose(&["a", "b", "c.d", "e-f_g:h/i"])).to_owned()),
        4 if !memory.client_ids.is_empty() => Some(input.choose(&memory.client_ids).clone()),
        _ => None,
    }
}

fn new_order(input: &mut Input<'_>, cfg: &ExchangeConfig, memory: &Memory) -> NewOrder {
    let account = account(input);
    let (symbol, spec) = market(input, cfg);
    let shape = input.byte();
    let side = if shape & 1 == 0 { Side::Buy } else { Side::Sell };
    let order_type =
        [OrderType::Limit, OrderType::Market, OrderType::LimitMaker, OrderType::Limit][usize::from(shape >> 1 & 3)];
    let tif = [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok, TimeInForce::Gtc][usize::from(shape >> 3 & 3)];
    let by_quote = shape & 0x20 != 0;
    // Mostly the parameters the type needs; sometimes any combination.
    let (time_in_force, price, quantity, quote_order_qty) = if shape & 0xC0 == 0xC0 {
        let bits = input.byte();
        (
            (bits & 1 != 0).then_some(tif),
            (bits & 2 != 0).then(|| price(input, spec)),
            (bits & 4 != 0).then(|| quantity(input, spec)),
            (bits & 8 != 0).then(|| quote(input, spec)),
        )
    } else {
        match order_type {
            OrderType::Limit => (Some(tif), Some(price(input, spec)), Some(quantity(input, spec)), None),
            OrderType::LimitMaker => (None, Some(price(input, spec)), Some(quantity(input, spec)), None),
            OrderType::Market if by_quote => (None, None, None, Some(quote(input, spec))),
            OrderType::Market => (None, None, Some(quantity(input, spec)), None),
        }
    };
    let stp = match input.byte() % 6 {
        0 => Some(StpMode::None),
        1 => Some(StpMode::ExpireTaker),
        2 => Some(StpMode::ExpireMaker),
        3 => Some(StpMode::ExpireBoth),
        _ => None,
    };
    NewOrder {
        account,
        symbol,
        side,
        order_type,
        time_in_force,
        quantity,
        quote_order_qty,
        price,
        new_client_order_id: client_id(input, memory),
        stp_mode: stp,
    }
}

fn coin_and_network(input: &mut Input<'_>, cfg: &ExchangeConfig) -> (AssetCode, Option<String>) {
    let i = input.index(cfg.assets.len() + 1);
    let Some(asset) = cfg.assets.get(i) else { return (name(AssetCode::parse, "DOGE"), None) };
    let network = match input.byte() % 4 {
        0 => Some("NOPE".to_owned()),
        1 => asset.networks.get(input.index(asset.networks.len().max(1))).map(|n| n.network.clone()),
        _ => None,
    };
    (asset.coin.clone(), network)
}

fn whole(input: &mut Input<'_>) -> Amount {
    match input.byte() % 4 {
        0 => Amount::from_units(input.u64()),
        1 => Amount::from_units(u64::from(input.u32())),
        _ => Amount::from_units(100_000_000u64.saturating_mul(1 + u64::from(input.u16()))),
    }
}

fn command(input: &mut Input<'_>, cfg: &ExchangeConfig, memory: &Memory) -> Option<Command> {
    Some(match input.byte() % 16 {
        0..=5 => Command::PlaceOrder(new_order(input, cfg, memory)),
        6 => Command::TestOrder(new_order(input, cfg, memory)),
        7 | 8 => {
            let (symbol, _) = market(input, cfg);
            Command::CancelOrder {
                account: account(input),
                symbol,
                order: OrderRef::Id(input.below(memory.orders + 2)),
                new_client_order_id: client_id(input, memory),
            }
        }
        9 => {
            let (symbol, _) = market(input, cfg);
            let account = account(input);
            let cid = client_id(input, memory).unwrap_or_default();
            Command::CancelOrder { account, symbol, order: OrderRef::ClientId(cid), new_client_order_id: None }
        }
        10 => {
            let (symbol, _) = market(input, cfg);
            Command::CancelOpenOrders { account: account(input), symbol }
        }
        11 | 12 => {
            let account = account(input);
            let (coin, network) = coin_and_network(input, cfg);
            Command::Deposit(Deposit { account, coin, network, amount: whole(input) })
        }
        13 => {
            let account = account(input);
            let (coin, network) = coin_and_network(input, cfg);
            let flags = input.byte();
            let limit_coin = if flags & 2 != 0 { name(AssetCode::parse, "USDT") } else { coin.clone() };
            Command::Withdraw(Withdraw {
                account,
                coin,
                network,
                address: (if flags & 4 != 0 { "elsewhere" } else { "addr1" }).to_owned(),
                amount: whole(input),
                withdraw_order_id: (flags & 8 != 0).then(|| "w1".to_owned()),
                policy: WithdrawPolicy {
                    allowed_addresses: vec!["addr1".to_owned()],
                    limit_24h: (flags & 1 != 0).then(|| (limit_coin, whole(input))),
                    key_id: (if flags & 16 != 0 { "k1" } else { "k2" }).to_owned(),
                },
            })
        }
        14 => Command::AdvanceWithdrawals,
        _ => return None,
    })
}

/// Read-only queries with fuzz-chosen arguments: they may refuse, never panic.
fn queries(input: &mut Input<'_>, ex: &Exchange, now: UnixMillis) {
    let cfg = ex.config().clone();
    let (symbol, _) = market(input, &cfg);
    let account = account(input);
    let t = |input: &mut Input<'_>| match input.byte() % 5 {
        0 => None,
        1 => Some(UnixMillis(input.u64())),
        // The far end of time, where interval arithmetic overflows.
        2 => Some(UnixMillis(u64::MAX - u64::from(input.u32()) * u64::from(input.byte()))),
        _ => Some(UnixMillis(now.0.saturating_sub(u64::from(input.u32())))),
    };
    let limit = |input: &mut Input<'_>| match input.byte() % 4 {
        0 => None,
        1 => Some(input.u32()),
        _ => Some(u32::from(input.byte())),
    };
    let interval = *input.choose(&[
        "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M", "2y",
    ]);
    let (start, end, l) = (t(input), t(input), limit(input));
    let _ = ex.klines(&symbol, interval, start, end, l, now);
    let _ = ex.ticker_24h(&symbol, now);
    let _ = ex.avg_price(&symbol, now);
    let _ = ex.book_ticker(&symbol);
    let _ = ex.last_price(&symbol);
    let _ = ex.recent_trades(&symbol, limit(input));
    let _ = ex.depth(&symbol, limit(input));
    let oq = OrderQuery {
        order_id: (input.bool()).then(|| input.u64() % 50),
        start_time: t(input),
        end_time: t(input),
        limit: limit(input),
    };
    let _ = ex.all_orders(account, &symbol, &oq);
    let tq = TradeQuery {
        order_id: input.bool().then(|| input.u64() % 50),
        start_time: t(input),
        end_time: t(input),
        from_id: input.bool().then(|| input.u64() % 50),
        limit: limit(input),
    };
    let _ = ex.my_trades(account, &symbol, &tq);
    let hq = HistoryQuery {
        coin: None,
        status: input.bool().then(|| input.byte() % 8),
        start_time: t(input),
        end_time: t(input),
        offset: input.bool().then(|| input.u32()),
        limit: limit(input),
        withdraw_order_id: input.bool().then(|| "w1".to_owned()),
    };
    let _ = ex.withdraw_history(account, &hq, now);
    let _ = ex.deposit_history(account, &hq, now);
    let _ = ex.order(account, &symbol, &OrderRef::Id(input.u64() % 50));
}

/// Runs the target on one input.
pub fn run(data: &[u8]) {
    let mut input = Input::new(data);
    let cfg = config(&mut input);
    let Ok(mut ex) = Exchange::new(cfg.clone()) else { panic!("the tweaked default config is invalid") };
    let mut memory = Memory::default();
    let mut now = 1_700_000_000_000u64;
    let mut log: Vec<(Command, UnixMillis)> = Vec::new();
    // Accounts 1 to 3 start funded in every asset so that most orders reach the book; account 4
    // starts empty.
    for (i, acct) in ACCOUNTS[..3].iter().enumerate() {
        for asset in &cfg.assets {
            let whole = [1_000u64, 100_000, 100_000_000][i];
            let amount = Amount::from_units(whole * 100_000_000);
            let cmd = Command::Deposit(Deposit { account: *acct, coin: asset.coin.clone(), network: None, amount });
            if let Err(e) = ex.apply(&cmd, UnixMillis(now)) {
                panic!("initial deposit refused: {e:?}");
            }
            log.push((cmd, UnixMillis(now)));
        }
    }
    for _ in 0..MAX_COMMANDS {
        if input.is_empty() {
            break;
        }
        // Time mostly moves forward a little, sometimes by hours, sometimes "backwards" (the
        // engine keeps its own clock monotonic).
        let at = match input.byte() % 8 {
            0 => now.saturating_sub(u64::from(input.u16())),
            1 => now + input.below(3_600_000),
            _ => now + u64::from(input.byte()) * 10,
        };
        now = now.max(at);
        let Some(cmd) = command(&mut input, &cfg, &memory) else {
            queries(&mut input, &ex, UnixMillis(now.max(ex.clock().0)));
            continue;
        };
        let before = ex.clone();
        // What the engine's read side answers for a test order, from a board of this state.
        let on_board = match &cmd {
            Command::TestOrder(o) => ex.order_board(None).test_order(&ex.open_order_ids(o.account), o),
            _ => None,
        };
        let result = ex.apply(&cmd, UnixMillis(at));
        if let Some(answer) = on_board {
            assert!(answer == result, "the board answered {answer:?}, the exchange {result:?}, for {cmd:?}");
        }
        match &result {
            Err(e) => {
                assert!(!matches!(e, ExchangeError::Internal(_)), "internal error {e:?} for {cmd:?}");
                assert!(ex == before, "refused command {cmd:?} ({e:?}) changed the exchange");
            }
            Ok(out) => {
                if matches!(cmd, Command::TestOrder(_)) {
                    assert!(ex == before, "a test order changed the exchange");
                } else {
                    log.push((cmd.clone(), UnixMillis(at)));
                }
                check_outcome(&cmd, out, &mut memory);
            }
        }
        check_state(&ex);
    }
    let mut fresh = match Exchange::new(cfg) {
        Ok(ex) => ex,
        Err(e) => panic!("{e}"),
    };
    for (cmd, at) in &log {
        if let Err(e) = fresh.apply(cmd, *at) {
            panic!("replaying {cmd:?} failed: {e:?}");
        }
    }
    assert!(fresh == ex, "replay does not reproduce the exchange");
    let restored = ex.snapshot().and_then(|s| Exchange::from_snapshot(&s));
    assert!(restored.as_ref() == Ok(&ex), "snapshot round trip differs: {:?}", restored.err());
}

fn check_outcome(cmd: &Command, out: &Outcome, memory: &mut Memory) {
    let Outcome::Placed(placed) = out else { return };
    let Command::PlaceOrder(req) = cmd else { panic!("placed by {cmd:?}") };
    let o = &placed.order;
    memory.orders = memory.orders.max(o.order_id);
    if memory.client_ids.len() < 16 {
        memory.client_ids.push(o.client_order_id.clone());
    }
    let qty: u64 = placed.fills.iter().map(|f| f.qty.units()).sum();
    let quote: u128 =
        placed.fills.iter().map(|f| u128::from(f.price.units()) * u128::from(f.qty.units()) / 100_000_000).sum();
    assert_eq!(qty, o.executed_qty.units(), "fills do not add up to the executed quantity");
    assert_eq!(quote, u128::from(o.cummulative_quote_qty.units()), "fills do not add up to the quote");
    if o.orig_qty.units() > 0 {
        assert!(o.executed_qty <= o.orig_qty, "over-filled: {o:?}");
    } else {
        assert!(o.cummulative_quote_qty <= o.orig_quote_order_qty, "spent more quote than asked: {o:?}");
    }
    if let Some(limit) = req.price {
        for f in &placed.fills {
            let ok = match req.side {
                Side::Buy => f.price <= limit,
                Side::Sell => f.price >= limit,
            };
            assert!(ok, "filled at {} beyond the limit {limit}", f.price);
        }
    }
    if o.time_in_force == TimeInForce::Fok
        && o.order_type == OrderType::Limit
        && o.status != OrderStatus::ExpiredInMatch
    {
        assert!(
            (o.status == OrderStatus::Filled) || (o.status == OrderStatus::Expired && placed.fills.is_empty()),
            "FOK neither filled nor killed: {o:?}"
        );
    }
    if o.order_type == OrderType::LimitMaker {
        assert!(placed.fills.is_empty(), "LIMIT_MAKER filled on arrival");
    }
    if o.status.is_open() {
        assert!(
            o.order_type == OrderType::LimitMaker
                || (o.order_type == OrderType::Limit && o.time_in_force == TimeInForce::Gtc),
            "an order that may not rest is open: {o:?}"
        );
        assert!(o.remaining() > 0);
    } else {
        assert_eq!(o.locked, Amount::ZERO, "a finished order still locks funds");
    }
}

fn check_state(ex: &Exchange) {
    if let Err(v) = ex.ledger().check_invariant() {
        panic!("{v}");
    }
    let cfg = ex.config();
    let assets: Vec<&AssetCode> = cfg.assets.iter().map(|a| &a.coin).collect();
    // (symbol, side, price) -> remaining quantity of open orders.
    let mut levels: BTreeMap<(String, bool, u64), u64> = BTreeMap::new();
    for acct in ACCOUNTS {
        let mut held: BTreeMap<&AssetCode, u64> = BTreeMap::new();
        let open = match ex.open_orders(acct, None) {
            Ok(open) => open,
            Err(e) => panic!("{e:?}"),
        };
        for o in open {
            assert!(o.status.is_open(), "closed order listed as open: {o:?}");
            let Some(spec) = cfg.market(&o.symbol) else { panic!("order on unknown symbol") };
            let asset = if o.side == Side::Buy { &spec.quote } else { &spec.base };
            *held.entry(asset).or_default() += o.locked.units();
            *levels.entry((o.symbol.to_string(), o.side == Side::Buy, o.price.units())).or_default() += o.remaining();
        }
        let processing = ex
            .withdraw_history(acct, &HistoryQuery { status: Some(4), ..HistoryQuery::default() }, ex.clock())
            .unwrap_or_default();
        for w in processing {
            *held.entry(assets.iter().copied().find(|a| **a == w.coin).unwrap_or(&w.coin)).or_default() +=
                w.amount.units();
        }
        for b in ex.balances(acct) {
            let expected = held.get(&b.asset).copied().unwrap_or(0);
            assert_eq!(
                b.locked.units(),
                expected,
                "{acct:?} {} locked differs from its orders and withdrawals",
                b.asset
            );
        }
    }
    for m in &cfg.markets {
        let depth = match ex.depth(&m.symbol, Some(5000)) {
            Ok(d) => d,
            Err(e) => panic!("{e:?}"),
        };
        for (side, book) in [(true, &depth.bids), (false, &depth.asks)] {
            for (price, qty) in book {
                let key = (m.symbol.to_string(), side, price.units());
                assert_eq!(levels.remove(&key), Some(qty.units()), "book level {key:?} differs from open orders");
            }
        }
        if let (Some((bid, _)), Some((ask, _))) = (depth.bids.first(), depth.asks.first()) {
            assert!(bid < ask, "{} book crossed: bid {bid} >= ask {ask}", m.symbol);
        }
    }
    assert!(levels.is_empty(), "open orders missing from the book: {levels:?}");
}
