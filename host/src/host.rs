//! The watch host: actix actors coordinate, threads compute.
//!
//! - [`Watcher`] polls a root's `incoming/` for stable manifests, claims each
//!   into `processing/<job>/` and submits it.
//! - [`Scheduler`] queues jobs and starts them on their own threads, up to
//!   the configured concurrency; a finished job reports back with a message.
//!
//! Frames never travel as actor messages, and no actor blocks its arbiter:
//! a job runs on a dedicated thread that owns its render and encode threads.

use crate::jobs::{self, JobError, JobOptions};
use crate::journal::{Journal, State};
use crate::manifest::{self, LoadContext};
use crate::plugins::Registry;
use crate::preset::PresetLibrary;
use crate::report::{self, Verdict};
use actix::prelude::*;
use deliver_watch::{JobId, StabilityTracker, WatchRoot};
use std::collections::VecDeque;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Manifests larger than this are refused unread (a manifest is a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Everything a job needs from the host, shared by all jobs.
pub struct Shared {
    pub root: WatchRoot,
    /// Every job and transition of this root (`.deliver/journal.sqlite`).
    pub journal: Journal,
    pub registry: &'static Registry,
    pub presets: PresetLibrary,
    pub media_roots: Vec<PathBuf>,
    /// A medium is still arriving while it is open for writing or was
    /// modified less than this long ago.
    pub media_settle: Duration,
    /// How long a job waits for media that are still arriving before it
    /// fails (missing media fail at once: a sender that sends the manifest
    /// first should use `.ready` sidecars).
    pub media_wait: Duration,
}

/// The media of `m` still arriving: open for writing, or modified within
/// `settle`.
fn arriving_media(m: &manifest::Manifest, settle: Duration) -> Vec<PathBuf> {
    let now = std::time::SystemTime::now();
    m.media_paths()
        .into_iter()
        .filter(|p| {
            let recent = std::fs::metadata(p)
                .and_then(|md| md.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() < settle)
                .unwrap_or(false);
            recent || deliver_watch::is_open_for_writing(p)
        })
        .map(Path::to_path_buf)
        .collect()
}

/// Host settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub settle: Duration,
    pub poll: Duration,
    pub concurrency: usize,
    /// Stop the system once `incoming/` holds no manifest and no job runs.
    pub exit_when_idle: bool,
    /// Take a file only once its `<name>.ready` sidecar exists.
    pub ready_sidecars: bool,
}

/// Whether a file in `incoming/` is a composition this host takes.
pub fn is_manifest(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml")
}

/// A claimed manifest, ready to run.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Submit {
    pub id: JobId,
    /// Where the manifest was dropped (errors and relative paths refer to it).
    pub dropped_as: PathBuf,
    /// Where it is now, in `processing/<id>/`.
    pub claimed: PathBuf,
    /// Set to stop the job (queued: it never starts; running: it stops
    /// within a frame and lands in `failed/` with reason `cancelled`).
    pub cancel: Arc<AtomicBool>,
}

/// A request to cancel a job, by job id or by the file name it was dropped
/// as (`promo.toml`; the newest such job).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Cancel {
    pub target: String,
}

/// Where `deliver cancel` leaves its requests: `<root>/.deliver/cancel/<target>`.
pub fn cancel_dir(root: &WatchRoot) -> PathBuf {
    root.state_dir().join("cancel")
}

/// How often the watcher looks for cancel requests.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Suffix of a cancel request dropped beside a manifest: `promo.toml.cancel`.
pub const CANCEL_SUFFIX: &str = ".cancel";

/// A job ended.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Finished {
    pub id: JobId,
    pub verdict: Verdict,
    pub folder: Option<PathBuf>,
}

/// Polls `incoming/` and claims stable manifests.
pub struct Watcher {
    shared: Arc<Shared>,
    tracker: StabilityTracker,
    poll: Duration,
    scheduler: Recipient<Submit>,
    cancels: Recipient<Cancel>,
}

impl Watcher {
    pub fn new(
        shared: Arc<Shared>,
        settings: &Settings,
        scheduler: Recipient<Submit>,
        cancels: Recipient<Cancel>,
    ) -> Self {
        Watcher {
            shared,
            tracker: StabilityTracker::new(settings.settle).with_sidecars(settings.ready_sidecars),
            poll: settings.poll,
            scheduler,
            cancels,
        }
    }

    /// Cancel requests: `incoming/<manifest>.cancel` files and those
    /// `deliver cancel` leaves under `.deliver/cancel/`. Each is consumed.
    fn cancel_requests(&mut self) {
        let mut found = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.shared.root.incoming()) {
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(target) = name.strip_suffix(CANCEL_SUFFIX) {
                    // `promo.cancel` names `promo.toml` too.
                    let target = if is_manifest(Path::new(target)) {
                        target.to_owned()
                    } else {
                        format!("{target}.toml")
                    };
                    found.push((e.path(), target));
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(cancel_dir(&self.shared.root)) {
            for e in rd.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    found.push((e.path(), name));
                }
            }
        }
        for (path, target) in found {
            // A manifest not yet claimed (still settling) is claimed now, so
            // that it too lands in failed/ with its report.
            let waiting = self.shared.root.incoming().join(&target);
            if waiting.is_file() {
                let stem = Path::new(&target)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let id = JobId::new(&stem);
                match self.shared.root.claim(&waiting, &id) {
                    Ok(claimed) => {
                        tracing::info!(job = %id, "cancelled before it started");
                        self.shared.journal_claimed(&id, &waiting, &claimed);
                        let _ = self.scheduler.try_send(Submit {
                            id,
                            dropped_as: waiting,
                            claimed,
                            cancel: Arc::new(AtomicBool::new(true)),
                        });
                    }
                    Err(e) => tracing::error!("cannot claim {}: {e}", waiting.display()),
                }
            } else if let Err(e) = self.cancels.try_send(Cancel {
                target: target.clone(),
            }) {
                tracing::error!("scheduler unreachable: {e}");
                continue;
            }
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!("cannot remove the cancel request {}: {e}", path.display());
            }
        }
    }

    /// Scans, then scans again after the poll interval, or as soon as the
    /// next manifest will have settled if that is sooner: a fixed interval
    /// alone would add up to one interval to every drop.
    fn scan_loop(&mut self, ctx: &mut Context<Self>) {
        self.scan(ctx);
        let wait = self.tracker.next_poll(self.poll);
        ctx.run_later(wait, |act, ctx| act.scan_loop(ctx));
    }

    fn scan(&mut self, ctx: &mut Context<Self>) {
        let incoming = self.shared.root.incoming().to_owned();
        let ready = match self.tracker.poll(&incoming, is_manifest) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("watching {}: {e}", incoming.display());
                return;
            }
        };
        for rejected in self.tracker.take_rejected() {
            crate::rejected::quarantine(&self.shared, &rejected);
        }
        for file in ready {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = JobId::new(&stem);
            match self.shared.root.claim(&file, &id) {
                Ok(claimed) => {
                    tracing::info!(job = %id, file = %file.display(), "manifest claimed");
                    let sidecar = deliver_watch::ready_sidecar(&file);
                    if sidecar.exists() {
                        if let Err(e) = std::fs::remove_file(&sidecar) {
                            tracing::warn!("cannot remove {}: {e}", sidecar.display());
                        }
                    }
                    self.shared.journal_claimed(&id, &file, &claimed);
                    let msg = Submit {
                        id,
                        dropped_as: file,
                        claimed,
                        cancel: Arc::new(AtomicBool::new(false)),
                    };
                    self.scheduler
                        .send(msg)
                        .into_actor(self)
                        .map(|r, _, _| {
                            if let Err(e) = r {
                                tracing::error!("scheduler unreachable: {e}");
                            }
                        })
                        .spawn(ctx);
                }
                Err(e) => tracing::error!("cannot claim {}: {e}", file.display()),
            }
        }
    }
}

impl Actor for Watcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        tracing::info!(root = %self.shared.root.root().display(), "watching");
        for job in recover(&self.shared) {
            if let Err(e) = self.scheduler.try_send(job) {
                tracing::error!("scheduler unreachable: {e}");
            }
        }
        self.scan_loop(ctx);
        // Cancel requests are looked for more often than manifests: a
        // cancelled job must stop within a second, whatever the poll.
        ctx.run_interval(CANCEL_POLL, |act, _| act.cancel_requests());
    }
}

/// Called with each finished job: its id, verdict and folder.
pub type OnFinished = dyn Fn(&JobId, Verdict, Option<&Path>);

/// Queues and runs jobs.
pub struct Scheduler {
    shared: Arc<Shared>,
    settings: Settings,
    queue: VecDeque<Submit>,
    running: usize,
    /// Running jobs, for cancel requests.
    active: Vec<Submit>,
    finished: Vec<(JobId, Verdict, Option<PathBuf>)>,
    /// Called with every finished job (the demo prints them).
    on_finished: Option<Box<OnFinished>>,
}

impl Scheduler {
    pub fn new(shared: Arc<Shared>, settings: Settings) -> Self {
        Scheduler {
            shared,
            settings,
            queue: VecDeque::new(),
            running: 0,
            active: Vec::new(),
            finished: Vec::new(),
            on_finished: None,
        }
    }

    /// Sets a callback for finished jobs.
    pub fn on_finished(mut self, f: impl Fn(&JobId, Verdict, Option<&Path>) + 'static) -> Self {
        self.on_finished = Some(Box::new(f));
        self
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        while self.running < self.settings.concurrency.max(1) {
            let Some(job) = self.queue.pop_front() else {
                break;
            };
            self.running += 1;
            self.shared.journal(&job.id, State::Running, None, None);
            self.active.push(job.clone());
            if !self.spawn(job, ctx) {
                self.running -= 1;
            }
        }
    }

    /// Runs `job` on its own thread; false if the thread could not start.
    fn spawn(&mut self, job: Submit, ctx: &mut Context<Self>) -> bool {
        let shared = self.shared.clone();
        let addr = ctx.address();
        let name = format!("job-{}", job.id);
        let id = job.id.clone();
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let id = job.id.clone();
            let (verdict, folder) = process(&shared, &job);
            // The actor may already be stopping at shutdown; nothing to do then.
            let _ = addr.try_send(Finished {
                id,
                verdict,
                folder,
            });
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start a job thread: {e}");
            self.active.retain(|j| j.id != id);
            return false;
        }
        true
    }

    fn idle(&self) -> bool {
        if self.running > 0 || !self.queue.is_empty() {
            return false;
        }
        match std::fs::read_dir(self.shared.root.incoming()) {
            Ok(rd) => !rd.filter_map(Result::ok).any(|e| is_manifest(&e.path())),
            Err(_) => true,
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.settings.exit_when_idle {
            ctx.run_interval(Duration::from_millis(200), |act, _| {
                if act.idle() {
                    tracing::info!(jobs = act.finished.len(), "idle: stopping");
                    System::current().stop();
                }
            });
        }
    }
}

impl Handler<Submit> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) {
        if msg.cancel.load(Ordering::Relaxed) {
            // Cancelled before it was queued: report it now, without a slot.
            self.spawn(msg, ctx);
            return;
        }
        self.queue.push_back(msg);
        self.pump(ctx);
    }
}

impl Handler<Cancel> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) {
        let matches = |j: &Submit| {
            j.id.as_str() == msg.target
                || j.dropped_as
                    .file_name()
                    .is_some_and(|n| n == msg.target.as_str())
        };
        if let Some(job) = self.active.iter().rev().find(|j| matches(j)) {
            tracing::info!(job = %job.id, "cancel requested: stopping the running job");
            job.cancel.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(pos) = self.queue.iter().rposition(matches) {
            let job = self.queue.remove(pos).expect("found");
            tracing::info!(job = %job.id, "cancel requested: removed from the queue");
            job.cancel.store(true, Ordering::Relaxed);
            self.spawn(job, ctx);
            return;
        }
        tracing::warn!(target = %msg.target, "cancel requested for no queued or running job");
    }
}

impl Handler<Finished> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        // Jobs cancelled from the queue ran without a slot.
        if let Some(pos) = self.active.iter().position(|j| j.id == msg.id) {
            self.active.remove(pos);
            self.running -= 1;
        }
        tracing::info!(job = %msg.id, verdict = ?msg.verdict, folder = ?msg.folder, "job finished");
        if let Some(cb) = &self.on_finished {
            cb(&msg.id, msg.verdict, msg.folder.as_deref());
        }
        self.finished.push((msg.id, msg.verdict, msg.folder));
        self.pump(ctx);
    }
}

/// Reads at most `limit + 1` bytes, so that a huge file is refused without
/// being read whole.
fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Runs one claimed job to its end: report written, folder published or
/// quarantined. Never panics on bad input.
fn process(shared: &Shared, job: &Submit) -> (Verdict, Option<PathBuf>) {
    let started = report::now();
    let job_dir = shared.root.job_dir(&job.id);
    let reg = shared.registry;
    let ctx = LoadContext {
        media_roots: shared.media_roots.clone(),
        base_dir: Some(shared.root.incoming().to_owned()),
        max_bytes: MAX_MANIFEST_BYTES,
    };
    let load = || {
        crate::rejected::claimed_metadata(&job.claimed)
        .and_then(|md| {
            if md.len() > MAX_MANIFEST_BYTES {
                // Say how big it really is; the capped read below would only see the limit.
                Err(std::io::Error::other(format!(
                    "the manifest is {:.1} MiB, larger than the {} MiB limit for manifests (is it a media file with a .toml name?)",
                    md.len() as f64 / (1 << 20) as f64,
                    MAX_MANIFEST_BYTES >> 20
                )))
            } else {
                read_capped(&job.claimed, MAX_MANIFEST_BYTES)
            }
        })
        .map_err(|e| manifest::InputError::new(&job.dropped_as, e.to_string()))
        .and_then(|bytes| manifest::parse(&bytes, &job.dropped_as, &ctx))
    };
    let deadline = Instant::now() + shared.media_wait;
    let mut said = false;
    let loaded = loop {
        let r = load();
        if let Ok(m) = &r {
            let arriving = arriving_media(m, shared.media_settle);
            if !arriving.is_empty() {
                if job.cancel.load(Ordering::Relaxed) {
                    break r;
                }
                if Instant::now() < deadline {
                    if !said {
                        tracing::info!(job = %job.id, media = ?arriving, "waiting for media still arriving");
                        said = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
                break Err(manifest::InputError::new(
                    &job.dropped_as,
                    format!(
                        "media still arriving after {} s: {}",
                        shared.media_wait.as_secs(),
                        arriving
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        break r;
    };
    let report = match loaded {
        _ if job.cancel.load(Ordering::Relaxed) => {
            tracing::info!(job = %job.id, "cancelled before it started");
            jobs::error_report(
                job.id.as_str(),
                &job.dropped_as,
                reg,
                &JobError::Cancelled,
                &started,
            )
        }
        Err(e) => {
            tracing::warn!(job = %job.id, "{e}");
            jobs::error_report(
                job.id.as_str(),
                &job.dropped_as,
                reg,
                &JobError::Input(e),
                &started,
            )
        }
        Ok(m) => {
            let id = job.id.clone();
            let mut last = Instant::now();
            let progress = std::sync::Mutex::new(move |p: &jobs::Progress| {
                if last.elapsed() >= Duration::from_secs(2) || p.frames_done == p.total {
                    last = Instant::now();
                    tracing::info!(
                        job = %id,
                        "frame {}/{} ({:.0} %), {:.1} fps, ETA {}",
                        p.frames_done,
                        p.total,
                        100.0 * p.frames_done as f64 / p.total.max(1) as f64,
                        p.fps,
                        p.eta_s.map(|s| format!("{s:.0} s")).unwrap_or_else(|| "-".into())
                    );
                }
            });
            let opts = JobOptions {
                job_id: job.id.to_string(),
                out_dir: job_dir.clone(),
                cancel: job.cancel.clone(),
                progress: Some(Box::new(move |p: &jobs::Progress| {
                    if let Ok(mut f) = progress.lock() {
                        f(p)
                    }
                })),
            };
            jobs::run(&m, reg, &shared.presets, &opts)
        }
    };
    if let Err(e) = report::write(&report, &job_dir) {
        tracing::error!(job = %job.id, "cannot write the report: {e}");
    }
    let detail = report.error.as_ref().map(|e| e.kind);
    shared.journal(
        &job.id,
        State::Finished,
        detail,
        Some(verdict_str(report.verdict)),
    );
    finish(shared, &job.id, report.verdict)
}

pub(crate) fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Warn => "warn",
        Verdict::Fail => "fail",
    }
}

/// Moves a finished job to done/ or failed/ and records it.
pub(crate) fn finish(
    shared: &Shared,
    id: &deliver_watch::JobId,
    verdict: Verdict,
) -> (Verdict, Option<PathBuf>) {
    let moved = if verdict.publishable() {
        shared.root.publish(id)
    } else {
        shared.root.quarantine(id)
    };
    match moved {
        Ok(folder) => {
            let state = if verdict.publishable() {
                State::Done
            } else {
                State::Failed
            };
            shared.journal(id, state, None, None);
            (verdict, Some(folder))
        }
        Err(e) => {
            tracing::error!(job = %id, "{e}");
            (Verdict::Fail, None)
        }
    }
}

impl Shared {
    /// Records a transition; a journal that cannot be written is logged,
    /// not fatal (the folders still say where every job is).
    pub(crate) fn journal(
        &self,
        id: &deliver_watch::JobId,
        to: State,
        detail: Option<&str>,
        verdict: Option<&str>,
    ) {
        if let Err(e) = self.journal.transition(id, to, detail, verdict) {
            tracing::error!(job = %id, "{e}");
        }
    }

    pub(crate) fn journal_claimed(
        &self,
        id: &deliver_watch::JobId,
        dropped_as: &Path,
        claimed: &Path,
    ) {
        if let Err(e) = self.journal.claimed(id, dropped_as, claimed, 0) {
            tracing::error!(job = %id, "{e}");
        }
    }
}

/// What a restarted host picks up: jobs left in `processing/` (by the
/// journal, and any folder the journal never heard of) are submitted again;
/// finished jobs that were not moved yet are moved; journal entries whose
/// folder already reached done/ or failed/ are brought up to date.
pub fn recover(shared: &Shared) -> Vec<Submit> {
    let mut again = Vec::new();
    let mut known = std::collections::HashSet::new();
    let unfinished = match shared.journal.unfinished() {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("{e}");
            Vec::new()
        }
    };
    for (row, dropped_as, claimed) in unfinished {
        known.insert(row.id.clone());
        let Ok(id) = deliver_watch::JobId::parse(&row.id) else {
            continue;
        };
        let dir = shared.root.job_dir(&id);
        if !dir.is_dir() {
            // Moved before the journal heard of it.
            let (state, detail) = if shared.root.done().join(id.as_str()).is_dir() {
                (State::Done, "repaired from the folders")
            } else if shared.root.failed().join(id.as_str()).is_dir() {
                (State::Failed, "repaired from the folders")
            } else {
                (State::Failed, "its processing/ folder is gone")
            };
            tracing::warn!(job = %id, state = state.as_str(), "{detail}");
            shared.journal(&id, state, Some(detail), None);
            continue;
        }
        if row.state == State::Finished && dir.join("report.json").is_file() {
            let verdict = match row.verdict.as_deref() {
                Some("pass") => Verdict::Pass,
                Some("warn") => Verdict::Warn,
                _ => Verdict::Fail,
            };
            tracing::info!(job = %id, "finished before the restart: moving it");
            finish(shared, &id, verdict);
            continue;
        }
        tracing::info!(job = %id, attempts = row.attempts, "resuming after a restart");
        again.push(Submit {
            id,
            dropped_as,
            claimed,
            cancel: Arc::new(AtomicBool::new(false)),
        });
    }
    // Folders claimed just before a kill, never journalled.
    if let Ok(rd) = std::fs::read_dir(shared.root.processing()) {
        let mut dirs: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if known.contains(&name) || !dir.is_dir() {
                continue;
            }
            let Ok(id) = deliver_watch::JobId::parse(&name) else {
                continue;
            };
            let manifest = std::fs::read_dir(&dir).ok().and_then(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .find(|p| is_manifest(p))
            });
            let Some(claimed) = manifest else {
                tracing::error!(job = %id, "processing/{name} holds no manifest: left alone");
                continue;
            };
            let dropped_as = shared
                .root
                .incoming()
                .join(claimed.file_name().expect("a file"));
            tracing::info!(job = %id, "claimed before the restart, never journalled: resuming");
            shared.journal_claimed(&id, &dropped_as, &claimed);
            again.push(Submit {
                id,
                dropped_as,
                claimed,
                cancel: Arc::new(AtomicBool::new(false)),
            });
        }
    }
    again
}

/// Runs the watch host until it is stopped (or, with `exit_when_idle`, until
/// there is nothing left to do). Returns the finished jobs.
///
/// # Errors
/// Only if the actix system cannot run.
pub fn run(
    shared: Shared,
    settings: Settings,
    on_finished: impl Fn(&JobId, Verdict, Option<&Path>) + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(shared);
    let sys = System::new();
    sys.block_on(async move {
        let scheduler = Scheduler::new(shared.clone(), settings.clone())
            .on_finished(on_finished)
            .start();
        Watcher::new(
            shared,
            &settings,
            scheduler.clone().recipient(),
            scheduler.recipient(),
        )
        .start();
    });
    sys.run()
}
