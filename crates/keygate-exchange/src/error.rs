//! Every way a command or query can fail, each with the Binance code and message a client expects.
//!
//! The engine never decides HTTP statuses: the server maps [`ExchangeError::code`] to one. Messages
//! follow Binance's wording so that client libraries classify the error the same way they would
//! against the real exchange (ccxt maps -2010 to `InsufficientFunds`, -2011/-2013 to
//! `OrderNotFound`, ...).

use keygate_proto::{Amount, ErrorCode};
use std::fmt;

/// Why the engine refused a command or a query. A refused command leaves the state unchanged.
///
/// Serialisable so that the node that runs the engine can tell another node why it refused that
/// node's command (see [`wire`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExchangeError {
    /// -1121: the symbol is not a market of this exchange.
    UnknownSymbol,
    /// -1100 .. -1131: a parameter is malformed, missing, superfluous or out of its legal range.
    /// The code and message are Binance's for the specific case.
    BadParam {
        /// Binance's code (-1100, -1102, -1106, -1120, -1127, -1128, ...).
        code: ErrorCode,
        /// Binance's message for the case.
        msg: String,
    },
    /// -1013: an exchange filter (PRICE_FILTER, LOT_SIZE, MARKET_LOT_SIZE, NOTIONAL,
    /// MAX_NUM_ORDERS) refused the order.
    Filter(&'static str),
    /// -2010: the account's free balance does not cover what the order must lock.
    InsufficientBalance,
    /// -2010: a LIMIT_MAKER order would have traded immediately.
    WouldTake,
    /// -2010: the client order id is already used by an open order of the account on the symbol.
    DuplicateOrder,
    /// -2011: a cancel named an order that is not open (or does not exist).
    UnknownOrder,
    /// -2013: a query named an order that does not exist.
    OrderNotFound,
    /// -4018: the coin is not an asset of this exchange.
    UnknownAsset,
    /// -4019: the network does not exist for the coin, or is closed for this operation.
    NetworkClosed {
        /// What is closed, in words.
        msg: String,
    },
    /// -4022: the withdrawal is below the network's minimum.
    BelowWithdrawMin {
        /// The network's minimum.
        min: Amount,
    },
    /// -4023: the withdrawal is above the network's maximum.
    AboveWithdrawMax {
        /// The network's maximum.
        max: Amount,
    },
    /// -4023: with this withdrawal the key would exceed its 24-hour limit.
    WithdrawLimitExceeded,
    /// -4015: the key's 24-hour limit is set in another asset, so it cannot withdraw this one.
    WithdrawLimitOtherAsset,
    /// -4026: the free balance does not cover the withdrawal.
    WithdrawInsufficientBalance,
    /// -4028: the amount does not exceed the network fee, so nothing would arrive.
    AmountNotAboveFee,
    /// -4035: the address is not on the key's withdrawal allowlist (an empty list allows none).
    AddressNotAllowed,
    /// -4016: withdrawals are locked for 24 hours after a password change or the removal of 2FA
    /// (Binance's code for the former).
    WithdrawLocked,
    /// -4047: a wallet history window longer than 90 days.
    HistoryWindowTooLong,
    /// -1000: an internal invariant failed (an arithmetic overflow the checks should have
    /// excluded). Never expected; reported instead of panicking.
    Internal(&'static str),
}

impl ExchangeError {
    /// Binance's error code for this error.
    #[must_use]
    pub const fn error_code(&self) -> ErrorCode {
        match self {
            Self::UnknownSymbol => ErrorCode::BadSymbol,
            Self::BadParam { code, .. } => *code,
            Self::Filter(_) => ErrorCode::InvalidMessage,
            Self::InsufficientBalance | Self::WouldTake | Self::DuplicateOrder => ErrorCode::NewOrderRejected,
            Self::UnknownOrder => ErrorCode::CancelRejected,
            Self::OrderNotFound => ErrorCode::NoSuchOrder,
            Self::UnknownAsset => ErrorCode::UnknownAsset,
            Self::NetworkClosed { .. } => ErrorCode::AssetNotOpen,
            Self::BelowWithdrawMin { .. } => ErrorCode::BelowWithdrawMin,
            Self::AboveWithdrawMax { .. } | Self::WithdrawLimitExceeded => ErrorCode::AboveWithdrawMax,
            Self::WithdrawLimitOtherAsset => ErrorCode::WithdrawLimited,
            Self::WithdrawInsufficientBalance => ErrorCode::InsufficientWalletBalance,
            Self::AmountNotAboveFee => ErrorCode::AmountNotAboveFee,
            Self::AddressNotAllowed => ErrorCode::AddressNotWhitelisted,
            Self::WithdrawLocked => ErrorCode::WithdrawProhibited,
            Self::HistoryWindowTooLong => ErrorCode::TimeIntervalTooLong,
            Self::Internal(_) => ErrorCode::Unknown,
        }
    }

    /// Binance's numeric error code for this error, as it goes on the wire.
    #[must_use]
    pub const fn code(&self) -> i32 {
        self.error_code().code()
    }

    /// Binance's message for this error (internal details are not exposed).
    #[must_use]
    pub fn message(&self) -> String {
        match self {
            Self::UnknownSymbol => "Invalid symbol.".to_owned(),
            Self::BadParam { msg, .. } | Self::NetworkClosed { msg } => msg.clone(),
            Self::Filter(name) => format!("Filter failure: {name}"),
            Self::InsufficientBalance => "Account has insufficient balance for requested action.".to_owned(),
            Self::WouldTake => "Order would immediately match and take.".to_owned(),
            Self::DuplicateOrder => "Duplicate order sent.".to_owned(),
            Self::UnknownOrder => "Unknown order sent.".to_owned(),
            Self::OrderNotFound => "Order does not exist.".to_owned(),
            Self::UnknownAsset => "We don't have this asset.".to_owned(),
            Self::BelowWithdrawMin { min } => format!("Not less than the minimum pick-up quantity {min}."),
            Self::AboveWithdrawMax { max } => format!("Not more than the maximum pick-up quantity {max}."),
            Self::WithdrawLimitExceeded => "Within 24 hours, the withdrawal exceeds the maximum amount.".to_owned(),
            Self::WithdrawLimitOtherAsset => "Withdraw is limited.".to_owned(),
            Self::WithdrawInsufficientBalance => "You have insufficient balance.".to_owned(),
            Self::AmountNotAboveFee => "The amount of withdrawal must be greater than the Commission.".to_owned(),
            Self::AddressNotAllowed => "This address is not on the whitelist. Please join and try again.".to_owned(),
            Self::WithdrawLocked => {
                "Within 24 hours after password modification or 2FA removal, withdrawal is prohibited.".to_owned()
            }
            Self::HistoryWindowTooLong => "Time interval must be within 0-90 days".to_owned(),
            Self::Internal(_) => "An unknown error occurred while processing the request.".to_owned(),
        }
    }

    /// A -1100 error naming the parameter and its legal range, as Binance words it.
    pub(crate) fn illegal(param: &str, range: &str) -> Self {
        Self::BadParam {
            code: ErrorCode::IllegalChars,
            msg: format!("Illegal characters found in parameter '{param}'; legal range is '{range}'."),
        }
    }

    /// A -1102 error for a missing mandatory parameter.
    pub(crate) fn missing(param: &str) -> Self {
        Self::BadParam {
            code: ErrorCode::MandatoryParamEmptyOrMalformed,
            msg: format!("Mandatory parameter '{param}' was not sent, was empty/null, or malformed."),
        }
    }

    /// A -1106 error for a parameter that this order type does not take.
    pub(crate) fn not_required(param: &str) -> Self {
        Self::BadParam {
            code: ErrorCode::ParamNotRequired,
            msg: format!("Parameter '{param}' sent when not required."),
        }
    }

    /// A -1128 error for parameters that cannot be combined.
    pub(crate) fn bad_combination() -> Self {
        Self::BadParam {
            code: ErrorCode::OptionalParamsBadCombo,
            msg: "Combination of optional parameters invalid.".to_owned(),
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Internal(what) => write!(f, "{} (internal: {what})", self.code()),
            _ => write!(f, "{} {}", self.code(), self.message()),
        }
    }
}

impl std::error::Error for ExchangeError {}

/// Shorthand used by the arithmetic helpers: an overflow that validation should have excluded.
pub(crate) const OVERFLOW: ExchangeError = ExchangeError::Internal("arithmetic overflow");

/// [`ExchangeError`] as it crosses between nodes: the same variants with owned text, so it can be
/// read back from any buffer. The names of filters are a closed set and come back as themselves;
/// an internal failure's detail stays in the log of the node it happened on.
pub mod wire {
    use super::ExchangeError;
    use keygate_proto::{Amount, ErrorCode};
    use serde::{Deserialize, Serialize};

    /// The filters whose failure [`ExchangeError::Filter`] names.
    const FILTERS: [&str; 5] = ["PRICE_FILTER", "LOT_SIZE", "MARKET_LOT_SIZE", "NOTIONAL", "MAX_NUM_ORDERS"];

    /// One [`ExchangeError`], serialisable both ways.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "refusal", rename_all = "snake_case")]
    pub enum Refusal {
        /// [`ExchangeError::UnknownSymbol`].
        UnknownSymbol,
        /// [`ExchangeError::BadParam`], by its code.
        BadParam {
            /// Binance's code.
            code: i32,
            /// Binance's message.
            msg: String,
        },
        /// [`ExchangeError::Filter`].
        Filter {
            /// The filter's name.
            filter: String,
        },
        /// [`ExchangeError::InsufficientBalance`].
        InsufficientBalance,
        /// [`ExchangeError::WouldTake`].
        WouldTake,
        /// [`ExchangeError::DuplicateOrder`].
        DuplicateOrder,
        /// [`ExchangeError::UnknownOrder`].
        UnknownOrder,
        /// [`ExchangeError::OrderNotFound`].
        OrderNotFound,
        /// [`ExchangeError::UnknownAsset`].
        UnknownAsset,
        /// [`ExchangeError::NetworkClosed`].
        NetworkClosed {
            /// What is closed.
            msg: String,
        },
        /// [`ExchangeError::BelowWithdrawMin`].
        BelowWithdrawMin {
            /// The minimum.
            min: Amount,
        },
        /// [`ExchangeError::AboveWithdrawMax`].
        AboveWithdrawMax {
            /// The maximum.
            max: Amount,
        },
        /// [`ExchangeError::WithdrawLimitExceeded`].
        WithdrawLimitExceeded,
        /// [`ExchangeError::WithdrawLimitOtherAsset`].
        WithdrawLimitOtherAsset,
        /// [`ExchangeError::WithdrawInsufficientBalance`].
        WithdrawInsufficientBalance,
        /// [`ExchangeError::AmountNotAboveFee`].
        AmountNotAboveFee,
        /// [`ExchangeError::AddressNotAllowed`].
        AddressNotAllowed,
        /// [`ExchangeError::WithdrawLocked`].
        WithdrawLocked,
        /// [`ExchangeError::HistoryWindowTooLong`].
        HistoryWindowTooLong,
        /// [`ExchangeError::Internal`]; its detail is in the writer's log.
        Internal,
    }

    impl Serialize for ExchangeError {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            Refusal::from(self.clone()).serialize(s)
        }
    }

    // Written out rather than derived: a derive would tie the input's lifetime to the
    // `&'static str` fields and refuse any buffer read at run time.
    impl<'de> Deserialize<'de> for ExchangeError {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            Refusal::deserialize(d).map(Self::from)
        }
    }

    impl From<ExchangeError> for Refusal {
        fn from(e: ExchangeError) -> Self {
            match e {
                ExchangeError::UnknownSymbol => Self::UnknownSymbol,
                ExchangeError::BadParam { code, msg } => Self::BadParam { code: code.code(), msg },
                ExchangeError::Filter(f) => Self::Filter { filter: f.to_owned() },
                ExchangeError::InsufficientBalance => Self::InsufficientBalance,
                ExchangeError::WouldTake => Self::WouldTake,
                ExchangeError::DuplicateOrder => Self::DuplicateOrder,
                ExchangeError::UnknownOrder => Self::UnknownOrder,
                ExchangeError::OrderNotFound => Self::OrderNotFound,
                ExchangeError::UnknownAsset => Self::UnknownAsset,
                ExchangeError::NetworkClosed { msg } => Self::NetworkClosed { msg },
                ExchangeError::BelowWithdrawMin { min } => Self::BelowWithdrawMin { min },
                ExchangeError::AboveWithdrawMax { max } => Self::AboveWithdrawMax { max },
                ExchangeError::WithdrawLimitExceeded => Self::WithdrawLimitExceeded,
                ExchangeError::WithdrawLimitOtherAsset => Self::WithdrawLimitOtherAsset,
                ExchangeError::WithdrawInsufficientBalance => Self::WithdrawInsufficientBalance,
                ExchangeError::AmountNotAboveFee => Self::AmountNotAboveFee,
                ExchangeError::AddressNotAllowed => Self::AddressNotAllowed,
                ExchangeError::WithdrawLocked => Self::WithdrawLocked,
                ExchangeError::HistoryWindowTooLong => Self::HistoryWindowTooLong,
                ExchangeError::Internal(_) => Self::Internal,
            }
        }
    }

    impl From<Refusal> for ExchangeError {
        fn from(r: Refusal) -> Self {
            match r {
                Refusal::UnknownSymbol => Self::UnknownSymbol,
                Refusal::BadParam { code, msg } => match ErrorCode::from_code(code) {
                    Some(code) => Self::BadParam { code, msg },
                    None => Self::Internal("the exchange writer answered an unknown error code"),
                },
                Refusal::Filter { filter } => match FILTERS.iter().find(|f| **f == filter) {
                    Some(f) => Self::Filter(f),
                    None => Self::Internal("the exchange writer named an unknown filter"),
                },
                Refusal::InsufficientBalance => Self::InsufficientBalance,
                Refusal::WouldTake => Self::WouldTake,
                Refusal::DuplicateOrder => Self::DuplicateOrder,
                Refusal::UnknownOrder => Self::UnknownOrder,
                Refusal::OrderNotFound => Self::OrderNotFound,
                Refusal::UnknownAsset => Self::UnknownAsset,
                Refusal::NetworkClosed { msg } => Self::NetworkClosed { msg },
                Refusal::BelowWithdrawMin { min } => Self::BelowWithdrawMin { min },
                Refusal::AboveWithdrawMax { max } => Self::AboveWithdrawMax { max },
                Refusal::WithdrawLimitExceeded => Self::WithdrawLimitExceeded,
                Refusal::WithdrawLimitOtherAsset => Self::WithdrawLimitOtherAsset,
                Refusal::WithdrawInsufficientBalance => Self::WithdrawInsufficientBalance,
                Refusal::AmountNotAboveFee => Self::AmountNotAboveFee,
                Refusal::AddressNotAllowed => Self::AddressNotAllowed,
                Refusal::WithdrawLocked => Self::WithdrawLocked,
                Refusal::HistoryWindowTooLong => Self::HistoryWindowTooLong,
                Refusal::Internal => Self::Internal("an invariant failed on the exchange writer; see its log"),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::super::ExchangeError;
        use keygate_proto::{Amount, ErrorCode};

        #[test]
        fn every_refusal_crosses_between_nodes_unchanged() {
            let all = [
                ExchangeError::UnknownSymbol,
                ExchangeError::BadParam {
                    code: ErrorCode::from_code(-1102).unwrap_or(ErrorCode::BadSymbol),
                    msg: "m".into(),
                },
                ExchangeError::Filter("LOT_SIZE"),
                ExchangeError::Filter("MAX_NUM_ORDERS"),
                ExchangeError::InsufficientBalance,
                ExchangeError::WouldTake,
                ExchangeError::DuplicateOrder,
                ExchangeError::UnknownOrder,
                ExchangeError::OrderNotFound,
                ExchangeError::UnknownAsset,
                ExchangeError::NetworkClosed { msg: "closed".into() },
                ExchangeError::BelowWithdrawMin { min: Amount::from_units(5) },
                ExchangeError::AboveWithdrawMax { max: Amount::from_units(7) },
                ExchangeError::WithdrawLimitExceeded,
                ExchangeError::WithdrawLimitOtherAsset,
                ExchangeError::WithdrawInsufficientBalance,
                ExchangeError::AmountNotAboveFee,
                ExchangeError::AddressNotAllowed,
                ExchangeError::WithdrawLocked,
                ExchangeError::HistoryWindowTooLong,
            ];
            for e in all {
                let text = serde_json::to_string(&e).unwrap_or_default();
                let back: Result<ExchangeError, _> = serde_json::from_str(&text);
                assert_eq!(back.ok(), Some(e.clone()), "{text}");
            }
            let internal: Result<ExchangeError, _> =
                serde_json::from_str(&serde_json::to_string(&ExchangeError::Internal("x")).unwrap_or_default());
            assert!(matches!(internal, Ok(ExchangeError::Internal(_))));
            assert_eq!(internal.map(|e| e.code()).ok(), Some(ExchangeError::Internal("x").code()));
        }
    }
}
