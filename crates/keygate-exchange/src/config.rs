//! Assets, networks and markets of the sandbox exchange, with Binance's filters.
//!
//! The config is data, loaded from TOML (decimals as strings, like Binance prints them) or taken
//! from [`ExchangeConfig::default`], and is validated once so that the engine can rely on it: in
//! particular every `price * quantity` is exact in eight decimals.

use keygate_proto::{Amount, AssetCode, Symbol};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Default delay between applying a withdrawal and completing it, in milliseconds.
pub const DEFAULT_WITHDRAW_DELAY_MS: u64 = 2_000;

/// The whole exchange: which coins exist and which markets trade them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// The coins, with their deposit/withdrawal networks.
    pub assets: Vec<AssetSpec>,
    /// The spot markets.
    pub markets: Vec<MarketSpec>,
    /// How long a withdrawal stays PROCESSING before `AdvanceWithdrawals` completes it.
    #[serde(default = "default_withdraw_delay")]
    pub withdraw_delay_ms: u64,
}

fn default_withdraw_delay() -> u64 {
    DEFAULT_WITHDRAW_DELAY_MS
}

/// One coin, as `capital/config/getall` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    /// The coin code, e.g. `BTC`.
    pub coin: AssetCode,
    /// The human name, e.g. `Bitcoin`.
    pub name: String,
    /// The networks the coin moves on; the first withdraw-enabled one is the default.
    pub networks: Vec<NetworkSpec>,
}

/// One network of a coin, with Binance's fee and limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// The network code, e.g. `BTC`, `ETH`, `BSC`, `TRX`.
    pub network: String,
    /// Fee taken from each withdrawal's amount.
    pub withdraw_fee: Amount,
    /// Smallest withdrawal amount.
    pub withdraw_min: Amount,
    /// Largest withdrawal amount.
    pub withdraw_max: Amount,
    /// Whether deposits are credited on this network.
    pub deposit_enable: bool,
    /// Whether withdrawals are accepted on this network.
    pub withdraw_enable: bool,
}

/// One spot market with Binance's filters and commission rates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketSpec {
    /// The symbol, e.g. `BTCUSDT`.
    pub symbol: Symbol,
    /// The asset bought and sold.
    pub base: AssetCode,
    /// The asset prices are quoted in.
    pub quote: AssetCode,
    /// PRICE_FILTER tickSize: prices are multiples of it.
    pub tick_size: Amount,
    /// PRICE_FILTER minPrice.
    pub min_price: Amount,
    /// PRICE_FILTER maxPrice.
    pub max_price: Amount,
    /// LOT_SIZE stepSize: quantities are multiples of it (MARKET_LOT_SIZE uses it too).
    pub step_size: Amount,
    /// LOT_SIZE minQty.
    pub min_qty: Amount,
    /// LOT_SIZE maxQty.
    pub max_qty: Amount,
    /// MARKET_LOT_SIZE minQty.
    pub market_min_qty: Amount,
    /// MARKET_LOT_SIZE maxQty.
    pub market_max_qty: Amount,
    /// NOTIONAL minNotional.
    pub min_notional: Amount,
    /// NOTIONAL maxNotional.
    pub max_notional: Amount,
    /// Maker commission as a fraction (`0.001` = 0.1 %).
    pub maker_fee: Amount,
    /// Taker commission as a fraction.
    pub taker_fee: Amount,
    /// MAX_NUM_ORDERS: open orders per account on this market.
    pub max_num_orders: u32,
    /// The price the simulated market maker quotes around.
    pub reference_price: Amount,
    /// Typical daily volatility of the simulated market, in basis points (250 = 2.5 % a day):
    /// how far its seeded random walk, and so its generated history, moves. Default 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_volatility_bps: Option<u32>,
    /// Typical daily volume of the simulated market, in the base asset: what its generated
    /// history trades and what the simulated taker flow aims at. Default: two million minimum
    /// notionals a day at the reference price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_volume: Option<Amount>,
}

/// Why a config was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid exchange config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Number of decimal places a step (tick or lot) needs: 0.01 needs 2, 5 needs 0.
#[must_use]
pub fn decimals_of(step: Amount) -> u32 {
    let mut u = step.units();
    if u == 0 {
        return 0;
    }
    let mut zeros = 0;
    while zeros < 8 && u.is_multiple_of(10) {
        u /= 10;
        zeros += 1;
    }
    8 - zeros
}

type Built<T> = Result<T, String>;

fn amt(s: &str) -> Built<Amount> {
    Amount::parse(s).map_err(|e| e.to_string())
}

fn coin(s: &str) -> Built<AssetCode> {
    AssetCode::parse(s).map_err(|e| e.to_string())
}

fn sym(s: &str) -> Built<Symbol> {
    Symbol::parse(s).map_err(|e| e.to_string())
}

fn net(network: &str, fee: &str, min: &str, max: &str) -> Built<NetworkSpec> {
    Ok(NetworkSpec {
        network: network.to_owned(),
        withdraw_fee: amt(fee)?,
        withdraw_min: amt(min)?,
        withdraw_max: amt(max)?,
        deposit_enable: true,
        withdraw_enable: true,
    })
}

/// `[symbol, base, quote, tick, step, min_qty, max_qty, market_max_qty, min_notional, reference,
/// daily volatility in bps, daily volume]`.
fn market(f: [&str; 12]) -> Built<MarketSpec> {
    let [symbol, base, quote, tick, step, min_qty, max_qty, market_max_qty, min_notional, reference, vol, volume] = f;
    Ok(MarketSpec {
        symbol: sym(symbol)?,
        base: coin(base)?,
        quote: coin(quote)?,
        tick_size: amt(tick)?,
        min_price: amt(tick)?,
        max_price: amt("1000000")?,
        step_size: amt(step)?,
        min_qty: amt(min_qty)?,
        max_qty: amt(max_qty)?,
        market_min_qty: amt(min_qty)?,
        market_max_qty: amt(market_max_qty)?,
        min_notional: amt(min_notional)?,
        max_notional: amt("9000000")?,
        maker_fee: amt("0.001")?,
        taker_fee: amt("0.001")?,
        max_num_orders: 200,
        reference_price: amt(reference)?,
        daily_volatility_bps: Some(vol.parse().map_err(|_| format!("volatility {vol:?}"))?),
        daily_volume: Some(amt(volume)?),
    })
}

fn asset(code: &str, name: &str, networks: Vec<NetworkSpec>) -> Built<AssetSpec> {
    Ok(AssetSpec { coin: coin(code)?, name: name.to_owned(), networks })
}

fn build_default() -> Built<ExchangeConfig> {
    let assets = vec![
        asset(
            "BTC",
            "Bitcoin",
            vec![net("BTC", "0.00002", "0.0001", "750")?, net("BSC", "0.0000039", "0.00001", "750")?],
        )?,
        asset(
            "ETH",
            "Ethereum",
            vec![net("ETH", "0.0008", "0.0016", "10000")?, net("BSC", "0.00003", "0.0001", "10000")?],
        )?,
        asset("USDT", "TetherUS", vec![net("TRX", "1", "10", "10000000")?, net("BSC", "0.3", "10", "10000000")?])?,
        asset("BNB", "BNB", vec![net("BSC", "0.0005", "0.01", "100000")?])?,
    ];
    let markets = vec![
        // Volatility and volume in proportion to Binance's own markets, volume scaled down so
        // that the simulated flow can trade it at a modest order rate.
        market(["BTCUSDT", "BTC", "USDT", "0.01", "0.00001", "0.00001", "9000", "100", "5", "60000", "250", "400"])?,
        market(["ETHUSDT", "ETH", "USDT", "0.01", "0.0001", "0.0001", "9000", "2000", "5", "3000", "350", "5000"])?,
        market([
            "ETHBTC", "ETH", "BTC", "0.00001", "0.001", "0.001", "100000", "2000", "0.0001", "0.05", "200", "1500",
        ])?,
        market(["BNBUSDT", "BNB", "USDT", "0.01", "0.001", "0.001", "9000", "5000", "5", "600", "300", "8000"])?,
    ];
    Ok(ExchangeConfig { assets, markets, withdraw_delay_ms: DEFAULT_WITHDRAW_DELAY_MS })
}

impl Default for ExchangeConfig {
    /// BTC, ETH, USDT and BNB with Binance-like networks, and BTCUSDT, ETHUSDT, ETHBTC, BNBUSDT with
    /// Binance-like filters and 0.1 % commissions: enough for every client library's smoke test.
    fn default() -> Self {
        // The literals in `build_default` are valid (a test checks it); an empty exchange is the
        // fallback only so that library code never panics.
        build_default().unwrap_or_else(|_| Self {
            assets: Vec::new(),
            markets: Vec::new(),
            withdraw_delay_ms: DEFAULT_WITHDRAW_DELAY_MS,
        })
    }
}

impl ExchangeConfig {
    /// Parses TOML (`[[assets]]` / `[[assets.networks]]` / `[[markets]]` tables, decimals as
    /// strings) and validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] for malformed TOML or a config [`ExchangeConfig::validate`] refuses.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The config as TOML, for `keygate exchange config --print` style tooling.
    ///
    /// # Errors
    /// [`ConfigError`] if serialisation fails (it does not for valid configs).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks what the engine relies on: known and unique assets, unique symbols, non-zero steps,
    /// tick and step decimals summing to at most 8 (so `price * qty` is exact), ordered bounds,
    /// commissions at most 100 %, and networks with ordered limits.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        let mut coins = BTreeSet::new();
        for a in &self.assets {
            if !coins.insert(a.coin.clone()) {
                return err(format!("duplicate asset {}", a.coin));
            }
            let mut nets = BTreeSet::new();
            for n in &a.networks {
                if n.network.is_empty() || !n.network.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                    return err(format!("{}: network {:?} must be A-Z0-9", a.coin, n.network));
                }
                if !nets.insert(n.network.clone()) {
                    return err(format!("{}: duplicate network {}", a.coin, n.network));
                }
                if n.withdraw_min > n.withdraw_max {
                    return err(format!("{} {}: withdraw_min > withdraw_max", a.coin, n.network));
                }
            }
        }
        let mut symbols = BTreeSet::new();
        for m in &self.markets {
            let s = &m.symbol;
            if !symbols.insert(s.clone()) {
                return err(format!("duplicate symbol {s}"));
            }
            for asset in [&m.base, &m.quote] {
                if !coins.contains(asset) {
                    return err(format!("{s}: unknown asset {asset}"));
                }
            }
            if m.base == m.quote {
                return err(format!("{s}: base and quote are the same asset"));
            }
            if m.tick_size == Amount::ZERO || m.step_size == Amount::ZERO {
                return err(format!("{s}: tick_size and step_size must be non-zero"));
            }
            if decimals_of(m.tick_size) + decimals_of(m.step_size) > 8 {
                return err(format!("{s}: tick_size and step_size decimals sum to more than 8"));
            }
            let pairs = [
                ("min_price", m.min_price, "max_price", m.max_price),
                ("min_qty", m.min_qty, "max_qty", m.max_qty),
                ("market_min_qty", m.market_min_qty, "market_max_qty", m.market_max_qty),
                ("min_notional", m.min_notional, "max_notional", m.max_notional),
            ];
            for (a, av, b, bv) in pairs {
                if av > bv {
                    return err(format!("{s}: {a} > {b}"));
                }
            }
            if m.min_price == Amount::ZERO {
                return err(format!("{s}: min_price must be non-zero"));
            }
            let one = Amount::from_units(100_000_000);
            if m.maker_fee > one || m.taker_fee > one {
                return err(format!("{s}: commission above 100 %"));
            }
            if m.max_num_orders == 0 {
                return err(format!("{s}: max_num_orders must be at least 1"));
            }
            if m.daily_volatility_bps.is_some_and(|v| v > 5_000) {
                return err(format!("{s}: daily_volatility_bps above 5000 (50 % a day)"));
            }
        }
        Ok(())
    }

    /// The market spec for a symbol.
    #[must_use]
    pub fn market(&self, symbol: &Symbol) -> Option<&MarketSpec> {
        self.markets.iter().find(|m| &m.symbol == symbol)
    }

    /// The asset spec for a coin.
    #[must_use]
    pub fn asset(&self, coin: &AssetCode) -> Option<&AssetSpec> {
        self.assets.iter().find(|a| &a.coin == coin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_valid_and_round_trips_through_toml() {
        let cfg = ExchangeConfig::default();
        build_default().unwrap();
        assert_eq!(cfg.markets.len(), 4);
        assert_eq!(cfg.assets.len(), 4);
        cfg.validate().unwrap();
        let text = cfg.to_toml().unwrap();
        assert!(text.contains("tick_size = \"0.01000000\""), "{text}");
        assert_eq!(ExchangeConfig::from_toml(&text).unwrap(), cfg);
    }

    #[test]
    fn validation_rejects_unknown_assets_duplicates_precision_zero_steps_and_inverted_bounds() {
        let base = ExchangeConfig::default();
        let mut c = base.clone();
        c.markets[0].base = AssetCode::parse("DOGE").unwrap();
        assert!(c.validate().unwrap_err().0.contains("unknown asset"));
        let mut c = base.clone();
        c.markets.push(c.markets[0].clone());
        assert!(c.validate().unwrap_err().0.contains("duplicate symbol"));
        let mut c = base.clone();
        c.markets[0].step_size = Amount::parse("0.0000001").unwrap();
        assert!(c.validate().unwrap_err().0.contains("more than 8"));
        let mut c = base.clone();
        c.markets[0].tick_size = Amount::ZERO;
        assert!(c.validate().unwrap_err().0.contains("non-zero"));
        let mut c = base.clone();
        c.markets[0].min_qty = Amount::parse("10000").unwrap();
        assert!(c.validate().unwrap_err().0.contains("min_qty > max_qty"));
        let mut c = base;
        c.assets.push(c.assets[0].clone());
        assert!(c.validate().unwrap_err().0.contains("duplicate asset"));
    }

    #[test]
    fn decimals_of_counts_significant_fraction_digits() {
        assert_eq!(decimals_of(Amount::parse("0.01").unwrap()), 2);
        assert_eq!(decimals_of(Amount::parse("0.05").unwrap()), 2);
        assert_eq!(decimals_of(Amount::parse("5").unwrap()), 0);
        assert_eq!(decimals_of(Amount::parse("0.00000001").unwrap()), 8);
    }

    #[test]
    fn from_toml_reads_a_hand_written_config() {
        let text = r#"
            withdraw_delay_ms = 10
            [[assets]]
            coin = "AAA"
            name = "A"
            [[assets.networks]]
            network = "ETH"
            withdraw_fee = "0.1"
            withdraw_min = "1"
            withdraw_max = "100"
            deposit_enable = true
            withdraw_enable = false
            [[assets]]
            coin = "BBB"
            name = "B"
            networks = []
            [[markets]]
            symbol = "AAABBB"
            base = "AAA"
            quote = "BBB"
            tick_size = "0.1"
            min_price = "0.1"
            max_price = "1000"
            step_size = "1"
            min_qty = "1"
            max_qty = "1000"
            market_min_qty = "1"
            market_max_qty = "100"
            min_notional = "1"
            max_notional = "100000"
            maker_fee = "0.0005"
            taker_fee = "0.001"
            max_num_orders = 5
            reference_price = "10"
        "#;
        let cfg = ExchangeConfig::from_toml(text).unwrap();
        assert_eq!(cfg.withdraw_delay_ms, 10);
        assert_eq!(cfg.markets[0].maker_fee.units(), 50_000);
        assert!(ExchangeConfig::from_toml("assets = 3").is_err());
    }
}
