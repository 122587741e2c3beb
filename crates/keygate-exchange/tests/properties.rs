//! Property tests: for random command sequences from a few accounts, the ledger balances after
//! every command, failed commands change nothing, and replay reproduces the state exactly.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use keygate_exchange::*;
use keygate_proto::{AccountId, Amount, UnixMillis};
use proptest::prelude::*;

fn account() -> impl Strategy<Value = AccountId> {
    (1i64..=3).prop_map(AccountId)
}

fn command() -> impl Strategy<Value = Command> {
    let symbols = prop_oneof![Just("BTCUSDT"), Just("ETHBTC")];
    prop_oneof![
        6 => place(),
        2 => cancel(symbols.clone()),
        1 => (account(), symbols).prop_map(|(a, s)| Command::CancelOpenOrders { account: a, symbol: sym(s) }),
        2 => deposit(),
        1 => withdraw(),
        1 => Just(Command::AdvanceWithdrawals),
    ]
}

/// A new order of any type on either market, now and then with a client order id of its own.
fn new_order() -> impl Strategy<Value = NewOrder> {
    place().prop_map(|c| match c {
        Command::PlaceOrder(o) => o,
        _ => unreachable!("place() makes orders"),
    })
}

fn place() -> impl Strategy<Value = Command> {
    let symbols = prop_oneof![Just("BTCUSDT"), Just("ETHBTC")];
    (
        account(),
        symbols.clone(),
        any::<bool>(),
        0u8..6,
        0u8..4,
        1u64..40,
        1u64..200,
        prop_oneof![
            Just(None),
            Just(Some(StpMode::None)),
            Just(Some(StpMode::ExpireTaker)),
            Just(Some(StpMode::ExpireBoth))
        ],
        prop_oneof![4 => Just(None), 1 => Just(Some("a")), 1 => Just(Some("b"))],
    )
        .prop_map(|(acct, s, buy, kind, tif, price_steps, qty_steps, stp, client_id)| {
            let (price, qty) = if s == "BTCUSDT" {
                (Amount::from_units((49_900 + price_steps * 10) * 100_000_000), Amount::from_units(qty_steps * 1_000))
            } else {
                (Amount::from_units(4_900_000 + price_steps * 1_000), Amount::from_units(qty_steps * 100_000))
            };
            let tif_v = [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok, TimeInForce::Gtc][tif as usize];
            let (order_type, time_in_force, price, quantity, quote) = match kind {
                0 | 1 => (OrderType::Limit, Some(tif_v), Some(price), Some(qty), None),
                2 => (OrderType::LimitMaker, None, Some(price), Some(qty), None),
                3 => (OrderType::Market, None, None, Some(qty), None),
                _ => (OrderType::Market, None, None, None, Some(Amount::from_units(qty.units().saturating_mul(500)))),
            };
            Command::PlaceOrder(NewOrder {
                account: acct,
                symbol: sym(s),
                side: if buy { Side::Buy } else { Side::Sell },
                order_type,
                time_in_force,
                quantity,
                quote_order_qty: quote,
                price,
                new_client_order_id: client_id.map(str::to_owned),
                stp_mode: stp,
            })
        })
}

fn cancel(symbols: impl Strategy<Value = &'static str>) -> impl Strategy<Value = Command> {
    (account(), symbols, 1u64..60, prop_oneof![Just(None), Just(Some("a"))]).prop_map(|(a, s, id, by_client)| {
        Command::CancelOrder {
            account: a,
            symbol: sym(s),
            order: by_client.map_or(OrderRef::Id(id), |c: &str| OrderRef::ClientId(c.to_owned())),
            new_client_order_id: None,
        }
    })
}

fn deposit() -> impl Strategy<Value = Command> {
    (account(), prop_oneof![Just("BTC"), Just("USDT"), Just("ETH")], 1u64..5_000_000_000_000).prop_map(|(a, c, u)| {
        Command::Deposit(Deposit { account: a, coin: coin(c), network: None, amount: Amount::from_units(u) })
    })
}

fn withdraw() -> impl Strategy<Value = Command> {
    (account(), 1u64..200_000_000_000, any::<bool>()).prop_map(|(a, u, limited)| {
        Command::Withdraw(Withdraw {
            account: a,
            coin: coin("USDT"),
            network: None,
            address: "TAddr".into(),
            amount: Amount::from_units(u),
            withdraw_order_id: None,
            policy: WithdrawPolicy {
                allowed_addresses: vec!["TAddr".into()],
                limit_24h: limited.then(|| (coin("USDT"), amt("300"))),
                key_id: format!("k{}", a.0),
            },
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_the_ledger_balanced_and_replay_exactly(
        cmds in prop::collection::vec((command(), 0u64..5_000), 1..120)
    ) {
        let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
        let mut log = Vec::new();
        let mut now = 1_700_000_000_000u64;
        for (cmd, dt) in cmds {
            now += dt;
            let before = ex.snapshot().unwrap();
            match ex.apply(&cmd, UnixMillis(now)) {
                Ok(_) => log.push((cmd, UnixMillis(now))),
                Err(e) => {
                    prop_assert!(!matches!(e, ExchangeError::Internal(_)), "internal error {e:?}");
                    prop_assert_eq!(&before, &ex.snapshot().unwrap(), "failed command changed state: {:?}", e);
                }
            }
            prop_assert!(ex.ledger().check_invariant().is_ok(), "{:?}", ex.ledger().check_invariant());
            // Locked balances equal what open orders and processing withdrawals hold.
            for acct in [AccountId(1), AccountId(2), AccountId(3)] {
                let open_locked: u64 = ex.open_orders(acct, None).unwrap().iter().map(|o| o.locked.units()).sum();
                let locked: u64 = ex.balances(acct).iter().map(|b| b.locked.units()).sum();
                let processing: u64 = ex
                    .withdraw_history(acct, &HistoryQuery::default(), UnixMillis(now))
                    .unwrap()
                    .iter()
                    .filter(|w| w.status == 4)
                    .map(|w| w.amount.units())
                    .sum();
                prop_assert_eq!(open_locked + processing, locked);
            }
        }
        let mut fresh = Exchange::new(ExchangeConfig::default()).unwrap();
        for (cmd, at) in &log {
            fresh.apply(cmd, *at).unwrap();
        }
        prop_assert_eq!(fresh.snapshot().unwrap(), ex.snapshot().unwrap());
        let restored = Exchange::from_snapshot(&ex.snapshot().unwrap()).unwrap();
        prop_assert_eq!(&restored, &ex);
    }

    /// An order board and open order ids kept until their account is listed as changed answer
    /// every test order the board takes exactly as the exchange does, after any history.
    #[test]
    fn a_board_answers_test_orders_as_the_exchange_does(
        steps in prop::collection::vec((command(), 0u64..5_000, new_order()), 1..120)
    ) {
        let mut ex = Exchange::new(ExchangeConfig::default()).unwrap();
        let mut board = ex.order_board(None);
        let mut kept: std::collections::BTreeMap<AccountId, OpenOrderIds> = std::collections::BTreeMap::new();
        let mut now = 1_700_000_000_000u64;
        for (cmd, dt, test) in steps {
            now += dt;
            let _ = ex.apply(&cmd, UnixMillis(now));
            let changed = ex.take_changed_accounts();
            kept.retain(|account, _| !changed.contains(*account));
            board = ex.order_board(Some(&board));
            let open = kept.entry(test.account).or_insert_with(|| ex.open_order_ids(test.account));
            prop_assert_eq!(&*open, &ex.open_order_ids(test.account), "kept open orders went stale after {:?}", cmd);
            let on_board = board.test_order(open, &test);
            let on_exchange = ex.apply(&Command::TestOrder(test.clone()), UnixMillis(now));
            match on_board {
                Some(answer) => prop_assert_eq!(answer, on_exchange, "{:?}", test),
                None => prop_assert!(test.order_type == OrderType::Market && test.quantity.is_some()),
            }
        }
    }
}
