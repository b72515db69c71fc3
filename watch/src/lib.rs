//! Drop-folder watching for `deliver`: stable-file detection and the folder
//! state machine `incoming/ → processing/<job>/ → done/<job>/ | failed/<job>/`.
//!
//! Every step is a rename on one file system, so a job is always in exactly
//! one folder, whatever moment the host is killed at.
//!
//! ```
//! use std::time::Duration;
//! use deliver_watch::{JobId, StabilityTracker, WatchRoot};
//!
//! let tmp = tempfile::tempdir()?;
//! let root = WatchRoot::open(tmp.path())?;
//! std::fs::write(root.incoming().join("promo.toml"), "title = 'promo'")?;
//!
//! let mut tracker = StabilityTracker::new(Duration::ZERO);
//! for file in tracker.poll(root.incoming(), |p| p.extension().is_some_and(|e| e == "toml"))? {
//!     let id = JobId::new("promo");
//!     let claimed = root.claim(&file, &id)?;
//!     assert!(claimed.starts_with(root.processing()));
//!     let done = root.publish(&id)?;
//!     assert!(done.join("promo.toml").is_file());
//! }
//! // Symbolic links are never taken; they are reported instead.
//! assert!(tracker.take_rejected().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Name suffixes of files that are still being written or are control files;
/// they are never reported as stable.
const SKIPPED_SUFFIXES: [&str; 4] = [".partial", ".tmp", ".cancel", READY_SUFFIX];

/// Suffix of the sidecar a sender writes when a file is complete
/// (`promo.toml` → `promo.toml.ready`), in sidecar mode.
pub const READY_SUFFIX: &str = ".ready";

/// The sidecar that marks `path` complete.
pub fn ready_sidecar(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(READY_SUFFIX);
    path.with_file_name(name)
}

/// An error from the watch folder, naming the path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot rename {} to {}: {source}", .from.display(), .to.display())]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "refusing to move {} to {}: they are on different file systems (device {from_dev} vs \
         {to_dev}); every step must be an atomic rename, so the watch root and its incoming/, \
         processing/, done/ and failed/ folders must share one file system",
        .from.display(), .to.display()
    )]
    CrossDevice {
        from: PathBuf,
        to: PathBuf,
        from_dev: u64,
        to_dev: u64,
    },
    #[error("refusing to {op} {} to {}: the destination already exists", .from.display(), .to.display())]
    DestinationExists {
        op: &'static str,
        from: PathBuf,
        to: PathBuf,
    },
    #[error("cannot commit {}: only names ending in `.partial` can be committed", .path.display())]
    NotPartial { path: PathBuf },
    #[error("cannot claim {}: the path has no file name", .path.display())]
    NoFileName { path: PathBuf },
    #[error("invalid job id {value:?}: {reason}; expected one path component such as `promo-20240101T120000-1a2b`")]
    InvalidJobId { value: String, reason: &'static str },
    #[error(
        "cannot use {} as a watch folder: cannot {op} it: {source}; the host must be able to \
         create files in, and move files between, incoming/, processing/, done/, failed/ and \
         .deliver/ (check the folder's owner and permissions, and that it is not mounted read-only or as a \
         mount of its own)",
        .dir.display()
    )]
    NotWritable {
        dir: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WatchError + 'a {
    move |source| WatchError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn not_writable<'a>(dir: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> WatchError + 'a {
    move |source| WatchError::NotWritable {
        dir: dir.to_path_buf(),
        op,
        source,
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), WatchError> {
    fs::rename(from, to).map_err(|source| WatchError::Rename {
        from: from.to_path_buf(),
        to: to.to_path_buf(),
        source,
    })
}

fn device_of(path: &Path) -> Result<u64, WatchError> {
    let meta = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(meta.dev())
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(0)
    }
}

fn same_device(from: &Path, to: &Path) -> Result<(), WatchError> {
    let (from_dev, to_dev) = (device_of(from)?, device_of(to)?);
    if from_dev == to_dev {
        Ok(())
    } else {
        Err(WatchError::CrossDevice {
            from: from.to_path_buf(),
            to: to.to_path_buf(),
            from_dev,
            to_dev,
        })
    }
}

/// The identity of one job: `<sanitized stem>-<UTC yyyymmddThhmmss>-<4 hex>`.
///
/// It is always a single, non-hidden path component, so it is safe to join
/// onto the state folders.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(String);

impl JobId {
    /// A fresh id for a job whose input file has the given stem. Dropping the
    /// same file name twice gives two distinct ids.
    pub fn new(stem: &str) -> JobId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        static SEED: OnceLock<u64> = OnceLock::new();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        // The seed makes ids differ across restarts; the counter makes them
        // differ within a process for 65536 consecutive ids.
        let seed = *SEED.get_or_init(|| {
            splitmix64((u64::from(std::process::id()) << 32) ^ u64::from(now.subsec_nanos()))
        });
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = seed.wrapping_add(n) & 0xffff;
        JobId(format!(
            "{}-{}-{suffix:04x}",
            sanitize_stem(stem),
            utc_stamp(now.as_secs())
        ))
    }

    /// Rebuilds an id read back from the job journal.
    ///
    /// # Errors
    ///
    /// [`WatchError::InvalidJobId`] if `value` is empty, hidden, `..`, or
    /// contains a path separator or NUL.
    pub fn parse(value: &str) -> Result<JobId, WatchError> {
        let reason = if value.is_empty() {
            Some("it is empty")
        } else if value.starts_with('.') {
            Some("it starts with a dot")
        } else if value.contains(['/', '\\', '\0']) {
            Some("it contains a path separator or NUL")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(WatchError::InvalidJobId {
                value: value.to_owned(),
                reason,
            }),
            None => Ok(JobId(value.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for JobId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn sanitize_stem(stem: &str) -> String {
    let mapped: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches(['_', '-']);
    // ASCII only by now, so byte truncation cannot split a character.
    let short = &trimmed[..trimmed.len().min(48)];
    if short.is_empty() {
        "job".to_owned()
    } else {
        short.to_owned()
    }
}

/// `yyyymmddThhmmss` in UTC, from seconds since the Unix epoch.
fn utc_stamp(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The watch root and its state folders.
#[derive(Debug, Clone)]
pub struct WatchRoot {
    root: PathBuf,
    incoming: PathBuf,
    processing: PathBuf,
    done: PathBuf,
    failed: PathBuf,
    state_dir: PathBuf,
}

impl WatchRoot {
    /// Opens (creating where missing) `incoming/`, `processing/`, `done/`,
    /// `failed/` and `.deliver/` under `root`.
    ///
    /// # Errors
    ///
    /// [`WatchError::Io`] if a folder cannot be created or the root resolved;
    /// [`WatchError::CrossDevice`] if a state folder is on another file
    /// system than the root (moves between them could not be atomic);
    /// [`WatchError::NotWritable`] if a file cannot be created in, or moved
    /// into, one of the state folders (permissions, a read-only mount), so
    /// that a host refuses to start instead of failing every claim later.
    pub fn open(root: &Path) -> Result<WatchRoot, WatchError> {
        fs::create_dir_all(root).map_err(io_err("create directory", root))?;
        // Absolute, symlink-free paths are what /proc/*/fd links show.
        let root = fs::canonicalize(root).map_err(io_err("resolve", root))?;
        let dir = |name: &str| root.join(name);
        let this = WatchRoot {
            incoming: dir("incoming"),
            processing: dir("processing"),
            done: dir("done"),
            failed: dir("failed"),
            state_dir: dir(".deliver"),
            root: root.clone(),
        };
        for sub in this.subdirs() {
            fs::create_dir_all(sub).map_err(io_err("create directory", sub))?;
            same_device(sub, &this.root)?;
        }
        this.probe()?;
        Ok(this)
    }

    /// Creates a probe file in `.deliver/`, moves it through every state
    /// folder and back, and removes it: the operations a job's life needs.
    /// A failed move into a folder blames that folder, since the probe's
    /// arrival in the previous one proved that one writable.
    fn probe(&self) -> Result<(), WatchError> {
        static N: AtomicU64 = AtomicU64::new(0);
        // Hidden, so a probe left by a kill is never taken for a job.
        let name = format!(
            ".deliver-probe-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let mut at = self.state_dir.join(&name);
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&at)
            .map_err(not_writable(&self.state_dir, "create a file in"))?;
        for dir in [
            &self.incoming,
            &self.processing,
            &self.done,
            &self.failed,
            &self.state_dir,
        ] {
            let next = dir.join(&name);
            if let Err(e) = fs::rename(&at, &next) {
                let _ = fs::remove_file(&at);
                return Err(not_writable(dir, "move a file into")(e));
            }
            at = next;
        }
        fs::remove_file(&at).map_err(not_writable(&self.state_dir, "remove a file from"))
    }

    fn subdirs(&self) -> [&Path; 5] {
        [
            &self.incoming,
            &self.processing,
            &self.done,
            &self.failed,
            &self.state_dir,
        ]
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn incoming(&self) -> &Path {
        &self.incoming
    }
    pub fn processing(&self) -> &Path {
        &self.processing
    }
    pub fn done(&self) -> &Path {
        &self.done
    }
    pub fn failed(&self) -> &Path {
        &self.failed
    }
    /// `.deliver/`: the journal and other host state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `processing/<id>`.
    pub fn job_dir(&self, id: &JobId) -> PathBuf {
        self.processing.join(id.as_str())
    }

    /// Atomically moves `file` (normally `incoming/<name>`) to
    /// `processing/<id>/<name>`, creating the job folder, and returns the new
    /// path. The job folder may already exist (several files per job); an
    /// existing file of the same name in it is never overwritten.
    ///
    /// # Errors
    ///
    /// [`WatchError::NoFileName`] if `file` has no name;
    /// [`WatchError::CrossDevice`] if `file` is on another file system than
    /// `processing/`; [`WatchError::DestinationExists`] if the target file
    /// exists; [`WatchError::Io`] / [`WatchError::Rename`] if a step fails.
    pub fn claim(&self, file: &Path, id: &JobId) -> Result<PathBuf, WatchError> {
        let name = file.file_name().ok_or_else(|| WatchError::NoFileName {
            path: file.to_path_buf(),
        })?;
        // Checked before creating anything, so a refused claim leaves no trace.
        same_device(file, &self.processing)?;
        let job_dir = self.job_dir(id);
        match fs::create_dir(&job_dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(io_err("create directory", &job_dir)(e))
            }
            _ => {}
        }
        let target = job_dir.join(name);
        refuse_existing("claim", file, &target)?;
        rename(file, &target)?;
        tracing::info!(job = %id, from = %file.display(), "claimed");
        Ok(target)
    }

    /// Moves `processing/<id>` to `done/<id>` and returns the new path.
    ///
    /// # Errors
    ///
    /// [`WatchError::DestinationExists`] if `done/<id>` exists;
    /// [`WatchError::Rename`] if the move fails (e.g. no such job).
    pub fn publish(&self, id: &JobId) -> Result<PathBuf, WatchError> {
        self.finish("publish", id, &self.done)
    }

    /// Moves `processing/<id>` to `failed/<id>` and returns the new path.
    ///
    /// # Errors
    ///
    /// [`WatchError::DestinationExists`] if `failed/<id>` exists;
    /// [`WatchError::Rename`] if the move fails (e.g. no such job).
    pub fn quarantine(&self, id: &JobId) -> Result<PathBuf, WatchError> {
        self.finish("quarantine", id, &self.failed)
    }

    fn finish(&self, op: &'static str, id: &JobId, dest_dir: &Path) -> Result<PathBuf, WatchError> {
        let from = self.job_dir(id);
        let to = dest_dir.join(id.as_str());
        // rename(2) silently replaces an empty destination directory.
        refuse_existing(op, &from, &to)?;
        rename(&from, &to)?;
        tracing::info!(job = %id, op, to = %to.display(), "job moved");
        Ok(to)
    }
}

fn refuse_existing(op: &'static str, from: &Path, to: &Path) -> Result<(), WatchError> {
    match fs::symlink_metadata(to) {
        Ok(_) => Err(WatchError::DestinationExists {
            op,
            from: from.to_path_buf(),
            to: to.to_path_buf(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("stat", to)(e)),
    }
}

/// Where an output is written before it is validated: `final` + `.partial`.
pub fn partial_path(final_path: &Path) -> PathBuf {
    let mut name = OsString::from(final_path.as_os_str());
    name.push(".partial");
    PathBuf::from(name)
}

/// Renames `x.partial` to `x` (replacing any `x`) and returns `x`.
///
/// # Errors
///
/// [`WatchError::NotPartial`] if the name does not end in `.partial`;
/// [`WatchError::Rename`] if the rename fails.
pub fn commit_partial(partial: &Path) -> Result<PathBuf, WatchError> {
    let final_path = partial
        .to_str()
        .and_then(|s| s.strip_suffix(".partial"))
        .filter(|s| !s.is_empty() && !s.ends_with('/'))
        .map(PathBuf::from)
        .ok_or_else(|| WatchError::NotPartial {
            path: partial.to_path_buf(),
        })?;
    rename(partial, &final_path)?;
    Ok(final_path)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    len: u64,
    modified: Option<SystemTime>,
}

#[derive(Debug)]
struct Seen {
    signature: Signature,
    since: Instant,
    reported: bool,
}

/// An entry of a watched folder that will never be taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub path: PathBuf,
    pub reason: RejectReason,
}

/// Why an entry is never taken.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectReason {
    /// A symbolic link. A claim renames the link, not the file it points to,
    /// and a link can reach anywhere, outside the watch root included.
    Symlink {
        /// The target as written in the link.
        target: PathBuf,
        /// Where it leads, resolved; `None` if it leads nowhere (dangling
        /// or a loop).
        resolved: Option<PathBuf>,
    },
}

impl Rejected {
    /// Whether the entry leads outside `root` (a canonical path, as
    /// [`WatchRoot::root`] is). A link that leads nowhere does not.
    pub fn leads_outside(&self, root: &Path) -> bool {
        match &self.reason {
            RejectReason::Symlink { resolved, .. } => {
                resolved.as_ref().is_some_and(|r| !r.starts_with(root))
            }
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RejectReason::Symlink { target, resolved } => {
                write!(f, "is a symbolic link to {}", target.display())?;
                match resolved {
                    Some(r) if r != target => write!(f, " (which resolves to {})", r.display())?,
                    Some(_) => {}
                    None => f.write_str(" (which leads nowhere)")?,
                }
                f.write_str(
                    "; symbolic links are not taken: claiming one would move the link, not the \
                     file, and a link can reach outside the watch root",
                )
            }
        }
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path.display(), self.reason)
    }
}

/// Allowance for file time stamps taken from a coarse clock (the kernel's
/// tick, up to 10 ms at HZ=100), so that a stamp never dates a change
/// earlier than it happened.
const STAMP_SLACK: Duration = Duration::from_millis(20);

/// The last inode change of `meta` (ctime: unlike mtime, `cp -p`, `rsync
/// -t` or `touch -d` cannot set it in the past), else its mtime.
fn changed_at(meta: &fs::Metadata) -> Option<SystemTime> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let secs = u64::try_from(meta.ctime()).ok()?;
        let nanos = u32::try_from(meta.ctime_nsec()).ok()?;
        UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
    }
    #[cfg(not(unix))]
    {
        meta.modified().ok()
    }
}

/// When a change seen first at `now` happened, from its time stamp: trusted
/// only between `floor` (the previous scan, which saw the entry absent or
/// different, so the change came after it) and `now`. Anything else (no
/// previous scan, a stamp in the future or before the previous scan, as a
/// file server's skewed clock may give) dates it `now`, as if just written.
fn dated(now: Instant, stamp: Option<SystemTime>, floor: Option<Instant>) -> Instant {
    let (Some(stamp), Some(floor)) = (stamp, floor) else {
        return now;
    };
    SystemTime::now()
        .duration_since(stamp)
        .ok()
        .and_then(|age| now.checked_sub(age))
        .map(|at| at + STAMP_SLACK)
        .filter(|&at| at >= floor && at <= now)
        .unwrap_or(now)
}

/// Reports files that have stopped changing and that nobody is writing.
#[derive(Debug)]
pub struct StabilityTracker {
    settle: Duration,
    seen: HashMap<PathBuf, Seen>,
    sidecars: bool,
    rejected: Vec<Rejected>,
    /// When each folder's last complete scan began.
    scanned: HashMap<PathBuf, Instant>,
}

impl StabilityTracker {
    pub fn new(settle: Duration) -> StabilityTracker {
        StabilityTracker {
            settle,
            seen: HashMap::new(),
            sidecars: false,
            rejected: Vec::new(),
            scanned: HashMap::new(),
        }
    }

    /// Sidecar mode: a file is taken once its `<name>.ready` sidecar exists
    /// (the sender's word that it is complete) and nobody has it open for
    /// writing; the settle time does not apply. Without a sidecar it waits.
    pub fn with_sidecars(mut self, on: bool) -> StabilityTracker {
        self.sidecars = on;
        self
    }

    /// Scans `dir` (not recursively) and returns the regular files accepted
    /// by `accept` whose size and mtime have held for the settle time and
    /// that no process has open for writing. Each is returned once, and again
    /// only after it changes. Dotfiles and `*.partial`, `*.tmp`, `*.cancel`
    /// are ignored.
    ///
    /// A change is dated by the file's ctime when that falls between the
    /// previous scan and now (else by when this scan saw it), so a file is
    /// reported about the settle time after its last write, not up to a poll
    /// interval later; [`next_due`](Self::next_due) says when to poll.
    ///
    /// Symbolic links accepted by `accept` are never returned: once they
    /// have held still as long as a file would have to, they are reported
    /// once by [`take_rejected`](Self::take_rejected).
    ///
    /// # Errors
    ///
    /// [`WatchError::Io`] if `dir` cannot be listed or an entry cannot be
    /// examined (other than vanishing mid-scan).
    pub fn poll(
        &mut self,
        dir: &Path,
        accept: impl Fn(&Path) -> bool,
    ) -> Result<Vec<PathBuf>, WatchError> {
        let scan_start = Instant::now();
        let floor = self.scanned.get(dir).copied();
        let mut present = HashSet::new();
        let mut ready = Vec::new();
        let mut links = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err("read directory", dir))? {
            let entry = entry.map_err(io_err("read directory", dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || SKIPPED_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                continue;
            }
            let path = entry.path();
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("stat", &path)(e)),
            };
            let link = meta.file_type().is_symlink();
            if !(meta.file_type().is_file() || link) || !accept(&path) {
                continue;
            }
            // Taken after the stat, so a signature dated `now` is never dated
            // before the write that produced it.
            let now = Instant::now();
            let signature = Signature {
                len: meta.len(),
                modified: meta.modified().ok(),
            };
            present.insert(path.clone());
            let fresh = || Seen {
                signature,
                since: dated(now, changed_at(&meta), floor),
                reported: false,
            };
            let seen = self.seen.entry(path.clone()).or_insert_with(fresh);
            if seen.signature != signature {
                *seen = fresh();
            }
            let complete = if self.sidecars {
                ready_sidecar(&path).is_file()
            } else {
                now.duration_since(seen.since) >= self.settle
            };
            if !seen.reported && complete {
                if link {
                    links.push(path);
                } else {
                    ready.push(path);
                }
            }
        }
        self.seen.retain(|path, _| present.contains(path));
        self.scanned.insert(dir.to_path_buf(), scan_start);
        if !ready.is_empty() {
            if let Some(writing) = open_for_writing(&ready) {
                ready.retain(|path| {
                    let busy = writing.contains(path);
                    if busy {
                        tracing::debug!(path = %path.display(), "stable but open for writing");
                    }
                    !busy
                });
            }
        }
        ready.sort();
        links.sort();
        for path in ready.iter().chain(&links) {
            if let Some(seen) = self.seen.get_mut(path) {
                seen.reported = true;
            }
        }
        for path in &ready {
            tracing::debug!(path = %path.display(), "stable");
        }
        for path in links {
            // The link itself may have gone since the scan; then there is
            // nothing to reject.
            let Ok(target) = fs::read_link(&path) else {
                continue;
            };
            let resolved = fs::canonicalize(&path).ok();
            tracing::debug!(path = %path.display(), target = %target.display(), "symlink rejected");
            self.rejected.push(Rejected {
                path,
                reason: RejectReason::Symlink { target, resolved },
            });
        }
        Ok(ready)
    }

    /// The entries that polls rejected since the last call, each once (and
    /// again only if it changes).
    pub fn take_rejected(&mut self) -> Vec<Rejected> {
        std::mem::take(&mut self.rejected)
    }

    /// When the next entry not yet reported will have held still for the
    /// settle time, if that is still ahead: a poll then reports it without
    /// waiting for the next regular poll. `None` in sidecar mode (the clock
    /// does not decide) and when nothing is settling.
    pub fn next_due(&self) -> Option<Instant> {
        if self.sidecars {
            return None;
        }
        let now = Instant::now();
        self.seen
            .values()
            .filter(|s| !s.reported)
            .map(|s| s.since + self.settle)
            .filter(|&due| due > now)
            .min()
    }

    /// How long to wait before the next poll: `interval`, or less when an
    /// entry will have settled sooner ([`next_due`](Self::next_due)), but
    /// at least a tenth of `interval`: a flood of files settling at
    /// distinct instants costs at most ten scans per interval (each scan
    /// lists the folder and may read every process's open files), and
    /// reports whatever settled in between together.
    pub fn next_poll(&self, interval: Duration) -> Duration {
        self.next_due()
            .map_or(interval, |due| {
                due.saturating_duration_since(Instant::now())
                    .max(interval / 10)
            })
            .min(interval)
    }
}

/// Whether some process has `path` open for writing. `false` where this
/// cannot be known (no readable `/proc`).
pub fn is_open_for_writing(path: &Path) -> bool {
    open_for_writing(&[path.to_path_buf()]).is_some_and(|w| !w.is_empty())
}

/// Which of `paths` some process holds open with `O_WRONLY` or `O_RDWR`;
/// `None` if `/proc` cannot tell.
#[cfg(target_os = "linux")]
fn open_for_writing(paths: &[PathBuf]) -> Option<HashSet<PathBuf>> {
    // /proc/*/fd links are absolute and resolved; map them back to the caller's spelling.
    let wanted: HashMap<PathBuf, &PathBuf> = paths
        .iter()
        .filter_map(|p| fs::canonicalize(p).ok().map(|c| (c, p)))
        .collect();
    let procs = fs::read_dir("/proc").ok()?;
    // A /proc without readable fd folders (hidepid, odd containers) says nothing.
    fs::read_dir("/proc/self/fd").ok()?;
    let mut found = HashSet::new();
    for proc_entry in procs.flatten() {
        if found.len() == wanted.len() {
            break;
        }
        let pid_dir = proc_entry.path();
        let is_pid = proc_entry
            .file_name()
            .to_str()
            .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()));
        // Other users' processes are unreadable without privilege; skip them.
        let Some(fds) = is_pid
            .then(|| fs::read_dir(pid_dir.join("fd")).ok())
            .flatten()
        else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(&original) = wanted.get(&target) {
                if !found.contains(original)
                    && fd_writable(&pid_dir.join("fdinfo").join(fd.file_name()))
                {
                    found.insert(original.clone());
                }
            }
        }
    }
    Some(found)
}

#[cfg(not(target_os = "linux"))]
fn open_for_writing(_paths: &[PathBuf]) -> Option<HashSet<PathBuf>> {
    None
}

#[cfg(target_os = "linux")]
fn fd_writable(fdinfo: &Path) -> bool {
    const O_ACCMODE: u32 = 0o3; // O_WRONLY = 1, O_RDWR = 2
    match fs::read_to_string(fdinfo) {
        Ok(info) => info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_none_or(|flags| flags & O_ACCMODE != 0),
        // Closed since we saw the link.
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        // Unknown: assume a writer rather than take a file mid-write.
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests;
