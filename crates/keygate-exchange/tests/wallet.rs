//! Deposits, withdrawals with key policies, and wallet history rules.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;
use common::*;
use keygate_exchange::*;
use keygate_proto::{Amount, UnixMillis};

const ADDR: &str = "TXyz1111111111111111111111111111111";

fn policy(limit: Option<(&str, &str)>) -> WithdrawPolicy {
    WithdrawPolicy {
        allowed_addresses: vec![ADDR.to_owned()],
        limit_24h: limit.map(|(c, a)| (coin(c), amt(a))),
        key_id: "key-1".to_owned(),
    }
}

fn withdraw(t: &mut T, amount: &str, p: WithdrawPolicy) -> Result<WithdrawalRecord, ExchangeError> {
    let w = Withdraw {
        account: A,
        coin: coin("USDT"),
        network: None,
        address: ADDR.to_owned(),
        amount: amt(amount),
        withdraw_order_id: Some("w1".into()),
        policy: p,
    };
    match t.apply(Command::Withdraw(w))? {
        Outcome::WithdrawApplied(r) => Ok(r),
        _ => unreachable!(),
    }
}

#[test]
fn a_deposit_credits_free_balance_and_records_binance_history_fields() {
    let mut t = T::new();
    let Outcome::Deposited(d) =
        t.apply(Command::Deposit(Deposit { account: A, coin: coin("ETH"), network: None, amount: amt("2") })).unwrap()
    else {
        unreachable!()
    };
    assert_eq!((d.status, d.network.as_str(), d.confirm_times.as_str()), (1, "ETH", "1/1"));
    assert!(d.tx_id.starts_with("0x") && d.tx_id.len() == 66);
    assert_eq!(d.address, t.ex.deposit_address(A, &coin("ETH"), None).unwrap().address);
    assert_eq!(t.free(A, "ETH"), amt("2"));
    let e = t.apply(Command::Deposit(Deposit { account: A, coin: coin("DOGE"), network: None, amount: amt("1") }));
    assert_eq!(e.unwrap_err().code(), -4018);
    let e = t.apply(Command::Deposit(Deposit {
        account: A,
        coin: coin("ETH"),
        network: Some("TRX".into()),
        amount: amt("1"),
    }));
    assert_eq!(e.unwrap_err().code(), -4019);
}

#[test]
fn a_withdrawal_locks_the_amount_then_completes_with_the_fee_kept_and_the_net_sent() {
    let mut t = T::new();
    t.deposit(A, "USDT", "100");
    let r = withdraw(&mut t, "50", policy(None)).unwrap();
    assert_eq!((r.status, r.network.as_str(), r.transaction_fee), (4, "TRX", amt("1")));
    assert_eq!(r.id.len(), 32);
    assert_eq!((t.free(A, "USDT"), t.locked(A, "USDT")), (amt("50"), amt("50")));
    // Not yet: the delay (2 s) has not passed.
    let Outcome::WithdrawalsCompleted(v) = t.apply(Command::AdvanceWithdrawals).unwrap() else { unreachable!() };
    assert!(v.is_empty());
    t.now += 2_000;
    let Outcome::WithdrawalsCompleted(v) = t.apply(Command::AdvanceWithdrawals).unwrap() else { unreachable!() };
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].status, 6);
    assert!(!v[0].tx_id.is_empty() && v[0].complete_time.is_some());
    assert_eq!(v[0].net_amount(), amt("49"));
    assert_eq!((t.free(A, "USDT"), t.locked(A, "USDT")), (amt("50"), amt("0")));
    let totals = t.ex.ledger().totals(2);
    assert_eq!((totals.withdrawals, totals.fees), (amt("49").units(), amt("1").units()));
    t.check_replay();
}

#[test]
fn withdrawals_to_addresses_off_the_allowlist_or_with_an_empty_allowlist_are_refused() {
    let mut t = T::new();
    t.deposit(A, "USDT", "100");
    let mut p = policy(None);
    p.allowed_addresses = vec!["Tsomewhere-else".into()];
    let e = withdraw(&mut t, "50", p.clone()).unwrap_err();
    assert_eq!(e.code(), -4035);
    p.allowed_addresses.clear();
    assert_eq!(withdraw(&mut t, "50", p).unwrap_err(), ExchangeError::AddressNotAllowed);
}

#[test]
fn the_24h_limit_sums_the_keys_withdrawals_and_frees_up_after_24_hours() {
    let mut t = T::new();
    t.deposit(A, "USDT", "1000");
    let p = policy(Some(("USDT", "100")));
    withdraw(&mut t, "40", p.clone()).unwrap();
    withdraw(&mut t, "40", p.clone()).unwrap();
    let e = withdraw(&mut t, "30", p.clone()).unwrap_err();
    assert_eq!(
        (e.code(), e.message().as_str()),
        (-4023, "Within 24 hours, the withdrawal exceeds the maximum amount.")
    );
    withdraw(&mut t, "20", p.clone()).unwrap();
    // Another key is not limited by this key's history.
    let mut other = p.clone();
    other.key_id = "key-2".into();
    withdraw(&mut t, "20", other).unwrap();
    t.now += 24 * 3600 * 1000;
    withdraw(&mut t, "100", p).unwrap();
    t.check_replay();
}

#[test]
fn a_key_limited_in_another_asset_cannot_withdraw_this_coin() {
    let mut t = T::new();
    t.deposit(A, "USDT", "1000");
    assert_eq!(withdraw(&mut t, "40", policy(Some(("BTC", "1")))).unwrap_err().code(), -4015);
}

#[test]
fn withdrawal_amount_bounds_fee_balance_and_network_are_checked() {
    let mut t = T::new();
    t.deposit(A, "USDT", "100");
    assert_eq!(withdraw(&mut t, "5", policy(None)).unwrap_err().code(), -4022);
    assert_eq!(withdraw(&mut t, "100000000", policy(None)).unwrap_err().code(), -4023);
    assert_eq!(withdraw(&mut t, "101", policy(None)).unwrap_err().code(), -4026);
    let mut cfg = ExchangeConfig::default();
    cfg.assets[2].networks[0].withdraw_min = amt("0.5");
    cfg.assets[2].networks[1].withdraw_enable = false;
    t.ex = Exchange::new(cfg).unwrap();
    t.log.clear();
    t.deposit(A, "USDT", "100");
    assert_eq!(withdraw(&mut t, "1", policy(None)).unwrap_err().code(), -4028);
    let w = Withdraw {
        account: A,
        coin: coin("USDT"),
        network: Some("BSC".into()),
        address: ADDR.into(),
        amount: amt("20"),
        withdraw_order_id: None,
        policy: policy(None),
    };
    assert_eq!(t.apply(Command::Withdraw(w)).unwrap_err().code(), -4019);
}

#[test]
fn wallet_history_is_newest_first_filtered_paged_and_limited_to_90_days() {
    let mut t = T::new();
    for _ in 0..3 {
        t.deposit(A, "USDT", "100");
    }
    t.deposit(A, "BTC", "1");
    t.deposit(B, "BTC", "1");
    let now = UnixMillis(t.now);
    let all = t.ex.deposit_history(A, &HistoryQuery::default(), now).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].insert_time >= w[1].insert_time));
    assert_eq!(all[0].coin.as_str(), "BTC");
    let q = HistoryQuery { coin: Some(coin("USDT")), offset: Some(1), limit: Some(1), ..Default::default() };
    assert_eq!(t.ex.deposit_history(A, &q, now).unwrap().len(), 1);
    let q = HistoryQuery { status: Some(0), ..Default::default() };
    assert!(t.ex.deposit_history(A, &q, now).unwrap().is_empty());
    let q = HistoryQuery {
        start_time: Some(UnixMillis(0)),
        end_time: Some(UnixMillis(91 * 24 * 3600 * 1000)),
        ..Default::default()
    };
    assert_eq!(t.ex.deposit_history(A, &q, now).unwrap_err().code(), -4047);
    // Older than the default 90-day window: not listed.
    assert!(
        t.ex.deposit_history(A, &HistoryQuery::default(), UnixMillis(now.0 + 91 * 24 * 3600 * 1000))
            .unwrap()
            .is_empty()
    );
    withdraw(&mut t, "50", policy(None)).unwrap();
    let q = HistoryQuery { withdraw_order_id: Some("w1".into()), ..Default::default() };
    let w = t.ex.withdraw_history(A, &q, UnixMillis(t.now)).unwrap();
    assert_eq!((w.len(), w[0].amount), (1, Amount::parse("50").unwrap()));
    assert!(t.ex.withdraw_history(B, &q, UnixMillis(t.now)).unwrap().is_empty());
}
