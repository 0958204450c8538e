//! Skills provisioning (tools spec §9, control-plane spec §10.5 and §9.2 steps 7/10):
//! download every skill of the session's agent into `{workdir}/skills/<name>/` before
//! the tool loop starts, and delete exactly those directories at teardown.
//!
//! # Flow per skill ([`provision`])
//!
//! 1. `GET /v1/skills/{skill_id}/versions/{version}` (`None`/empty version ⇒
//!    `latest`) ⇒ [`SkillVersion`]; the archive is always downloaded by the returned
//!    concrete `id`.
//! 2. Directory name = last `/`-component of `name.trim()`; empty, `.` or `..` ⇒
//!    `skill_id`. The destination is `{realpath(workdir)}/skills/<dirname>`; a name
//!    that is not a single plain component (e.g. a `skill_id` with a `/`), or a
//!    destination that is a symlink resolving outside `skills/`, skips the skill.
//! 3. `{workdir}/skills` is created lazily (0700) when the first skill resolves, so an
//!    agent without skills leaves no directory.
//! 4. A private temp dir `.skill-XXXXXX` (0700) is made beside the destination and the
//!    archive is streamed into it ([`SkillSource::download_to`]; never buffered).
//! 5. [`extract_archive`] (on `spawn_blocking`) sniffs the format, validates every
//!    member name, strips a single wrapper directory and extracts into `<temp>/stage`
//!    under the hostile-archive limits of [`SkillLimits`]; see [`archive`].
//! 6. Swap: an existing destination is renamed into the temp dir, `stage` is renamed to
//!    the destination (the old one is restored if that fails), the temp dir is
//!    deleted. The temp dir is also deleted on every failure path (`TempDir` drop).
//! 7. Each created destination is remembered; [`Provisioned::teardown`] deletes
//!    exactly those (plus `{workdir}/skills` itself if this run created it and it is
//!    empty again). A pre-existing `skills/` tree is otherwise left alone.
//!
//! A skill that fails at any step is logged (one `warn` line naming the skill, the
//! version and the reason) and recorded in [`Provisioned::skipped`]; the session
//! always goes on. Nothing here panics on bad input, and no credential is ever logged
//! ([`ApiError`]'s `Display` carries ids, status, error type and request id only).
//!
//! # Credentials
//!
//! Calls use the item credential (`source`). If the skills endpoints refuse it
//! (`ApiError` kind `Permanent` with status 401/403) and the caller passed a
//! `fallback` (the operator set `ALLOW_ENVIRONMENT_KEY_IN_SANDBOX=true` and the
//! environment key is present), the whole skill is retried with the fallback;
//! otherwise the skill is skipped with one warning saying why.
//!
//! # Dependencies (all pure Rust, no C toolchain, no external binaries)
//!
//! * `zip` 7.3 with only `deflate-flate2` (stored + deflate, what the Skills API
//!   produces). 7.x because the workspace MSRV is 1.85 (zip 8/9 need 1.88/1.89).
//! * `tar` 0.4 without default features (no `xattr`): only its raw header iterator
//!   is used, never `unpack`, whose link and mode rules differ from §9.
//! * `flate2` 1 (default `rust_backend` = `miniz_oxide`) for gzip and zip deflate.
//! * `bzip2` 0.6, whose default backend is `libbz2-rs-sys` (a Rust port of libbzip2).
//! * `lzma-rust2` 0.25 (`std`, `xz`, `encoder`) for xz: a pure-Rust `Read` adapter with
//!   a decoder memory limit (`xz2`/`liblzma` build C code; `lzma-rs` has no
//!   streaming `Read` for xz). `encoder` is kept in the one workspace feature set so
//!   tests can build `.tar.xz` fixtures without a second build of the crate.
//!
//! # Decisions and divergences from the reference
//!
//! * Limits (the reference has none): at most [`SkillLimits::max_entries`] members
//!   (every member counts, skipped ones included) and
//!   [`SkillLimits::max_total_bytes`] bytes actually written (counted while
//!   decompressing, never trusted from headers). Oversized tar metadata members
//!   (long names, PAX headers > 1 MiB) and xz dictionaries > 128 MiB are refused.
//!   The [`ControlPlane`] download itself is capped at [`MAX_ARCHIVE_BYTES`].
//! * All directories are 0700 (the spec's `[rec]`; Python uses 0755 below the top).
//!   Files are 0755/0644 by exec bit, set with `fchmod` so the umask is irrelevant.
//! * Files are created `O_CREAT|O_EXCL|O_NOFOLLOW`; a created file whose link count is
//!   not 1 rejects the skill (TS behaviour). A duplicate member replaces an earlier
//!   regular file (tar semantics); a file/directory clash rejects the skill.
//! * Member names with a NUL byte reject the skill (Python fails on them too).
//! * Tar: GNU sparse members and unknown member types are skipped (Python would
//!   extract them as regular files); a PAX `size` override (members > 8 GiB) is
//!   refused. Zip: encrypted entries and compression methods other than stored and
//!   deflate reject the skill (Python supports bzip2/lzma members too).
//! * An empty download is rejected as a corrupt archive.
//! * `{workdir}/skills` must be a real directory: if it is a symlink (or a file) every
//!   skill is skipped instead of following it.
//! * A destination that is a symlink resolving *inside* `skills/` is replaced (the link
//!   is moved aside), not written through.
//! * Two skills with the same directory name: the later replaces the earlier (as in
//!   the reference), with a warning.

pub mod archive;

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cma_shared::types::{SkillRef, SkillVersion};
use cma_shared::{ApiError, ControlPlane, ErrorKind};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

pub use archive::{ArchiveFormat, ExtractReport, SkillError, extract_archive};

/// Cap on one downloaded archive (bytes on disk) for the [`ControlPlane`] source.
pub const MAX_ARCHIVE_BYTES: u64 = 1024 * 1024 * 1024;

/// Hostile-archive limits for one skill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkillLimits {
    /// Total bytes written for one skill (decompressed).
    pub max_total_bytes: u64,
    /// Members in one archive (files, directories and skipped members alike).
    pub max_entries: u64,
}

impl Default for SkillLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: 512 * 1024 * 1024,
            max_entries: 10_000,
        }
    }
}

/// A skill that was placed on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledSkill {
    pub skill_id: String,
    /// The concrete version id it was downloaded by.
    pub version_id: String,
    pub dir: PathBuf,
}

/// A skill that was not installed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSkill {
    pub skill_id: String,
    pub reason: String,
}

/// The outcome of [`provision`]; keep it for [`Provisioned::teardown`].
#[derive(Debug, Default)]
pub struct Provisioned {
    pub installed: Vec<InstalledSkill>,
    pub skipped: Vec<SkippedSkill>,
    /// Destinations this run created (deduplicated).
    created: Vec<PathBuf>,
    /// `{workdir}/skills`, if this run created it.
    created_root: Option<PathBuf>,
}

impl Provisioned {
    /// Delete exactly the skill directories this run created (and `skills/` itself if
    /// this run created it and it is empty again). Errors are logged. Idempotent.
    /// Synchronous: large trees may take a moment, call it off the async executor if
    /// that matters.
    pub fn teardown(&self) {
        for dir in &self.created {
            // `remove_dir_all` does not follow a symlink put in place of the directory.
            match fs::remove_dir_all(dir) {
                Ok(()) => tracing::debug!(dir = %dir.display(), "skill directory removed"),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e,
                    "could not remove skill directory at teardown"),
            }
        }
        if let Some(root) = &self.created_root {
            match fs::remove_dir(root) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => tracing::debug!(dir = %root.display(), error = %e,
                    "skills directory left in place"),
            }
        }
    }
}

/// Where skills come from: the control plane with one credential.
#[async_trait]
pub trait SkillSource: Send + Sync {
    /// `GET /v1/skills/{skill_id}/versions/{version}` (`version` may be `latest`).
    async fn retrieve(&self, skill_id: &str, version: &str) -> Result<SkillVersion, ApiError>;
    /// Stream the archive to `dest` (a new file); returns bytes written.
    async fn download_to(
        &self,
        skill_id: &str,
        version_id: &str,
        dest: &Path,
    ) -> Result<u64, ApiError>;
}

#[async_trait]
impl SkillSource for ControlPlane {
    async fn retrieve(&self, skill_id: &str, version: &str) -> Result<SkillVersion, ApiError> {
        self.retrieve_skill_version(skill_id, version).await
    }

    async fn download_to(
        &self,
        skill_id: &str,
        version_id: &str,
        dest: &Path,
    ) -> Result<u64, ApiError> {
        let op = format!("GET /v1/skills/{skill_id}/versions/{version_id}/content");
        let stream = self.download_skill_version(skill_id, version_id).await?;
        write_stream(stream, dest, MAX_ARCHIVE_BYTES, &op).await
    }
}

/// Write a byte stream to the new file `dest` (mode 0600), at most `cap` bytes.
pub async fn write_stream<S, B>(stream: S, dest: &Path, cap: u64, op: &str) -> Result<u64, ApiError>
where
    S: Stream<Item = Result<B, ApiError>>,
    B: AsRef<[u8]>,
{
    let local = |what: &str, e: io::Error| {
        ApiError::protocol(op, format!("{what} {}: {e}", dest.display()))
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .await
        .map_err(|e| local("cannot create", e))?;
    let mut stream = std::pin::pin!(stream);
    let mut written: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        let chunk = chunk.as_ref();
        written = written.saturating_add(chunk.len() as u64);
        if written > cap {
            return Err(ApiError::protocol(
                op,
                format!("skill archive larger than {cap} bytes"),
            ));
        }
        file.write_all(chunk)
            .await
            .map_err(|e| local("cannot write", e))?;
    }
    file.flush().await.map_err(|e| local("cannot write", e))?;
    Ok(written)
}

/// Directory name for a skill (spec §9 step 2): the last `/`-component of
/// `name.trim()`, or `skill_id` if that is empty, `.` or `..`.
pub fn dir_name(name: Option<&str>, skill_id: &str) -> String {
    let last = name.unwrap_or("").trim().rsplit('/').next().unwrap_or("");
    if last.is_empty() || last == "." || last == ".." {
        skill_id.to_owned()
    } else {
        last.to_owned()
    }
}

/// Why one attempt at a skill failed.
enum Failure {
    Api {
        step: &'static str,
        error: Box<ApiError>,
    },
    Local(String),
}

impl Failure {
    /// The skills endpoint refused the credential (401/403).
    fn is_refusal(&self) -> bool {
        matches!(self, Failure::Api { error, .. }
            if error.kind == ErrorKind::Permanent && error.is_auth())
    }

    fn describe(&self) -> String {
        match self {
            Failure::Api { step, error } => format!("{step} failed: {error}"),
            Failure::Local(s) => s.clone(),
        }
    }
}

/// Per-run state: the skills directory and whether it exists yet.
struct SkillsRoot {
    dir: PathBuf,
    ready: bool,
    created: bool,
}

impl SkillsRoot {
    /// Create `{workdir}/skills` (0700) on first use; refuse anything but a real dir.
    fn ensure(&mut self) -> Result<(), String> {
        if self.ready {
            return Ok(());
        }
        match fs::symlink_metadata(&self.dir) {
            Ok(md) if md.file_type().is_dir() => {}
            Ok(_) => {
                return Err(format!(
                    "{} exists and is not a directory (a symlink is not followed)",
                    self.dir.display()
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                DirBuilder::new()
                    .mode(0o700)
                    .create(&self.dir)
                    .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
                fs::set_permissions(&self.dir, Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot chmod {}: {e}", self.dir.display()))?;
                self.created = true;
            }
            Err(e) => return Err(format!("cannot stat {}: {e}", self.dir.display())),
        }
        self.ready = true;
        Ok(())
    }

    /// `skills/<dirname>`, or why it would resolve outside `skills/`.
    fn destination(&self, dirname: &str) -> Result<PathBuf, String> {
        let outside = || format!("directory name {dirname:?} would resolve outside skills/");
        if dirname.is_empty()
            || dirname == "."
            || dirname == ".."
            || dirname.contains('/')
            || dirname.contains('\0')
        {
            return Err(outside());
        }
        let dest = self.dir.join(dirname);
        if let Ok(md) = fs::symlink_metadata(&dest) {
            if md.file_type().is_symlink() {
                // `self.dir` is canonical (realpath(workdir) + a non-symlink child).
                match fs::canonicalize(&dest) {
                    Ok(real) if real.starts_with(&self.dir) && real != self.dir => {}
                    _ => return Err(outside()),
                }
            }
        }
        Ok(dest)
    }
}

/// Install one skill with one credential.
async fn install(
    src: &dyn SkillSource,
    root: &mut SkillsRoot,
    skill_id: &str,
    version: &str,
    limits: &SkillLimits,
) -> Result<(InstalledSkill, ExtractReport, String), Failure> {
    let sv = src
        .retrieve(skill_id, version)
        .await
        .map_err(|error| Failure::Api {
            step: "retrieve",
            error: Box::new(error),
        })?;
    let dirname = dir_name(sv.name.as_deref(), skill_id);
    root.ensure().map_err(Failure::Local)?;
    let dest = root.destination(&dirname).map_err(Failure::Local)?;
    let tmp = tempfile::Builder::new()
        .prefix(".skill-")
        .tempdir_in(&root.dir)
        .map_err(|e| Failure::Local(format!("cannot create a temp dir: {e}")))?;
    fs::set_permissions(tmp.path(), Permissions::from_mode(0o700))
        .map_err(|e| Failure::Local(format!("cannot chmod the temp dir: {e}")))?;
    let archive = tmp.path().join("archive");
    src.download_to(skill_id, &sv.id, &archive)
        .await
        .map_err(|error| Failure::Api {
            step: "download",
            error: Box::new(error),
        })?;
    let limits = *limits;
    let dest_for_task = dest.clone();
    let report = tokio::task::spawn_blocking(move || -> Result<ExtractReport, String> {
        let stage = tmp.path().join("stage");
        let report = extract_archive(&archive, &stage, &limits)
            .map_err(|e| format!("archive rejected: {e}"))?;
        swap_into_place(&stage, &dest_for_task, tmp.path())?;
        let tmp_path = tmp.path().to_path_buf();
        if let Err(e) = tmp.close() {
            tracing::warn!(dir = %tmp_path.display(), error = %e, "could not remove skill temp dir");
        }
        Ok(report)
    })
    .await
    .map_err(|e| Failure::Local(format!("extraction task failed: {e}")))?
    .map_err(Failure::Local)?;
    Ok((
        InstalledSkill {
            skill_id: skill_id.to_owned(),
            version_id: sv.id,
            dir: dest,
        },
        report,
        dirname,
    ))
}

/// Move an existing `dest` aside into `tmp`, rename `stage` to `dest`; restore the old
/// destination if the second rename fails.
fn swap_into_place(stage: &Path, dest: &Path, tmp: &Path) -> Result<(), String> {
    let aside = tmp.join("previous");
    let had_old = match fs::symlink_metadata(dest) {
        Ok(_) => {
            fs::rename(dest, &aside)
                .map_err(|e| format!("cannot move the existing {} aside: {e}", dest.display()))?;
            true
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(format!("cannot stat {}: {e}", dest.display())),
    };
    if let Err(e) = fs::rename(stage, dest) {
        if had_old {
            if let Err(e2) = fs::rename(&aside, dest) {
                tracing::warn!(dest = %dest.display(), error = %e2,
                    "could not restore the previous skill directory");
            }
        }
        return Err(format!(
            "cannot move the skill into {}: {e}",
            dest.display()
        ));
    }
    Ok(())
}

/// Provision every skill of the agent into `{workdir}/skills/`. Never fails: skills
/// that cannot be installed are logged and listed in [`Provisioned::skipped`].
pub async fn provision(
    source: &dyn SkillSource,
    fallback: Option<&dyn SkillSource>,
    workdir: &Path,
    skills: &[SkillRef],
    limits: &SkillLimits,
) -> Provisioned {
    let mut out = Provisioned::default();
    if skills.is_empty() {
        return out;
    }
    let workdir_real = match fs::canonicalize(workdir) {
        Ok(p) => p,
        Err(e) => {
            for s in skills {
                let reason = format!("workdir {} cannot be resolved: {e}", workdir.display());
                tracing::warn!(skill_id = %s.skill_id, reason = %reason, "skill skipped");
                out.skipped.push(SkippedSkill {
                    skill_id: s.skill_id.clone(),
                    reason,
                });
            }
            return out;
        }
    };
    let mut root = SkillsRoot {
        dir: workdir_real.join("skills"),
        ready: false,
        created: false,
    };
    for skill in skills {
        let skill_id = skill.skill_id.as_str();
        let version = skill
            .version
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .unwrap_or("latest");
        let mut via_fallback = false;
        let result = match install(source, &mut root, skill_id, version, limits).await {
            Err(first) if first.is_refusal() => match fallback {
                Some(fb) => {
                    tracing::info!(skill_id, version, reason = %first.describe(),
                        "item credential refused by the skills endpoint; retrying with the fallback credential");
                    via_fallback = true;
                    install(fb, &mut root, skill_id, version, limits)
                        .await
                        .map_err(|second| {
                            format!(
                                "the skills endpoint refused the item credential ({}); with the fallback credential: {}",
                                first.describe(),
                                second.describe()
                            )
                        })
                }
                None => Err(format!(
                    "the skills endpoint refused the item credential ({}) and no fallback credential is allowed \
                     (set ALLOW_ENVIRONMENT_KEY_IN_SANDBOX=true to retry with the environment key)",
                    first.describe()
                )),
            },
            other => other.map_err(|f| f.describe()),
        };
        match result {
            Ok((installed, report, dirname)) => {
                if out.created.contains(&installed.dir) {
                    tracing::warn!(skill_id, dir = %dirname,
                        "skill directory name used twice in this run; the later skill replaced the earlier one");
                } else {
                    out.created.push(installed.dir.clone());
                }
                tracing::info!(
                    skill_id,
                    version,
                    version_id = %installed.version_id,
                    dir = %dirname,
                    format = %report.format,
                    files = report.files,
                    bytes = report.bytes,
                    stripped = report.stripped_prefix.as_deref().unwrap_or(""),
                    via_fallback,
                    "skill installed"
                );
                if !report.skipped_members.is_empty() {
                    let shown: Vec<&String> = report.skipped_members.iter().take(20).collect();
                    tracing::info!(skill_id, dir = %dirname, count = report.skipped_members.len(),
                        members = ?shown, "skill archive members not extracted (not regular files or directories)");
                }
                out.installed.push(installed);
            }
            Err(reason) => {
                tracing::warn!(skill_id, version, reason = %reason, "skill skipped");
                out.skipped.push(SkippedSkill {
                    skill_id: skill_id.to_owned(),
                    reason,
                });
            }
        }
    }
    if root.created {
        out.created_root = Some(root.dir);
    }
    out
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // the `SkillSource` contract returns `ApiError`
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::io::{Cursor, Write};
    use std::os::unix::fs::symlink;
    use std::sync::Mutex;

    fn api_error(op: &str, status: u16) -> ApiError {
        let mut e = ApiError::protocol(op, "refused or missing");
        e.status = Some(status);
        e
    }

    /// In-memory skills endpoint.
    #[derive(Default)]
    struct Fake {
        /// `skill_id@version` → version object.
        versions: HashMap<String, SkillVersion>,
        /// `skill_id@version_id` → archive bytes.
        archives: HashMap<String, Vec<u8>>,
        /// Answer every call with this status.
        refuse: Option<u16>,
        calls: Mutex<Vec<String>>,
    }

    impl Fake {
        fn with(
            mut self,
            skill_id: &str,
            alias: &str,
            version_id: &str,
            name: &str,
            archive: Vec<u8>,
        ) -> Self {
            self.versions.insert(
                format!("{skill_id}@{alias}"),
                SkillVersion {
                    id: version_id.into(),
                    skill_id: Some(skill_id.into()),
                    name: Some(name.into()),
                    description: None,
                    created_at: None,
                },
            );
            self.archives
                .insert(format!("{skill_id}@{version_id}"), archive);
            self
        }

        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl SkillSource for Fake {
        async fn retrieve(&self, skill_id: &str, version: &str) -> Result<SkillVersion, ApiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("retrieve {skill_id} {version}"));
            let op = format!("GET /v1/skills/{skill_id}/versions/{version}");
            if let Some(s) = self.refuse {
                return Err(api_error(&op, s));
            }
            self.versions
                .get(&format!("{skill_id}@{version}"))
                .cloned()
                .ok_or_else(|| api_error(&op, 404))
        }

        async fn download_to(
            &self,
            skill_id: &str,
            version_id: &str,
            dest: &Path,
        ) -> Result<u64, ApiError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("download {skill_id} {version_id}"));
            let op = format!("GET /v1/skills/{skill_id}/versions/{version_id}/content");
            if let Some(s) = self.refuse {
                return Err(api_error(&op, s));
            }
            let bytes = self
                .archives
                .get(&format!("{skill_id}@{version_id}"))
                .ok_or_else(|| api_error(&op, 404))?;
            let chunks: Vec<Result<Vec<u8>, ApiError>> =
                bytes.chunks(7).map(|c| Ok(c.to_vec())).collect();
            write_stream(
                futures_util::stream::iter(chunks),
                dest,
                MAX_ARCHIVE_BYTES,
                &op,
            )
            .await
        }
    }

    fn zip_skill(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for (name, data) in files {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn pdf_zip() -> Vec<u8> {
        zip_skill(&[("pdf/SKILL.md", b"# pdf\n"), ("pdf/ref.md", b"ref\n")])
    }

    fn sref(skill_id: &str, version: Option<&str>) -> SkillRef {
        SkillRef {
            kind: Some("custom".into()),
            skill_id: skill_id.into(),
            version: version.map(Into::into),
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    async fn prov(src: &Fake, fb: Option<&Fake>, work: &Path, skills: &[SkillRef]) -> Provisioned {
        provision(
            src,
            fb.map(|f| f as &dyn SkillSource),
            work,
            skills,
            &SkillLimits::default(),
        )
        .await
    }

    #[test]
    fn directory_name_rules() {
        assert_eq!(dir_name(Some("pdf"), "skill_1"), "pdf");
        assert_eq!(dir_name(Some("  a/b/pdf "), "skill_1"), "pdf");
        assert_eq!(dir_name(Some(".."), "skill_1"), "skill_1");
        assert_eq!(dir_name(Some("."), "skill_1"), "skill_1");
        assert_eq!(dir_name(Some("   "), "skill_1"), "skill_1");
        assert_eq!(dir_name(Some("a/"), "skill_1"), "skill_1");
        assert_eq!(dir_name(Some("a/.."), "skill_1"), "skill_1");
        assert_eq!(dir_name(None, "skill_1"), "skill_1");
        assert_eq!(dir_name(Some("x\\y"), "skill_1"), "x\\y");
    }

    #[test]
    fn limits_default() {
        let l = SkillLimits::default();
        assert_eq!(l.max_total_bytes, 512 * 1024 * 1024);
        assert_eq!(l.max_entries, 10_000);
    }

    #[tokio::test]
    async fn latest_is_resolved_and_downloaded_by_concrete_id() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake::default().with("skill_1", "latest", "ver_42", "pdf", pdf_zip());
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(
            src.calls(),
            ["retrieve skill_1 latest", "download skill_1 ver_42"]
        );
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        let real = fs::canonicalize(work.path()).unwrap();
        assert_eq!(
            p.installed,
            [InstalledSkill {
                skill_id: "skill_1".into(),
                version_id: "ver_42".into(),
                dir: real.join("skills/pdf"),
            }]
        );
        assert_eq!(
            fs::read(real.join("skills/pdf/SKILL.md")).unwrap(),
            b"# pdf\n"
        );
        assert_eq!(entries(&real.join("skills")), ["pdf"], "no temp dir left");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&real.join("skills")), 0o700);
        assert_eq!(mode(&real.join("skills/pdf")), 0o700);
        assert_eq!(mode(&real.join("skills/pdf/SKILL.md")), 0o644);
    }

    #[tokio::test]
    async fn explicit_version_and_name_rules() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake::default()
            .with("skill_1", "v7", "ver_7", "  a/b/pdf ", pdf_zip())
            .with(
                "skill_2",
                "latest",
                "ver_2",
                "..",
                zip_skill(&[("SKILL.md", b"two")]),
            );
        let p = prov(
            &src,
            None,
            work.path(),
            &[sref("skill_1", Some("v7")), sref("skill_2", Some(""))],
        )
        .await;
        assert_eq!(
            src.calls(),
            [
                "retrieve skill_1 v7",
                "download skill_1 ver_7",
                "retrieve skill_2 latest",
                "download skill_2 ver_2"
            ]
        );
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(entries(&work.path().join("skills")), ["pdf", "skill_2"]);
        assert_eq!(
            fs::read(work.path().join("skills/skill_2/SKILL.md")).unwrap(),
            b"two"
        );
    }

    #[tokio::test]
    async fn existing_destination_is_replaced() {
        let work = tempfile::tempdir().unwrap();
        fs::create_dir_all(work.path().join("skills/pdf/old")).unwrap();
        fs::write(work.path().join("skills/pdf/old/stale.md"), b"stale").unwrap();
        let src = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(p.installed.len(), 1);
        assert_eq!(
            entries(&work.path().join("skills/pdf")),
            ["SKILL.md", "ref.md"]
        );
        assert_eq!(entries(&work.path().join("skills")), ["pdf"]);
    }

    #[tokio::test]
    async fn one_failing_skill_does_not_stop_the_others() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake::default()
            .with(
                "skill_bad",
                "latest",
                "ver_b",
                "bad",
                b"definitely not an archive".repeat(30),
            )
            .with(
                "skill_slip",
                "latest",
                "ver_s",
                "slip",
                zip_skill(&[("../evil", b"x")]),
            )
            .with("../evil", "latest", "ver_e", "..", pdf_zip())
            .with("skill_ok", "latest", "ver_o", "pdf", pdf_zip());
        let skills = [
            sref("skill_missing", None),
            sref("skill_bad", None),
            sref("skill_slip", None),
            sref("../evil", None),
            sref("skill_ok", None),
        ];
        let p = prov(&src, None, work.path(), &skills).await;
        assert_eq!(p.installed.len(), 1);
        assert_eq!(p.installed[0].skill_id, "skill_ok");
        let skipped: Vec<&str> = p.skipped.iter().map(|s| s.skill_id.as_str()).collect();
        assert_eq!(
            skipped,
            ["skill_missing", "skill_bad", "skill_slip", "../evil"]
        );
        assert!(
            p.skipped[0].reason.contains("retrieve failed"),
            "{}",
            p.skipped[0].reason
        );
        assert!(
            p.skipped[0].reason.contains("404"),
            "{}",
            p.skipped[0].reason
        );
        assert!(
            p.skipped[1].reason.contains("corrupt"),
            "{}",
            p.skipped[1].reason
        );
        assert!(
            p.skipped[2].reason.contains("unsafe member"),
            "{}",
            p.skipped[2].reason
        );
        assert!(
            p.skipped[3].reason.contains("outside skills/"),
            "{}",
            p.skipped[3].reason
        );
        assert_eq!(
            entries(&work.path().join("skills")),
            ["pdf"],
            "no temp dirs left"
        );
        assert!(!work.path().join("evil").exists());
    }

    #[tokio::test]
    async fn refused_without_fallback_is_skipped_with_the_reason() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake {
            refuse: Some(403),
            ..Fake::default()
        };
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert!(p.installed.is_empty());
        assert_eq!(p.skipped.len(), 1);
        let r = &p.skipped[0].reason;
        assert!(r.contains("refused the item credential"), "{r}");
        assert!(r.contains("HTTP 403"), "{r}");
        assert!(r.contains("ALLOW_ENVIRONMENT_KEY_IN_SANDBOX"), "{r}");
        assert!(
            !work.path().join("skills").exists(),
            "nothing resolved, nothing created"
        );
    }

    #[tokio::test]
    async fn refused_with_fallback_installs_via_the_fallback() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake {
            refuse: Some(401),
            ..Fake::default()
        };
        let fb = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());
        let p = prov(&src, Some(&fb), work.path(), &[sref("skill_1", None)]).await;
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert_eq!(p.installed.len(), 1);
        assert_eq!(src.calls(), ["retrieve skill_1 latest"]);
        assert_eq!(
            fb.calls(),
            ["retrieve skill_1 latest", "download skill_1 ver_1"]
        );
        assert!(work.path().join("skills/pdf/SKILL.md").is_file());

        // A non-auth failure does not use the fallback.
        let work = tempfile::tempdir().unwrap();
        let src = Fake {
            refuse: Some(404),
            ..Fake::default()
        };
        let fb = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());
        let p = prov(&src, Some(&fb), work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(p.skipped.len(), 1);
        assert!(fb.calls().is_empty());

        // Refused by both: one skipped entry naming both reasons.
        let fb = Fake {
            refuse: Some(403),
            ..Fake::default()
        };
        let src = Fake {
            refuse: Some(401),
            ..Fake::default()
        };
        let p = prov(&src, Some(&fb), work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(p.skipped.len(), 1);
        let r = &p.skipped[0].reason;
        assert!(r.contains("HTTP 401") && r.contains("HTTP 403"), "{r}");
    }

    #[tokio::test]
    async fn teardown_removes_exactly_the_created_dirs() {
        let work = tempfile::tempdir().unwrap();
        fs::create_dir_all(work.path().join("skills/other")).unwrap();
        fs::write(work.path().join("skills/other/keep.md"), b"keep").unwrap();
        let src = Fake::default()
            .with("skill_1", "latest", "ver_1", "pdf", pdf_zip())
            .with(
                "skill_2",
                "latest",
                "ver_2",
                "docx",
                zip_skill(&[("SKILL.md", b"d")]),
            );
        let p = prov(
            &src,
            None,
            work.path(),
            &[sref("skill_1", None), sref("skill_2", None)],
        )
        .await;
        assert_eq!(
            entries(&work.path().join("skills")),
            ["docx", "other", "pdf"]
        );
        p.teardown();
        assert_eq!(entries(&work.path().join("skills")), ["other"]);
        assert!(work.path().join("skills/other/keep.md").is_file());
        p.teardown(); // idempotent

        // A skills/ directory this run created goes away with its last skill.
        let work = tempfile::tempdir().unwrap();
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert!(work.path().join("skills/pdf").is_dir());
        p.teardown();
        assert!(!work.path().join("skills").exists());
    }

    #[tokio::test]
    async fn teardown_does_not_follow_a_symlink_swapped_in() {
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"p").unwrap();
        let src = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        let dir = &p.installed[0].dir;
        fs::remove_dir_all(dir).unwrap();
        symlink(outside.path(), dir).unwrap();
        p.teardown();
        assert!(outside.path().join("precious").is_file());
    }

    #[tokio::test]
    async fn no_skills_leaves_no_directory() {
        let work = tempfile::tempdir().unwrap();
        let p = prov(&Fake::default(), None, work.path(), &[]).await;
        assert!(p.installed.is_empty() && p.skipped.is_empty());
        assert!(!work.path().join("skills").exists());
        p.teardown();
    }

    #[tokio::test]
    async fn symlinked_skills_root_or_destination_is_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        let src = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());

        let work = tempfile::tempdir().unwrap();
        symlink(outside.path(), work.path().join("skills")).unwrap();
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(p.skipped.len(), 1, "{:?}", p.installed);
        assert!(
            p.skipped[0].reason.contains("not a directory"),
            "{}",
            p.skipped[0].reason
        );
        assert!(entries(outside.path()).is_empty());

        let work = tempfile::tempdir().unwrap();
        fs::create_dir(work.path().join("skills")).unwrap();
        symlink(outside.path(), work.path().join("skills/pdf")).unwrap();
        let p = prov(&src, None, work.path(), &[sref("skill_1", None)]).await;
        assert_eq!(p.skipped.len(), 1);
        assert!(
            p.skipped[0].reason.contains("outside skills/"),
            "{}",
            p.skipped[0].reason
        );
        assert!(entries(outside.path()).is_empty());
        assert_eq!(entries(&work.path().join("skills")), ["pdf"]);
    }

    #[tokio::test]
    async fn missing_workdir_skips_every_skill() {
        let work = tempfile::tempdir().unwrap();
        let src = Fake::default().with("skill_1", "latest", "ver_1", "pdf", pdf_zip());
        let p = prov(
            &src,
            None,
            &work.path().join("nope"),
            &[sref("skill_1", None)],
        )
        .await;
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].reason.contains("workdir"));
        assert!(src.calls().is_empty());
    }

    #[tokio::test]
    async fn write_stream_writes_a_new_file_and_enforces_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let chunks = || {
            futures_util::stream::iter(vec![
                Ok::<_, ApiError>(b"abc".to_vec()),
                Ok(b"defg".to_vec()),
            ])
        };
        let dest = dir.path().join("a");
        assert_eq!(write_stream(chunks(), &dest, 7, "op").await.unwrap(), 7);
        assert_eq!(fs::read(&dest).unwrap(), b"abcdefg");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // The file must be new.
        assert!(write_stream(chunks(), &dest, 7, "op").await.is_err());
        // Over the cap.
        let e = write_stream(chunks(), &dir.path().join("b"), 6, "op")
            .await
            .unwrap_err();
        assert!(e.message.contains("larger than 6 bytes"), "{e}");
        // A stream error is passed through.
        let failing =
            futures_util::stream::iter(vec![Ok(b"abc".to_vec()), Err(api_error("op", 500))]);
        let e = write_stream(failing, &dir.path().join("c"), 100, "op")
            .await
            .unwrap_err();
        assert_eq!(e.status, Some(500));
    }
}
