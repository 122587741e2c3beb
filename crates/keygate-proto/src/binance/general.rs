//! Answers shared by every family: server time, system status, `{}`, and "one or many".

use crate::UnixMillis;
use serde::{Deserialize, Serialize};

/// `GET /api/v3/time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerTime {
    /// Server time, for clients that measure their clock offset.
    pub server_time: UnixMillis,
}

/// `GET /sapi/v1/system/status`: `{"msg":"normal","status":0}` while serving (`msg` first, as
/// keygate has always written it; clients read the fields by name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemStatus {
    /// `normal` or `system_maintenance`.
    pub msg: String,
    /// 0 normal, 1 system maintenance.
    pub status: u8,
}

/// `{}`: what `ping` and a plain test order answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyObject {}

/// The answer of endpoints that take `symbol` or `symbols`: one object for `symbol=X`, an array
/// for `symbols=[..]` or for every market.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// `symbols=[..]`, or every market (tried first when reading: an array is never one object).
    Many(Vec<T>),
    /// `symbol=X`.
    One(T),
}

impl<T> OneOrMany<T> {
    /// The answer as a list, whichever shape it came in.
    #[must_use]
    pub fn into_vec(self) -> Vec<T> {
        match self {
            Self::Many(v) => v,
            Self::One(t) => vec![t],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binance::golden::round_trip;
    use crate::binance::market::Price;
    use crate::{Amount, Symbol};

    #[test]
    fn general_answers_have_binances_shape() {
        round_trip(&ServerTime { server_time: UnixMillis(1_767_225_600_000) }, r#"{"serverTime":1767225600000}"#);
        round_trip(&SystemStatus { msg: "normal".to_owned(), status: 0 }, r#"{"msg":"normal","status":0}"#);
        round_trip(&EmptyObject {}, "{}");
    }

    #[test]
    fn one_symbol_is_an_object_and_several_are_an_array() {
        let price = Price { symbol: Symbol::parse("BTCUSDT").unwrap(), price: Amount::parse("50000").unwrap() };
        let one = r#"{"symbol":"BTCUSDT","price":"50000.00000000"}"#;
        round_trip(&OneOrMany::One(price.clone()), one);
        round_trip(&OneOrMany::Many(vec![price.clone()]), &format!("[{one}]"));
        round_trip(&OneOrMany::<Price>::Many(Vec::new()), "[]");
        assert_eq!(OneOrMany::One(price.clone()).into_vec(), vec![price]);
    }
}
