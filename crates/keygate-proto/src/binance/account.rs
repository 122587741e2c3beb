//! The spot account and the calling key: `GET /api/v3/account`, `GET /api/v3/account/commission`
//! and `GET /sapi/v1/account/apiRestrictions`.

use crate::{Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};

/// `GET /api/v3/account`: balances and what the calling key may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // Binance's shape: one flag per capability.
pub struct Account {
    /// Maker commission in basis points of a fraction (`0.001` is 10).
    pub maker_commission: u64,
    /// Taker commission, as `maker_commission`.
    pub taker_commission: u64,
    /// Buyer surcharge, as `maker_commission` (always 0 in the sandbox).
    pub buyer_commission: u64,
    /// Seller surcharge, as `maker_commission` (always 0 in the sandbox).
    pub seller_commission: u64,
    /// The same rates as decimals.
    pub commission_rates: CommissionRates,
    /// The calling key holds the `trade` permission.
    pub can_trade: bool,
    /// The calling key holds the `withdraw` permission.
    pub can_withdraw: bool,
    /// Always true: deposits are operator actions the account never refuses.
    pub can_deposit: bool,
    /// Always false.
    pub brokered: bool,
    /// Always false.
    pub require_self_trade_prevention: bool,
    /// Always false: no smart order routing.
    pub prevent_sor: bool,
    /// Last change of the account's balances.
    pub update_time: UnixMillis,
    /// `SPOT`.
    pub account_type: String,
    /// Every configured asset, or only non-zero ones with `omitZeroBalances=true`.
    pub balances: Vec<Balance>,
    /// `["SPOT"]`.
    pub permissions: Vec<String>,
    /// The account id.
    pub uid: i64,
}

/// One line of an account's `balances`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The asset.
    pub asset: AssetCode,
    /// Spendable now.
    pub free: Amount,
    /// Held by open orders and processing withdrawals.
    pub locked: Amount,
}

/// Commission rates as decimals, in the account and commission answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommissionRates {
    /// Rate charged to the resting side.
    pub maker: Amount,
    /// Rate charged to the taking side.
    pub taker: Amount,
    /// Surcharge on buys.
    pub buyer: Amount,
    /// Surcharge on sells.
    pub seller: Amount,
}

impl CommissionRates {
    /// Maker and taker rates with no buyer or seller surcharge, as the sandbox charges.
    #[must_use]
    pub const fn maker_taker(maker: Amount, taker: Amount) -> Self {
        Self { maker, taker, buyer: Amount::ZERO, seller: Amount::ZERO }
    }
}

/// The BNB commission discount (none in the sandbox).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Discount {
    /// Whether the account pays fees in BNB at a discount.
    pub enabled_for_account: bool,
    /// Whether the market allows the discount.
    pub enabled_for_symbol: bool,
    /// The asset the discount is paid in (`BNB`).
    pub discount_asset: String,
    /// The discount rate.
    pub discount: Amount,
}

impl Discount {
    /// No discount: what the sandbox always answers.
    #[must_use]
    pub fn none() -> Self {
        Self {
            enabled_for_account: false,
            enabled_for_symbol: false,
            discount_asset: "BNB".to_owned(),
            discount: Amount::ZERO,
        }
    }
}

/// `GET /api/v3/account/commission`: one market's rates for the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountCommission {
    /// The market.
    pub symbol: Symbol,
    /// The market's maker and taker rates.
    pub standard_commission: CommissionRates,
    /// Always zero in the sandbox.
    pub special_commission: CommissionRates,
    /// Always zero: no tax.
    pub tax_commission: CommissionRates,
    /// The BNB discount (none).
    pub discount: Discount,
}

/// `GET /sapi/v1/account/apiRestrictions`: what the calling key may do, in Binance's shape.
///
/// Products the sandbox does not have (margin, futures, options, FIX) are always `false`, so
/// clients that inspect these flags see an honest answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // Binance's shape: one boolean per permission.
pub struct ApiRestrictions {
    /// True when the key has an IP allowlist.
    pub ip_restrict: bool,
    /// Creation time of the key.
    pub create_time: UnixMillis,
    /// Always true: every key can read.
    pub enable_reading: bool,
    /// The key holds the `withdraw` permission.
    pub enable_withdrawals: bool,
    /// Not offered by the sandbox.
    pub enable_internal_transfer: bool,
    /// Not offered by the sandbox.
    pub enable_margin: bool,
    /// Not offered by the sandbox.
    pub enable_futures: bool,
    /// Not offered by the sandbox.
    pub permits_universal_transfer: bool,
    /// Not offered by the sandbox.
    pub enable_vanilla_options: bool,
    /// Not offered by the sandbox.
    pub enable_fix_api_trade: bool,
    /// Not offered by the sandbox.
    pub enable_fix_read_only: bool,
    /// The key holds the `trade` permission.
    pub enable_spot_and_margin_trading: bool,
    /// Not offered by the sandbox.
    pub enable_portfolio_margin_trading: bool,
    /// Expiry of the key when it has one (keygate expires the whole key, not one permission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trading_authority_expiration_time: Option<UnixMillis>,
    /// keygate's addition (issue #15): the client id of the connected app that holds the key,
    /// absent for keys made by hand. Binance clients ignore fields they do not know.
    #[serde(default, rename = "keygateConnectedApp", skip_serializing_if = "Option::is_none")]
    pub connected_app: Option<String>,
    /// keygate's addition (issue #16): when the key was last used before this request, as last
    /// recorded (usage is written every few seconds); absent for a key never used. A key holder's
    /// check flags keys never or long unused from it.
    #[serde(default, rename = "keygateLastUsedTime", skip_serializing_if = "Option::is_none")]
    pub last_used_time: Option<UnixMillis>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::golden::round_trip;

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    #[test]
    fn the_account_has_binances_shape() {
        let account = Account {
            maker_commission: 10,
            taker_commission: 10,
            buyer_commission: 0,
            seller_commission: 0,
            commission_rates: CommissionRates::maker_taker(amount("0.001"), amount("0.001")),
            can_trade: true,
            can_withdraw: false,
            can_deposit: true,
            brokered: false,
            require_self_trade_prevention: false,
            prevent_sor: false,
            update_time: UnixMillis(1_767_225_600_000),
            account_type: "SPOT".to_owned(),
            balances: vec![Balance {
                asset: AssetCode::parse("BTC").unwrap(),
                free: amount("1.5"),
                locked: amount("0.5"),
            }],
            permissions: vec!["SPOT".to_owned()],
            uid: 3,
        };
        round_trip(
            &account,
            r#"{"makerCommission":10,"takerCommission":10,"buyerCommission":0,"sellerCommission":0,"commissionRates":{"maker":"0.00100000","taker":"0.00100000","buyer":"0.00000000","seller":"0.00000000"},"canTrade":true,"canWithdraw":false,"canDeposit":true,"brokered":false,"requireSelfTradePrevention":false,"preventSor":false,"updateTime":1767225600000,"accountType":"SPOT","balances":[{"asset":"BTC","free":"1.50000000","locked":"0.50000000"}],"permissions":["SPOT"],"uid":3}"#,
        );
    }

    #[test]
    fn the_commission_answer_has_binances_shape() {
        let zero = CommissionRates::maker_taker(Amount::ZERO, Amount::ZERO);
        let c = AccountCommission {
            symbol: Symbol::parse("BTCUSDT").unwrap(),
            standard_commission: CommissionRates::maker_taker(amount("0.001"), amount("0.002")),
            special_commission: zero,
            tax_commission: zero,
            discount: Discount::none(),
        };
        round_trip(
            &c,
            r#"{"symbol":"BTCUSDT","standardCommission":{"maker":"0.00100000","taker":"0.00200000","buyer":"0.00000000","seller":"0.00000000"},"specialCommission":{"maker":"0.00000000","taker":"0.00000000","buyer":"0.00000000","seller":"0.00000000"},"taxCommission":{"maker":"0.00000000","taker":"0.00000000","buyer":"0.00000000","seller":"0.00000000"},"discount":{"enabledForAccount":false,"enabledForSymbol":false,"discountAsset":"BNB","discount":"0.00000000"}}"#,
        );
    }

    #[test]
    fn api_restrictions_have_binances_shape_and_omit_an_absent_expiry() {
        let mut r = ApiRestrictions {
            ip_restrict: true,
            create_time: UnixMillis(1_767_225_600_000),
            enable_reading: true,
            enable_withdrawals: false,
            enable_internal_transfer: false,
            enable_margin: false,
            enable_futures: false,
            permits_universal_transfer: false,
            enable_vanilla_options: false,
            enable_fix_api_trade: false,
            enable_fix_read_only: false,
            enable_spot_and_margin_trading: true,
            enable_portfolio_margin_trading: false,
            trading_authority_expiration_time: None,
            connected_app: None,
            last_used_time: None,
        };
        let without = r#"{"ipRestrict":true,"createTime":1767225600000,"enableReading":true,"enableWithdrawals":false,"enableInternalTransfer":false,"enableMargin":false,"enableFutures":false,"permitsUniversalTransfer":false,"enableVanillaOptions":false,"enableFixApiTrade":false,"enableFixReadOnly":false,"enableSpotAndMarginTrading":true,"enablePortfolioMarginTrading":false}"#;
        round_trip(&r, without);
        r.trading_authority_expiration_time = Some(UnixMillis(1_800_000_000_000));
        round_trip(&r, &without.replace('}', r#","tradingAuthorityExpirationTime":1800000000000}"#));
        r.last_used_time = Some(UnixMillis(1_790_000_000_000));
        round_trip(
            &r,
            &without.replace(
                '}',
                r#","tradingAuthorityExpirationTime":1800000000000,"keygateLastUsedTime":1790000000000}"#,
            ),
        );
    }
}
