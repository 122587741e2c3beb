//! Binance error codes and the `{"code":..,"msg":..}` body every error answers with.
//!
//! Codes, names and messages follow Binance's `errors.md` (and the wallet's `-4xxx` codes of the
//! SAPI docs); the HTTP status for each code is chosen by the server (one exhaustive match),
//! since status is transport, not wire shape. Every code keygate answers with is a variant here,
//! so no layer writes a bare number.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $msg:literal;)+) => {
        /// The Binance error codes keygate answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, for tables and tests.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// Binance's numeric code.
            #[must_use]
            pub const fn code(self) -> i32 {
                match self { $(Self::$variant => $code),+ }
            }

            /// Binance's message for the code: the fixed one where Binance has one, else its most
            /// general wording (handlers give the specific message).
            #[must_use]
            pub const fn default_msg(self) -> &'static str {
                match self { $(Self::$variant => $msg),+ }
            }

            /// The variant for Binance's numeric code, `None` for a code keygate never sends.
            #[must_use]
            pub const fn from_code(code: i32) -> Option<Self> {
                match code { $($code => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}

error_codes! {
    /// -1000 UNKNOWN: an internal failure; the cause is logged, never sent.
    Unknown = -1000, "An unknown error occurred while processing the request.";
    /// -1001 DISCONNECTED: the node cannot serve the request now (its keys may not be current,
    /// or the exchange's writer is unreachable); the client retries, here or on another node.
    Disconnected = -1001, "Internal error; unable to process your request. Please try again.";
    /// -1007 TIMEOUT: the command reached the exchange's writer but its answer did not come
    /// back; it may have been carried out. The client checks before retrying.
    Timeout = -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown.";
    /// -1002 UNAUTHORIZED.
    Unauthorized = -1002, "You are not authorized to execute this request.";
    /// -1003 TOO_MANY_REQUESTS: a rate limit, or the replay guard being full.
    TooManyRequests = -1003, "Too many requests.";
    /// -1013 INVALID_MESSAGE: in keygate, an exchange filter refused the order (`Filter failure: ...`).
    InvalidMessage = -1013, "Filter failure.";
    /// -1014 UNKNOWN_ORDER_COMPOSITION / unsupported operation.
    UnsupportedOperation = -1014, "Unsupported order combination.";
    /// -1015 TOO_MANY_ORDERS: an account's order-count limit.
    TooManyOrders = -1015, "Too many new orders.";
    /// -1021 INVALID_TIMESTAMP: outside `recvWindow` or too far ahead.
    InvalidTimestamp = -1021, "Timestamp for this request is outside of the recvWindow.";
    /// -1022 INVALID_SIGNATURE.
    InvalidSignature = -1022, "Signature for this request is not valid.";
    /// -1100 ILLEGAL_CHARS: a parameter with characters or a format it may not have.
    IllegalChars = -1100, "Illegal characters found in a parameter.";
    /// -1101 TOO_MANY_PARAMETERS: includes a parameter sent twice.
    TooManyParameters = -1101, "Too many parameters sent for this endpoint.";
    /// -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED.
    MandatoryParamEmptyOrMalformed = -1102, "A mandatory parameter was not sent, was empty/null, or malformed.";
    /// -1104 UNREAD_PARAMETERS: parameters the endpoint does not take.
    UnreadParameters = -1104, "Not all sent parameters were read.";
    /// -1106 PARAM_NOT_REQUIRED: a parameter this request does not take (e.g. `stopPrice` on a
    /// LIMIT order).
    ParamNotRequired = -1106, "A parameter was sent when not required.";
    /// -1108 PARAM_OVERFLOW: an integer parameter too large for its type.
    ParamOverflow = -1108, "Parameter overflowed.";
    /// -1111 BAD_PRECISION: more decimals than the asset has.
    BadPrecision = -1111, "Precision is over the maximum defined for this asset.";
    /// -1115 INVALID_TIF.
    InvalidTif = -1115, "Invalid timeInForce.";
    /// -1116 INVALID_ORDER_TYPE.
    InvalidOrderType = -1116, "Invalid orderType.";
    /// -1117 INVALID_SIDE.
    InvalidSide = -1117, "Invalid side.";
    /// -1120 BAD_INTERVAL: a kline interval Binance does not have.
    BadInterval = -1120, "Invalid interval.";
    /// -1121 BAD_SYMBOL.
    BadSymbol = -1121, "Invalid symbol.";
    /// -1127 MORE_THAN_XX_HOURS: a time window wider than the endpoint allows.
    MoreThanXxHours = -1127, "Lookup interval is too big.";
    /// -1128 OPTIONAL_PARAMS_BAD_COMBO: optional parameters that cannot be sent together.
    OptionalParamsBadCombo = -1128, "Combination of optional parameters invalid.";
    /// -1130 INVALID_PARAMETER: a value outside the parameter's enumeration.
    InvalidParameter = -1130, "Data sent for parameter is not valid.";
    /// -1131 BAD_RECV_WINDOW.
    BadRecvWindow = -1131, "recvWindow must be less than 60000";
    /// -1151 DUPLICATE_SYMBOLS: a symbol twice in `symbols`.
    DuplicateSymbols = -1151, "Symbol is present multiple times in the list.";
    /// -2010 NEW_ORDER_REJECTED: insufficient balance, a LIMIT_MAKER that would take, an order
    /// type the market does not enable, a duplicate client id.
    NewOrderRejected = -2010, "New order rejected.";
    /// -2011 CANCEL_REJECTED: the order to cancel is not open.
    CancelRejected = -2011, "Unknown order sent.";
    /// -2013 NO_SUCH_ORDER.
    NoSuchOrder = -2013, "Order does not exist.";
    /// -2014 BAD_API_KEY_FMT.
    BadApiKeyFormat = -2014, "API-key format invalid.";
    /// -2015 REJECTED_MBX_KEY: invalid key, IP or permission, deliberately one code.
    RejectedApiKey = -2015, "Invalid API-key, IP, or permissions for action.";
    /// -4015: the key's withdrawal limit does not allow this withdrawal.
    WithdrawLimited = -4015, "Withdraw is limited.";
    /// -4016: withdrawals are prohibited for a while (after a password change or 2FA removal,
    /// and keygate's holds).
    WithdrawProhibited = -4016, "Within 24 hours after password modification, withdrawal is prohibited.";
    /// -4018: the coin is not an asset of this exchange.
    UnknownAsset = -4018, "We don't have this asset.";
    /// -4019: the network is closed for the coin or the operation.
    AssetNotOpen = -4019, "Current asset is not open for withdrawal.";
    /// -4022: below the network's minimum withdrawal.
    BelowWithdrawMin = -4022, "Not less than the minimum pick-up quantity.";
    /// -4023: above the network's maximum or the key's 24-hour limit.
    AboveWithdrawMax = -4023, "Within 24 hours, the withdrawal exceeds the maximum amount.";
    /// -4026: the free balance does not cover the withdrawal.
    InsufficientWalletBalance = -4026, "You have insufficient balance.";
    /// -4028: the amount does not exceed the fee.
    AmountNotAboveFee = -4028, "The amount of withdrawal must be greater than the Commission.";
    /// -4035: the address is not on the key's withdrawal allowlist.
    AddressNotWhitelisted = -4035, "This address is not on the whitelist. Please join and try again.";
    /// -4036: a new address is still in its waiting period.
    NewAddressWaiting = -4036, "The new address needs to be withdrawn in 24 hours.";
    /// -4047: a wallet history window over 90 days.
    TimeIntervalTooLong = -4047, "Time interval must be within 0-90 days";
}

/// The JSON body of every error: `{"code":-1022,"msg":"Signature for this request is not valid."}`.
///
/// `code` stays the number on the wire, so that a client can read any exchange's errors; only
/// [`ErrorCode`]s are written ([`ErrorBody::new`], [`ErrorBody::with_msg`]), and
/// [`ErrorBody::error_code`] reads the number back as one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Binance's numeric code.
    pub code: i32,
    /// A human-readable message, in Binance's wording where Binance has one.
    pub msg: String,
}

impl ErrorBody {
    /// The body for `code` with Binance's default message.
    #[must_use]
    pub fn new(code: ErrorCode) -> Self {
        Self { code: code.code(), msg: code.default_msg().to_owned() }
    }

    /// The body for `code` with a specific message.
    #[must_use]
    pub fn with_msg(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self { code: code.code(), msg: msg.into() }
    }

    /// The code as an [`ErrorCode`], `None` for a code keygate never sends.
    #[must_use]
    pub const fn error_code(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_reads_back_as_itself() {
        for (i, c) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::from_code(c.code()), Some(*c));
            assert!(ErrorCode::ALL[..i].iter().all(|d| d.code() != c.code()), "{c:?} twice");
            assert!(!c.default_msg().is_empty());
        }
        assert_eq!(ErrorCode::from_code(-9999), None);
    }

    #[test]
    fn error_bodies_have_binances_shape() {
        let body = ErrorBody::new(ErrorCode::InvalidSignature);
        let json = r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#;
        assert_eq!(serde_json::to_string(&body).unwrap(), json);
        let read: ErrorBody = serde_json::from_str(json).unwrap();
        assert_eq!((read.error_code(), &read), (Some(ErrorCode::InvalidSignature), &body));
    }
}
