//! The in-memory key cache the verifier reads: no database round trip on the hot path.

use crate::ServiceError;
use keygate_auth::{Credential, KeyEntry, KeyLookup};
use keygate_store::{KeyMaterial, KeyRecord};
use rustc_hash::FxHashMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Every key, decoded for verification (keyed HMAC states, parsed public keys), by key id.
///
/// Updated by the service right after each committed change, so a revocation is visible to the
/// very next request on this node.
///
/// The map uses an unkeyed fast hash: its keys are random ids the server generated, and a client
/// can only look up, never insert, so it cannot build colliding entries to slow it down.
#[derive(Debug, Default)]
pub struct KeyCache {
    map: RwLock<FxHashMap<String, Arc<KeyEntry>>>,
}

/// Decodes a stored key into its cache entry.
///
/// # Errors
/// [`ServiceError::Internal`] when stored public key material cannot be decoded.
pub fn entry_for(record: &KeyRecord) -> Result<KeyEntry, ServiceError> {
    let credential = match &record.material {
        KeyMaterial::Hmac(secret) => Credential::hmac(secret),
        KeyMaterial::Public(pk) => {
            pk.credential().map_err(|e| ServiceError::Internal(format!("key {}: {e}", record.id)))?
        }
    };
    Ok(KeyEntry {
        id: record.id.clone(),
        account_id: record.account_id,
        credential,
        permissions: record.permissions,
        restrictions: record.restrictions.clone(),
        status: record.status,
        created_at: record.created_at,
        app_id: record.app_id.clone(),
        replay_use: Default::default(),
        bad_signature: Default::default(),
    })
}

impl KeyCache {
    /// Replaces the whole cache with `records`.
    ///
    /// # Errors
    /// As [`entry_for`]; the cache is unchanged on error.
    pub fn load(&self, records: Vec<KeyRecord>) -> Result<(), ServiceError> {
        let mut fresh = FxHashMap::with_capacity_and_hasher(records.len(), Default::default());
        for r in &records {
            fresh.insert(r.id.as_str().to_owned(), Arc::new(entry_for(r)?));
        }
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// Inserts or replaces every key of `records` (one page of the warm-up at start).
    ///
    /// # Errors
    /// As [`entry_for`]; the cache is unchanged on error.
    pub fn extend(&self, records: &[KeyRecord]) -> Result<(), ServiceError> {
        let entries = records
            .iter()
            .map(|r| Ok((r.id.as_str().to_owned(), Arc::new(entry_for(r)?))))
            .collect::<Result<Vec<_>, ServiceError>>()?;
        self.map.write().unwrap_or_else(PoisonError::into_inner).extend(entries);
        Ok(())
    }

    /// Inserts or replaces one key.
    ///
    /// # Errors
    /// As [`entry_for`]; the cache is unchanged on error.
    pub fn upsert(&self, record: &KeyRecord) -> Result<(), ServiceError> {
        let entry = Arc::new(entry_for(record)?);
        self.map.write().unwrap_or_else(PoisonError::into_inner).insert(record.id.as_str().to_owned(), entry);
        Ok(())
    }

    /// Forgets one key (deleted from the store behind this node's back).
    pub fn remove(&self, api_key: &str) {
        self.map.write().unwrap_or_else(PoisonError::into_inner).remove(api_key);
    }

    /// Number of cached keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// True if and only if no key is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl KeyLookup for KeyCache {
    fn lookup(&self, api_key: &str) -> Option<Arc<KeyEntry>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(api_key).cloned()
    }
}
