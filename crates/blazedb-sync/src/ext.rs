//! `db.enable_sync(relay, role)`: the entry point to sync, as an extension of
//! [`Database`] (the engine does not know the sync layer).

use std::future::Future;

use blazedb_engine::Database;

use crate::clock::Role;
use crate::config::SyncConfig;
use crate::error::Result;
use crate::handle::SyncHandle;
use crate::relay::Relay;

/// Sync for a [`Database`].
pub trait EnableSync {
    /// Enables sync with `role` and starts syncing through `relay` with the default
    /// [`SyncConfig`] (every collection, live). The returned handle starts, stops, syncs now,
    /// reports status and reads the conflict log; dropping it stops syncing.
    ///
    /// # Errors
    /// [`crate::SyncError::RoleMismatch`] if the database syncs with the other role;
    /// database errors.
    fn enable_sync(
        &self,
        relay: impl Relay,
        role: Role,
    ) -> impl Future<Output = Result<SyncHandle>> + Send;

    /// As [`EnableSync::enable_sync`], with `config`.
    ///
    /// # Errors
    /// As [`EnableSync::enable_sync`].
    fn enable_sync_with(
        &self,
        relay: impl Relay,
        role: Role,
        config: SyncConfig,
    ) -> impl Future<Output = Result<SyncHandle>> + Send;
}

impl EnableSync for Database {
    fn enable_sync(
        &self,
        relay: impl Relay,
        role: Role,
    ) -> impl Future<Output = Result<SyncHandle>> + Send {
        SyncHandle::enable(self, relay, role, SyncConfig::default())
    }

    fn enable_sync_with(
        &self,
        relay: impl Relay,
        role: Role,
        config: SyncConfig,
    ) -> impl Future<Output = Result<SyncHandle>> + Send {
        SyncHandle::enable(self, relay, role, config)
    }
}
