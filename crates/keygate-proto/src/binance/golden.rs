//! Golden-string checks shared by the wire type tests.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Asserts that `value` serialises to exactly `json` and that `json` deserialises back to it.
#[track_caller]
pub(crate) fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T, json: &str) {
    let written = serde_json::to_string(value).unwrap_or_else(|e| panic!("serialising {value:?}: {e}"));
    assert_eq!(written, json);
    let read: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("deserialising {json}: {e}"));
    assert_eq!(&read, value);
}
