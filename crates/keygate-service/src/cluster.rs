//! Several nodes, one exchange: which node writes it, how the others follow it, and how their
//! commands reach the writer.
//!
//! - **One writer, fenced.** Each node's election task tries to take the writer's lock
//!   ([`keygate_store::WriterElection`]); the winner raises the term, reads the journal to its end
//!   and carries out commands. Every journal append checks the term in its own transaction, so a
//!   deposed writer can never append, even before it notices. The writer renews its lease every
//!   [`LOCK_CHECK`] and steps down when it cannot; the others try to take the lock every
//!   [`ELECTION_EVERY`], so a writer killed with `kill -9` is replaced within about a second, and
//!   end the lock's connection of a writer whose lease is older than [`WRITER_STALE`] (paused,
//!   cut off), which is then replaced within about four seconds.
//! - **Read copies.** The other nodes apply the journal as it grows (announced on PostgreSQL,
//!   and read every [`TAIL_POLL`] whatever happens to announcements). The exchange is
//!   deterministic, so each copy is the writer's state as of some journal entry; reads are
//!   answered from it.
//! - **Commands go to the writer** through [`Forward`], the channel between nodes (the server
//!   implements it over HTTP, signed with a key every node derives from the master key). The
//!   writer answers with the journal entry that includes the command; the sending node waits
//!   until its copy reaches that entry before it answers its client, so the client reads its own
//!   write on the node it used.

use crate::engine::{Committed, Engine, EngineError, Forwarded};
use crate::{Clock, ServiceResult};
use async_trait::async_trait;
use keygate_store::{Store, WriterLease, WriterLock};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// How often a node that is not the writer tries to take the writer's lock.
pub const ELECTION_EVERY: Duration = Duration::from_millis(500);

/// How often the writer renews its lease (which also shows it still holds its lock).
pub const LOCK_CHECK: Duration = Duration::from_millis(500);

/// How long a lease may go unrenewed, by the database's clock, before the other nodes depose
/// its writer: a writer that is paused or cut off, whose lock would otherwise last as long as
/// its connection looks open to PostgreSQL (hours, without TCP keepalives).
pub const WRITER_STALE: Duration = Duration::from_secs(3);

/// How often a read copy reads the journal when no announcement woke it.
pub const TAIL_POLL: Duration = Duration::from_millis(100);

/// How long a node that forwarded a command waits for its read copy to include it before it
/// answers anyway (the command is carried out either way).
pub const READ_YOUR_WRITE_WAIT: Duration = Duration::from_secs(2);

/// How often a node waiting for the writer's answer looks whether it was replaced meanwhile.
const REPLACED_POLL: Duration = Duration::from_millis(250);

/// Journal entries read per store call while following.
const TAIL_PAGE: u32 = 2_000;

/// Why a command did not reach the writer's engine, as the channel between nodes tells it.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing was sent (the writer could not be reached): safe to send again elsewhere.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// Sent, but no answer came back: the command may have been carried out.
    #[error("no answer: {0}")]
    NoAnswer(String),
}

/// The channel from a node to the exchange writer: delivers a command to the writer's
/// [`Engine::submit_local`] and brings back its answer.
#[async_trait]
pub trait Forward: Send + Sync {
    /// Sends `job` to the writer of `term` reachable at `endpoint` (as the writer's lease records
    /// them), signed with `key` (the channel key,
    /// [`keygate_store::WriterElection::channel_key`]). The term is signed too, and a writer
    /// carries out only calls made to its own term, so a call recorded before a takeover cannot
    /// be replayed to the next writer.
    ///
    /// # Errors
    /// [`ForwardError`] when the answer did not come back; the writer's own refusals come back
    /// as the inner `Err`.
    async fn forward(
        &self,
        endpoint: &str,
        term: i64,
        key: &[u8; 32],
        job: &Forwarded,
    ) -> Result<Result<Committed, EngineError>, ForwardError>;
}

/// Who this node is on the channel between nodes.
#[derive(Clone, Default)]
pub struct ClusterSetup {
    /// The node's name, recorded in the writer's lease (for operators).
    pub node: String,
    /// Where the other nodes reach this node's end of the channel, when it writes
    /// (`http://host:port`); empty when it cannot be reached (a CLI command).
    pub endpoint: String,
    /// How this node reaches the writer when it is not the writer; `None` when it cannot.
    pub forward: Option<Arc<dyn Forward>>,
}

impl std::fmt::Debug for ClusterSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSetup")
            .field("node", &self.node)
            .field("endpoint", &self.endpoint)
            .field("forward", &self.forward.is_some())
            .finish()
    }
}

/// What the engine, the election and the follower share about this node's role.
pub(crate) struct Cluster {
    store: Arc<dyn Store>,
    /// The term this node writes under; 0 while it follows.
    term: AtomicI64,
    /// The last journal entry the state includes.
    applied: watch::Sender<i64>,
    /// The writer as last read from its lease (to forward to).
    lease: Mutex<Option<WriterLease>>,
    forward: Option<Arc<dyn Forward>>,
    /// Signs and checks calls on the channel between nodes.
    channel_key: zeroize::Zeroizing<[u8; 32]>,
    /// Wakes the follower early (a forwarded command's answer names an entry not applied yet).
    kick: Notify,
    /// The writer's lock of an engine started on its own ([`Engine::start`]).
    kept: Mutex<Option<WriterLock>>,
    /// Set when the lock is lost, before the engine thread hears of it through its queue.
    demotion: std::sync::atomic::AtomicBool,
}

impl Cluster {
    pub(crate) fn new(store: Arc<dyn Store>, applied: i64, forward: Option<Arc<dyn Forward>>) -> Self {
        Self {
            channel_key: store.channel_key(),
            store,
            term: AtomicI64::new(0),
            applied: watch::Sender::new(applied),
            lease: Mutex::new(None),
            forward,
            kick: Notify::new(),
            kept: Mutex::new(None),
            demotion: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn request_demotion(&self) {
        self.demotion.store(true, Ordering::Release);
    }

    /// Whether a demotion was asked for since the last call (and forgets it).
    pub(crate) fn take_demotion(&self) -> bool {
        self.demotion.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn term(&self) -> i64 {
        self.term.load(Ordering::Acquire)
    }

    pub(crate) fn set_term(&self, term: i64) {
        self.term.store(term, Ordering::Release);
    }

    pub(crate) fn applied(&self) -> i64 {
        *self.applied.borrow()
    }

    pub(crate) fn set_applied(&self, seq: i64) {
        self.applied.send_replace(seq);
    }

    /// The key calls on the channel between nodes are signed with.
    pub(crate) fn channel_key(&self) -> &[u8; 32] {
        &self.channel_key
    }

    pub(crate) fn keep_lock(&self, lock: WriterLock) {
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Some(lock);
    }

    /// Waits until the state includes journal entry `seq`, at most [`READ_YOUR_WRITE_WAIT`].
    pub(crate) async fn wait_applied(&self, seq: i64) {
        let mut rx = self.applied.subscribe();
        if *rx.borrow_and_update() >= seq {
            return;
        }
        self.kick.notify_one();
        let reached = tokio::time::timeout(READ_YOUR_WRITE_WAIT, rx.wait_for(|a| *a >= seq)).await;
        if reached.is_err() {
            tracing::warn!(seq, "the read copy did not reach a forwarded command's entry in time; answering anyway");
        }
    }

    /// The writer's lease: the one last read, or read again from the store when `fresh`.
    async fn writer(&self, fresh: bool) -> Result<WriterLease, EngineError> {
        if !fresh && let Some(lease) = self.lease.lock().unwrap_or_else(PoisonError::into_inner).clone() {
            return Ok(lease);
        }
        let lease = self.store.current_writer().await.map_err(|e| EngineError::NoWriter(e.to_string()))?;
        *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease.clone());
        Ok(lease)
    }

    /// Has the writer carry out `job`. Sends again, to the writer read afresh from its lease,
    /// only when nothing was delivered or the receiver was no longer the writer, so a command is
    /// never carried out twice by a retry here.
    pub(crate) async fn forward(&self, job: &Forwarded) -> Result<Committed, EngineError> {
        let Some(forward) = &self.forward else {
            return Err(EngineError::NoWriter("this process has no channel to the exchange writer".into()));
        };
        let mut last = String::from("no writer is elected yet");
        for attempt in 0..3 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
            }
            let lease = self.writer(attempt > 0).await?;
            if lease.endpoint.is_empty() || lease.term == 0 {
                continue;
            }
            // A writer that is paused or cut off may never answer: once another node has taken
            // over (a new term), the old one can append nothing more, so the answer is no longer
            // worth waiting for (the command may have committed before the takeover: -1007).
            let sent = tokio::select! {
                answer = forward.forward(&lease.endpoint, lease.term, &self.channel_key, job) => answer,
                () = self.replaced(lease.term) => Err(ForwardError::NoAnswer(format!(
                    "node {:?} was replaced as the exchange writer while the command was in flight",
                    lease.node
                ))),
            };
            match sent {
                Ok(Err(EngineError::NotWriter)) => {
                    last = format!("node {:?} no longer writes the exchange", lease.node)
                }
                Ok(answer) => return answer,
                Err(ForwardError::Unreachable(why)) => last = format!("node {:?}: {why}", lease.node),
                Err(ForwardError::NoAnswer(why)) => return Err(EngineError::Unknown(why)),
            }
        }
        Err(EngineError::NoWriter(last))
    }

    /// Resolves once the lease names a term other than `term` (read every [`REPLACED_POLL`]).
    async fn replaced(&self, term: i64) {
        loop {
            tokio::time::sleep(REPLACED_POLL).await;
            if let Ok(lease) = self.store.current_writer().await
                && lease.term != term
            {
                *self.lease.lock().unwrap_or_else(PoisonError::into_inner) = Some(lease);
                return;
            }
        }
    }
}

/// Starts this node's part in the cluster for `engine` (started as a read copy): one attempt to
/// become the writer before returning, so a lone node serves as the writer from its first
/// request; then the election and the follower as background tasks (returned, for the service to
/// stop at shutdown).
pub(crate) async fn join(
    engine: Engine,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    setup: &ClusterSetup,
) -> ServiceResult<Vec<JoinHandle<()>>> {
    let (node, endpoint) = (setup.node.clone(), setup.endpoint.clone());
    let first = store.claim_writer(&node, &endpoint, clock.now().as_millis()).await?;
    let mut tasks = Vec::new();
    let lock = match first {
        Some(claim) => {
            engine.promote(claim.term).await?;
            Some(claim.lock)
        }
        None => None,
    };
    tasks.push(tokio::spawn(elect(engine.clone(), Arc::clone(&store), clock, node, endpoint, lock)));
    if let Some(listener) = store.listen_journal().await? {
        tasks.push(tokio::spawn(tail(engine, store, listener)));
    }
    Ok(tasks)
}

/// The election: holds the writer's lock while it lasts, and tries to take it while another node
/// holds it.
async fn elect(
    engine: Engine,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    node: String,
    endpoint: String,
    mut lock: Option<WriterLock>,
) {
    let stale_ms = u64::try_from(WRITER_STALE.as_millis()).unwrap_or(u64::MAX);
    loop {
        match lock.as_mut() {
            Some(held) => {
                tokio::time::sleep(LOCK_CHECK).await;
                let term = engine.term();
                let lost = if term == 0 {
                    true
                } else {
                    match held.renew(term).await {
                        Ok(()) => false,
                        Err(e) => {
                            tracing::warn!(error = %e, "the exchange writer's lease is lost");
                            true
                        }
                    }
                };
                if lost {
                    engine.demote().await;
                    lock = None;
                }
            }
            None => {
                tokio::time::sleep(ELECTION_EVERY).await;
                match store.claim_writer(&node, &endpoint, clock.now().as_millis()).await {
                    Ok(Some(claim)) => match engine.promote(claim.term).await {
                        Ok(()) => lock = Some(claim.lock),
                        // Dropping the lock lets another node try.
                        Err(e) => tracing::warn!(error = %e, "took the writer's lock but could not catch up; released"),
                    },
                    // Held elsewhere: by a live writer, or by one that stopped renewing.
                    Ok(None) => match store.depose_stale_writer(stale_ms).await {
                        Ok(true) => tracing::warn!(
                            "the exchange writer stopped renewing its lease; its lock's connection was ended"
                        ),
                        Ok(false) => {}
                        Err(e) => tracing::debug!(error = %e, "cannot check the writer's lease"),
                    },
                    Err(e) => tracing::debug!(error = %e, "cannot try for the writer's lock"),
                }
            }
        }
    }
}

/// The follower: applies the journal to this node's read copy as it grows, while this node does
/// not write it.
async fn tail(engine: Engine, store: Arc<dyn Store>, mut listener: keygate_store::changes::ChangeListener) {
    let wake = Arc::new(Notify::new());
    let hear = {
        let (wake, store) = (Arc::clone(&wake), Arc::clone(&store));
        tokio::spawn(async move {
            loop {
                match listener.next().await {
                    Ok(_) => wake.notify_one(),
                    Err(_) => {
                        wake.notify_one();
                        tokio::time::sleep(TAIL_POLL).await;
                        if let Ok(Some(l)) = store.listen_journal().await {
                            listener = l;
                        }
                    }
                }
            }
        })
    };
    let _stop_hearing = AbortOnDrop(hear);
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = engine.cluster_kicked() => {}
            () = tokio::time::sleep(TAIL_POLL) => {}
        }
        if engine.is_writer() {
            continue;
        }
        loop {
            match store.journal_after(engine.applied(), TAIL_PAGE).await {
                Ok(entries) if entries.is_empty() => break,
                Ok(entries) => {
                    let full = entries.len() >= TAIL_PAGE as usize;
                    if engine.follow(entries).await.is_err() || !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the journal failed; the read copy waits");
                    break;
                }
            }
        }
    }
}

/// Aborts a task when dropped (the listener's, when the follower stops).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Engine {
    /// Resolves when a forwarded command's caller asked the follower to read the journal now.
    async fn cluster_kicked(&self) {
        self.cluster_ref().kick.notified().await;
    }
}
