//! Ed25519 signatures of concurrent requests gathered into batches
//! ([`keygate_auth::ed25519_batch`] says why and what a batch accepts).
//!
//! No thread of its own and no timer: a request that arrives while fewer batches are being checked
//! than there are lanes leads, checking its own signature at once, so a lone request waits for
//! nothing. Requests that arrive while every lane is busy queue; when a leader is done it hands the
//! lead to the longest-waiting one, which checks everything queued by then (up to [`MAX_BATCH`])
//! as one batch and answers the others. Under load, batches grow to what arrives during one
//! batch. A server has one lane fewer than it has worker threads (at least one), so that a thread
//! is left to serve connections while the others check signatures: with two, one thread checks
//! batches while the other reads the requests that fill the next.
//!
//! The lead is never lost: a leader that panics hands it on from a drop guard, and a waiter
//! whose request is dropped (its client went away) before it took up the lead passes it on
//! (`Waiting`'s drop).

use keygate_auth::GoodSignature;
use keygate_auth::ed25519_batch::{Ed25519Check, MAX_BATCH, verify_all};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::sync::oneshot;

/// The queue of Ed25519 checks, shared by every request of a server.
#[derive(Debug)]
pub struct Ed25519Batches {
    queue: Mutex<Queue>,
    /// Batches checked at the same time at most.
    lanes: usize,
}

impl Default for Ed25519Batches {
    /// One lane.
    fn default() -> Self {
        Self::new(1)
    }
}

#[derive(Debug, Default)]
struct Queue {
    waiting: VecDeque<Waiter>,
    /// Requests checking a batch, or handed the lead and about to.
    leaders: usize,
    /// Batches checked, and signatures in them, since start (for the metrics).
    batches: u64,
    signatures: u64,
}

#[derive(Debug)]
struct Waiter {
    check: Box<Ed25519Check>,
    answer: oneshot::Sender<Turn>,
}

/// What a waiting request is told.
#[derive(Debug)]
enum Turn {
    /// Its verdict.
    Checked(Option<GoodSignature>),
    /// It leads now, starting with its own check.
    Lead(Box<Ed25519Check>),
}

impl Ed25519Batches {
    /// A queue checking at most `lanes` batches at a time (at least one).
    #[must_use]
    pub fn new(lanes: usize) -> Self {
        Self { queue: Mutex::new(Queue::default()), lanes: lanes.max(1) }
    }

    /// The lanes for a runtime of `workers` worker threads: all but one, and at least one.
    #[must_use]
    pub fn lanes_for(workers: usize) -> usize {
        workers.saturating_sub(1).max(1)
    }

    /// Checks `check`, alone or in a batch with other requests' checks.
    pub async fn verify(&self, check: Box<Ed25519Check>) -> Option<GoodSignature> {
        let waiting = {
            let mut q = self.lock();
            if q.leaders < self.lanes {
                q.leaders += 1;
                drop(q);
                return self.lead(check);
            }
            let (answer, turn) = oneshot::channel();
            q.waiting.push_back(Waiter { check, answer });
            Waiting { batches: self, turn }
        };
        waiting.await
    }

    /// Batches checked and signatures checked in them since the server started.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        let q = self.lock();
        (q.batches, q.signatures)
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Checks `own` with what is queued, answers the others and hands the lead on. Synchronous:
    /// nothing can cancel a leader halfway.
    fn lead(&self, own: Box<Ed25519Check>) -> Option<GoodSignature> {
        let _hand_on = HandOn(self);
        let batch: Vec<Waiter> = {
            let mut q = self.lock();
            let n = q.waiting.len().min(MAX_BATCH - 1);
            q.waiting.drain(..n).collect()
        };
        let mut checks = Vec::with_capacity(batch.len() + 1);
        checks.push(*own);
        let mut answers = Vec::with_capacity(batch.len());
        for w in batch {
            checks.push(*w.check);
            answers.push(w.answer);
        }
        let verdicts = verify_all(&checks);
        {
            let mut q = self.lock();
            q.batches += 1;
            q.signatures += checks.len() as u64;
        }
        let mut verdicts = verdicts.into_iter();
        let mine = verdicts.next().flatten();
        for (answer, verdict) in answers.into_iter().zip(verdicts) {
            // A waiter that went away needs no answer.
            let _ = answer.send(Turn::Checked(verdict));
        }
        mine
    }

    /// Gives the lead to the longest-waiting request still there, or frees the lane when none
    /// waits.
    fn hand_on(&self) {
        loop {
            let next = {
                let mut q = self.lock();
                match q.waiting.pop_front() {
                    Some(w) => w,
                    None => {
                        q.leaders = q.leaders.saturating_sub(1);
                        return;
                    }
                }
            };
            // A request that went away cannot lead: try the next.
            if next.answer.send(Turn::Lead(next.check)).is_ok() {
                return;
            }
        }
    }
}

/// Hands the lead on when the leader is done, and also if checking panicked (its waiters' answers
/// are then dropped, and each refuses its request).
struct HandOn<'a>(&'a Ed25519Batches);

impl Drop for HandOn<'_> {
    fn drop(&mut self) {
        self.0.hand_on();
    }
}

/// A queued request waiting for its verdict or the lead.
struct Waiting<'a> {
    batches: &'a Ed25519Batches,
    turn: oneshot::Receiver<Turn>,
}

impl std::future::Future for Waiting<'_> {
    type Output = Option<GoodSignature>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        use std::task::Poll;
        match std::pin::Pin::new(&mut self.turn).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Turn::Checked(verdict))) => Poll::Ready(verdict),
            Poll::Ready(Ok(Turn::Lead(own))) => Poll::Ready(self.batches.lead(own)),
            // The leader panicked before answering: refuse.
            Poll::Ready(Err(_)) => Poll::Ready(None),
        }
    }
}

impl Drop for Waiting<'_> {
    /// A request dropped while queued (its client went away) may have been handed the lead
    /// already: pass it on, or every later Ed25519 request would wait forever.
    fn drop(&mut self) {
        // After `close`, no lead can arrive unseen: a later send fails and the sender tries the
        // next waiter.
        self.turn.close();
        if let Ok(Turn::Lead(_)) = self.turn.try_recv() {
            self.batches.hand_on();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer as _, SigningKey};
    use std::sync::Arc;

    fn check(i: usize, good: bool) -> Box<Ed25519Check> {
        let key = SigningKey::from_bytes(&[3; 32]);
        let message = format!("timestamp={i}").into_bytes();
        let mut sig = key.sign(&message).to_bytes();
        if !good {
            sig[40] ^= 1;
        }
        Box::new(Ed25519Check::new(key.verifying_key(), &sig, message))
    }

    #[tokio::test]
    async fn a_lone_request_leads_and_is_checked_at_once() {
        let batches = Ed25519Batches::default();
        assert!(batches.verify(check(1, true)).await.is_some());
        assert!(batches.verify(check(2, false)).await.is_none());
        assert_eq!(batches.counts(), (2, 2));
        assert_eq!(batches.lock().leaders, 0);
    }

    #[tokio::test]
    async fn requests_queued_behind_a_leader_are_checked_in_full_batches_each_with_its_own_verdict() {
        let batches = Ed25519Batches::default();
        // A leader is busy; forty requests queue behind it, every third with a bad signature.
        batches.lock().leaders = 1;
        let checks: Vec<_> = (0..40).map(|i| check(i, i % 3 != 1)).collect();
        let expected: Vec<_> = checks.iter().map(|c| c.verify()).collect();
        let mut queued: Vec<_> = checks.into_iter().map(|c| Box::pin(batches.verify(c))).collect();
        for q in &mut queued {
            assert!(futures_poll(q.as_mut()).is_pending());
        }
        // The leader finishes: the first queued request leads and checks a full batch, then hands
        // the lead to the first of the rest, which checks them.
        batches.hand_on();
        for (i, (q, expected)) in queued.into_iter().zip(expected).enumerate() {
            let got = q.await;
            assert_eq!(got, expected, "request {i}");
            assert_eq!(got.is_some(), i % 3 != 1);
        }
        assert_eq!(batches.counts(), (2, 40), "a batch of {MAX_BATCH}, then one of the other {}", 40 - MAX_BATCH);
        assert_eq!(batches.lock().leaders, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_each_get_their_own_verdict() {
        let batches = Arc::new(Ed25519Batches::default());
        let tasks: Vec<_> = (0..400)
            .map(|i| {
                let batches = Arc::clone(&batches);
                tokio::spawn(async move {
                    let c = check(i, i % 7 != 3);
                    let expected = c.verify();
                    (batches.verify(c).await, expected, i % 7 != 3)
                })
            })
            .collect();
        for t in tasks {
            let (got, expected, good) = t.await.unwrap();
            assert_eq!(got, expected);
            assert_eq!(got.is_some(), good);
        }
        assert_eq!(batches.counts().1, 400);
        assert_eq!(batches.lock().leaders, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_after_being_handed_the_lead_passes_it_on() {
        let batches = Ed25519Batches::default();
        // A leader is busy (as if checking); two requests queue behind it.
        batches.lock().leaders = 1;
        let mut first = Box::pin(batches.verify(check(1, true)));
        let mut second = Box::pin(batches.verify(check(2, true)));
        assert!(futures_poll(first.as_mut()).is_pending());
        assert!(futures_poll(second.as_mut()).is_pending());
        // The leader finishes and hands the lead to the first, whose client has gone away.
        batches.hand_on();
        drop(first);
        // The lead went on to the second, which checks its own signature (rather than waiting
        // for ever on a lead nobody holds).
        let second = tokio::time::timeout(std::time::Duration::from_secs(10), second).await;
        assert!(second.expect("the lead was passed on").is_some());
        assert_eq!(batches.lock().leaders, 0, "nobody holds the lead");
        assert!(batches.verify(check(3, true)).await.is_some(), "a later request leads");
    }

    #[tokio::test]
    async fn requests_lead_in_every_free_lane_and_queue_only_when_all_are_busy() {
        assert_eq!(
            (Ed25519Batches::lanes_for(1), Ed25519Batches::lanes_for(2), Ed25519Batches::lanes_for(8)),
            (1, 1, 7)
        );
        let batches = Ed25519Batches::new(3);
        // Two lanes busy: a third request leads at once.
        batches.lock().leaders = 2;
        let mut third = Box::pin(batches.verify(check(1, true)));
        assert!(futures_poll(third.as_mut()).is_ready());
        assert_eq!(batches.lock().leaders, 2, "its lane was freed again");
        // Three busy: a request queues until one of them hands on.
        batches.lock().leaders = 3;
        let mut fourth = Box::pin(batches.verify(check(2, true)));
        assert!(futures_poll(fourth.as_mut()).is_pending());
        batches.hand_on();
        assert!(matches!(futures_poll(fourth.as_mut()), std::task::Poll::Ready(Some(_))));
        assert_eq!(batches.lock().leaders, 2);
    }

    #[tokio::test]
    async fn a_waiter_gone_before_the_lead_is_skipped() {
        let batches = Ed25519Batches::default();
        batches.lock().leaders = 1;
        let mut first = Box::pin(batches.verify(check(1, true)));
        assert!(futures_poll(first.as_mut()).is_pending());
        drop(first);
        batches.hand_on();
        assert_eq!(batches.lock().leaders, 0);
    }

    /// Polls once with a waker that does nothing.
    fn futures_poll<F: std::future::Future + ?Sized>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        f.poll(&mut cx)
    }
}
