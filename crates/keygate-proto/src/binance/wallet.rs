//! The wallet: `GET /sapi/v1/capital/config/getall`, deposit address and history, withdrawals
//! and their history, and `GET /sapi/v1/asset/tradeFee`.

use crate::{Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};

/// One coin of `GET /sapi/v1/capital/config/getall`, with the account's balance of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coin {
    /// The asset.
    pub coin: AssetCode,
    /// Some network takes deposits.
    pub deposit_all_enable: bool,
    /// Some network takes withdrawals.
    pub withdraw_all_enable: bool,
    /// Human name.
    pub name: String,
    /// Spendable balance.
    pub free: Amount,
    /// Locked by open orders.
    pub locked: Amount,
    /// `"0"`: Binance's frozen amount, not a decimal of eight places.
    pub freeze: String,
    /// Held by processing withdrawals.
    pub withdrawing: Amount,
    /// `"0"`.
    pub ipoing: String,
    /// `"0"`.
    pub ipoable: String,
    /// `"0"`.
    pub storage: String,
    /// Always false.
    pub is_legal_money: bool,
    /// Always true.
    pub trading: bool,
    /// The coin's networks.
    pub network_list: Vec<Network>,
}

/// One network of a coin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::struct_excessive_bools)] // Binance's shape.
pub struct Network {
    /// Network code (`BTC`, `ETH`, ...).
    pub network: String,
    /// The coin.
    pub coin: AssetCode,
    /// Withdrawal amounts are multiples of this.
    pub withdraw_integer_multiple: Amount,
    /// The network used when a request names none.
    pub is_default: bool,
    /// Takes deposits.
    pub deposit_enable: bool,
    /// Takes withdrawals.
    pub withdraw_enable: bool,
    /// Why deposits are closed, when they are.
    pub deposit_desc: String,
    /// Why withdrawals are closed, when they are.
    pub withdraw_desc: String,
    /// Notes for the user.
    pub special_tips: String,
    /// Human name of the network.
    pub name: String,
    /// Always false.
    pub reset_address_status: bool,
    /// Empty: the sandbox checks no address format.
    pub address_regex: String,
    /// Empty: the sandbox takes no memos.
    pub memo_regex: String,
    /// Fee of one withdrawal.
    pub withdraw_fee: Amount,
    /// Least withdrawal.
    pub withdraw_min: Amount,
    /// Most withdrawal.
    pub withdraw_max: Amount,
    /// Confirmations before a deposit is credited.
    pub min_confirm: u32,
    /// Confirmations before a deposit may be withdrawn (Binance's spelling).
    pub un_lock_confirm: u32,
    /// Always false.
    pub same_address: bool,
    /// Minutes a withdrawal is expected to take.
    pub estimated_arrival_time: u32,
    /// Always false.
    pub busy: bool,
}

/// One entry of `GET /sapi/v1/capital/deposit/hisrec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deposit {
    /// Id, a decimal string like Binance's.
    pub id: String,
    /// Amount credited.
    pub amount: Amount,
    /// Coin.
    pub coin: AssetCode,
    /// Network.
    pub network: String,
    /// 1: success.
    pub status: u8,
    /// The account's deposit address.
    pub address: String,
    /// Always empty.
    pub address_tag: String,
    /// Transaction id.
    pub tx_id: String,
    /// When it was credited.
    pub insert_time: UnixMillis,
    /// When it completed (the same instant in the sandbox).
    pub complete_time: UnixMillis,
    /// 0: external transfer.
    pub transfer_type: u8,
    /// `"1/1"`.
    pub confirm_times: String,
    /// Confirmations before it may be withdrawn.
    pub unlock_confirm: u32,
    /// 0: spot wallet.
    pub wallet_type: u8,
}

/// `GET /sapi/v1/capital/deposit/address`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositAddress {
    /// The address.
    pub address: String,
    /// Coin.
    pub coin: AssetCode,
    /// Always empty: no memos.
    pub tag: String,
    /// Always empty: no block explorer.
    pub url: String,
}

/// One entry of `GET /sapi/v1/capital/withdraw/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Withdrawal {
    /// 32 hex characters.
    pub id: String,
    /// Requested amount, fee included.
    pub amount: Amount,
    /// The network fee.
    pub transaction_fee: Amount,
    /// Coin.
    pub coin: AssetCode,
    /// 4 processing, 6 completed.
    pub status: u8,
    /// Destination.
    pub address: String,
    /// Transaction id, set on completion.
    pub tx_id: String,
    /// When it was applied, `YYYY-MM-DD hh:mm:ss` in UTC as Binance prints it.
    pub apply_time: String,
    /// Network.
    pub network: String,
    /// 0: external.
    pub transfer_type: u8,
    /// The client's `withdrawOrderId`, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_order_id: Option<String>,
    /// Always empty.
    pub info: String,
    /// Confirmations so far.
    pub confirm_no: u32,
    /// 0: spot wallet.
    pub wallet_type: u8,
    /// Always empty.
    pub tx_key: String,
    /// When it completed, as `apply_time`; absent while processing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<String>,
}

/// `POST /sapi/v1/capital/withdraw/apply`: the new withdrawal's id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawApplied {
    /// The id that `withdraw/history` lists it under.
    pub id: String,
}

/// One entry of `GET /sapi/v1/asset/tradeFee`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TradeFee {
    /// The market.
    pub symbol: Symbol,
    /// Rate charged to the resting side.
    pub maker_commission: Amount,
    /// Rate charged to the taking side.
    pub taker_commission: Amount,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::golden::round_trip;

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    fn btc() -> AssetCode {
        AssetCode::parse("BTC").unwrap()
    }

    #[test]
    fn coins_have_binances_shape() {
        let coin = Coin {
            coin: btc(),
            deposit_all_enable: true,
            withdraw_all_enable: true,
            name: "Bitcoin".to_owned(),
            free: amount("1"),
            locked: Amount::ZERO,
            freeze: "0".to_owned(),
            withdrawing: amount("0.1"),
            ipoing: "0".to_owned(),
            ipoable: "0".to_owned(),
            storage: "0".to_owned(),
            is_legal_money: false,
            trading: true,
            network_list: vec![Network {
                network: "BTC".to_owned(),
                coin: btc(),
                withdraw_integer_multiple: Amount::from_units(1),
                is_default: true,
                deposit_enable: true,
                withdraw_enable: true,
                deposit_desc: String::new(),
                withdraw_desc: String::new(),
                special_tips: String::new(),
                name: "Bitcoin".to_owned(),
                reset_address_status: false,
                address_regex: String::new(),
                memo_regex: String::new(),
                withdraw_fee: amount("0.00002"),
                withdraw_min: amount("0.0001"),
                withdraw_max: amount("100"),
                min_confirm: 1,
                un_lock_confirm: 0,
                same_address: false,
                estimated_arrival_time: 1,
                busy: false,
            }],
        };
        round_trip(
            &coin,
            r#"{"coin":"BTC","depositAllEnable":true,"withdrawAllEnable":true,"name":"Bitcoin","free":"1.00000000","locked":"0.00000000","freeze":"0","withdrawing":"0.10000000","ipoing":"0","ipoable":"0","storage":"0","isLegalMoney":false,"trading":true,"networkList":[{"network":"BTC","coin":"BTC","withdrawIntegerMultiple":"0.00000001","isDefault":true,"depositEnable":true,"withdrawEnable":true,"depositDesc":"","withdrawDesc":"","specialTips":"","name":"Bitcoin","resetAddressStatus":false,"addressRegex":"","memoRegex":"","withdrawFee":"0.00002000","withdrawMin":"0.00010000","withdrawMax":"100.00000000","minConfirm":1,"unLockConfirm":0,"sameAddress":false,"estimatedArrivalTime":1,"busy":false}]}"#,
        );
    }

    #[test]
    fn deposits_and_their_address_have_binances_shape() {
        let d = Deposit {
            id: "1".to_owned(),
            amount: amount("2"),
            coin: btc(),
            network: "BTC".to_owned(),
            status: 1,
            address: "bc1qsandbox".to_owned(),
            address_tag: String::new(),
            tx_id: "abc".to_owned(),
            insert_time: UnixMillis(1_767_225_600_000),
            complete_time: UnixMillis(1_767_225_600_000),
            transfer_type: 0,
            confirm_times: "1/1".to_owned(),
            unlock_confirm: 0,
            wallet_type: 0,
        };
        round_trip(
            &d,
            r#"{"id":"1","amount":"2.00000000","coin":"BTC","network":"BTC","status":1,"address":"bc1qsandbox","addressTag":"","txId":"abc","insertTime":1767225600000,"completeTime":1767225600000,"transferType":0,"confirmTimes":"1/1","unlockConfirm":0,"walletType":0}"#,
        );
        let a =
            DepositAddress { address: "bc1qsandbox".to_owned(), coin: btc(), tag: String::new(), url: String::new() };
        round_trip(&a, r#"{"address":"bc1qsandbox","coin":"BTC","tag":"","url":""}"#);
    }

    #[test]
    fn withdrawals_omit_what_they_do_not_have_yet() {
        let mut w = Withdrawal {
            id: "0123456789abcdef0123456789abcdef".to_owned(),
            amount: amount("0.1"),
            transaction_fee: amount("0.00002"),
            coin: btc(),
            status: 4,
            address: "bc1qdest".to_owned(),
            tx_id: String::new(),
            apply_time: "2026-01-01 00:00:00".to_owned(),
            network: "BTC".to_owned(),
            transfer_type: 0,
            withdraw_order_id: None,
            info: String::new(),
            confirm_no: 0,
            wallet_type: 0,
            tx_key: String::new(),
            complete_time: None,
        };
        round_trip(
            &w,
            r#"{"id":"0123456789abcdef0123456789abcdef","amount":"0.10000000","transactionFee":"0.00002000","coin":"BTC","status":4,"address":"bc1qdest","txId":"","applyTime":"2026-01-01 00:00:00","network":"BTC","transferType":0,"info":"","confirmNo":0,"walletType":0,"txKey":""}"#,
        );
        w.status = 6;
        w.withdraw_order_id = Some("w-1".to_owned());
        w.complete_time = Some("2026-01-01 00:00:03".to_owned());
        round_trip(
            &w,
            r#"{"id":"0123456789abcdef0123456789abcdef","amount":"0.10000000","transactionFee":"0.00002000","coin":"BTC","status":6,"address":"bc1qdest","txId":"","applyTime":"2026-01-01 00:00:00","network":"BTC","transferType":0,"withdrawOrderId":"w-1","info":"","confirmNo":0,"walletType":0,"txKey":"","completeTime":"2026-01-01 00:00:03"}"#,
        );
        round_trip(&WithdrawApplied { id: "ab".to_owned() }, r#"{"id":"ab"}"#);
    }

    #[test]
    fn trade_fees_have_binances_shape() {
        let f = TradeFee {
            symbol: Symbol::parse("ETHBTC").unwrap(),
            maker_commission: amount("0.001"),
            taker_commission: amount("0.001"),
        };
        round_trip(&f, r#"{"symbol":"ETHBTC","makerCommission":"0.00100000","takerCommission":"0.00100000"}"#);
    }
}
