//! The exchange engine runner: one thread owns the order books and the ledger.
//!
//! The LMAX / exchange-core shape (DESIGN.md section 5): commands arrive on a channel; the engine
//! thread takes a batch, applies each command to the pure [`Exchange`], appends the batch's
//! accepted commands to the store's journal in one transaction, and only then answers every
//! command of the batch and runs the batch's read queries. An acknowledged order is therefore on
//! disk, and a reader never sees state that is not. Periodic snapshots bound the replay at start:
//! restarting loads the latest snapshot and re-applies the journal after it, which rebuilds exactly
//! the same state because the exchange is deterministic (each journal entry carries the time the
//! engine applied it).

use crate::{Clock, ServiceError};
use keygate_exchange::{
    BalanceView, ChangedAccounts, Command, Exchange, ExchangeConfig, ExchangeError, NewOrder, OpenOrderIds, OrderBoard,
    OrderType, Outcome,
};
use keygate_proto::{AccountId, Amount, Symbol, UnixMicros, UnixMillis};
use keygate_store::{AuditDraft, JournalEntry, Store};
use rustc_hash::FxHashMap;
use std::any::Any;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use tokio::sync::oneshot;

/// Most commands applied and committed together.
const MAX_BATCH: usize = 512;
/// Queue length in front of the engine; beyond it callers are told to retry (429).
const QUEUE: usize = 8192;

/// Why the engine could not answer a command. Serialisable: the exchange's writer tells another
/// node why it refused that node's command (see [`crate::cluster`]).
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EngineError {
    /// The exchange refused the command (Binance code and message inside).
    #[error(transparent)]
    Rejected(#[from] ExchangeError),
    /// The request's `recvWindow` passed before the command reached the engine (-1021).
    #[error("Timestamp for this request is outside of the recvWindow.")]
    Expired,
    /// The queue in front of the engine is full.
    #[error("the exchange is busy; retry shortly")]
    Busy,
    /// Writing the journal failed; nothing of the batch was acknowledged.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The engine thread has stopped.
    #[error("the exchange engine is not running")]
    Stopped,
    /// The request's single-use signature was already used for a command, on this node or
    /// another, before or after a restart (-1022).
    #[error("this signature was already used")]
    Replayed,
    /// A journal append failed and the exchange could not yet be rebuilt from the store: no
    /// command or read is served until it is (the state in memory may hold what was refused).
    #[error("the exchange is unavailable until its state is rebuilt from storage; retry shortly")]
    Unavailable,
    /// This node does not write the exchange and could not reach the node that does (none is
    /// elected yet, or it is not answering): nothing was done; retry shortly (-1001).
    #[error("the exchange writer cannot be reached ({0}); retry shortly")]
    NoWriter(String),
    /// The command was sent to the exchange writer but its answer was lost: it may or may not
    /// have been carried out (Binance's -1007); query before retrying.
    #[error("the exchange writer did not answer ({0}); execution status unknown")]
    Unknown(String),
    /// Asked of a node that is not the exchange writer (on the channel between nodes; the
    /// sender asks the current writer instead).
    #[error("this node is not the exchange writer")]
    NotWriter,
}

/// A command as the exchange writer carries it out, whichever node received it: what
/// [`Engine::submit_audited`] takes, as data, so it can travel to the writer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Forwarded {
    /// The exchange command.
    pub command: Command,
    /// The end of the request's `recvWindow`, checked again when the command reaches the engine.
    pub fresh_until: Option<UnixMicros>,
    /// The durable identity of the request's single-use signature, if it has one.
    pub single_use: Option<[u8; 32]>,
    /// The audit record to write with the command's journal entry; the engine adds the id of
    /// the record the exchange made (a deposit's, a withdrawal's) to its details as `id`.
    pub audit: Option<AuditDraft>,
}

/// An applied command: what the exchange answered, and the journal position up to which the
/// state includes it (a node that forwarded the command waits until its read copy reaches it, so
/// its client reads its own write there).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Committed {
    /// The exchange's answer.
    pub outcome: Outcome,
    /// The last journal entry of the batch the command was committed in.
    pub seq: i64,
}

type Query = Box<dyn FnOnce(&Exchange) + Send>;

/// `draft` with what only the exchange knows added to its details: the id of the record
/// `outcome` made (a deposit's, a withdrawal's) as `id`, and a deposit's network as `network`
/// (the request may leave it to the coin's default).
fn complete_audit(mut draft: AuditDraft, outcome: &Outcome) -> AuditDraft {
    let (id, network) = match outcome {
        Outcome::Deposited(r) => (Some(r.id.clone()), Some(r.network.clone())),
        Outcome::WithdrawApplied(r) => (Some(r.id.clone()), None),
        _ => (None, None),
    };
    if let serde_json::Value::Object(details) = &mut draft.details {
        if let Some(id) = id {
            details.insert("id".into(), serde_json::Value::String(id));
        }
        if let Some(network) = network {
            details.insert("network".into(), serde_json::Value::String(network));
        }
    }
    draft
}

// `Mutate` is the common case (every order); boxing it would allocate once per command.
#[allow(clippy::large_enum_variant)]
enum Job {
    Mutate {
        job: Forwarded,
        reply: oneshot::Sender<Result<Committed, EngineError>>,
    },
    /// Commands applied in order within one batch: no reader sees the state between two of them.
    MutateAll {
        commands: Vec<Command>,
        reply: oneshot::Sender<Vec<Result<Outcome, EngineError>>>,
    },
    Query(Query),
    /// Journal entries another node's engine committed, for this node's read copy.
    Follow(Vec<JournalEntry>, oneshot::Sender<()>),
    /// Become the writer under `term`: read the journal to its end, then take commands.
    Promote(i64, oneshot::Sender<Result<(), EngineError>>),
    /// Stop taking commands (the writer's lock was lost).
    Demote,
}

/// A reply owed once the batch is committed (or refused).
// `One` is the common case (every order); boxing its result would allocate once per command.
#[allow(clippy::large_enum_variant)]
enum Pending {
    One(oneshot::Sender<Result<Committed, EngineError>>, Result<Outcome, EngineError>),
    All(oneshot::Sender<Vec<Result<Outcome, EngineError>>>, Vec<Result<Outcome, EngineError>>),
}

impl Pending {
    /// Sends the results, each turned into `failed` if it had succeeded and the batch did not
    /// commit; `seq` is the batch's last journal entry.
    fn send(self, failed: Option<&EngineError>, seq: i64) {
        let settle = |r: Result<Outcome, EngineError>| match failed {
            Some(EngineError::Storage(cause)) => r.and(Err(EngineError::Storage(cause.clone()))),
            Some(_) => r.and(Err(EngineError::Unavailable)),
            None => r,
        };
        match self {
            Self::One(reply, result) => {
                let _ = reply.send(settle(result).map(|outcome| Committed { outcome, seq }));
            }
            Self::All(reply, results) => {
                let _ = reply.send(results.into_iter().map(settle).collect());
            }
        }
    }
}

/// A handle to the engine thread; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    tx: SyncSender<Job>,
    reads: Arc<Reads>,
    stats: Arc<Stats>,
    cluster: Arc<crate::cluster::Cluster>,
    /// Read for a test order's window when it is checked off the engine thread.
    clock: Arc<dyn Clock>,
}

/// Called with the time each journal commit took (the store's transaction for one batch).
pub type CommitObserver = Box<dyn Fn(std::time::Duration) + Send + Sync>;

/// What the engine tells operators about itself: read by the server's metrics, never by a
/// decision. Kept here as plain numbers so this crate needs no metrics library.
#[derive(Default)]
struct Stats {
    /// Jobs sent and not yet taken by the engine thread. Counted up before a job is sent and
    /// down when the engine takes it, so it never goes below zero.
    queued: std::sync::atomic::AtomicUsize,
    /// Told each commit's duration, once a server has asked to be.
    on_commit: OnceLock<CommitObserver>,
    /// Set while the in-memory exchange may differ from the store (a failed append not yet
    /// rolled back by a rebuild): callers are refused at once.
    unavailable: std::sync::atomic::AtomicBool,
}

/// What `GET /api/v3/account` reads from the exchange, as of one committed state.
#[derive(Debug)]
pub struct AccountView {
    /// Every configured asset's balance, zero ones included.
    pub balances: Vec<BalanceView>,
    /// Maker and taker fee of the first market, if there is one.
    pub fees: Option<(Amount, Amount)>,
    /// The exchange's clock when the view was computed: the account has not changed since.
    pub update_time: UnixMillis,
    /// The account's open orders as a test order's checks read them (see [`Engine::test_order`]).
    pub open_orders: OpenOrderIds,
    /// Whatever a caller derives from this view and wants to keep exactly as long as the view is
    /// served (the HTTP layer keeps its serialized answers here, so an unchanged account is not
    /// serialized again on every read). Empty when the view is made; the engine never reads it.
    pub memo: OnceLock<Box<dyn Any + Send + Sync>>,
}

/// Account views computed on the engine thread, each reused until its account changes, and the
/// exchange's [`OrderBoard`] as of the last committed batch.
///
/// A read otherwise hops to the engine thread and back (two thread wake-ups, measured as the
/// largest single cost of a signed account read). Only the engine thread writes here: a query
/// inserts the view it computed, and after a batch is committed, before any of its replies is
/// sent, the engine drops the views of the accounts the batch changed (all of them when it changed
/// too many to list, or was rolled back) and, if the batch changed the exchange, publishes its new
/// board, both under one lock. So a client that has seen the answer to its order is never served
/// a view or board older than that order, and what is served from here is exactly what a query
/// on the engine thread would answer. Trading on one account leaves every other account's view
/// cached.
#[derive(Debug, Default)]
struct Reads {
    state: Mutex<ReadState>,
}

/// What [`Reads`] guards.
#[derive(Debug, Default)]
struct ReadState {
    accounts: FxHashMap<AccountId, Arc<AccountView>>,
    /// `None` until the engine publishes one, and while the exchange is rebuilt.
    board: Option<OrderBoard>,
}

impl Reads {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Drops the views `changed` may have made stale and, when `exchange` is given (it changed),
    /// replaces the board by its new one.
    fn publish(&self, changed: &ChangedAccounts, exchange: Option<&Exchange>) {
        let mut state = self.lock();
        match changed.listed() {
            Some(listed) => {
                for account in listed {
                    state.accounts.remove(&account);
                }
            }
            None => state.accounts.clear(),
        }
        if let Some(ex) = exchange {
            state.board = Some(ex.order_board(state.board.as_ref()));
        }
    }

    /// Forgets everything: the exchange is being replaced.
    fn clear(&self) {
        let mut state = self.lock();
        state.accounts.clear();
        state.board = None;
    }

    /// What [`OrderBoard::test_order`] answers for `order` on the published board and the
    /// account's cached view, if both are there and the board can tell.
    fn test_order(&self, order: &NewOrder) -> Option<Result<Outcome, ExchangeError>> {
        let state = self.lock();
        let view = state.accounts.get(&order.account)?;
        state.board.as_ref()?.test_order(&view.open_orders, order)
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

/// How often (in journal entries) a snapshot is written.
#[derive(Debug, Clone, Copy)]
pub struct EngineConfig {
    /// Journal entries between snapshots: each start replays at most about this many.
    pub snapshot_every: u64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { snapshot_every: 100_000 }
    }
}

struct Runner {
    exchange: Exchange,
    reads: Arc<Reads>,
    stats: Arc<Stats>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    rt: tokio::runtime::Handle,
    next_seq: i64,
    snapshot_seq: i64,
    /// A snapshot is being written by its helper thread.
    snapshotting: Arc<std::sync::atomic::AtomicBool>,
    config: EngineConfig,
    exchange_config: ExchangeConfig,
    /// When old single-use signatures were last forgotten, ms.
    signatures_forgotten_at: u64,
    /// The single-use signatures recorded while their requests can still arrive, with when each
    /// can be forgotten (ms): the writer is the only node that records them, so once it has
    /// loaded the recent ones at takeover it checks new ones here, without a read per batch.
    /// The store's unique index stays the backstop.
    used: rustc_hash::FxHashMap<[u8; 32], u64>,
    /// When `used` was last pruned, ms.
    used_pruned_at: u64,
    /// The writer's term this engine appends under; 0 while it only follows the journal.
    term: i64,
    /// What the other tasks of this node know of its role and progress.
    cluster: Arc<crate::cluster::Cluster>,
}

impl Engine {
    /// Rebuilds the exchange from the store (latest snapshot, then the journal after it), starts
    /// the engine thread and makes this process the exchange's writer: the engine of a process
    /// that owns its store (SQLite, or PostgreSQL with nobody else writing). Several nodes on one
    /// database start with [`Engine::start_clustered`] instead.
    ///
    /// # Errors
    /// When the store cannot be read or holds a journal the exchange cannot replay, or another
    /// process writes this exchange.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        exchange_config: ExchangeConfig,
        config: EngineConfig,
    ) -> Result<Self, ServiceError> {
        let engine = Self::spawn(Arc::clone(&store), Arc::clone(&clock), exchange_config, config, None).await?;
        let claim = store.claim_writer("", "", clock.now().as_millis()).await?.ok_or_else(|| {
            ServiceError::Internal("another process writes this exchange; start this one as a node of it".into())
        })?;
        engine.promote(claim.term).await?;
        engine.cluster.keep_lock(claim.lock);
        Ok(engine)
    }

    /// Rebuilds the exchange as [`Engine::start`] does and starts the engine thread as a read
    /// copy that follows the journal; [`crate::cluster`] makes it the writer when it wins the
    /// election. Commands sent to it meanwhile go to the writer through `forward`.
    pub(crate) async fn spawn(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        exchange_config: ExchangeConfig,
        config: EngineConfig,
        forward: Option<Arc<dyn crate::cluster::Forward>>,
    ) -> Result<Self, ServiceError> {
        let (mut exchange, last_seq, snapshot_seq) = recover(&*store, &exchange_config).await?;
        let clock_now_ms = clock.now().as_millis().0;
        // Nothing is cached yet: what the replay changed is of no interest.
        let changed = exchange.take_changed_accounts();
        let (tx, rx) = sync_channel(QUEUE);
        let reads = Arc::new(Reads::default());
        reads.publish(&changed, Some(&exchange));
        let stats = Arc::new(Stats::default());
        let cluster = Arc::new(crate::cluster::Cluster::new(Arc::clone(&store), last_seq, forward));
        let runner = Runner {
            exchange,
            reads: Arc::clone(&reads),
            stats: Arc::clone(&stats),
            store,
            clock: Arc::clone(&clock),
            rt: tokio::runtime::Handle::current(),
            next_seq: last_seq + 1,
            snapshot_seq,
            snapshotting: Arc::default(),
            config,
            exchange_config,
            signatures_forgotten_at: clock_now_ms,
            used: rustc_hash::FxHashMap::default(),
            used_pruned_at: clock_now_ms,
            term: 0,
            cluster: Arc::clone(&cluster),
        };
        std::thread::Builder::new()
            .name("keygate-engine".into())
            .spawn(move || runner.run(rx))
            .map_err(|e| ServiceError::Internal(format!("cannot start the engine thread: {e}")))?;
        Ok(Self { tx, reads, stats, cluster, clock })
    }

    /// What this node's tasks share about its role in the cluster.
    pub(crate) fn cluster_ref(&self) -> &crate::cluster::Cluster {
        &self.cluster
    }

    /// The key calls on the channel between nodes are signed with (derived from the master key,
    /// the same on every node): the writer's side checks forwarded commands with it.
    #[must_use]
    pub fn channel_key(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(*self.cluster.channel_key())
    }

    /// Whether this node writes the exchange now (carries out commands itself) rather than
    /// keeping a read copy and sending commands to the writer.
    #[must_use]
    pub fn is_writer(&self) -> bool {
        self.cluster.term() != 0
    }

    /// The writer's term this node appends under (0 while it is not the writer).
    #[must_use]
    pub fn term(&self) -> i64 {
        self.cluster.term()
    }

    /// The last journal entry this node's state includes.
    #[must_use]
    pub fn applied(&self) -> i64 {
        self.cluster.applied()
    }

    /// Makes the engine thread the writer under `term`, once it has applied the whole journal
    /// (the previous writer is fenced by the raised term, so the journal no longer grows).
    pub(crate) async fn promote(&self, term: i64) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send_control(Job::Promote(term, reply)).await?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Stops carrying out commands: the writer's lock is gone, so another node may be writing.
    pub(crate) async fn demote(&self) {
        // Seen by the engine thread before its next batch, even if the job waits behind one: a
        // node that lost the lock does not try another append just to be told it is fenced.
        self.cluster.request_demotion();
        let _ = self.send_control(Job::Demote).await;
    }

    /// Applies journal entries that the writer committed to this node's read copy.
    pub(crate) async fn follow(&self, entries: Vec<JournalEntry>) -> Result<(), EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send_control(Job::Follow(entries, reply)).await?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Commands and queries waiting in front of the engine thread (at most the queue's length,
    /// 8,192; beyond it callers get [`EngineError::Busy`]).
    #[must_use]
    pub fn queue_depth(&self) -> usize {
        self.stats.queued.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Has `observer` told the duration of every journal commit from now on (for metrics).
    /// Returns false, and changes nothing, if an observer was already set: an engine serves one
    /// server, whose metrics set it once.
    pub fn observe_commits(&self, observer: CommitObserver) -> bool {
        self.stats.on_commit.set(observer).is_ok()
    }

    /// Applies `command` durably. `fresh_until` is the end of the request's `recvWindow`: the
    /// engine checks it again when the command reaches it, as Binance does.
    ///
    /// # Errors
    /// [`EngineError`] when the exchange refuses it, the window passed, or storage failed.
    pub async fn submit(&self, command: Command, fresh_until: Option<UnixMicros>) -> Result<Outcome, EngineError> {
        self.execute(Forwarded { command, fresh_until, single_use: None, audit: None }).await
    }

    /// [`Engine::submit`] for a request with a single-use signature: the signature's durable
    /// identity (`VerifiedRequest::single_use_id`) is checked against those recorded and recorded
    /// with the command in the journal's transaction, so the same signed request is carried out
    /// at most once, whichever node gets it and whatever restarts in between.
    ///
    /// # Errors
    /// [`EngineError::Replayed`] for a signature used before; otherwise as [`Engine::submit`].
    pub async fn submit_once(
        &self,
        command: Command,
        fresh_until: Option<UnixMicros>,
        single_use: Option<[u8; 32]>,
    ) -> Result<Outcome, EngineError> {
        self.execute(Forwarded { command, fresh_until, single_use, audit: None }).await
    }

    /// [`Engine::submit_once`], with the audit record `audit` written in the same transaction as
    /// the command's journal entry (the engine adds the id of the record the exchange made to its
    /// details as `id`): an operation the exchange applied is never on record without its audit
    /// record, nor the other way round.
    ///
    /// # Errors
    /// As [`Engine::submit`].
    pub async fn submit_audited(
        &self,
        command: Command,
        fresh_until: Option<UnixMicros>,
        single_use: Option<[u8; 32]>,
        audit: AuditDraft,
    ) -> Result<Outcome, EngineError> {
        self.execute(Forwarded { command, fresh_until, single_use, audit: Some(audit) }).await
    }

    /// Carries out `job` here when this node writes the exchange (a test order, which changes
    /// nothing, is checked here on any node); otherwise has the writer carry it out and waits
    /// until this node's read copy includes it, so the caller's next read here sees it.
    async fn execute(&self, job: Forwarded) -> Result<Outcome, EngineError> {
        if self.is_writer() || matches!(job.command, Command::TestOrder(_)) {
            // A node deposed between the check and the engine thread answers NotWriter: the
            // command was not carried out, and the client retries (-1001).
            return match self.submit_local(job).await {
                Ok(c) => Ok(c.outcome),
                Err(EngineError::NotWriter) => Err(EngineError::NoWriter("the writer changed; retry".into())),
                Err(e) => Err(e),
            };
        }
        let committed = self.cluster.forward(&job).await?;
        self.cluster.wait_applied(committed.seq).await;
        Ok(committed.outcome)
    }

    /// Carries out `job` on this node's engine: the writer's side of the channel between nodes.
    ///
    /// # Errors
    /// [`EngineError::NotWriter`] when this node is not the writer; otherwise as
    /// [`Engine::submit`].
    pub async fn submit_local(&self, job: Forwarded) -> Result<Committed, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Mutate { job, reply })?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// `POST /api/v3/order/test`: what the exchange answers `order` as a test order (it changes
    /// nothing), checked where the request is, without a trip to the engine thread, against the
    /// published [`OrderBoard`] and the account's cached view (the same checks, see `Reads`).
    /// The engine thread checks it when the board cannot: a MARKET order by quantity (valued at
    /// the average price, which moves with the clock), or an account with no cached view yet
    /// (which the trip caches).
    ///
    /// # Errors
    /// As [`Engine::submit`]: the exchange's refusal, [`EngineError::Expired`] when the window
    /// has passed, [`EngineError::Unavailable`] while the exchange is rebuilt.
    pub async fn test_order(&self, order: NewOrder, fresh_until: Option<UnixMicros>) -> Result<Outcome, EngineError> {
        let by_quantity = order.order_type == OrderType::Market && order.quantity.is_some();
        if by_quantity || !self.is_available() {
            return self.submit(Command::TestOrder(order), fresh_until).await;
        }
        // The engine checks the window again when a command reaches it; so does this, just
        // before answering.
        let expired = || fresh_until.is_some_and(|f| self.clock.now() > f);
        if expired() {
            return Err(EngineError::Expired);
        }
        if let Some(answer) = self.reads.test_order(&order) {
            return answer.map_err(EngineError::Rejected);
        }
        // No view of this account yet (or it just changed): one trip caches it for the next.
        self.compute_view(order.account).await?;
        // The trip may have waited in the engine's queue past the window.
        if expired() {
            return Err(EngineError::Expired);
        }
        match self.reads.test_order(&order) {
            Some(answer) => answer.map_err(EngineError::Rejected),
            None => self.submit(Command::TestOrder(order), fresh_until).await,
        }
    }

    /// The market's maker and taker commission rates, from the published board (they are fixed
    /// with the exchange), or from the engine thread while there is none.
    ///
    /// # Errors
    /// [`EngineError::Rejected`] for an unknown symbol; [`EngineError::Busy`] or
    /// [`EngineError::Stopped`].
    pub async fn fee_rates(&self, symbol: &Symbol) -> Result<(Amount, Amount), EngineError> {
        let on_board = self.reads.lock().board.as_ref().map(|b| b.fee_rates(symbol));
        let rates = match on_board {
            Some(rates) => rates,
            None => {
                let symbol = symbol.clone();
                self.query(move |ex| ex.fee_rates(&symbol)).await?
            }
        };
        rates.map_err(EngineError::Rejected)
    }

    /// Applies `commands` durably, in order, in one batch: a reader sees the state before all of
    /// them or after all of them, never in between (the market maker's cancel-and-requote must
    /// never show a book with an empty side). Each command succeeds or is refused on its own, as
    /// if submitted one after another; the results come back in the same order. Only on the
    /// writer (the market maker runs there).
    ///
    /// # Errors
    /// [`EngineError::Busy`] or [`EngineError::Stopped`] for the whole; per command, as
    /// [`Engine::submit`], or [`EngineError::NotWriter`] on another node.
    pub async fn submit_all(&self, commands: Vec<Command>) -> Result<Vec<Result<Outcome, EngineError>>, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::MutateAll { commands, reply })?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// Runs `f` on the committed state, after the batch in progress has been written.
    ///
    /// # Errors
    /// [`EngineError::Busy`] or [`EngineError::Stopped`].
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Exchange) -> R + Send + 'static,
    ) -> Result<R, EngineError> {
        let (reply, rx) = oneshot::channel();
        self.send(Job::Query(Box::new(move |ex| {
            let _ = reply.send(f(ex));
        })))?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// The account's balances, fees and update time on the committed state: the same answer as
    /// a [`Engine::query`] made now, without a trip to the engine thread while nothing has
    /// changed since the last one (see `Reads`).
    ///
    /// # Errors
    /// [`EngineError::Busy`] or [`EngineError::Stopped`].
    pub async fn account_view(&self, account: AccountId) -> Result<Arc<AccountView>, EngineError> {
        match self.if_current(account, Arc::clone) {
            Ok(view) => Ok(view),
            Err(_) => self.compute_view(account).await,
        }
    }

    /// Runs `f` on the account's current view: in place, under the read cache's lock, while the
    /// cached view is current (no reference count is taken, so readers on different cores do not
    /// contend for the view's counter); otherwise on a view fetched as [`Engine::account_view`]
    /// does. `f` should be short: it holds the lock every account read takes.
    ///
    /// # Errors
    /// [`EngineError::Busy`] or [`EngineError::Stopped`].
    pub async fn with_account_view<R>(
        &self,
        account: AccountId,
        f: impl FnOnce(&AccountView) -> R,
    ) -> Result<R, EngineError> {
        match self.if_current(account, |view| f(view)) {
            Ok(r) => Ok(r),
            Err(f) => Ok(f(&self.compute_view(account).await?)),
        }
    }

    /// `f` applied to the cached view under the read cache's lock if there is one (a cached view
    /// is always current, see `Reads`), else `f` back unused.
    fn if_current<R, F: FnOnce(&Arc<AccountView>) -> R>(&self, account: AccountId, f: F) -> Result<R, F> {
        match self.reads.lock().accounts.get(&account) {
            Some(view) => Ok(f(view)),
            None => Err(f),
        }
    }

    /// Computes the account's view on the engine thread and caches it until the account changes.
    async fn compute_view(&self, account: AccountId) -> Result<Arc<AccountView>, EngineError> {
        let reads = Arc::clone(&self.reads);
        self.query(move |ex| {
            let view = Arc::new(AccountView {
                balances: ex.balances(account),
                fees: ex.markets().first().map(|m| (m.maker_fee, m.taker_fee)),
                update_time: ex.clock(),
                open_orders: ex.open_order_ids(account),
                memo: OnceLock::new(),
            });
            // On the engine thread, between batches: the account cannot change meanwhile.
            reads.lock().accounts.insert(account, Arc::clone(&view));
            view
        })
        .await
    }

    /// Whether the engine serves: false from a failed journal append until the exchange is
    /// rebuilt from the store (readiness probes report it).
    #[must_use]
    pub fn is_available(&self) -> bool {
        !self.stats.unavailable.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sends a job that must reach the engine thread even while it refuses callers (a rebuild
    /// in progress) or its queue is full of callers' jobs.
    async fn send_control(&self, job: Job) -> Result<(), EngineError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut job = job;
        loop {
            self.stats.queued.fetch_add(1, Relaxed);
            match self.tx.try_send(job) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.stats.queued.fetch_sub(1, Relaxed);
                    match e {
                        TrySendError::Full(back) => job = back,
                        TrySendError::Disconnected(_) => return Err(EngineError::Stopped),
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn send(&self, job: Job) -> Result<(), EngineError> {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.is_available() {
            return Err(EngineError::Unavailable);
        }
        // Counted before sending, so the engine thread never takes a job not yet counted.
        self.stats.queued.fetch_add(1, Relaxed);
        self.tx.try_send(job).map_err(|e| {
            self.stats.queued.fetch_sub(1, Relaxed);
            match e {
                TrySendError::Full(_) => EngineError::Busy,
                TrySendError::Disconnected(_) => EngineError::Stopped,
            }
        })
    }
}

/// Loads the latest snapshot and replays the journal after it. A brand-new sandbox is written
/// as snapshot 0 straight away, so its configuration (markets, assets, fees) is fixed with it:
/// a later start with another configuration file cannot make the journal replay differently.
async fn recover(store: &dyn Store, config: &ExchangeConfig) -> Result<(Exchange, i64, i64), ServiceError> {
    let (mut exchange, mut seq) = match store.latest_snapshot().await? {
        Some((seq, bytes)) => (
            Exchange::from_snapshot(&bytes)
                .map_err(|e| ServiceError::Internal(format!("exchange snapshot {seq}: {e}")))?,
            seq,
        ),
        None => {
            let fresh = Exchange::new(config.clone()).map_err(|e| ServiceError::Invalid(e.to_string()))?;
            if store.journal_after(0, 1).await?.is_empty() {
                let bytes = fresh.snapshot().map_err(|e| ServiceError::Internal(e.to_string()))?;
                store.save_snapshot(0, &bytes).await?;
            }
            (fresh, 0)
        }
    };
    let snapshot_seq = seq;
    loop {
        let entries = store.journal_after(seq, 10_000).await?;
        if entries.is_empty() {
            break;
        }
        for e in entries {
            // Entries are numbered without gaps from the snapshot on: a missing number means an
            // acknowledged command is lost, and replaying past it would rewrite history.
            if e.seq != seq + 1 {
                return Err(ServiceError::Internal(format!(
                    "the exchange journal has a gap: entry {} follows entry {seq} (expected {}); refusing to \
                     start on a history that lost acknowledged commands",
                    e.seq,
                    seq + 1
                )));
            }
            let command: Command = serde_json::from_slice(&e.command)
                .map_err(|err| ServiceError::Internal(format!("journal entry {}: {err}", e.seq)))?;
            // Entries were accepted when written; a refusal now means the replay diverged.
            exchange
                .apply(&command, e.at)
                .map_err(|err| ServiceError::Internal(format!("journal entry {} no longer applies: {err}", e.seq)))?;
            seq = e.seq;
        }
    }
    Ok((exchange, seq, snapshot_seq))
}

impl Runner {
    /// Appends one batch's entries in one transaction, telling the commit observer how long it
    /// took when it succeeded.
    fn append(
        &self,
        journal: &[JournalEntry],
        audit: Vec<AuditDraft>,
        signatures: &[([u8; 32], UnixMillis)],
    ) -> Result<(), keygate_store::StoreError> {
        let watch = crate::clock::Stopwatch::start();
        self.rt.block_on(self.store.append_journal(self.term, journal, audit, signatures))?;
        if let Some(observe) = self.stats.on_commit.get() {
            observe(watch.elapsed());
        }
        Ok(())
    }

    /// Replaces the in-memory exchange by the one the store holds, after a failed append left
    /// commands applied in memory that are not on disk. Until that succeeds every caller is
    /// refused ([`EngineError::Unavailable`]) and the engine retries, so nothing is ever answered
    /// from a state that holds a refused command, and the next sequence number never skips.
    fn rebuild(&mut self) {
        use std::sync::atomic::Ordering;
        self.stats.unavailable.store(true, Ordering::Release);
        self.reads.clear();
        let mut wait = std::time::Duration::from_millis(100);
        loop {
            let recovered = self.rt.block_on(recover(&*self.store, &self.exchange_config)).and_then(|r| {
                // The writer's signatures in memory may hold the refused batch's: read them again.
                if self.term != 0 {
                    self.load_signatures().map_err(ServiceError::from)?;
                }
                Ok(r)
            });
            match recovered {
                Ok((ex, seq, snap)) => {
                    self.exchange = ex;
                    self.exchange.take_changed_accounts();
                    self.next_seq = seq + 1;
                    self.snapshot_seq = snap;
                    self.cluster.set_applied(seq);
                    self.reads.clear();
                    self.reads.publish(&ChangedAccounts::default(), Some(&self.exchange));
                    self.stats.unavailable.store(false, Ordering::Release);
                    tracing::warn!(next_seq = self.next_seq, "the exchange was rebuilt from the store; serving again");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot rebuild the exchange from the store yet; refusing commands");
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
    }

    /// Loads the single-use signatures recorded in the last ten minutes (older ones are deleted
    /// from the store anyway), each kept in memory until two minutes after it was recorded: a
    /// request's window ends at most a minute after its timestamp, which may run a second ahead
    /// of the server, so by then the time check refuses its replay.
    fn load_signatures(&mut self) -> Result<(), keygate_store::StoreError> {
        let now = self.clock.now().as_millis().0;
        let recent = self.rt.block_on(self.store.recent_signatures(UnixMillis(now.saturating_sub(600_000))))?;
        self.used = recent.into_iter().map(|(id, at)| (id, at.0.saturating_add(120_000))).collect();
        self.used_pruned_at = now;
        Ok(())
    }

    /// Once a second, forgets the signatures in memory whose requests' windows have ended.
    fn prune_signatures(&mut self, now: UnixMillis) {
        if now.0.saturating_sub(self.used_pruned_at) < 1_000 {
            return;
        }
        self.used_pruned_at = now.0;
        self.used.retain(|_, until| *until > now.0);
    }

    /// Once a minute, forgets single-use signatures older than ten minutes: a request's window
    /// is at most a minute, so the time check refuses a replay of them anyway.
    fn forget_old_signatures(&mut self, now: UnixMillis) {
        if now.0.saturating_sub(self.signatures_forgotten_at) < 60_000 {
            return;
        }
        self.signatures_forgotten_at = now.0;
        if let Err(e) = self.rt.block_on(self.store.forget_signatures(UnixMillis(now.0.saturating_sub(600_000)))) {
            tracing::warn!(error = %e, "forgetting old single-use signatures failed; will retry");
        }
    }

    fn run(mut self, rx: Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::with_capacity(64);
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.stats.queued.fetch_sub(batch.len(), std::sync::atomic::Ordering::Relaxed);
            // Control jobs are rare: each one splits the batch where it stands, so what was
            // queued before it is carried out in the role it was queued in.
            let mut work = Vec::with_capacity(batch.len());
            for job in batch {
                match job {
                    Job::Follow(entries, reply) => {
                        self.run_batch(std::mem::take(&mut work));
                        self.follow(entries);
                        let _ = reply.send(());
                    }
                    Job::Promote(term, reply) => {
                        self.run_batch(std::mem::take(&mut work));
                        let _ = reply.send(self.promote(term));
                    }
                    Job::Demote => {
                        self.run_batch(std::mem::take(&mut work));
                        self.cluster.take_demotion();
                        self.set_term(0);
                    }
                    other => work.push(other),
                }
            }
            self.run_batch(work);
        }
    }

    fn set_term(&mut self, term: i64) {
        if term == 0 && self.term != 0 {
            tracing::warn!(term = self.term, "this node no longer writes the exchange; following the journal");
        }
        self.term = term;
        self.cluster.set_term(term);
    }

    /// Reads the journal to its end into the state, then writes as `term`.
    fn promote(&mut self, term: i64) -> Result<(), EngineError> {
        // A demotion asked for before this takeover is over.
        self.cluster.take_demotion();
        loop {
            let entries = self
                .rt
                .block_on(self.store.journal_after(self.next_seq - 1, 10_000))
                .map_err(|e| EngineError::Storage(e.to_string()))?;
            if entries.is_empty() {
                break;
            }
            if !self.follow(entries) {
                return Err(EngineError::Unavailable);
            }
        }
        self.load_signatures().map_err(|e| EngineError::Storage(e.to_string()))?;
        self.set_term(term);
        tracing::info!(term, next_seq = self.next_seq, "this node writes the exchange");
        Ok(())
    }

    /// Applies entries the writer committed, in order, to the read copy; entries already applied
    /// are skipped. False, after rebuilding from the store, when they do not follow on (a gap) or
    /// one no longer applies: the copy never holds a history the journal does not.
    fn follow(&mut self, entries: Vec<JournalEntry>) -> bool {
        if self.term != 0 {
            // The writer's state is the journal's: nothing to follow.
            return true;
        }
        let mut ok = true;
        let first = self.next_seq;
        for e in entries {
            if e.seq < self.next_seq {
                continue;
            }
            if e.seq != self.next_seq {
                tracing::error!(entry = e.seq, expected = self.next_seq, "the journal read has a gap; rebuilding");
                ok = false;
                break;
            }
            let applied = serde_json::from_slice::<Command>(&e.command)
                .map_err(|err| err.to_string())
                .and_then(|c| self.exchange.apply(&c, e.at).map(|_| ()).map_err(|err| err.to_string()));
            if let Err(err) = applied {
                tracing::error!(entry = e.seq, error = %err, "a journal entry does not apply to the read copy; rebuilding");
                ok = false;
                break;
            }
            self.next_seq += 1;
        }
        if ok {
            let changed = self.exchange.take_changed_accounts();
            self.reads.publish(&changed, (self.next_seq > first).then_some(&self.exchange));
            self.cluster.set_applied(self.next_seq - 1);
        } else {
            self.rebuild();
        }
        ok
    }

    /// Applies one command to the exchange and, if it changed anything, adds it to the batch's
    /// journal entries.
    fn apply_one(
        &mut self,
        command: &Command,
        now: UnixMillis,
        journal: &mut Vec<JournalEntry>,
    ) -> Result<Outcome, EngineError> {
        match self.exchange.apply(command, now) {
            // A test order validates and changes nothing: nothing to journal.
            Ok(outcome) if matches!(command, Command::TestOrder(_)) => Ok(outcome),
            Ok(outcome) => {
                let bytes = serde_json::to_vec(command).map_err(|e| EngineError::Storage(e.to_string()))?;
                journal.push(JournalEntry { seq: self.next_seq, at: now, command: bytes });
                self.next_seq += 1;
                Ok(outcome)
            }
            Err(e) => Err(EngineError::Rejected(e)),
        }
    }

    /// Answers read queries on the committed state.
    fn run_queries(&self, queries: Vec<Query>) {
        for q in queries {
            // A query only reads, so a bug that panics in one (a fuzzed klines range did) cannot
            // have changed the state: answer that caller with an error (its reply is dropped)
            // and keep the engine serving everyone else.
            let exchange = &self.exchange;
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| q(exchange))).is_err() {
                tracing::error!("an exchange query panicked; its caller gets an error, the engine goes on");
            }
        }
    }

    fn run_batch(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        if self.cluster.take_demotion() && self.term != 0 {
            self.set_term(0);
        }
        let now_us = self.clock.now();
        let now = now_us.as_millis();
        let mut journal = Vec::new();
        let mut audit = Vec::new();
        let mut signatures: Vec<([u8; 32], UnixMillis)> = Vec::new();
        let mut replies = Vec::new();
        let mut queries = Vec::new();
        for job in batch {
            match job {
                Job::Query(q) => queries.push(q),
                Job::Mutate { job, reply } if self.term == 0 => {
                    // A read copy checks test orders, which change nothing; it carries out no
                    // command (its caller asks the writer).
                    let result = match job.command {
                        Command::TestOrder(_) => self.exchange.apply(&job.command, now).map_err(EngineError::Rejected),
                        _ => Err(EngineError::NotWriter),
                    };
                    replies.push(Pending::One(reply, result));
                }
                Job::MutateAll { commands, reply } if self.term == 0 => {
                    replies.push(Pending::All(reply, commands.iter().map(|_| Err(EngineError::NotWriter)).collect()));
                }
                Job::Mutate { job: Forwarded { command, fresh_until, single_use, audit: audit_of }, reply } => {
                    let result = if fresh_until.is_some_and(|f| now_us > f) {
                        Err(EngineError::Expired)
                    } else if let Some(id) = single_use {
                        // Remembered at once (a second use in this batch is a replay too); if the
                        // batch does not commit, the rebuild reads the recorded ones again.
                        let until = fresh_until.map_or(now.0.saturating_add(600_000), |f| f.0 / 1_000 + 1_000);
                        if self.used.insert(id, until).is_some() {
                            Err(EngineError::Replayed)
                        } else {
                            // Recorded whatever the exchange answers: a refused order's
                            // signature must not be replayed later either.
                            signatures.push((id, now));
                            self.apply_one(&command, now, &mut journal)
                        }
                    } else {
                        self.apply_one(&command, now, &mut journal)
                    };
                    if let (Ok(outcome), Some(draft)) = (&result, audit_of) {
                        audit.push(complete_audit(draft, outcome));
                    }
                    replies.push(Pending::One(reply, result));
                }
                Job::MutateAll { commands, reply } => {
                    let results = commands.iter().map(|c| self.apply_one(c, now, &mut journal)).collect();
                    replies.push(Pending::All(reply, results));
                }
                // Taken out by `run` before a batch is formed.
                Job::Follow(..) | Job::Promote(..) | Job::Demote => {}
            }
        }
        if (!journal.is_empty() || !audit.is_empty() || !signatures.is_empty())
            && let Err(e) = self.append(&journal, audit, &signatures)
        {
            // Nothing of this batch is durable: refuse every command of it and rebuild the
            // in-memory state from what is.
            tracing::error!(error = %e, "journal append failed; rolling back the batch");
            let failure = match e {
                // Another node took over: nothing of this batch was carried out, and the client
                // retries (through whichever node, which forwards to the new writer).
                keygate_store::StoreError::Fenced(_) => {
                    self.set_term(0);
                    EngineError::Unavailable
                }
                other => EngineError::Storage(other.to_string()),
            };
            // Refuse newcomers before answering these, so no caller who saw the refusal can then
            // read the state that still holds the refused commands.
            self.stats.unavailable.store(true, std::sync::atomic::Ordering::Release);
            for pending in replies {
                pending.send(Some(&failure), 0);
            }
            self.rebuild();
            // The batch's reads are answered on the rebuilt state, which is what the store holds:
            // a reader is never told the engine stopped because a write failed.
            self.run_queries(queries);
            return;
        }
        // Before any reply: whoever sees a reply is served no view older than it (see `Reads`).
        // Refused commands are covered too: any balance they touched is listed. Only applied
        // commands change the exchange, and each of them is journaled.
        let changed = self.exchange.take_changed_accounts();
        self.reads.publish(&changed, (!journal.is_empty()).then_some(&self.exchange));
        let last = self.next_seq - 1;
        self.cluster.set_applied(last);
        for pending in replies {
            pending.send(None, last);
        }
        self.run_queries(queries);
        if !signatures.is_empty() {
            self.forget_old_signatures(now);
        }
        if self.term != 0 {
            self.prune_signatures(now);
        }
        if self.term != 0
            && u64::try_from(last - self.snapshot_seq).unwrap_or(0) >= self.config.snapshot_every
            && !self.snapshotting.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // Serialising and writing a large state takes long; the engine only clones it (a
            // memory copy) and a helper thread does the rest, so orders keep flowing meanwhile.
            // The snapshot names the last entry it includes, so entries committed after it are
            // simply replayed after it on the next start.
            let copy = self.exchange.clone();
            let store = Arc::clone(&self.store);
            let rt = self.rt.clone();
            let busy = Arc::clone(&self.snapshotting);
            self.snapshot_seq = last;
            let spawned = std::thread::Builder::new().name("keygate-snapshot".into()).spawn(move || {
                match copy.snapshot() {
                    Ok(bytes) => {
                        if let Err(e) = rt.block_on(store.save_snapshot(last, &bytes)) {
                            tracing::warn!(error = %e, "snapshot failed; the next one will retry");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "snapshot failed; the next one will retry"),
                }
                busy.store(false, std::sync::atomic::Ordering::Release);
            });
            if spawned.is_err() {
                self.snapshotting.store(false, std::sync::atomic::Ordering::Release);
            }
        }
    }
}
