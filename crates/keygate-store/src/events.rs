//! Owner notifications (issue #17): webhook endpoints, the events derived from the audit log,
//! the delivery outbox, the addresses already seen per key and per account's logins, and the
//! digests of leak reports already acted on.
//!
//! Every change already writes its audit record in its own transaction, so the audit log is the
//! transactional outbox: [`EventStore::ingest_events`] reads the records past a durable cursor,
//! keeps those the caller's mapper turns into an event, stores each as an
//! [`AccountEvent`] (the console's notice) with one pending delivery per active endpoint of the
//! account, and advances the cursor, all in one transaction. The cursor row is read `FOR UPDATE`,
//! so two nodes ingesting at once take turns and never create an event twice (the event's audit
//! sequence number is unique besides). Deliveries are claimed with a lease (`claimed_until`), so
//! only one node sends a given delivery at a time, and one that crashed mid-send is sent again
//! once its lease runs out: at least once, never never.

use crate::StoreResult;
use crate::audit_log::append;
use crate::crypto::{Sealed, webhook_secret_aad};
use crate::dialect::Dialect;
use crate::records::{AuditDraft, AuditRecord};
use crate::rows::{AUDIT_COLUMNS, Columns, audit_from_row, from_db_time, to_db_time};
use crate::sql::{SqlDb, SqlStore, stmt};
use crate::{StoreError, crypto::SecretCipher};
use async_trait::async_trait;
use keygate_auth::{AccountId, ApiKeyId};
use keygate_proto::UnixMillis;
use std::fmt;
use zeroize::Zeroizing;

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    /// Deliveries are sent.
    Active,
    /// Paused (by its owner, or because the receiver answered 410 Gone): its pending deliveries
    /// wait, and events made meanwhile are not queued for it.
    Disabled,
}

impl EndpointStatus {
    /// Lower-case name, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            other => Err(StoreError::Corrupt(format!("webhook endpoint status {other:?}"))),
        }
    }
}

/// A webhook endpoint to register.
pub struct NewWebhookEndpoint {
    /// Whose.
    pub account_id: AccountId,
    /// Where deliveries are POSTed (checked by the service before it gets here).
    pub url: String,
    /// The owner's note.
    pub description: String,
    /// The signing secret's raw bytes (sealed before they reach SQL).
    pub secret: Zeroizing<Vec<u8>>,
    /// Registration time.
    pub created_at: UnixMillis,
}

impl fmt::Debug for NewWebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewWebhookEndpoint")
            .field("account_id", &self.account_id)
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .finish_non_exhaustive()
    }
}

/// A registered endpoint, without its secret (see [`ClaimedDelivery`] for the one place the
/// secret is read back).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRecord {
    /// Store-assigned id.
    pub id: i64,
    /// Whose.
    pub account_id: AccountId,
    /// Where deliveries go.
    pub url: String,
    /// The owner's note.
    pub description: String,
    /// Active or paused.
    pub status: EndpointStatus,
    /// Registration time.
    pub created_at: UnixMillis,
}

/// An address seen for the first time: the event that carries it is only stored when the
/// address was not seen before for the same scope and subject (and recording it is part of the
/// same transaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// `key` (subject: the key id) or `login` (subject: the account id).
    pub scope: &'static str,
    /// Whose address.
    pub subject: String,
    /// The address, as text.
    pub address: String,
}

/// An event the mapper made of an audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Whose.
    pub account_id: AccountId,
    /// `key.created`, `key.revoked`, ...
    pub event_type: String,
    /// The exact JSON body to deliver.
    pub payload: String,
    /// Only store the event if this address is new (and record it).
    pub first_sighting: Option<Sighting>,
}

/// An event as stored: a console notice, and the body of its webhook deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountEvent {
    /// Store-assigned id (increasing).
    pub id: i64,
    /// The audit record it came from.
    pub audit_seq: i64,
    /// Whose.
    pub account_id: AccountId,
    /// `key.created`, ...
    pub event_type: String,
    /// When the change happened.
    pub at: UnixMillis,
    /// The JSON body.
    pub payload: String,
}

/// What one [`EventStore::ingest_events`] call did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IngestReport {
    /// Audit records read.
    pub read: usize,
    /// Events stored.
    pub events: usize,
    /// Deliveries queued.
    pub deliveries: usize,
    /// The cursor after the call.
    pub cursor: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    Pending,
    /// A 2xx answer was received.
    Delivered,
    /// Given up: the dead-letter state (attempts exhausted, endpoint gone or deleted).
    Dead,
}

impl DeliveryStatus {
    /// Lower-case name, as stored.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(StoreError::Corrupt(format!("webhook delivery status {other:?}"))),
        }
    }
}

/// A delivery as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// Store-assigned id.
    pub id: i64,
    /// The event.
    pub event_id: i64,
    /// The event's audit record.
    pub audit_seq: i64,
    /// Its type.
    pub event_type: String,
    /// The endpoint.
    pub endpoint_id: i64,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due (pending ones).
    pub next_attempt_at: UnixMillis,
    /// When the last attempt was made.
    pub last_attempt_at: Option<UnixMillis>,
    /// The HTTP status of the last attempt, if one was received.
    pub last_status: Option<u16>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When a 2xx was received.
    pub delivered_at: Option<UnixMillis>,
}

/// A delivery a node took (under a lease) to send now: everything needed to sign and POST it.
pub struct ClaimedDelivery {
    /// The delivery.
    pub id: i64,
    /// The event (its `webhook-id` derives from it, so retries keep it).
    pub event_id: i64,
    /// The event's audit record.
    pub audit_seq: i64,
    /// The event's type.
    pub event_type: String,
    /// The endpoint.
    pub endpoint_id: i64,
    /// Where to POST.
    pub url: String,
    /// The endpoint's signing secret (opened; zeroized on drop).
    pub secret: Zeroizing<Vec<u8>>,
    /// The body.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: u32,
}

impl fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("event_id", &self.event_id)
            .field("endpoint_id", &self.endpoint_id)
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// When.
        at: UnixMillis,
        /// The status.
        status: u16,
    },
    /// It did not; try again at `retry_at`, or give up (dead letter) when `None`.
    Failed {
        /// When the attempt was made.
        at: UnixMillis,
        /// The HTTP status, if an answer came.
        status: Option<u16>,
        /// Why, for the owner (never a secret).
        error: String,
        /// The next attempt, or `None` for the dead-letter state.
        retry_at: Option<UnixMillis>,
        /// Pause the endpoint too (the receiver answered 410 Gone).
        disable_endpoint: bool,
    },
}

/// A key used from an address: recorded by [`EventStore::record_key_addresses`].
#[derive(Debug, Clone)]
pub struct KeySighting {
    /// The key.
    pub key: ApiKeyId,
    /// The address, as text.
    pub address: String,
    /// The audit record to append if the address is new for the key (`key.new_address`).
    pub audit: AuditDraft,
}

/// Maps an audit record to the event it means for its account, if any.
pub type EventMapper<'a> = &'a (dyn Fn(&AuditRecord) -> Option<NewEvent> + Send + Sync);

/// Webhook endpoints, events, deliveries, seen addresses and leak-report digests.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Registers an endpoint with its audit record (target becomes `webhook:ID`); the secret is
    /// sealed bound to the endpoint and account. [`StoreError::NotFound`] for an unknown account.
    async fn create_webhook_endpoint(
        &self,
        new: NewWebhookEndpoint,
        audit: AuditDraft,
    ) -> StoreResult<WebhookEndpointRecord>;

    /// The endpoints not deleted, of `account` or of everyone, in id order.
    async fn list_webhook_endpoints(&self, account: Option<AccountId>) -> StoreResult<Vec<WebhookEndpointRecord>>;

    /// One endpoint not deleted.
    async fn webhook_endpoint(&self, id: i64) -> StoreResult<Option<WebhookEndpointRecord>>;

    /// Pauses or resumes an endpoint, with its audit record. [`StoreError::NotFound`] when
    /// missing or deleted.
    async fn set_webhook_endpoint_status(&self, id: i64, status: EndpointStatus, audit: AuditDraft) -> StoreResult<()>;

    /// Deletes an endpoint at `at`, with its audit record: its pending deliveries become dead
    /// ("endpoint deleted"). [`StoreError::NotFound`] when missing or already deleted.
    async fn delete_webhook_endpoint(&self, id: i64, at: UnixMillis, audit: AuditDraft) -> StoreResult<()>;

    /// Reads up to `limit` audit records past the cursor, stores the events `mapper` makes of
    /// them with one pending delivery (due at the record's time) per active endpoint of the
    /// account, and advances the cursor past them: one transaction, one node at a time.
    async fn ingest_events(&self, limit: u32, mapper: EventMapper<'_>) -> StoreResult<IngestReport>;

    /// The events of `account` with `id < before`, newest first, at most `limit`.
    async fn account_events(&self, account: AccountId, before: i64, limit: u32) -> StoreResult<Vec<AccountEvent>>;

    /// Takes up to `limit` pending deliveries due at `now` whose endpoint is active and that no
    /// node holds (or whose lease ran out), leasing them until `lease_until`. With
    /// `one_per_endpoint`, at most one per endpoint and none of an endpoint with one leased
    /// already, so one slow receiver never holds up another's deliveries.
    async fn claim_deliveries(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
        one_per_endpoint: bool,
    ) -> StoreResult<Vec<ClaimedDelivery>>;

    /// Records how an attempt on a pending delivery ended and releases its lease. A delivery no
    /// longer pending (deleted endpoint, another node finished it) is left as it is.
    async fn finish_delivery(&self, id: i64, outcome: AttemptOutcome) -> StoreResult<()>;

    /// The deliveries of one endpoint, newest first, at most `limit`.
    async fn webhook_deliveries(&self, endpoint: i64, limit: u32) -> StoreResult<Vec<DeliveryRecord>>;

    /// Makes dead delivery `id` of endpoint `endpoint` pending again, due at `at`, with its audit
    /// record. [`StoreError::NotFound`] when there is no such delivery of that endpoint;
    /// [`StoreError::Conflict`] when it is not dead or the endpoint was deleted.
    async fn redeliver(&self, endpoint: i64, id: i64, at: UnixMillis, audit: AuditDraft) -> StoreResult<()>;

    /// Records the addresses keys were used from; for each one new for its key, appends its
    /// audit record (in the same transaction). Returns how many were new.
    async fn record_key_addresses(&self, sightings: &[KeySighting]) -> StoreResult<usize>;

    /// Records a leak report's digest at `at`; false when it was recorded before (a replay).
    async fn record_leak_report(&self, digest: &[u8; 32], at: UnixMillis) -> StoreResult<bool>;

    /// The key whose HMAC secret has SHA-256 `digest` ([`secret_digest`]), if any.
    async fn key_by_secret_digest(&self, digest: &[u8; 32]) -> StoreResult<Option<ApiKeyId>>;

    /// Fills in the secret digest of up to `limit` HMAC keys stored without one (keys made before
    /// the digest existed); returns how many. Call until it returns 0.
    async fn index_secret_digests(&self, limit: u32) -> StoreResult<usize>;
}

/// The SHA-256 of an HMAC secret's text, as [`EventStore::key_by_secret_digest`] looks it up.
#[must_use]
pub fn secret_digest(secret: &str) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// The claim's filter for [`EventStore::claim_deliveries`]'s `one_per_endpoint`: endpoints with
/// a delivery in flight (leased) are skipped.
const BUSY_ENDPOINTS_SKIPPED: &str = "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries busy \
     WHERE busy.endpoint_id = webhook_deliveries.endpoint_id AND busy.status = 'pending' AND busy.claimed_until > $1)";

const ENDPOINT_COLUMNS: &str = "id, account_id, url, description, status, created_at";

fn endpoint_from_row(row: &impl Columns) -> StoreResult<WebhookEndpointRecord> {
    const WHAT: &str = "webhook endpoint";
    Ok(WebhookEndpointRecord {
        id: row.get("id", WHAT)?,
        account_id: AccountId(row.get("account_id", WHAT)?),
        url: row.get("url", WHAT)?,
        description: row.get("description", WHAT)?,
        status: EndpointStatus::parse(&row.get::<String>("status", WHAT)?)?,
        created_at: from_db_time(row.get("created_at", WHAT)?, WHAT)?,
    })
}

fn event_from_row(row: &impl Columns) -> StoreResult<AccountEvent> {
    const WHAT: &str = "account event";
    Ok(AccountEvent {
        id: row.get("id", WHAT)?,
        audit_seq: row.get("audit_seq", WHAT)?,
        account_id: AccountId(row.get("account_id", WHAT)?),
        event_type: row.get("event_type", WHAT)?,
        at: from_db_time(row.get("at", WHAT)?, WHAT)?,
        payload: row.get("payload", WHAT)?,
    })
}

fn delivery_from_row(row: &impl Columns) -> StoreResult<DeliveryRecord> {
    const WHAT: &str = "webhook delivery";
    let time = |name: &str| -> StoreResult<Option<UnixMillis>> {
        row.get::<Option<i64>>(name, WHAT)?.map(|t| from_db_time(t, WHAT)).transpose()
    };
    Ok(DeliveryRecord {
        id: row.get("id", WHAT)?,
        event_id: row.get("event_id", WHAT)?,
        audit_seq: row.get("audit_seq", WHAT)?,
        event_type: row.get("event_type", WHAT)?,
        endpoint_id: row.get("endpoint_id", WHAT)?,
        status: DeliveryStatus::parse(&row.get::<String>("status", WHAT)?)?,
        attempts: crate::sql::count_u32(row.get("attempts", WHAT)?),
        next_attempt_at: from_db_time(row.get("next_attempt_at", WHAT)?, WHAT)?,
        last_attempt_at: time("last_attempt_at")?,
        last_status: row.get::<Option<i64>>("last_status", WHAT)?.and_then(|s| u16::try_from(s).ok()),
        last_error: row.get("last_error", WHAT)?,
        delivered_at: time("delivered_at")?,
    })
}

fn claimed_from_row(cipher: &SecretCipher, row: &impl Columns) -> StoreResult<ClaimedDelivery> {
    const WHAT: &str = "webhook delivery";
    let endpoint_id: i64 = row.get("endpoint_id", WHAT)?;
    let account_id: i64 = row.get("account_id", WHAT)?;
    let sealed =
        Sealed { master_key_id: row.get("secret_master_key_id", WHAT)?, bytes: row.get("secret_ciphertext", WHAT)? };
    Ok(ClaimedDelivery {
        id: row.get("id", WHAT)?,
        event_id: row.get("event_id", WHAT)?,
        audit_seq: row.get("audit_seq", WHAT)?,
        event_type: row.get("event_type", WHAT)?,
        endpoint_id,
        url: row.get("url", WHAT)?,
        secret: cipher.open(&sealed, &webhook_secret_aad(endpoint_id, account_id))?,
        payload: row.get("payload", WHAT)?,
        attempts: crate::sql::count_u32(row.get("attempts", WHAT)?),
    })
}

#[async_trait]
impl<D: Dialect> EventStore for SqlStore<D> {
    async fn create_webhook_endpoint(
        &self,
        new: NewWebhookEndpoint,
        mut audit: AuditDraft,
    ) -> StoreResult<WebhookEndpointRecord> {
        let what = "webhook endpoint";
        let created_at = to_db_time(new.created_at, what)?;
        let mut tx = self.begin().await?;
        // The row first (its id is in the secret's associated data), then the sealed secret.
        let row = D::Db::optional(
            &mut tx,
            stmt(
                "INSERT INTO webhook_endpoints (account_id, url, description, secret_ciphertext, \
                 secret_master_key_id, status, created_at) VALUES ($1, $2, $3, $4, $5, 'active', $6) RETURNING id",
            )
            .arg(new.account_id.0)
            .arg(&new.url)
            .arg(&new.description)
            .arg(&[0u8; 0][..])
            .arg("")
            .arg(created_at),
        )
        .await
        .map_err(|e| crate::rows::name_violation(e, &what, &format_args!("account {}", new.account_id)))?;
        let id: i64 = match row {
            Some(r) => r.get("id", what)?,
            None => return Err(StoreError::Corrupt("INSERT ... RETURNING id returned no row".into())),
        };
        let sealed = self.cipher.seal(&new.secret, &webhook_secret_aad(id, new.account_id.0))?;
        D::Db::run(
            &mut tx,
            stmt("UPDATE webhook_endpoints SET secret_ciphertext = $1, secret_master_key_id = $2 WHERE id = $3")
                .arg(sealed.bytes.as_slice())
                .arg(sealed.master_key_id.as_str())
                .arg(id),
        )
        .await?;
        audit.target = format!("webhook:{id}");
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(WebhookEndpointRecord {
            id,
            account_id: new.account_id,
            url: new.url,
            description: new.description,
            status: EndpointStatus::Active,
            created_at: new.created_at,
        })
    }

    async fn list_webhook_endpoints(&self, account: Option<AccountId>) -> StoreResult<Vec<WebhookEndpointRecord>> {
        let rows = match account {
            Some(a) => {
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE account_id = $1 AND deleted_at IS NULL ORDER BY id"
                );
                self.read_all(stmt(sql).arg(a.0)).await?
            }
            None => {
                let sql =
                    format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE deleted_at IS NULL ORDER BY id");
                self.read_all(stmt(sql)).await?
            }
        };
        rows.iter().map(endpoint_from_row).collect()
    }

    async fn webhook_endpoint(&self, id: i64) -> StoreResult<Option<WebhookEndpointRecord>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1 AND deleted_at IS NULL");
        self.read_optional(stmt(sql).arg(id)).await?.as_ref().map(endpoint_from_row).transpose()
    }

    async fn set_webhook_endpoint_status(&self, id: i64, status: EndpointStatus, audit: AuditDraft) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let n = D::Db::run(
            &mut tx,
            stmt("UPDATE webhook_endpoints SET status = $1 WHERE id = $2 AND deleted_at IS NULL")
                .arg(status.as_str())
                .arg(id),
        )
        .await?;
        crate::sql::found(n, || format!("webhook endpoint {id}"))?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn delete_webhook_endpoint(&self, id: i64, at: UnixMillis, audit: AuditDraft) -> StoreResult<()> {
        let when = to_db_time(at, "webhook endpoint")?;
        let mut tx = self.begin().await?;
        let n = D::Db::run(
            &mut tx,
            stmt("UPDATE webhook_endpoints SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL").arg(when).arg(id),
        )
        .await?;
        crate::sql::found(n, || format!("webhook endpoint {id}"))?;
        D::Db::run(
            &mut tx,
            stmt(
                "UPDATE webhook_deliveries SET status = 'dead', claimed_until = NULL, last_error = 'endpoint deleted' \
                 WHERE endpoint_id = $1 AND status = 'pending'",
            )
            .arg(id),
        )
        .await?;
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ingest_events(&self, limit: u32, mapper: EventMapper<'_>) -> StoreResult<IngestReport> {
        let mut tx = self.begin().await?;
        let sql = format!("SELECT audit_seq FROM event_cursor WHERE id = 1{}", D::FOR_UPDATE);
        let cursor: i64 = match D::Db::optional(&mut tx, stmt(sql)).await? {
            Some(row) => row.get("audit_seq", "event cursor")?,
            None => return Err(StoreError::Corrupt("the event cursor row is missing".into())),
        };
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows = D::Db::all(&mut tx, stmt(sql).arg(cursor).arg(i64::from(limit))).await?;
        let mut report = IngestReport { read: rows.len(), cursor, ..IngestReport::default() };
        for row in &rows {
            let record = audit_from_row(row)?;
            report.cursor = record.seq;
            let Some(event) = mapper(&record) else { continue };
            if let Some(s) = &event.first_sighting {
                let at = to_db_time(record.draft.at, "seen address")?;
                let new = D::Db::run(
                    &mut tx,
                    stmt(
                        "INSERT INTO seen_addresses (scope, subject, address, first_seen_at) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (scope, subject, address) DO NOTHING",
                    )
                    .arg(s.scope)
                    .arg(&s.subject)
                    .arg(&s.address)
                    .arg(at),
                )
                .await?;
                if new == 0 {
                    continue;
                }
            }
            let at = to_db_time(record.draft.at, "account event")?;
            let inserted = D::Db::optional(
                &mut tx,
                stmt(
                    "INSERT INTO account_events (audit_seq, account_id, event_type, at, payload) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (audit_seq) DO NOTHING RETURNING id",
                )
                .arg(record.seq)
                .arg(event.account_id.0)
                .arg(&event.event_type)
                .arg(at)
                .arg(&event.payload),
            )
            .await?;
            let Some(inserted) = inserted else { continue };
            let event_id: i64 = inserted.get("id", "account event")?;
            report.events += 1;
            let queued = D::Db::run(
                &mut tx,
                stmt(
                    "INSERT INTO webhook_deliveries (event_id, endpoint_id, status, attempts, next_attempt_at) \
                     SELECT $1, id, 'pending', 0, $2 FROM webhook_endpoints \
                     WHERE account_id = $3 AND status = 'active' AND deleted_at IS NULL \
                     ON CONFLICT (event_id, endpoint_id) DO NOTHING",
                )
                .arg(event_id)
                .arg(at)
                .arg(event.account_id.0),
            )
            .await?;
            report.deliveries += usize::try_from(queued).unwrap_or(usize::MAX);
        }
        if report.cursor != cursor {
            D::Db::run(&mut tx, stmt("UPDATE event_cursor SET audit_seq = $1 WHERE id = 1").arg(report.cursor)).await?;
        }
        tx.commit().await?;
        Ok(report)
    }

    async fn account_events(&self, account: AccountId, before: i64, limit: u32) -> StoreResult<Vec<AccountEvent>> {
        let rows = self
            .read_all(
                stmt(
                    "SELECT id, audit_seq, account_id, event_type, at, payload FROM account_events \
                     WHERE account_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                )
                .arg(account.0)
                .arg(before)
                .arg(i64::from(limit)),
            )
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn claim_deliveries(
        &self,
        now: UnixMillis,
        lease_until: UnixMillis,
        limit: u32,
        one_per_endpoint: bool,
    ) -> StoreResult<Vec<ClaimedDelivery>> {
        let now = to_db_time(now, "webhook delivery")?;
        let until = to_db_time(lease_until, "webhook delivery")?;
        let mut tx = self.begin().await?;
        // The free, due rows, locked as they are read (skipping those another node is taking
        // right now), then leased one by one; the lease conditions are checked again on update.
        let sql = format!(
            "SELECT id, endpoint_id FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
             AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE status = 'active' AND deleted_at IS NULL) \
             {} ORDER BY next_attempt_at, id LIMIT $2{}",
            if one_per_endpoint { BUSY_ENDPOINTS_SKIPPED } else { "" },
            D::SKIP_LOCKED
        );
        let due = D::Db::all(&mut tx, stmt(sql).arg(now).arg(i64::from(limit))).await?;
        let mut claimed = Vec::with_capacity(due.len());
        // With `one_per_endpoint`, one delivery in flight per endpoint (none for an endpoint with
        // one in flight already, above): a receiver that hangs holds its own deliveries back,
        // never another account's (outside review: one tenant's hanging endpoints delayed
        // everyone's alerts).
        let mut endpoints = std::collections::HashSet::new();
        for row in &due {
            let id: i64 = row.get("id", "webhook delivery")?;
            if !endpoints.insert(row.get::<i64>("endpoint_id", "webhook delivery")?) && one_per_endpoint {
                continue;
            }
            let n = D::Db::run(
                &mut tx,
                stmt(
                    "UPDATE webhook_deliveries SET claimed_until = $1 \
                     WHERE id = $2 AND status = 'pending' AND (claimed_until IS NULL OR claimed_until <= $3)",
                )
                .arg(until)
                .arg(id)
                .arg(now),
            )
            .await?;
            if n > 0 {
                claimed.push(id);
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        for id in claimed {
            let found = D::Db::optional(
                &mut tx,
                stmt(
                    "SELECT d.id, d.event_id, d.endpoint_id, d.attempts, ev.audit_seq, ev.event_type, ev.payload, \
                     e.url, e.account_id, e.secret_ciphertext, e.secret_master_key_id \
                     FROM webhook_deliveries d JOIN account_events ev ON ev.id = d.event_id \
                     JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id = $1",
                )
                .arg(id),
            )
            .await?;
            if let Some(row) = found {
                out.push(claimed_from_row(&self.cipher, &row)?);
            }
        }
        tx.commit().await?;
        out.sort_by_key(|d| d.id);
        Ok(out)
    }

    async fn finish_delivery(&self, id: i64, outcome: AttemptOutcome) -> StoreResult<()> {
        let what = "webhook delivery";
        let mut tx = self.begin().await?;
        match outcome {
            AttemptOutcome::Delivered { at, status } => {
                let at = to_db_time(at, what)?;
                D::Db::run(
                    &mut tx,
                    stmt(
                        "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
                         claimed_until = NULL, last_attempt_at = $1, delivered_at = $1, last_status = $2, \
                         last_error = NULL WHERE id = $3 AND status = 'pending'",
                    )
                    .arg(at)
                    .arg(i64::from(status))
                    .arg(id),
                )
                .await?;
            }
            AttemptOutcome::Failed { at, status, error, retry_at, disable_endpoint } => {
                let at = to_db_time(at, what)?;
                let (state, next) = match retry_at {
                    Some(t) => ("pending", to_db_time(t, what)?),
                    None => ("dead", at),
                };
                D::Db::run(
                    &mut tx,
                    stmt(
                        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, claimed_until = NULL, \
                         last_attempt_at = $2, next_attempt_at = $3, last_status = $4, last_error = $5 \
                         WHERE id = $6 AND status = 'pending'",
                    )
                    .arg(state)
                    .arg(at)
                    .arg(next)
                    .arg(status.map(i64::from))
                    .arg(error.as_str())
                    .arg(id),
                )
                .await?;
                if disable_endpoint {
                    D::Db::run(
                        &mut tx,
                        stmt(
                            "UPDATE webhook_endpoints SET status = 'disabled' \
                             WHERE id = (SELECT endpoint_id FROM webhook_deliveries WHERE id = $1)",
                        )
                        .arg(id),
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn webhook_deliveries(&self, endpoint: i64, limit: u32) -> StoreResult<Vec<DeliveryRecord>> {
        let rows = self
            .read_all(
                stmt(
                    "SELECT d.id, d.event_id, ev.audit_seq, ev.event_type, d.endpoint_id, d.status, d.attempts, d.next_attempt_at, \
                     d.last_attempt_at, d.last_status, d.last_error, d.delivered_at \
                     FROM webhook_deliveries d JOIN account_events ev ON ev.id = d.event_id \
                     WHERE d.endpoint_id = $1 ORDER BY d.id DESC LIMIT $2",
                )
                .arg(endpoint)
                .arg(i64::from(limit)),
            )
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn redeliver(&self, endpoint: i64, id: i64, at: UnixMillis, audit: AuditDraft) -> StoreResult<()> {
        let when = to_db_time(at, "webhook delivery")?;
        let mut tx = self.begin().await?;
        let sql = format!("SELECT status FROM webhook_deliveries WHERE id = $1 AND endpoint_id = $2{}", D::FOR_UPDATE);
        let status = match D::Db::optional(&mut tx, stmt(sql).arg(id).arg(endpoint)).await? {
            Some(row) => DeliveryStatus::parse(&row.get::<String>("status", "webhook delivery")?)?,
            None => return Err(StoreError::NotFound(format!("webhook delivery {id}"))),
        };
        if status != DeliveryStatus::Dead {
            return Err(StoreError::Conflict(format!("webhook delivery {id} is {}, not dead", status.as_str())));
        }
        let n = D::Db::run(
            &mut tx,
            stmt(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
                 claimed_until = NULL WHERE id = $2 AND endpoint_id IN \
                 (SELECT id FROM webhook_endpoints WHERE deleted_at IS NULL)",
            )
            .arg(when)
            .arg(id),
        )
        .await?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("webhook delivery {id} belongs to a deleted endpoint")));
        }
        append::<D>(&mut tx, audit, None).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn record_key_addresses(&self, sightings: &[KeySighting]) -> StoreResult<usize> {
        if sightings.is_empty() {
            return Ok(0);
        }
        let mut tx = self.begin().await?;
        let mut new = 0;
        for s in sightings {
            let at = to_db_time(s.audit.at, "seen address")?;
            let n = D::Db::run(
                &mut tx,
                stmt(
                    "INSERT INTO seen_addresses (scope, subject, address, first_seen_at) VALUES ('key', $1, $2, $3) \
                     ON CONFLICT (scope, subject, address) DO NOTHING",
                )
                .arg(s.key.as_str())
                .arg(&s.address)
                .arg(at),
            )
            .await?;
            if n > 0 {
                append::<D>(&mut tx, s.audit.clone(), None).await?;
                new += 1;
            }
        }
        tx.commit().await?;
        Ok(new)
    }

    async fn key_by_secret_digest(&self, digest: &[u8; 32]) -> StoreResult<Option<ApiKeyId>> {
        let row = self.read_optional(stmt("SELECT id FROM api_keys WHERE secret_sha256 = $1").arg(&digest[..])).await?;
        match row {
            Some(r) => {
                let id: String = r.get("id", "API key")?;
                Ok(Some(ApiKeyId::parse(&id).map_err(|e| StoreError::Corrupt(format!("API key {id}: {e}")))?))
            }
            None => Ok(None),
        }
    }

    async fn index_secret_digests(&self, limit: u32) -> StoreResult<usize> {
        let sql = format!(
            "SELECT {} FROM api_keys WHERE key_type = 'hmac' AND secret_sha256 IS NULL LIMIT $1",
            crate::rows::KEY_COLUMNS
        );
        let rows = self.read_all(stmt(sql).arg(i64::from(limit))).await?;
        let mut digests = Vec::with_capacity(rows.len());
        for row in &rows {
            let key = crate::rows::key_from_row(&self.cipher, row)?;
            if let crate::records::KeyMaterial::Hmac(secret) = &key.material {
                digests.push((key.id.clone(), secret_digest(secret.expose())));
            }
        }
        // One transaction per page: an upgrade with many keys is not one commit per key.
        let mut tx = self.begin().await?;
        for (id, digest) in &digests {
            D::Db::run(
                &mut tx,
                stmt("UPDATE api_keys SET secret_sha256 = $1 WHERE id = $2 AND secret_sha256 IS NULL")
                    .arg(&digest[..])
                    .arg(id.as_str()),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(digests.len())
    }

    async fn record_leak_report(&self, digest: &[u8; 32], at: UnixMillis) -> StoreResult<bool> {
        let at = to_db_time(at, "leak report")?;
        let n = self
            .write_one(
                stmt("INSERT INTO leak_reports (digest, received_at) VALUES ($1, $2) ON CONFLICT (digest) DO NOTHING")
                    .arg(&digest[..])
                    .arg(at),
            )
            .await?;
        Ok(n > 0)
    }
}
