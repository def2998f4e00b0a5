//! Who a personal API token belongs to, remembered for a few seconds.
//!
//! Resolving a token takes three store reads (the token, its user, the user's teams), which
//! would dominate every API call, `/v1/authorize` included. A successful resolution is kept for
//! [`AUTH_CACHE_TTL`]; every change this node makes to users, teams or tokens empties the cache,
//! so a revoked token or a removed membership is refused on the next request here. Changes made
//! on another replica are seen within the TTL. A resolution that raced a change (it read the
//! store before the change and finished after) is not kept: each clear starts a new generation
//! and only resolutions begun in the current generation are stored.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rein_core::authz::Actor;
use rein_core::user::ApiToken;

/// How long a resolved token is trusted without reading the store again.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// Tokens remembered at most; beyond it the cache is emptied and refills.
const MAX_ENTRIES: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct AuthCache {
    generation: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug, Clone)]
struct Entry {
    token: ApiToken,
    actor: Actor,
    at: Instant,
}

impl AuthCache {
    /// The generation a resolution starts in; pass it to [`AuthCache::put`].
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The stored token and actor for token `id`, if resolved less than the TTL ago.
    pub(crate) fn get(&self, id: &str) -> Option<(ApiToken, Actor)> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .get(id)
            .filter(|e| e.at.elapsed() < AUTH_CACHE_TTL)
            .map(|e| (e.token.clone(), e.actor.clone()))
    }

    /// Remembers a resolution begun in `generation`, unless the cache was cleared since.
    pub(crate) fn put(&self, generation: u64, token: ApiToken, actor: Actor) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(
            token.id.clone(),
            Entry {
                token,
                actor,
                at: Instant::now(),
            },
        );
    }

    /// Forgets everything (a user, team or token changed).
    pub(crate) fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }
}
