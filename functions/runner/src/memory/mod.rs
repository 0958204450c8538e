//! Memory stores: materialise each `memory_store` resource of the session as a local
//! directory, keep it in sync with the control plane while the tool loop runs, and
//! flush and dispose of it at teardown (tools spec §10, control-plane spec §10.6,
//! §9.2 steps 6, 8, 10).
//!
//! # Use
//!
//! ```text
//! let stores = MemoryStores::mount(api, workdir, &session.resources, cfg).await?; // fails the item on error
//! roots.allow(..) / roots.read_only(..) for every entry of stores.roots();
//! after every dispatched tool call: stores.maybe_sync().await;
//! teardown (after bash is killed and skills are deleted): stores.teardown(loop_ended_cleanly).await;
//! ```
//!
//! The caller owns §10.1: if the session has memory stores, memory is enabled and
//! there is no sessions token, fail the item instead of mounting; the
//! [`ControlPlane`](cma_shared::ControlPlane) given as [`MemoryApi`] must be
//! authenticated with the sessions token.
//!
//! # Mount (§10.2–10.3)
//!
//! 1. Only `type == "memory_store"` resources count; more than
//!    [`MemoryConfig::max_stores`] (8) ⇒ error. Each needs a `memory_store_id`, and
//!    a store listed twice is an error.
//! 2. Root: `mount_path` verbatim when set. It must be *clean*: absolute, no `.` or
//!    `..` component, no NUL, not `/` (repeated/trailing `/` are tolerated) ⇒ else
//!    `memory store mount_path is not a clean absolute path: …`. Without it:
//!    `{workdir}/memory/<component>` where `<component>` is `name` reduced to one
//!    safe path component (trimmed; `/`, `\` and control characters replaced by `_`;
//!    cut to 255 bytes; empty, `.` or `..` ⇒ the store id). If that collides with an
//!    earlier store's derived root the store id is used instead. Two roots that are
//!    equal or nested ⇒ error.
//! 3. Anything at a root (`lstat`) ⇒ `something already exists at the memory store's
//!    path: …; it must not exist when the session starts`.
//! 4. Each root and its missing ancestors are created with mode 0700, the marker
//!    `.anthropic-memory-store` = `version 1\n<memory_store_id>` (no trailing
//!    newline) is written, then every memory is downloaded (`view=full`, `limit=20`,
//!    all pages; stores in parallel). The marker path and items without an id are
//!    skipped; a path that is empty, absolute (after removing one leading `/`) or
//!    has an empty, `.` or `..` component is refused and logged (and ignored by
//!    every later sync). Writes are atomic: `.fs-<16 hex>.tmp` opened
//!    `O_CREAT|O_EXCL|O_NOFOLLOW` 0600 beside the target, then `rename`. Parent
//!    directories are created 0700 below the root only; an existing parent that is
//!    not a real directory (e.g. a symlink) refuses the write. The baseline
//!    (`path → sha256(bytes written)`) holds only the files written. A failing
//!    listing fails the mount; a single file that cannot be written is logged and
//!    left out of the baseline. On any failure everything created is removed and
//!    the error names the store.
//!
//! # Sync (§10.4–10.6), per store, stores in parallel
//!
//! * **Scan**: walk without following symlinks (not even a symlinked root);
//!   SHA-256 (lowercase hex) of every regular file; symlinks, FIFOs, sockets,
//!   devices, non-UTF-8 names and our own `.fs-<16 hex>.tmp` files are skipped.
//!   Hashes are cached by `(mtime_ns, ctime_ns, size)` only for files whose
//!   `max(mtime, ctime)` is more than 2 s older than the scan start. The root
//!   marker is removed from the listing and checked against
//!   `sha256("version 1\n<id>")`. *Decision:* a scan that cannot complete
//!   (permission error, …) skips the store for this round (an unreadable directory
//!   must not look like a mass deletion).
//! * **Trust**: marker wrong/gone (or the root replaced by a non-directory) while
//!   files remain ⇒ nothing for this store. Marker wrong/gone and no files, or
//!   marker fine but every file of a baseline of ≥ 2 gone ⇒ re-create the root
//!   (0700), rewrite the marker, download everything again, reset the baseline;
//!   nothing pushed or deleted. A vanished root is re-created only here.
//! * **Listing** `view=basic`, `limit=100`. A recorded unsettled send whose sha the
//!   listing shows counts as ours (baseline := that sha). Refusals are dropped
//!   when the file's hash changed.
//! * **Decision** per path of the sorted union of remote (`R`), local (`L`) and
//!   baseline (`B`) paths, exactly the §10.5 table:
//!
//!   | R | L | B | action |
//!   |---|---|---|---|
//!   | – | – | any | forget |
//!   | – | ✓ | – | create (writable, not refused with this `L`) |
//!   | – | ✓ | `L == B` | remove the local file (re-hashed first; changed ⇒ next row) |
//!   | – | ✓ | `L != B` | writable: create; read-only: keep unsynced |
//!   | ✓ | – | `R == B` | writable: corroborated delete; read-only: pull (*decision*: a read-only store mirrors the server) |
//!   | ✓ | – | `R != B` or – | pull (restore / new memory) |
//!   | ✓ | `L == R` | `R != B` | adopt (baseline := R) |
//!   | ✓ | ✓ | `R != B` | pull over local; conflict (warning, [`StoreReport::conflicts`]) when `L != B` |
//!   | ✓ | `L != B` | `R == B` | writable: update with precondition `R`; read-only: nothing |
//!   | ✓ | `L == B` | `R == B` | nothing |
//!
//!   Execution order after the decisions: local removals, uploads (≤ 16 in
//!   flight), deletes, pulls (`GET …?view=full`, ≤ 16 in flight; 404 = vanished).
//!   The baseline moves only on a successful write/upload.
//! * **Uploads**: the sha of the exact bytes sent is recorded first (unsettled
//!   send). Success ⇒ baseline = returned `content_sha256` (else the sent sha).
//!   404 on update ⇒ retried as create at once. 409 (*and 412*) on update ⇒ the
//!   local edit loses (conflict; the next sync pulls the winner). 400/413, a
//!   non-UTF-8 file, or (*decision*) a file over 1 MiB (10× the server cap, so it is
//!   not even read) ⇒ refused until the file's hash changes. Anything else
//!   (including 409 on create) ⇒ retried on the next sync.
//! * **Deletes** ([`DeleteMode`]): the first observation of a locally missing file
//!   starts a timer (injectable [`Clock`]); on a later sync, once ≥
//!   [`MemoryConfig::delete_wait`] (30 s) passed — or at once in the final sync —
//!   the marker is re-checked (invalid ⇒ no deletes) and the file must still be
//!   absent (`lstat`); then `DELETE ?expected_content_sha256=B`, at most
//!   `clamp(len(baseline) / 4, 8, 50)` per sync (the rest wait for the next sync).
//!   404 ⇒ done; 409/412 ⇒ keep the remote (restored by a later pull); other ⇒
//!   retried. `log_only` runs every check and only logs; `disabled` never deletes.
//! * Read-only stores never upload or delete remotely; their local edits are
//!   overwritten when the remote changes.
//!
//! # When (§10.7)
//!
//! [`MemoryStores::maybe_sync`] after each dispatched tool call syncs iff ≥
//! `sync_interval` passed since the end of the last sync (the mount counts as a
//! sync). Syncs never fail; errors are logged per store and reported.
//! [`MemoryStores::teardown`] runs on its own task (so dropping its future does not
//! cancel it): `finish` (full sync, delete wait waived) if the loop ended cleanly,
//! bounded by [`MemoryConfig::teardown_timeout`]; always `flush` (push-only, ≤ 32
//! uploads in flight: local hash ≠ baseline, not refused; the server already
//! having the same sha ⇒ adopt; the server changed since the baseline ⇒ remote
//! wins, warning; untrusted or emptied stores are skipped), same bound; then each
//! root is removed unless its marker check fails while entries (anything but
//! directories) remain; finally the ancestors the mount created are removed if
//! empty.

// `ApiError` (boxed here) and `MemoryError` only travel on error paths.
#![allow(clippy::result_large_err)]

mod api;
mod fsops;
mod sync;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cma_shared::ApiError;
use cma_shared::retry::{Clock, TokioClock};
use cma_shared::types::Resource;
use futures_util::future::join_all;

pub use api::{DOWNLOAD_PAGE_LIMIT, DeleteOutcome, MemoryApi, MemoryView, SYNC_PAGE_LIMIT};
pub use fsops::MARKER_NAME;
use sync::{Ctx, Store, blocking};

/// What to do with memories deleted locally (§10.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteMode {
    /// Delete remotely after corroboration (default).
    #[default]
    Enabled,
    /// Run every check, only log what would be deleted.
    LogOnly,
    /// Never delete remotely.
    Disabled,
}

impl FromStr for DeleteMode {
    type Err = MemoryError;

    /// `enabled` | `log_only` | `disabled` (ASCII case-insensitive; `-` accepted for `_`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "enabled" => Ok(Self::Enabled),
            "log_only" => Ok(Self::LogOnly),
            "disabled" => Ok(Self::Disabled),
            _ => Err(MemoryError::Config(format!(
                "memory delete mode must be enabled, log_only or disabled, not {s:?}"
            ))),
        }
    }
}

/// Memory-store settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Minimum time between two syncs triggered by tool calls (default 15 s,
    /// minimum 5 s).
    pub sync_interval: Duration,
    pub delete_mode: DeleteMode,
    /// How long a file must be observed missing before its remote delete (30 s).
    pub delete_wait: Duration,
    /// Stores per session (8).
    pub max_stores: usize,
    /// Bound of each of the two teardown phases, `finish` and `flush` (30 s).
    pub teardown_timeout: Duration,
}

impl MemoryConfig {
    pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(15);
    pub const MIN_SYNC_INTERVAL: Duration = Duration::from_secs(5);
    pub const DEFAULT_DELETE_WAIT: Duration = Duration::from_secs(30);
    pub const DEFAULT_MAX_STORES: usize = 8;
    pub const DEFAULT_TEARDOWN_TIMEOUT: Duration = Duration::from_secs(30);

    /// Defaults with this interval and delete mode; an interval below 5 s is rejected.
    pub fn new(sync_interval: Duration, delete_mode: DeleteMode) -> Result<Self, MemoryError> {
        let cfg = Self {
            sync_interval,
            delete_mode,
            ..Self::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Like [`MemoryConfig::new`] from seconds as configured (NaN, infinite and
    /// values below 5 are rejected).
    pub fn from_secs(
        sync_interval_secs: f64,
        delete_mode: DeleteMode,
    ) -> Result<Self, MemoryError> {
        if !sync_interval_secs.is_finite() || sync_interval_secs < 5.0 {
            return Err(MemoryError::Config(format!(
                "memory sync interval must be a number of seconds ≥ 5, not {sync_interval_secs}"
            )));
        }
        let interval = Duration::try_from_secs_f64(sync_interval_secs).map_err(|_| {
            MemoryError::Config(format!(
                "memory sync interval is out of range: {sync_interval_secs}"
            ))
        })?;
        Self::new(interval, delete_mode)
    }

    pub fn validate(&self) -> Result<(), MemoryError> {
        if self.sync_interval < Self::MIN_SYNC_INTERVAL {
            return Err(MemoryError::Config(format!(
                "memory sync interval must be at least 5 s, not {:?}",
                self.sync_interval
            )));
        }
        if self.max_stores == 0 {
            return Err(MemoryError::Config("max_stores must be at least 1".into()));
        }
        Ok(())
    }
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            sync_interval: Self::DEFAULT_SYNC_INTERVAL,
            delete_mode: DeleteMode::Enabled,
            delete_wait: Self::DEFAULT_DELETE_WAIT,
            max_stores: Self::DEFAULT_MAX_STORES,
            teardown_timeout: Self::DEFAULT_TEARDOWN_TIMEOUT,
        }
    }
}

/// Why the stores could not be mounted (the work item fails). Messages name the
/// store and never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("{0}")]
    Config(String),
    #[error("the session has {count} memory stores; at most {max} are supported")]
    TooManyStores { count: usize, max: usize },
    #[error("a memory_store resource of the session has no memory_store_id")]
    MissingStoreId,
    #[error("memory store {store_id} is listed more than once in the session's resources")]
    DuplicateStore { store_id: String },
    #[error(
        "memory store mount_path is not a clean absolute path: {mount_path:?} (memory store {store_id})"
    )]
    UncleanMountPath {
        store_id: String,
        mount_path: String,
    },
    #[error("memory store {store_id}: its id cannot be used as a directory name")]
    UnusableStoreId { store_id: String },
    #[error(
        "memory store {store_id}: its path {} overlaps the path {} of memory store {other_id}",
        path.display(),
        other_path.display()
    )]
    OverlappingRoots {
        store_id: String,
        path: PathBuf,
        other_id: String,
        other_path: PathBuf,
    },
    #[error(
        "something already exists at the memory store's path: {}; it must not exist when the session starts (memory store {store_id})",
        path.display()
    )]
    AlreadyExists { store_id: String, path: PathBuf },
    #[error("memory store {store_id}: cannot {action} {}: {source}", path.display())]
    Io {
        store_id: String,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("memory store {store_id}: downloading its memories failed: {source}")]
    Download {
        store_id: String,
        #[source]
        source: Box<ApiError>,
    },
}

/// How one store's sync (or flush) went.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreOutcome {
    /// Synced (individual files may still have failed: see `errors`).
    #[default]
    Synced,
    /// Marker wrong/gone (or the root is not a directory) while files remain, or
    /// (flush) the folder was emptied: nothing uploaded or deleted.
    Untrusted,
    /// The root was re-created and downloaded again.
    Redownloaded,
    /// Not applicable (flush of a read-only store).
    Skipped,
    /// The listing, scan or re-download failed; retried next time.
    Failed(String),
}

/// What one sync (or flush) did to one store. Paths are relative to the root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreReport {
    pub store_id: String,
    pub outcome: StoreOutcome,
    /// Uploaded as new memories.
    pub created: Vec<String>,
    /// Uploaded as updates (with a precondition).
    pub updated: Vec<String>,
    /// Downloaded over (or into) the local tree.
    pub pulled: Vec<String>,
    /// Same content on both sides; baseline advanced without a transfer.
    pub adopted: Vec<String>,
    /// Local files removed because the memory was deleted remotely.
    pub removed_local: Vec<String>,
    /// Memories deleted on the server.
    pub deleted_remote: Vec<String>,
    /// Locally missing, waiting for corroboration or for the per-sync cap.
    pub delete_pending: Vec<String>,
    /// `log_only`: deletes that would have been sent.
    pub delete_logged: Vec<String>,
    /// Local changes that lost to the server (pulled over, 409 on update, 409/412
    /// on delete, or skipped by the flush because the remote changed).
    pub conflicts: Vec<String>,
    /// Refused uploads (400/413, not UTF-8, too large): not retried until changed.
    pub refused: Vec<String>,
    /// Number of memories written by a re-download.
    pub redownloaded: usize,
    /// Per-file failures (retried on the next sync).
    pub errors: Vec<String>,
}

impl StoreReport {
    fn new(store_id: &str) -> Self {
        Self {
            store_id: store_id.to_owned(),
            ..Self::default()
        }
    }

    fn log(&self, read_only: bool) {
        let changed = self.created.len()
            + self.updated.len()
            + self.pulled.len()
            + self.removed_local.len()
            + self.deleted_remote.len();
        if changed > 0 || !self.conflicts.is_empty() || !self.errors.is_empty() {
            tracing::info!(
                store = %self.store_id,
                read_only,
                created = self.created.len(),
                updated = self.updated.len(),
                pulled = self.pulled.len(),
                removed_local = self.removed_local.len(),
                deleted_remote = self.deleted_remote.len(),
                delete_pending = self.delete_pending.len(),
                conflicts = self.conflicts.len(),
                refused = self.refused.len(),
                errors = self.errors.len(),
                "memory store synced"
            );
        }
    }
}

/// The reports of one sync of all stores (store order = mount order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncReport {
    pub stores: Vec<StoreReport>,
}

impl SyncReport {
    pub fn store(&self, store_id: &str) -> Option<&StoreReport> {
        self.stores.iter().find(|s| s.store_id == store_id)
    }

    /// Every conflict as `(store_id, path)`.
    pub fn conflicts(&self) -> Vec<(String, String)> {
        self.stores
            .iter()
            .flat_map(|s| s.conflicts.iter().map(|p| (s.store_id.clone(), p.clone())))
            .collect()
    }
}

/// What [`MemoryStores::teardown`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TeardownReport {
    /// The final sync (`None`: the loop did not end cleanly, or it timed out).
    pub finish: Option<SyncReport>,
    pub finish_timed_out: bool,
    /// The push-only flush (`None`: timed out).
    pub flush: Option<SyncReport>,
    pub flush_timed_out: bool,
    /// Roots removed.
    pub removed: Vec<PathBuf>,
    /// Roots left in place for inspection (marker check failed while entries remain,
    /// or removal failed).
    pub kept: Vec<PathBuf>,
}

/// The mounted memory stores of one session.
pub struct MemoryStores {
    api: Arc<dyn MemoryApi>,
    cfg: MemoryConfig,
    clock: Arc<dyn Clock>,
    stores: Vec<Store>,
    last_sync: Mutex<Instant>,
}

impl fmt::Debug for MemoryStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStores")
            .field("cfg", &self.cfg)
            .field("roots", &self.roots())
            .finish_non_exhaustive()
    }
}

/// A store to mount.
struct Plan {
    id: String,
    root: PathBuf,
    read_only: bool,
}

fn plan(workdir: &Path, resources: &[Resource], max: usize) -> Result<Vec<Plan>, MemoryError> {
    let mem: Vec<&Resource> = resources.iter().filter(|r| r.is_memory_store()).collect();
    if mem.len() > max {
        return Err(MemoryError::TooManyStores {
            count: mem.len(),
            max,
        });
    }
    let mut plans: Vec<Plan> = Vec::new();
    for r in mem {
        let id = r
            .memory_store_id
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(MemoryError::MissingStoreId)?
            .to_owned();
        if plans.iter().any(|p| p.id == id) {
            return Err(MemoryError::DuplicateStore { store_id: id });
        }
        let root = match r.mount_path.as_deref() {
            Some(mp) => {
                fsops::clean_mount_path(mp).ok_or_else(|| MemoryError::UncleanMountPath {
                    store_id: id.clone(),
                    mount_path: mp.to_owned(),
                })?
            }
            None => {
                let base = workdir.join("memory");
                let by_id = || {
                    fsops::safe_component(&id)
                        .map(|c| base.join(c))
                        .ok_or_else(|| MemoryError::UnusableStoreId {
                            store_id: id.clone(),
                        })
                };
                match r.name.as_deref().and_then(fsops::safe_component) {
                    Some(c) if !plans.iter().any(|p| p.root == base.join(&c)) => base.join(c),
                    _ => by_id()?,
                }
            }
        };
        if let Some(other) = plans
            .iter()
            .find(|p| p.root.starts_with(&root) || root.starts_with(&p.root))
        {
            return Err(MemoryError::OverlappingRoots {
                store_id: id,
                path: root,
                other_id: other.id.clone(),
                other_path: other.root.clone(),
            });
        }
        plans.push(Plan {
            id,
            root,
            read_only: r.is_read_only(),
        });
    }
    Ok(plans)
}

/// Removes the roots and the ancestors the mount created (ancestors only if empty).
fn dispose_created(roots: &[PathBuf], ancestors: &[PathBuf]) {
    for root in roots {
        if let Err(e) = fsops::remove_root(root) {
            tracing::warn!(root = %root.display(), error = %e, "memory store: cannot remove root");
        }
    }
    remove_ancestors(ancestors);
}

fn remove_ancestors(ancestors: &[PathBuf]) {
    let mut all: Vec<&PathBuf> = ancestors.iter().collect();
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all.dedup();
    for a in all {
        // Only if empty; anything else is not ours to remove.
        let _ = std::fs::remove_dir(a);
    }
}

impl MemoryStores {
    /// Mounts and downloads every memory store of the session (§10.2–10.3), with
    /// the tokio clock. Any failure removes what was created and returns an error
    /// naming the store: the item fails.
    pub async fn mount(
        api: Arc<dyn MemoryApi>,
        workdir: &Path,
        resources: &[Resource],
        cfg: MemoryConfig,
    ) -> Result<MemoryStores, MemoryError> {
        Self::mount_with_clock(api, workdir, resources, cfg, Arc::new(TokioClock)).await
    }

    /// [`MemoryStores::mount`] with an explicit clock (sync interval and delete
    /// corroboration timers).
    pub async fn mount_with_clock(
        api: Arc<dyn MemoryApi>,
        workdir: &Path,
        resources: &[Resource],
        cfg: MemoryConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<MemoryStores, MemoryError> {
        cfg.validate()?;
        let plans = plan(workdir, resources, cfg.max_stores)?;

        // Check and create every root (blocking file-system work).
        let created = blocking(move || {
            for p in &plans {
                match std::fs::symlink_metadata(&p.root) {
                    Ok(_) => {
                        return Err(MemoryError::AlreadyExists {
                            store_id: p.id.clone(),
                            path: p.root.clone(),
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(MemoryError::Io {
                            store_id: p.id.clone(),
                            action: "check the memory store path",
                            path: p.root.clone(),
                            source: e,
                        });
                    }
                }
            }
            let mut stores: Vec<Store> = Vec::new();
            for p in plans {
                let res = match fsops::create_root(&p.root) {
                    Err(e) => Err((e, "create the memory store directory")),
                    Ok(anc) => match fsops::write_marker(&p.root, &p.id) {
                        Ok(()) => Ok(anc),
                        Err(e) => {
                            dispose_created(std::slice::from_ref(&p.root), &anc);
                            Err((e, "write the marker file in"))
                        }
                    },
                };
                match res {
                    Ok(anc) => stores.push(Store::new(p.id, p.root, p.read_only, anc)),
                    Err((e, action)) => {
                        dispose_stores(&stores);
                        return Err(MemoryError::Io {
                            store_id: p.id,
                            action,
                            path: p.root,
                            source: e,
                        });
                    }
                }
            }
            Ok(stores)
        })
        .await?;

        let results = join_all(
            created
                .iter()
                .map(|s| sync::download(api.as_ref(), &s.id, &s.root)),
        )
        .await;
        let mut failure = None;
        for (s, res) in created.iter().zip(results) {
            match res {
                Ok(baseline) => {
                    tracing::info!(store = %s.id, root = %s.root.display(), read_only = s.read_only,
                        memories = baseline.len(), "memory store mounted");
                    s.state.try_lock().expect("fresh store").baseline = baseline;
                }
                Err(e) if failure.is_none() => {
                    failure = Some(MemoryError::Download {
                        store_id: s.id.clone(),
                        source: Box::new(e),
                    });
                }
                Err(_) => {}
            }
        }
        if let Some(err) = failure {
            blocking(move || dispose_stores(&created)).await;
            return Err(err);
        }
        let now = clock.now();
        Ok(MemoryStores {
            api,
            cfg,
            clock,
            stores: created,
            last_sync: Mutex::new(now),
        })
    }

    /// `(root, read_only)` of every store, in mount order: every root goes to the
    /// file tools' allowed roots, the read-only ones also to their read-only roots.
    pub fn roots(&self) -> Vec<(PathBuf, bool)> {
        self.stores
            .iter()
            .map(|s| (s.root.clone(), s.read_only))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.stores.is_empty()
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            api: self.api.as_ref(),
            cfg: &self.cfg,
            clock: self.clock.as_ref(),
        }
    }

    /// Call after every dispatched tool call: syncs all stores (in parallel) iff at
    /// least `sync_interval` passed since the last sync ended. Never fails; returns
    /// the report when a sync ran.
    pub async fn maybe_sync(&self) -> Option<SyncReport> {
        if self.stores.is_empty() {
            return None;
        }
        let last = *self.last_sync.lock().expect("last_sync lock");
        if self.clock.now().duration_since(last) < self.cfg.sync_interval {
            return None;
        }
        Some(self.sync_now(false).await)
    }

    /// One full sync of every store, in parallel. `final_sync` waives the delete
    /// wait (the per-sync delete cap still applies).
    pub async fn sync_now(&self, final_sync: bool) -> SyncReport {
        let ctx = self.ctx();
        let stores = join_all(
            self.stores
                .iter()
                .map(|s| sync::sync_store(&ctx, s, final_sync)),
        )
        .await;
        *self.last_sync.lock().expect("last_sync lock") = self.clock.now();
        SyncReport { stores }
    }

    /// The push-only teardown pass (§10.7 step 3): uploads local changes of every
    /// writable store with a valid marker; no pulls, no deletes.
    pub async fn flush(&self) -> SyncReport {
        let ctx = self.ctx();
        let stores = join_all(self.stores.iter().map(|s| sync::flush_store(&ctx, s))).await;
        SyncReport { stores }
    }

    /// Teardown (§10.7): `finish` if the loop ended cleanly, then `flush`, each
    /// bounded by `teardown_timeout`, then dispose of the roots. Runs on its own
    /// task so that dropping this future does not cut it short.
    pub async fn teardown(self, loop_ended_cleanly: bool) -> TeardownReport {
        let roots = self.roots();
        match tokio::spawn(self.teardown_inner(loop_ended_cleanly)).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "memory store teardown task failed");
                TeardownReport {
                    kept: roots.into_iter().map(|(p, _)| p).collect(),
                    ..TeardownReport::default()
                }
            }
        }
    }

    async fn teardown_inner(self, loop_ended_cleanly: bool) -> TeardownReport {
        let mut report = TeardownReport::default();
        if self.stores.is_empty() {
            return report;
        }
        let bound = self.cfg.teardown_timeout;
        if loop_ended_cleanly {
            match tokio::time::timeout(bound, self.sync_now(true)).await {
                Ok(r) => report.finish = Some(r),
                Err(_) => {
                    tracing::warn!("memory store final sync cut off after {bound:?}");
                    report.finish_timed_out = true;
                }
            }
        }
        match tokio::time::timeout(bound, self.flush()).await {
            Ok(r) => report.flush = Some(r),
            Err(_) => {
                tracing::warn!(
                    "memory store flush cut off after {bound:?}; unsynced edits may be lost"
                );
                report.flush_timed_out = true;
            }
        }
        let stores = self.stores;
        let (removed, kept) = blocking(move || {
            let mut removed = Vec::new();
            let mut kept = Vec::new();
            for s in &stores {
                match dispose_one(s) {
                    Some(true) => removed.push(s.root.clone()),
                    Some(false) => kept.push(s.root.clone()),
                    None => {}
                }
            }
            let ancestors: Vec<PathBuf> = stores
                .iter()
                .flat_map(|s| s.created_ancestors.iter().cloned())
                .collect();
            remove_ancestors(&ancestors);
            (removed, kept)
        })
        .await;
        report.removed = removed;
        report.kept = kept;
        report
    }
}

/// Removes one root unless its marker check fails while entries remain.
/// `Some(true)` removed, `Some(false)` kept, `None` already gone.
fn dispose_one(s: &Store) -> Option<bool> {
    let is_dir = match std::fs::symlink_metadata(&s.root) {
        Ok(md) => md.is_dir(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(_) => false,
    };
    let trusted = fsops::marker_valid(&s.root, &s.marker_sha);
    if !trusted && is_dir && fsops::has_entries_besides_marker(&s.root) {
        tracing::warn!(store = %s.id, root = %s.root.display(),
            "memory store: marker check failed while files remain; leaving the folder for inspection");
        return Some(false);
    }
    match fsops::remove_root(&s.root) {
        Ok(()) => Some(true),
        Err(e) => {
            tracing::warn!(store = %s.id, root = %s.root.display(), error = %e, "memory store: cannot remove the folder");
            Some(false)
        }
    }
}

fn dispose_stores(stores: &[Store]) {
    let roots: Vec<PathBuf> = stores.iter().map(|s| s.root.clone()).collect();
    let ancestors: Vec<PathBuf> = stores
        .iter()
        .flat_map(|s| s.created_ancestors.iter().cloned())
        .collect();
    dispose_created(&roots, &ancestors);
}
