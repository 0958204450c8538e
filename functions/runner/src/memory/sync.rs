//! Per-store state and the sync / flush / re-download algorithms (tools spec
//! §10.3–10.6). See the module docs of [`super`] for the rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use cma_shared::ApiError;
use cma_shared::retry::Clock;
use cma_shared::types::Memory;
use futures_util::stream::{self, StreamExt};

use super::api::{DOWNLOAD_PAGE_LIMIT, MemoryApi, MemoryView, SYNC_PAGE_LIMIT};
use super::fsops::{self, CACHE_MIN_AGE, HashCache, LOCAL_UPLOAD_CAP, MARKER_NAME, RootState};
use super::{DeleteMode, MemoryConfig, StoreOutcome, StoreReport};

/// Pulls in flight per store.
const PULL_CONCURRENCY: usize = 16;
/// Uploads in flight per store during a sync.
const SYNC_UPLOAD_CONCURRENCY: usize = 16;
/// Uploads in flight per store during the teardown flush.
pub(super) const FLUSH_UPLOAD_CONCURRENCY: usize = 32;

/// Runs blocking file-system work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("memory store file-system task cancelled: {e}"),
    }
}

/// One mounted store.
pub(super) struct Store {
    pub id: String,
    pub root: PathBuf,
    pub read_only: bool,
    /// `sha256("version 1\n<id>")`.
    pub marker_sha: String,
    /// Ancestors of the root this run created (deepest first).
    pub created_ancestors: Vec<PathBuf>,
    pub state: tokio::sync::Mutex<StoreState>,
}

impl Store {
    pub fn new(
        id: String,
        root: PathBuf,
        read_only: bool,
        created_ancestors: Vec<PathBuf>,
    ) -> Self {
        let marker_sha = fsops::sha256_hex(fsops::marker_content(&id).as_bytes());
        Self {
            id,
            root,
            read_only,
            marker_sha,
            created_ancestors,
            state: tokio::sync::Mutex::new(StoreState::default()),
        }
    }
}

/// What the runner remembers about a store between syncs.
#[derive(Debug, Default)]
pub(super) struct StoreState {
    /// Path → sha of the content both sides last agreed on.
    pub baseline: BTreeMap<String, String>,
    pub cache: HashCache,
    /// Path → local sha the server refused (400/413) or that is not UTF-8.
    pub refused: HashMap<String, String>,
    /// Path → sha of content sent whose outcome is unknown.
    pub pending: HashMap<String, String>,
    /// Path → when the local file was first seen missing (delete corroboration).
    pub missing_since: HashMap<String, Instant>,
}

pub(super) struct Ctx<'a> {
    pub api: &'a dyn MemoryApi,
    pub cfg: &'a MemoryConfig,
    pub clock: &'a dyn Clock,
}

/// A remote memory as seen in a listing.
#[derive(Debug, Clone)]
struct Remote {
    id: String,
    sha: String,
}

/// The relative local path of a listed item, or `None` to ignore it (not a
/// memory, the marker, or a path we refuse to write).
fn remote_rel<'m>(store_id: &str, m: &'m Memory) -> Option<&'m str> {
    if m.id.is_empty() {
        return None;
    }
    let rel = m.path.strip_prefix('/').unwrap_or(&m.path);
    if rel == MARKER_NAME {
        return None;
    }
    if !fsops::valid_rel(rel) {
        tracing::warn!(store = %store_id, memory_id = %m.id, path = ?m.path,
            "memory store: ignoring a memory whose path is absolute, empty or has a `.`/`..` component");
        return None;
    }
    Some(rel)
}

fn remote_sha(m: &Memory) -> String {
    match (&m.content_sha256, &m.content) {
        (Some(s), _) if !s.is_empty() => s.to_ascii_lowercase(),
        (_, Some(c)) => fsops::sha256_hex(c.as_bytes()),
        // Unknown: compares unequal to every hash, so the memory is pulled.
        _ => String::new(),
    }
}

fn remote_map(store_id: &str, items: &[Memory]) -> BTreeMap<String, Remote> {
    let mut out = BTreeMap::new();
    for m in items {
        if let Some(rel) = remote_rel(store_id, m) {
            out.entry(rel.to_owned()).or_insert_with(|| Remote {
                id: m.id.clone(),
                sha: remote_sha(m),
            });
        }
    }
    out
}

/// Downloads every memory (`view=full`, `limit=20`, paged) into `root`; returns
/// the baseline of the files actually written. Per-file write failures are logged
/// and left out of the baseline; only the listing failing is an error.
pub(super) async fn download(
    api: &dyn MemoryApi,
    store_id: &str,
    root: &Path,
) -> Result<BTreeMap<String, String>, ApiError> {
    let items = api
        .list(store_id, MemoryView::Full, DOWNLOAD_PAGE_LIMIT)
        .await?;
    let mut files: Vec<(String, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in &items {
        if let Some(rel) = remote_rel(store_id, m)
            && seen.insert(rel.to_owned())
        {
            files.push((rel.to_owned(), m.content.clone().unwrap_or_default()));
        }
    }
    let root = root.to_path_buf();
    let id = store_id.to_owned();
    let baseline = blocking(move || {
        let mut baseline = BTreeMap::new();
        for (rel, content) in files {
            match fsops::atomic_write(&root, &rel, content.as_bytes()) {
                Ok(()) => {
                    baseline.insert(rel, fsops::sha256_hex(content.as_bytes()));
                }
                Err(e) => {
                    tracing::warn!(store = %id, path = %rel, error = %e, "memory store: cannot write memory");
                }
            }
        }
        baseline
    })
    .await;
    Ok(baseline)
}

/// Re-creates the root (0700) and marker and downloads everything again.
async fn redownload(ctx: &Ctx<'_>, store: &Store, st: &mut StoreState) -> Result<usize, String> {
    let root = store.root.clone();
    let id = store.id.clone();
    blocking(move || -> io::Result<()> {
        match std::fs::symlink_metadata(&root) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(io::Error::other("the store root is not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fsops::create_root(&root)?;
            }
            Err(e) => return Err(e),
        }
        fsops::write_marker(&root, &id)
    })
    .await
    .map_err(|e| format!("cannot re-create {}: {e}", store.root.display()))?;
    let baseline = download(ctx.api, &store.id, &store.root)
        .await
        .map_err(|e| format!("re-download failed: {e}"))?;
    let n = baseline.len();
    st.baseline = baseline;
    st.missing_since.clear();
    st.pending.clear();
    st.cache.clear();
    Ok(n)
}

enum Prelude {
    /// Sync as usual with this local listing.
    Go(BTreeMap<String, String>),
    /// Done (report already filled in).
    Stop,
}

/// Scans and applies the marker / mass-deletion rules of §10.4.
async fn scan_and_check(
    ctx: &Ctx<'_>,
    store: &Store,
    st: &mut StoreState,
    report: &mut StoreReport,
    may_redownload: bool,
) -> Prelude {
    let root = store.root.clone();
    let marker_sha = store.marker_sha.clone();
    let mut cache = std::mem::take(&mut st.cache);
    let (scan, cache) = blocking(move || {
        let s = fsops::scan(&root, &marker_sha, &mut cache, CACHE_MIN_AGE);
        (s, cache)
    })
    .await;
    st.cache = cache;
    if let Some(err) = scan.error {
        tracing::warn!(store = %store.id, error = %err, "memory store: local scan incomplete; skipping this store");
        report.outcome = StoreOutcome::Failed(format!("local scan incomplete: {err}"));
        return Prelude::Stop;
    }
    let untrusted = |report: &mut StoreReport, why: &str| {
        tracing::warn!(store = %store.id, root = %store.root.display(), "memory store: {why}; not syncing this store (nothing uploaded or deleted)");
        report.outcome = StoreOutcome::Untrusted;
        Prelude::Stop
    };
    if scan.root == RootState::NotADirectory {
        return untrusted(report, "the store root is no longer a directory");
    }
    let marker_bad = !scan.marker_ok;
    if marker_bad && !scan.files.is_empty() {
        return untrusted(
            report,
            "the marker file is missing or wrong while files remain",
        );
    }
    let all_gone =
        st.baseline.len() >= 2 && st.baseline.keys().all(|p| !scan.files.contains_key(p));
    if marker_bad || all_gone {
        if !may_redownload {
            return untrusted(report, "the store folder was emptied");
        }
        tracing::warn!(store = %store.id, root = %store.root.display(),
            "memory store: folder emptied or marker gone; re-creating it and downloading again (nothing pushed or deleted)");
        match redownload(ctx, store, st).await {
            Ok(n) => {
                report.outcome = StoreOutcome::Redownloaded;
                report.redownloaded = n;
            }
            Err(e) => {
                tracing::warn!(store = %store.id, error = %e, "memory store: re-download failed");
                report.outcome = StoreOutcome::Failed(e);
            }
        }
        return Prelude::Stop;
    }
    Prelude::Go(scan.files)
}

/// Lists the remote side and folds unsettled sends into the baseline.
async fn list_remote(
    ctx: &Ctx<'_>,
    store: &Store,
    st: &mut StoreState,
    files: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Remote>, String> {
    let items = ctx
        .api
        .list(&store.id, MemoryView::Basic, SYNC_PAGE_LIMIT)
        .await
        .map_err(|e| format!("listing failed: {e}"))?;
    let remote = remote_map(&store.id, &items);
    // A send whose response was lost counts as ours if the listing shows exactly
    // the sha we sent.
    for (path, sent) in std::mem::take(&mut st.pending) {
        if remote.get(&path).is_some_and(|r| r.sha == sent) {
            st.baseline.insert(path, sent);
        }
    }
    // A refusal holds only while the file keeps the refused content.
    st.refused.retain(|p, l| files.get(p) == Some(l));
    Ok(remote)
}

#[derive(Debug, Clone)]
enum UploadKind {
    Create,
    Update { id: String, precondition: String },
}

struct Candidate {
    path: String,
    local_sha: String,
    kind: UploadKind,
}

struct Upload {
    path: String,
    kind: UploadKind,
    content: String,
    sha: String,
}

enum UploadResult {
    /// Uploaded; the returned sha, and whether it was (finally) a create.
    Done(Option<String>, bool),
    Conflict,
    Refused,
    Failed(String),
}

/// Reads the candidates' bytes, refusing non-UTF-8 (and oversized) files, and
/// records the sha being sent.
async fn prepare_uploads(
    store: &Store,
    st: &mut StoreState,
    cands: Vec<Candidate>,
    report: &mut StoreReport,
) -> Vec<Upload> {
    let cands: Vec<Candidate> = cands
        .into_iter()
        .filter(|c| st.refused.get(&c.path) != Some(&c.local_sha))
        .collect();
    if cands.is_empty() {
        return Vec::new();
    }
    let root = store.root.clone();
    let read = blocking(move || {
        cands
            .into_iter()
            .map(|c| {
                let p = root.join(&c.path);
                let res = match std::fs::symlink_metadata(&p) {
                    Ok(md) if md.is_file() && md.len() > LOCAL_UPLOAD_CAP => Err(None),
                    _ => fsops::read_nofollow(&p).map_err(Some),
                };
                (c, res)
            })
            .collect::<Vec<_>>()
    })
    .await;
    let mut out = Vec::new();
    for (c, res) in read {
        match res {
            Ok(bytes) => {
                let sha = fsops::sha256_hex(&bytes);
                match String::from_utf8(bytes) {
                    Ok(content) => {
                        st.pending.insert(c.path.clone(), sha.clone());
                        out.push(Upload {
                            path: c.path,
                            kind: c.kind,
                            content,
                            sha,
                        });
                    }
                    Err(_) => {
                        tracing::warn!(store = %store.id, path = %c.path,
                            "memory store: not uploading a file that is not valid UTF-8 (until it changes)");
                        st.refused.insert(c.path.clone(), sha);
                        report.refused.push(c.path);
                    }
                }
            }
            Err(None) => {
                tracing::warn!(store = %store.id, path = %c.path,
                    "memory store: not uploading a file larger than {LOCAL_UPLOAD_CAP} bytes (until it changes)");
                st.refused.insert(c.path.clone(), c.local_sha);
                report.refused.push(c.path);
            }
            Err(Some(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Err(Some(e)) => {
                report.errors.push(format!("{}: cannot read: {e}", c.path));
            }
        }
    }
    out
}

async fn upload_one(api: &dyn MemoryApi, store_id: &str, up: &Upload) -> UploadResult {
    let api_path = format!("/{}", up.path);
    let mut created = true;
    let res = match &up.kind {
        UploadKind::Create => api.create(store_id, &api_path, &up.content).await,
        UploadKind::Update { id, precondition } => {
            match api.update(store_id, id, &up.content, precondition).await {
                // Deleted remotely meanwhile: the local edit wins, re-create it.
                Err(e) if e.status == Some(404) => {
                    api.create(store_id, &api_path, &up.content).await
                }
                Err(e) if matches!(e.status, Some(409 | 412)) => return UploadResult::Conflict,
                other => {
                    created = false;
                    other
                }
            }
        }
    };
    match res {
        Ok(m) => UploadResult::Done(m.content_sha256.filter(|s| !s.is_empty()), created),
        Err(e) if matches!(e.status, Some(400 | 413)) => UploadResult::Refused,
        Err(e) => UploadResult::Failed(e.to_string()),
    }
}

async fn run_uploads(
    ctx: &Ctx<'_>,
    store: &Store,
    st: &mut StoreState,
    uploads: Vec<Upload>,
    concurrency: usize,
    report: &mut StoreReport,
) {
    let results: Vec<(Upload, UploadResult)> = stream::iter(uploads)
        .map(|up| async move {
            let r = upload_one(ctx.api, &store.id, &up).await;
            (up, r)
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut results = results;
    results.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    for (up, res) in results {
        match res {
            UploadResult::Done(sha, created) => {
                st.pending.remove(&up.path);
                st.baseline.insert(
                    up.path.clone(),
                    sha.map_or(up.sha, |s| s.to_ascii_lowercase()),
                );
                if created {
                    report.created.push(up.path);
                } else {
                    report.updated.push(up.path);
                }
            }
            UploadResult::Conflict => {
                st.pending.remove(&up.path);
                tracing::warn!(store = %store.id, path = %up.path,
                    "memory store: the memory changed remotely; the local edit loses (the next sync pulls the remote version)");
                report.conflicts.push(up.path);
            }
            UploadResult::Refused => {
                st.pending.remove(&up.path);
                tracing::warn!(store = %store.id, path = %up.path,
                    "memory store: the server refused this memory (400/413); not retrying until the file changes");
                st.refused.insert(up.path.clone(), up.sha);
                report.refused.push(up.path);
            }
            UploadResult::Failed(e) => {
                tracing::warn!(store = %store.id, path = %up.path, error = %e,
                    "memory store: upload failed; retrying on the next sync");
                report
                    .errors
                    .push(format!("{}: upload failed: {e}", up.path));
            }
        }
    }
}

struct Pull {
    path: String,
    id: String,
    /// The local file had an unsynced edit that the pull overwrites.
    conflict: bool,
}

enum PullResult {
    Written(String),
    Vanished,
    Failed(String),
}

struct Delete {
    path: String,
    id: String,
    expected: String,
}

/// One full sync of one store (§10.4–10.6). `final_sync` waives the delete wait.
pub(super) async fn sync_store(ctx: &Ctx<'_>, store: &Store, final_sync: bool) -> StoreReport {
    let mut report = StoreReport::new(&store.id);
    let mut guard = store.state.lock().await;
    let st = &mut *guard;

    let files = match scan_and_check(ctx, store, st, &mut report, true).await {
        Prelude::Go(files) => files,
        Prelude::Stop => return report,
    };
    let remote = match list_remote(ctx, store, st, &files).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(store = %store.id, error = %e, "memory store: sync skipped");
            report.outcome = StoreOutcome::Failed(e);
            return report;
        }
    };
    let ro = store.read_only;
    let baseline_len = st.baseline.len();
    let now = ctx.clock.now();

    // ---- decisions (sorted union of remote, local and baseline paths) ----
    let union: BTreeSet<String> = remote
        .keys()
        .chain(files.keys())
        .chain(st.baseline.keys())
        .cloned()
        .collect();
    let mut remove_local: Vec<(String, String)> = Vec::new();
    let mut cands: Vec<Candidate> = Vec::new();
    let mut deletes: Vec<Delete> = Vec::new();
    let mut pulls: Vec<Pull> = Vec::new();
    for path in union {
        let r = remote.get(&path);
        let l = files.get(&path);
        let b = st.baseline.get(&path).cloned();
        let mut keep_timer = false;
        match (r, l) {
            (None, None) => {
                st.baseline.remove(&path);
                st.refused.remove(&path);
            }
            (None, Some(l)) => match b {
                None => {
                    if !ro {
                        cands.push(Candidate {
                            path: path.clone(),
                            local_sha: l.clone(),
                            kind: UploadKind::Create,
                        });
                    }
                }
                Some(b) if *l == b => remove_local.push((path.clone(), b)),
                Some(_) => {
                    // Edited locally, deleted remotely: local wins (writable) or
                    // stays local-only (read-only).
                    st.baseline.remove(&path);
                    if !ro {
                        cands.push(Candidate {
                            path: path.clone(),
                            local_sha: l.clone(),
                            kind: UploadKind::Create,
                        });
                    }
                }
            },
            (Some(r), None) => match b {
                Some(b) if r.sha == b && !ro => {
                    if ctx.cfg.delete_mode != DeleteMode::Disabled {
                        keep_timer = true;
                        let first = *st.missing_since.entry(path.clone()).or_insert(now);
                        if final_sync || now.duration_since(first) >= ctx.cfg.delete_wait {
                            deletes.push(Delete {
                                path: path.clone(),
                                id: r.id.clone(),
                                expected: b,
                            });
                        } else {
                            report.delete_pending.push(path.clone());
                        }
                    }
                }
                // Restore (changed remotely, or a read-only store), or a new memory.
                _ => pulls.push(Pull {
                    path: path.clone(),
                    id: r.id.clone(),
                    conflict: false,
                }),
            },
            (Some(r), Some(l)) => {
                if b.as_deref() != Some(r.sha.as_str()) {
                    if *l == r.sha {
                        st.baseline.insert(path.clone(), r.sha.clone());
                        report.adopted.push(path.clone());
                    } else {
                        pulls.push(Pull {
                            path: path.clone(),
                            id: r.id.clone(),
                            conflict: b.as_deref() != Some(l.as_str()),
                        });
                    }
                } else if b.as_deref() != Some(l.as_str()) && !ro {
                    cands.push(Candidate {
                        path: path.clone(),
                        local_sha: l.clone(),
                        kind: UploadKind::Update {
                            id: r.id.clone(),
                            precondition: r.sha.clone(),
                        },
                    });
                }
            }
        }
        if !keep_timer {
            st.missing_since.remove(&path);
        }
    }

    // ---- local removals (deleted remotely; re-hash first) ----
    if !remove_local.is_empty() {
        let root = store.root.clone();
        let checked = blocking(move || {
            remove_local
                .into_iter()
                .map(|(path, b)| {
                    let res = match fsops::local_sha(&root, &path) {
                        Ok(Some(now)) if now == b => {
                            std::fs::remove_file(root.join(&path)).map(|()| None)
                        }
                        Ok(now) => Ok(Some(now)),
                        Err(e) => Err(e),
                    };
                    (path, res)
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (path, res) in checked {
            match res {
                Ok(None) => {
                    st.baseline.remove(&path);
                    st.cache.remove(&path);
                    report.removed_local.push(path);
                }
                // Changed meanwhile: edited locally, deleted remotely.
                Ok(Some(now)) => {
                    st.baseline.remove(&path);
                    if let (false, Some(now)) = (ro, now) {
                        cands.push(Candidate {
                            path,
                            local_sha: now,
                            kind: UploadKind::Create,
                        });
                    }
                }
                Err(e) => report.errors.push(format!("{path}: cannot remove: {e}")),
            }
        }
    }

    // ---- uploads ----
    let uploads = prepare_uploads(store, st, cands, &mut report).await;
    run_uploads(
        ctx,
        store,
        st,
        uploads,
        SYNC_UPLOAD_CONCURRENCY,
        &mut report,
    )
    .await;

    // ---- deletes (corroborated, capped) ----
    if !deletes.is_empty() {
        run_deletes(ctx, store, st, deletes, baseline_len, &mut report).await;
    }

    // ---- pulls ----
    if !pulls.is_empty() {
        run_pulls(ctx, store, st, pulls, &mut report).await;
    }

    report.log(ro);
    report
}

async fn run_deletes(
    ctx: &Ctx<'_>,
    store: &Store,
    st: &mut StoreState,
    deletes: Vec<Delete>,
    baseline_len: usize,
    report: &mut StoreReport,
) {
    let cap = (baseline_len / 4).clamp(8, 50);
    let root = store.root.clone();
    let marker_sha = store.marker_sha.clone();
    let paths: Vec<String> = deletes.iter().map(|d| d.path.clone()).collect();
    let (marker_ok, absent) = blocking(move || {
        let ok = fsops::marker_valid(&root, &marker_sha);
        let absent: Vec<bool> = paths.iter().map(|p| fsops::is_absent(&root, p)).collect();
        (ok, absent)
    })
    .await;
    if !marker_ok {
        tracing::warn!(store = %store.id, "memory store: marker check failed before deleting; no deletes sent");
        report
            .errors
            .push("marker check failed before deleting; no deletes sent".to_owned());
        return;
    }
    let mut sent = 0usize;
    for (d, absent) in deletes.into_iter().zip(absent) {
        if !absent {
            st.missing_since.remove(&d.path);
            continue;
        }
        if sent >= cap {
            report.delete_pending.push(d.path);
            continue;
        }
        sent += 1;
        if ctx.cfg.delete_mode == DeleteMode::LogOnly {
            tracing::info!(store = %store.id, path = %d.path, memory_id = %d.id,
                "memory store: would delete this memory (delete mode log_only)");
            report.delete_logged.push(d.path);
            continue;
        }
        match ctx.api.delete(&store.id, &d.id, &d.expected).await {
            Ok(_) => {
                st.baseline.remove(&d.path);
                st.missing_since.remove(&d.path);
                report.deleted_remote.push(d.path);
            }
            Err(e) if matches!(e.status, Some(409 | 412)) => {
                st.missing_since.remove(&d.path);
                tracing::warn!(store = %store.id, path = %d.path,
                    "memory store: not deleting a memory that changed remotely; it will be restored locally");
                report.conflicts.push(d.path);
            }
            Err(e) => {
                tracing::warn!(store = %store.id, path = %d.path, error = %e,
                    "memory store: delete failed; retrying on the next sync");
                report
                    .errors
                    .push(format!("{}: delete failed: {e}", d.path));
            }
        }
    }
}

async fn run_pulls(
    ctx: &Ctx<'_>,
    store: &Store,
    st: &mut StoreState,
    pulls: Vec<Pull>,
    report: &mut StoreReport,
) {
    let root: Arc<Path> = Arc::from(store.root.as_path());
    let results: Vec<(Pull, PullResult)> = stream::iter(pulls)
        .map(|p| {
            let root = Arc::clone(&root);
            async move {
                let res = match ctx.api.get(&store.id, &p.id).await {
                    Ok(m) => match m.content {
                        Some(content) => {
                            let path = p.path.clone();
                            blocking(move || {
                                fsops::atomic_write(&root, &path, content.as_bytes())
                                    .map(|()| fsops::sha256_hex(content.as_bytes()))
                            })
                            .await
                            .map_or_else(
                                |e| PullResult::Failed(format!("cannot write: {e}")),
                                PullResult::Written,
                            )
                        }
                        None => PullResult::Failed("the server sent no content".to_owned()),
                    },
                    Err(e) if e.status == Some(404) => PullResult::Vanished,
                    Err(e) => PullResult::Failed(e.to_string()),
                };
                (p, res)
            }
        })
        .buffer_unordered(PULL_CONCURRENCY)
        .collect()
        .await;
    let mut results = results;
    results.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    for (p, res) in results {
        match res {
            PullResult::Written(sha) => {
                st.cache.remove(&p.path);
                st.baseline.insert(p.path.clone(), sha);
                if p.conflict {
                    tracing::warn!(store = %store.id, path = %p.path,
                        "memory store: changed both locally and remotely; the remote version replaced the local edit");
                    report.conflicts.push(p.path.clone());
                }
                report.pulled.push(p.path);
            }
            PullResult::Vanished => {
                tracing::debug!(store = %store.id, path = %p.path, "memory store: memory vanished before it could be pulled");
            }
            PullResult::Failed(e) => {
                tracing::warn!(store = %store.id, path = %p.path, error = %e,
                    "memory store: pull failed; retrying on the next sync");
                report.errors.push(format!("{}: pull failed: {e}", p.path));
            }
        }
    }
}

/// The teardown flush of one store (§10.7 step 3): push-only, no pulls, no deletes.
pub(super) async fn flush_store(ctx: &Ctx<'_>, store: &Store) -> StoreReport {
    let mut report = StoreReport::new(&store.id);
    if store.read_only {
        report.outcome = StoreOutcome::Skipped;
        return report;
    }
    let mut guard = store.state.lock().await;
    let st = &mut *guard;
    let files = match scan_and_check(ctx, store, st, &mut report, false).await {
        Prelude::Go(files) => files,
        Prelude::Stop => return report,
    };
    let remote = match list_remote(ctx, store, st, &files).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(store = %store.id, error = %e, "memory store: flush skipped");
            report.outcome = StoreOutcome::Failed(e);
            return report;
        }
    };
    let mut cands = Vec::new();
    for (path, l) in &files {
        let b = st.baseline.get(path);
        if b == Some(l) || st.refused.get(path) == Some(l) {
            continue;
        }
        match remote.get(path) {
            Some(r) if r.sha == *l => {
                st.baseline.insert(path.clone(), l.clone());
                report.adopted.push(path.clone());
            }
            Some(r) if b != Some(&r.sha) => {
                tracing::warn!(store = %store.id, path = %path,
                    "memory store: not flushing a local edit of a memory that changed remotely (remote wins)");
                report.conflicts.push(path.clone());
            }
            Some(r) => cands.push(Candidate {
                path: path.clone(),
                local_sha: l.clone(),
                kind: UploadKind::Update {
                    id: r.id.clone(),
                    precondition: r.sha.clone(),
                },
            }),
            None => cands.push(Candidate {
                path: path.clone(),
                local_sha: l.clone(),
                kind: UploadKind::Create,
            }),
        }
    }
    let uploads = prepare_uploads(store, st, cands, &mut report).await;
    run_uploads(
        ctx,
        store,
        st,
        uploads,
        FLUSH_UPLOAD_CONCURRENCY,
        &mut report,
    )
    .await;
    report.log(false);
    report
}
