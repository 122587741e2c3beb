//! `keygate portfolio`: balances of every vault entry, valued in one quote currency from each
//! exchange's own tickers.
//!
//! An asset is valued, in this order: as the quote itself (price 1); through its pair with the
//! quote (`ETHUSDT`, or the inverse `USDTETH`); through one intermediate asset (`BTC`, `ETH`,
//! `BNB`, `USDT`, `USDC`: `XBTC` then `BTCUSDT`, either pair possibly inverted). An asset with none
//! of these is shown as "no price" and left out of the totals, which say how many were left out.
//! Arithmetic is on integer units of 1e-8, as the exchange's amounts are.
//!
//! Entries are per key, holdings per account: two entries holding keys of one account (the
//! exchange's origin and `uid`, as [`crate::export::account_id`] names it) are counted once, under
//! the first; the second is shown as the same account.

use crate::HolderError;
use keygate_client::Client;
use keygate_proto::Amount;
use serde::Serialize;
use std::collections::BTreeMap;

/// Assets tried, in order, as a bridge when an asset has no pair with the quote.
pub const INTERMEDIATES: [&str; 5] = ["BTC", "ETH", "BNB", "USDT", "USDC"];

const UNIT: u128 = 100_000_000;

/// One asset of one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Holding {
    /// The asset.
    pub asset: String,
    /// Free plus locked.
    pub amount: Amount,
    /// The price in the quote currency, when one was found.
    pub price: Option<Amount>,
    /// `amount × price`, when priced.
    pub value: Option<Amount>,
    /// How it was priced: `quote`, `ETHUSDT`, `1/USDTETH`, `XBTC*BTCUSDT`, or `no price`.
    pub route: String,
}

/// One exchange's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExchangeHoldings {
    /// The vault entry.
    pub name: String,
    /// Non-zero holdings, by asset.
    pub holdings: Vec<Holding>,
    /// Sum of the priced values.
    pub total: Amount,
    /// Holdings left out of `total` for want of a price.
    pub unpriced: usize,
    /// Why this exchange could not be read (then `holdings` is empty).
    pub error: Option<String>,
    /// The account the key belongs to, once read.
    pub account: Option<String>,
    /// [`crate::export::key_tag`] of the key and `uid`: the same key under two origins is one
    /// account.
    pub key_tag: Option<String>,
    /// An earlier entry holds a key of the same account: these holdings are that entry's and
    /// are left out of the totals.
    pub same_account_as: Option<String>,
}

impl ExchangeHoldings {
    /// An exchange that could not be read.
    #[must_use]
    pub fn failed(name: &str, error: String) -> Self {
        Self {
            name: name.to_owned(),
            holdings: vec![],
            total: Amount::ZERO,
            unpriced: 0,
            error: Some(error),
            account: None,
            key_tag: None,
            same_account_as: None,
        }
    }
}

/// All exchanges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Portfolio {
    /// The quote currency.
    pub quote: String,
    /// Per exchange, in vault order.
    pub exchanges: Vec<ExchangeHoldings>,
    /// Per asset over every exchange that answered.
    pub by_asset: Vec<Holding>,
    /// Sum over every exchange that answered.
    pub total: Amount,
}

fn mul(a: Amount, b: Amount) -> Option<Amount> {
    let v = u128::from(a.units()) * u128::from(b.units()) / UNIT;
    u64::try_from(v).ok().map(Amount::from_units)
}

fn inv(a: Amount) -> Option<Amount> {
    if a.units() == 0 {
        return None;
    }
    u64::try_from(UNIT * UNIT / u128::from(a.units())).ok().map(Amount::from_units)
}

/// The price of `asset` in `quote` from `prices` (symbol to last price), and its route.
#[must_use]
pub fn price_of(asset: &str, quote: &str, prices: &BTreeMap<String, Amount>) -> Option<(Amount, String)> {
    let pair = |a: &str, b: &str| -> Option<(Amount, String)> {
        if a == b {
            return Some((Amount::from_units(1_0000_0000), String::new()));
        }
        if let Some(p) = prices.get(&format!("{a}{b}")).filter(|p| p.units() > 0) {
            return Some((*p, format!("{a}{b}")));
        }
        let p = prices.get(&format!("{b}{a}"))?;
        Some((inv(*p)?, format!("1/{b}{a}")))
    };
    if asset == quote {
        return Some((Amount::from_units(1_0000_0000), "quote".into()));
    }
    if let Some(direct) = pair(asset, quote) {
        return Some(direct);
    }
    for mid in INTERMEDIATES.iter().filter(|m| **m != asset && **m != quote) {
        if let (Some((p1, r1)), Some((p2, r2))) = (pair(asset, mid), pair(mid, quote)) {
            return Some((mul(p1, p2)?, format!("{r1}*{r2}")));
        }
    }
    None
}

/// Values `balances` (asset, free + locked) in `quote`. Pure.
#[must_use]
pub fn value(
    name: &str,
    balances: &[(String, Amount)],
    prices: &BTreeMap<String, Amount>,
    quote: &str,
) -> ExchangeHoldings {
    let mut holdings = Vec::new();
    let mut total = Amount::ZERO;
    let mut unpriced = 0;
    for (asset, amount) in balances.iter().filter(|(_, a)| a.units() > 0) {
        let priced = price_of(asset, quote, prices);
        let value = priced.as_ref().and_then(|(p, _)| mul(*amount, *p));
        match value {
            Some(v) => total = Amount::from_units(total.units().saturating_add(v.units())),
            None => unpriced += 1,
        }
        holdings.push(Holding {
            asset: asset.clone(),
            amount: *amount,
            price: priced.as_ref().map(|(p, _)| *p),
            value,
            route: priced.map_or_else(|| "no price".to_owned(), |(_, r)| r),
        });
    }
    holdings.sort_by(|a, b| a.asset.cmp(&b.asset));
    ExchangeHoldings {
        name: name.to_owned(),
        holdings,
        total,
        unpriced,
        error: None,
        account: None,
        key_tag: None,
        same_account_as: None,
    }
}

/// What one exchange answered: whose the key is, the balances and the last prices.
#[derive(Debug, Clone)]
pub struct Read {
    /// The account ([`crate::export::account_id`]).
    pub account: String,
    /// [`crate::export::key_tag`], when the exchange said the `uid`.
    pub key_tag: Option<String>,
    /// Asset and free + locked.
    pub balances: Vec<(String, Amount)>,
    /// Symbol to last price.
    pub prices: BTreeMap<String, Amount>,
}

/// Reads one exchange's account and balances (`GET /api/v3/account`) and last prices
/// (`GET /api/v3/ticker/price`).
///
/// # Errors
/// [`HolderError::Client`] when the exchange is down or refuses the key.
pub async fn read(client: &Client) -> Result<Read, HolderError> {
    // Read as JSON, not Binance's typed answer: an exchange that names no `uid` is still read.
    let answer: serde_json::Value = client.call(reqwest::Method::GET, "/api/v3/account", &[]).await?;
    let uid = answer["uid"].as_i64();
    let id = crate::export::account_id(client.base_url(), uid, client.api_key())?;
    let balances: Vec<keygate_proto::binance::account::Balance> = serde_json::from_value(answer["balances"].clone())
        .map_err(|e| HolderError::Invalid(format!("balances: {e}")))?;
    let balances = balances
        .iter()
        .map(|b| (b.asset.to_string(), Amount::from_units(b.free.units().saturating_add(b.locked.units()))))
        .collect();
    let prices = client.ticker_prices().await?.into_iter().map(|p| (p.symbol.to_string(), p.price)).collect();
    Ok(Read { account: id, key_tag: uid.map(|u| crate::export::key_tag(client.api_key(), u)), balances, prices })
}

/// One entry's holdings valued in `quote`, or why its exchange could not be read.
pub async fn holdings(name: &str, client: &Client, quote: &str) -> ExchangeHoldings {
    match read(client).await {
        Ok(r) => ExchangeHoldings {
            account: Some(r.account),
            key_tag: r.key_tag,
            ..value(name, &r.balances, &r.prices, quote)
        },
        Err(e) => ExchangeHoldings::failed(name, e.to_string()),
    }
}

/// Gathers per-exchange results (errors included) into a portfolio with totals per asset; an
/// account read through two entries counts once, under the first.
#[must_use]
pub fn combine(quote: &str, mut exchanges: Vec<ExchangeHoldings>) -> Portfolio {
    let mut first: BTreeMap<String, String> = BTreeMap::new();
    for e in &mut exchanges {
        let ids: Vec<String> = [e.account.clone(), e.key_tag.clone()].into_iter().flatten().collect();
        if let Some(name) = ids.iter().find_map(|id| first.get(id)) {
            e.same_account_as = Some(name.clone());
            continue;
        }
        for id in ids {
            first.insert(id, e.name.clone());
        }
    }
    let mut by: BTreeMap<String, Holding> = BTreeMap::new();
    let mut total = Amount::ZERO;
    for e in exchanges.iter().filter(|e| e.error.is_none() && e.same_account_as.is_none()) {
        total = Amount::from_units(total.units().saturating_add(e.total.units()));
        for h in &e.holdings {
            let slot = by.entry(h.asset.clone()).or_insert_with(|| Holding {
                asset: h.asset.clone(),
                amount: Amount::ZERO,
                price: None,
                value: Some(Amount::ZERO),
                route: String::new(),
            });
            slot.amount = Amount::from_units(slot.amount.units().saturating_add(h.amount.units()));
            slot.value = match (slot.value, h.value) {
                (Some(a), Some(b)) => Some(Amount::from_units(a.units().saturating_add(b.units()))),
                _ => None,
            };
            if slot.route.is_empty() {
                slot.route.clone_from(&h.route);
                slot.price = h.price;
            }
        }
    }
    Portfolio { quote: quote.to_owned(), exchanges, by_asset: by.into_values().collect(), total }
}

/// An SVG bar chart of the allocation (share of the total per asset), drawn with plotters' SVG
/// backend: one bar and one label per priced asset, largest first.
///
/// # Errors
/// [`HolderError::Invalid`] when plotters fails to draw.
pub fn allocation_svg(p: &Portfolio) -> Result<String, HolderError> {
    use plotters::prelude::*;
    let mut priced: Vec<&Holding> = p.by_asset.iter().filter(|h| h.value.is_some_and(|v| v.units() > 0)).collect();
    priced.sort_by(|a, b| b.value.cmp(&a.value).then(a.asset.cmp(&b.asset)));
    let total = u128::from(p.total.units().max(1));
    let (w, row) = (640u32, 28u32);
    let h = 60 + row * u32::try_from(priced.len()).unwrap_or(0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        let fail = |e: &dyn std::fmt::Display| HolderError::Invalid(format!("chart: {e}"));
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let font = ("sans-serif", 14).into_font();
        let title = format!("Allocation in {} (total {})", p.quote, p.total);
        root.draw(&Text::new(title, (16, 14), ("sans-serif", 18).into_font())).map_err(|e| fail(&e))?;
        for (i, hd) in priced.iter().enumerate() {
            let share_bp = u128::from(hd.value.map_or(0, Amount::units)) * 10_000 / total;
            let bar = i32::try_from(u128::from(w - 240) * share_bp / 10_000).unwrap_or(0);
            let y = 44 + i32::try_from(row).unwrap_or(28) * i32::try_from(i).unwrap_or(0);
            let color = Palette99::pick(i).to_rgba();
            root.draw(&Text::new(hd.asset.clone(), (16, y + 4), font.clone())).map_err(|e| fail(&e))?;
            root.draw(&Rectangle::new([(90, y), (90 + bar.max(1), y + 20)], color.filled())).map_err(|e| fail(&e))?;
            let label = format!("{}.{:02} %", share_bp / 100, share_bp % 100);
            root.draw(&Text::new(label, (96 + bar, y + 4), font.clone())).map_err(|e| fail(&e))?;
        }
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn assets_are_priced_directly_inversely_through_a_bridge_or_not_at_all() {
        let prices: BTreeMap<String, Amount> = [("BTCUSDT", "50000"), ("ETHBTC", "0.05"), ("USDTEUR", "0.5")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), a(v)))
            .collect();
        assert_eq!(price_of("BTC", "USDT", &prices).unwrap(), (a("50000"), "BTCUSDT".to_owned()));
        assert_eq!(price_of("ETH", "USDT", &prices).unwrap(), (a("2500"), "ETHBTC*BTCUSDT".to_owned()));
        assert_eq!(price_of("EUR", "USDT", &prices).unwrap(), (a("2"), "1/USDTEUR".to_owned()));
        assert_eq!(price_of("USDT", "USDT", &prices).unwrap().1, "quote");
        assert!(price_of("DOGE", "USDT", &prices).is_none());
        let e =
            value("x", &[("BTC".into(), a("0.5")), ("DOGE".into(), a("10")), ("USDT".into(), a("1"))], &prices, "USDT");
        assert_eq!(e.total, a("25001"));
        assert_eq!(e.unpriced, 1);
        assert_eq!(e.holdings[1].route, "no price");
    }
}
