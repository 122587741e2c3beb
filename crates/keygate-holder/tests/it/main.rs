//! The holder's tools against real keygate sandboxes on port 0, each one a separate exchange,
//! with history made through real signed requests.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod check;
mod export;
mod hostile;
mod portfolio;

use keygate_auth::{IpAllowlist, Permission, Permissions, Restrictions};
use keygate_client::{Client, NewOrder};
use keygate_exchange::{Command, Deposit, Outcome};
use keygate_holder::export::{Pacer, Source};
use keygate_proto::binance::trading::Side;
use keygate_proto::{AccountId, Amount, AssetCode, Symbol};
use keygate_testkit::TestApp;
use std::sync::Arc;

/// The withdrawal address the holder's withdraw key may send to.
pub(crate) const ADDRESS: &str = "bc1qallowedaddressallowedaddressallowed00";

/// An exchange with a market maker account and a holder account whose read key the tools use.
pub(crate) struct Exchange {
    pub(crate) app: TestApp,
    pub(crate) holder: AccountId,
    pub(crate) maker: Client,
    pub(crate) holder_trade: Client,
    pub(crate) holder_withdraw: Client,
    pub(crate) read: keygate_service::CreatedKey,
}

pub(crate) fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

pub(crate) async fn fund(app: &TestApp, account: AccountId, coin: &str, amt: &str) {
    let d = Deposit { account, coin: AssetCode::parse(coin).unwrap(), network: None, amount: amount(amt) };
    let out = app.engine.submit(Command::Deposit(d), None).await.unwrap();
    assert!(matches!(out, Outcome::Deposited(_)), "{out:?}");
}

impl Exchange {
    pub(crate) async fn start() -> Self {
        Self::from(TestApp::spawn().await).await
    }

    pub(crate) async fn from(app: TestApp) -> Self {
        let maker_id = AccountId(app.account("maker").await.id);
        let holder = AccountId(app.account("holder").await.id);
        let mk = app.hmac_key("maker", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
        let maker = app.hmac_client(&mk);
        let tk = app.hmac_key("holder", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
        let wk = app
            .hmac_key(
                "holder",
                Permissions::with(&[Permission::Withdraw]),
                Restrictions {
                    ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(),
                    withdraw_addresses: vec![ADDRESS.to_owned()],
                    ..Restrictions::default()
                },
            )
            .await;
        let read = app
            .hmac_key(
                "holder",
                Permissions::default(),
                Restrictions { ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(), ..Restrictions::default() },
            )
            .await;
        fund(&app, maker_id, "BTC", "10").await;
        fund(&app, maker_id, "ETH", "100").await;
        fund(&app, maker_id, "USDT", "1000000").await;
        Self { holder_trade: app.hmac_client(&tk), holder_withdraw: app.hmac_client(&wk), maker, holder, read, app }
    }

    /// The holder buys `qty` BTC at `price` USDT from the maker (the maker's order rests, the
    /// holder's market order takes it), so both sides have a fill.
    pub(crate) async fn buy(&self, symbol: &str, qty: &str, price: &str) {
        let s = Symbol::parse(symbol).unwrap();
        self.maker.new_order(&NewOrder::limit(s.clone(), Side::Sell, amount(qty), amount(price))).await.unwrap();
        self.holder_trade.new_order(&NewOrder::market(s, Side::Buy, amount(qty))).await.unwrap();
        self.app.clock.advance_ms(1000);
    }

    /// The holder sells `qty` of the base to the maker.
    pub(crate) async fn sell(&self, symbol: &str, qty: &str, price: &str) {
        let s = Symbol::parse(symbol).unwrap();
        self.maker.new_order(&NewOrder::limit(s.clone(), Side::Buy, amount(qty), amount(price))).await.unwrap();
        self.holder_trade.new_order(&NewOrder::market(s, Side::Sell, amount(qty))).await.unwrap();
        self.app.clock.advance_ms(1000);
    }

    /// The holder withdraws, and the withdrawal completes.
    pub(crate) async fn withdraw(&self, coin: &str, amt: &str) {
        self.holder_withdraw.withdraw(&AssetCode::parse(coin).unwrap(), ADDRESS, amount(amt)).await.unwrap();
        self.app.clock.advance_ms(5000);
        let done = self.app.engine.submit(Command::AdvanceWithdrawals, None).await.unwrap();
        assert!(matches!(done, Outcome::WithdrawalsCompleted(ref v) if !v.is_empty()), "{done:?}");
    }

    /// A pacer whose sleeps move this exchange's clock (its rate-limit windows follow that clock).
    pub(crate) fn pacer(&self, max_retries: u32) -> Pacer {
        let clock = self.app.clock.clone();
        Pacer {
            sleep: Arc::new(move |d| {
                clock.advance_ms(u64::try_from(d.as_millis()).unwrap());
                Box::pin(async {})
            }),
            max_retries,
        }
    }

    pub(crate) fn source(&self, name: &str, max_retries: u32) -> Source {
        Source {
            name: name.to_owned(),
            client: self.app.hmac_client(&self.read),
            pacer: self.pacer(max_retries),
            page: 1000,
        }
    }
}
