//! The JSON shapes of the Binance Spot REST endpoints keygate serves, one module per family.
//!
//! Each type is the answer of an endpoint field for field as Binance sends it: camelCase names
//! (the misspelt `cummulativeQuoteQty` included), decimals as strings with eight decimals
//! ([`Amount`](crate::Amount)), ids and times as integers, `orderListId: -1`. The server
//! serialises them and the client crate deserialises them, so the two cannot drift apart; the
//! golden tests beside each type pin the exact bytes that python-binance, ccxt and the official
//! SDK read.
//!
//! Where the exchange engine's answer to a query already is the wire shape (balances, trades,
//! fills, depth, tickers, klines, deposit addresses) the engine uses these types itself; records
//! that hold more than the wire shows (an order's owner and locked funds, a deposit's account)
//! stay the engine's, and the server converts them.

pub mod account;
pub mod general;
pub mod market;
pub mod trading;
pub mod wallet;

#[cfg(test)]
pub(crate) mod golden;
