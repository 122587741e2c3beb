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
    let place = (
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
    )
        .prop_map(|(acct, s, buy, kind, tif, price_steps, qty_steps, stp)| {
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
                new_client_order_id: None,
                stp_mode: stp,
            })
        });
    let cancel = (account(), symbols.clone(), 1u64..60).prop_map(|(a, s, id)| Command::CancelOrder {
        account: a,
        symbol: sym(s),
        order: OrderRef::Id(id),
        new_client_order_id: None,
    });
    let cancel_all = (account(), symbols).prop_map(|(a, s)| Command::CancelOpenOrders { account: a, symbol: sym(s) });
    let deposit = (account(), prop_oneof![Just("BTC"), Just("USDT"), Just("ETH")], 1u64..5_000_000_000_000).prop_map(
        |(a, c, u)| {
            Command::Deposit(Deposit { account: a, coin: coin(c), network: None, amount: Amount::from_units(u) })
        },
    );
    let withdraw = (account(), 1u64..200_000_000_000, any::<bool>()).prop_map(|(a, u, limited)| {
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
    });
    prop_oneof![
        6 => place,
        2 => cancel,
        1 => cancel_all,
        2 => deposit,
        1 => withdraw,
        1 => Just(Command::AdvanceWithdrawals),
    ]
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
}
