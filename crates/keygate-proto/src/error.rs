//! Binance error codes and the `{"code":..,"msg":..}` body every error answers with.
//!
//! Codes and messages follow Binance's `errors.md`; the HTTP status for each code is chosen by the
//! server (one exhaustive match), since status is transport, not wire shape.

use serde::{Deserialize, Serialize};

/// The Binance error codes keygate answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// -1000 UNKNOWN: an internal failure; the cause is logged, never sent.
    Unknown,
    /// -1002 UNAUTHORIZED.
    Unauthorized,
    /// -1003 TOO_MANY_REQUESTS: a rate limit, or the replay guard being full.
    TooManyRequests,
    /// -1015 TOO_MANY_ORDERS: an account's order-count limit.
    TooManyOrders,
    /// -1014 UNKNOWN_ORDER_COMPOSITION / unsupported operation.
    UnsupportedOperation,
    /// -1021 INVALID_TIMESTAMP: outside `recvWindow` or too far ahead.
    InvalidTimestamp,
    /// -1022 INVALID_SIGNATURE.
    InvalidSignature,
    /// -1100 ILLEGAL_CHARS: a parameter with characters or a format it may not have.
    IllegalChars,
    /// -1101 TOO_MANY_PARAMETERS: includes a parameter sent twice.
    TooManyParameters,
    /// -1102 MANDATORY_PARAM_EMPTY_OR_MALFORMED.
    MandatoryParamEmptyOrMalformed,
    /// -1104 UNREAD_PARAMETERS: parameters the endpoint does not take.
    UnreadParameters,
    /// -1121 BAD_SYMBOL.
    BadSymbol,
    /// -1131 BAD_RECV_WINDOW.
    BadRecvWindow,
    /// -2014 BAD_API_KEY_FMT.
    BadApiKeyFormat,
    /// -2015 REJECTED_MBX_KEY: invalid key, IP or permission, deliberately one code.
    RejectedApiKey,
}

impl ErrorCode {
    /// Binance's numeric code.
    #[must_use]
    pub const fn code(self) -> i32 {
        match self {
            Self::Unknown => -1000,
            Self::Unauthorized => -1002,
            Self::TooManyRequests => -1003,
            Self::TooManyOrders => -1015,
            Self::UnsupportedOperation => -1014,
            Self::InvalidTimestamp => -1021,
            Self::InvalidSignature => -1022,
            Self::IllegalChars => -1100,
            Self::TooManyParameters => -1101,
            Self::MandatoryParamEmptyOrMalformed => -1102,
            Self::UnreadParameters => -1104,
            Self::BadSymbol => -1121,
            Self::BadRecvWindow => -1131,
            Self::BadApiKeyFormat => -2014,
            Self::RejectedApiKey => -2015,
        }
    }

    /// Binance's message for the code where it has a fixed one.
    #[must_use]
    pub const fn default_msg(self) -> &'static str {
        match self {
            Self::Unknown => "An unknown error occurred while processing the request.",
            Self::Unauthorized => "You are not authorized to execute this request.",
            Self::TooManyRequests => "Too many requests.",
            Self::TooManyOrders => "Too many new orders.",
            Self::UnsupportedOperation => "Unsupported order combination.",
            Self::InvalidTimestamp => "Timestamp for this request is outside of the recvWindow.",
            Self::InvalidSignature => "Signature for this request is not valid.",
            Self::IllegalChars => "Illegal characters found in a parameter.",
            Self::TooManyParameters => "Too many parameters sent for this endpoint.",
            Self::MandatoryParamEmptyOrMalformed => "A mandatory parameter was not sent, was empty/null, or malformed.",
            Self::UnreadParameters => "Not all sent parameters were read.",
            Self::BadSymbol => "Invalid symbol.",
            Self::BadRecvWindow => "recvWindow must be less than 60000",
            Self::BadApiKeyFormat => "API-key format invalid.",
            Self::RejectedApiKey => "Invalid API-key, IP, or permissions for action.",
        }
    }
}

/// The JSON body of every error: `{"code":-1022,"msg":"Signature for this request is not valid."}`.
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
}
