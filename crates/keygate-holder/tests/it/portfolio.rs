//! `portfolio`: totals equal the sum of balances times the exchanges' ticker prices; an exchange
//! that is down is reported and the others still shown; an account read through two entries
//! counts once.

use super::{Exchange, fund};
use keygate_auth::{Permissions, Restrictions};
use keygate_holder::portfolio;
use std::collections::BTreeMap;

#[tokio::test]
async fn totals_are_balances_times_ticker_prices_once_per_account_and_a_dead_exchange_is_reported() {
    let (alpha, beta) = tokio::join!(Exchange::start(), Exchange::start());
    for (x, btc_price) in [(&alpha, "50000"), (&beta, "60000")] {
        fund(&x.app, x.holder, "USDT", "10000").await;
        x.buy("BTCUSDT", "0.1", btc_price).await;
        x.buy("ETHBTC", "1", "0.05").await;
    }
    let mut results = Vec::new();
    let mut expected_total: u128 = 0;
    for (name, x) in [("alpha", &alpha), ("beta", &beta)] {
        let client = x.app.hmac_client(&x.read);
        // Independently: every balance times its ticker against USDT.
        let tickers: BTreeMap<String, u128> = client
            .ticker_prices()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.symbol.to_string(), u128::from(p.price.units())))
            .collect();
        let account = client.account().await.unwrap();
        for b in &account.balances {
            let amt = u128::from(b.free.units() + b.locked.units());
            let v = match b.asset.as_str() {
                _ if amt == 0 => 0,
                "USDT" => amt,
                "BTC" => amt * tickers["BTCUSDT"] / 100_000_000,
                "ETH" => amt * tickers["ETHUSDT"] / 100_000_000,
                other => panic!("unexpected asset {other}"),
            };
            expected_total += v;
        }
        results.push(portfolio::holdings(name, &client, "USDT").await);
    }
    // Another key of alpha's account, as a second vault entry would hold it.
    let again = alpha.app.hmac_key("holder", Permissions::default(), Restrictions::default()).await;
    results.push(portfolio::holdings("alpha-bot", &alpha.app.hmac_client(&again), "USDT").await);
    // alpha's read key again, under the host name localhost: the same account.
    let secret = alpha.read.secret.as_ref().unwrap().expose().to_owned();
    let clock = alpha.app.clock.clone();
    let localhost = keygate_client::Client::new(
        alpha.app.base_url.replace("127.0.0.1", "localhost"),
        alpha.read.key.api_key.clone(),
        keygate_client::Signer::hmac(&secret),
        std::sync::Arc::new(move || keygate_service::Clock::now(&*clock).as_millis()),
    );
    results.push(portfolio::holdings("alpha-localhost", &localhost, "USDT").await);
    let down = keygate_client::Client::new(
        "http://127.0.0.1:9",
        "kg_x",
        keygate_client::Signer::hmac("kgs_x"),
        std::sync::Arc::new(|| keygate_testkit::START),
    );
    results.push(portfolio::holdings("down", &down, "USDT").await);
    let p = portfolio::combine("USDT", results);
    assert_eq!(u128::from(p.total.units()), expected_total, "alpha's account counted once");
    assert_eq!(p.exchanges[2].same_account_as.as_deref(), Some("alpha"));
    assert_eq!(p.exchanges[2].holdings, p.exchanges[0].holdings);
    assert_eq!(p.exchanges[3].same_account_as.as_deref(), Some("alpha"), "{:?}", p.exchanges[3]);
    assert!(p.exchanges[4].error.as_deref().is_some_and(|e| e.contains("Connection refused")), "{:?}", p.exchanges[4]);
    assert_eq!(p.exchanges[0].holdings.iter().find(|h| h.asset == "ETH").unwrap().route, "ETHUSDT");
    assert_eq!(p.by_asset.iter().map(|h| h.asset.as_str()).collect::<Vec<_>>(), vec!["BTC", "ETH", "USDT"]);
    let svg = portfolio::allocation_svg(&p).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("\nBTC\n</text>") && svg.contains(" %\n</text>"), "{svg}");
    alpha.app.shutdown().await;
    beta.app.shutdown().await;
}
