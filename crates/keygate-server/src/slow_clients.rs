//! Defences against clients that hold connections without finishing their requests.
//!
//! Two limits, each against one way of starving everyone else of the connection cap:
//! - [`DeadlineBody`]: a request body must arrive whole within a fixed time of its headers. A
//!   per-chunk idle timeout (tower-http's) restarts with every byte, so one byte every few seconds
//!   kept a request, and its connection, alive indefinitely.
//! - [`PerIpConnections`]: one client address (IPv6: its /64) holds at most a share of the
//!   connections, so a single host opening thousands cannot take every slot.

use axum::body::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use tokio::time::{Instant, Sleep};

/// The error a body reports once its deadline has passed; handlers tell it apart from other body
/// errors (size limit, broken connection) by downcasting.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within its deadline")]
pub struct BodyDeadlineExceeded;

/// True if and only if `err` (or anything in its source chain) is [`BodyDeadlineExceeded`].
#[must_use]
pub fn is_body_deadline(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyDeadlineExceeded>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// Whether reading a body failed because it was longer than the limit it was read with (axum's
/// `to_bytes`), rather than because it stopped short: a client that closes its connection in the
/// middle of a body sent too little, not too much.
pub fn is_body_limit(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A request body that fails with [`BodyDeadlineExceeded`] once a fixed instant has passed,
/// however steadily its bytes trickle in.
///
/// The timer is created on the first poll, so a request whose body is never read (most signed
/// reads have none) costs no timer and no allocation.
#[derive(Debug)]
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    /// `inner`, which must end by `deadline`.
    pub fn new(inner: B, deadline: Instant) -> Self {
        Self { inner, deadline, sleep: None }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyDeadlineExceeded))));
        }
        Pin::new(&mut this.inner).poll_frame(cx).map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Open connections per client address, capped.
#[derive(Debug)]
pub struct PerIpConnections {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PerIpConnections`], given back when dropped.
#[derive(Debug)]
pub struct IpSlot {
    table: Arc<PerIpConnections>,
    key: IpAddr,
}

impl PerIpConnections {
    /// A table allowing `max` connections per address (IPv6 per /64).
    #[must_use]
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self { max, open: Mutex::new(HashMap::new()) })
    }

    /// A place for one more connection from `ip`, or `None` when that address already holds
    /// its share.
    pub fn take(table: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let key = crate::client_ip::counting_key(ip);
        let mut open = table.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(key).or_insert(0);
        if *n >= table.max {
            return None;
        }
        *n += 1;
        Some(IpSlot { table: Arc::clone(table), key })
    }

    /// Connections now open from `ip`'s address (or /64), for tests and metrics.
    #[must_use]
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&crate::client_ip::counting_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_and_a_closed_connection_gives_its_place_back() {
        let t = PerIpConnections::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let b: IpAddr = "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let first = PerIpConnections::take(&t, a);
        let second = PerIpConnections::take(&t, a);
        assert!(first.is_some() && second.is_some());
        assert!(PerIpConnections::take(&t, a).is_none(), "a third from one address is refused");
        assert!(PerIpConnections::take(&t, b).is_some(), "another address is unaffected");
        drop(first);
        assert_eq!(t.open_from(a), 1);
        assert!(PerIpConnections::take(&t, a).is_some());
        // One IPv6 host usually owns its /64: counted together.
        let v6 = |s: &str| s.parse::<IpAddr>().unwrap_or(IpAddr::from([0u8; 16]));
        let _x = PerIpConnections::take(&t, v6("2001:db8::1"));
        let _y = PerIpConnections::take(&t, v6("2001:db8::2"));
        assert!(PerIpConnections::take(&t, v6("2001:db8::ffff")).is_none());
    }
}
