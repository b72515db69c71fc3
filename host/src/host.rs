//! The watch host: actix actors coordinate, threads compute.
//!
//! - A [`Watcher`] per root polls the root's `incoming/` for stable
//!   manifests, claims each into `processing/<job>/` and submits it.
//! - One [`Scheduler`] queues the jobs of every root and starts them on
//!   their own threads: per-root concurrency, root and manifest priorities
//!   and fair share between roots are [`crate::schedule`]'s; a finished job
//!   reports back with a message.
//! - The scheduler rescans the plugin directories every few seconds. A job
//!   whose deliverables need a codec or container that no loaded plugin
//!   provides gives its slot back and waits (journal state `waiting`, with
//!   what is missing); when the plugins change it is tried again with the
//!   new registry.
//!
//! Frames never travel as actor messages, and no actor blocks its arbiter:
//! a job runs on a dedicated thread that owns its render and encode threads,
//! and plugin libraries are loaded on a thread of their own.

use crate::capability;
use crate::jobs::{self, JobError, JobOptions};
use crate::journal::{Journal, State};
use crate::manifest::{self, LoadContext};
use crate::plugins::Registry;
use crate::preset::PresetLibrary;
use crate::report::{self, Verdict};
use crate::schedule::{RootPolicy, Schedule};
use crate::segments::{JournalLedger, Segmenting};
use crate::watch_config::{RootConfig, RootError};
use actix::prelude::*;
use deliver_watch::{JobId, StabilityTracker, WatchRoot};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Manifests larger than this are refused unread (a manifest is a few KiB).
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// One watched root: everything its watcher and its jobs need.
pub struct Shared {
    /// Its place among the host's roots (what [`Submit::root`] names); set
    /// by [`run`].
    pub index: usize,
    /// Its settings: name, default presets, priority, weight, concurrency,
    /// media roots, settle and media wait.
    pub config: RootConfig,
    pub root: WatchRoot,
    /// Every job and transition of this root (`.deliver/journal.sqlite`).
    pub journal: Journal,
    /// The presets of the host (one library for every root).
    pub presets: Arc<PresetLibrary>,
}

impl Shared {
    /// Opens a root: its folders (created where missing and proved
    /// writable) and its journal.
    ///
    /// # Errors
    /// A [`RootError`] naming the root, where it is configured and why it
    /// cannot be used.
    pub fn open(config: RootConfig, presets: Arc<PresetLibrary>) -> Result<Shared, RootError> {
        let root = config.open()?;
        let journal = Journal::open(&root).map_err(|e| RootError {
            root: config.path.clone(),
            origin: config.origin.clone(),
            reason: e.to_string(),
        })?;
        Ok(Shared {
            index: 0,
            config,
            root,
            journal,
            presets,
        })
    }
}

/// What one watch host serves.
pub struct Host {
    pub roots: Vec<Shared>,
    /// The plugins loaded at start.
    pub registry: &'static Registry,
    /// Where plugins are loaded from; rescanned while the host runs, so that
    /// a plugin library added there is picked up without a restart.
    pub plugin_dirs: Vec<PathBuf>,
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

/// Host settings; each root's own are in its [`RootConfig`].
#[derive(Debug, Clone)]
pub struct Settings {
    /// How often `incoming/` is looked at.
    pub poll: Duration,
    /// Stop the system once no root's `incoming/` holds a manifest and no
    /// job is queued or runs (jobs waiting for a plugin resume at the next
    /// start).
    pub exit_when_idle: bool,
    /// Jobs at once across all roots; `None`: the sum of their concurrencies.
    pub max_jobs: Option<usize>,
    /// How often the plugin directories are looked at for new libraries.
    pub plugin_rescan: Duration,
}

/// Whether a file in `incoming/` is a composition this host takes: a TOML
/// manifest or an OpenTimelineIO timeline.
pub fn is_manifest(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml") || manifest::is_otio(p)
}

/// A claimed manifest, ready to run.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Submit {
    /// The root it was dropped in ([`Shared::index`]).
    pub root: usize,
    pub id: JobId,
    /// Where the manifest was dropped (errors and relative paths refer to it).
    pub dropped_as: PathBuf,
    /// Where it is now, in `processing/<id>/`.
    pub claimed: PathBuf,
    /// The manifest's priority, read when it was claimed.
    pub priority: i32,
    /// Set to stop the job (queued: it never starts; running: it stops
    /// within a frame and lands in `failed/` with reason `cancelled`).
    pub cancel: Arc<AtomicBool>,
}

impl Submit {
    /// A job of `shared` claimed as `claimed`, recorded in the root's
    /// journal (state `queued`) with the priority its manifest names.
    fn claimed(
        shared: &Shared,
        id: JobId,
        dropped_as: PathBuf,
        claimed: PathBuf,
        cancel: bool,
    ) -> Submit {
        let priority = read_capped(&claimed, MAX_MANIFEST_BYTES)
            .map(|bytes| manifest::peek_priority(&bytes))
            .unwrap_or(manifest::validate::DEFAULT_PRIORITY);
        shared.journal_claimed(&id, &dropped_as, &claimed, priority.into());
        Submit {
            root: shared.index,
            id,
            dropped_as,
            claimed,
            priority: priority.into(),
            cancel: Arc::new(AtomicBool::new(cancel)),
        }
    }
}

/// A request to cancel a job of a root, by job id or by the file name it
/// was dropped as (`promo.toml`; the newest such job).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Cancel {
    pub root: usize,
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
    pub root: usize,
    pub id: JobId,
    pub verdict: Verdict,
    pub folder: Option<PathBuf>,
}

/// A job gave its slot back: no loaded plugin can make its deliverables.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Waiting {
    pub root: usize,
    pub id: JobId,
    /// What is missing (as the journal says it).
    pub detail: String,
    /// The plugin generation it was checked against.
    pub generation: u64,
}

/// The plugin directories changed and were loaded again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct PluginsLoaded {
    pub registry: &'static Registry,
    /// The libraries it was loaded from.
    pub fingerprint: Fingerprint,
}

/// Polls one root's `incoming/` and claims stable manifests.
pub struct Watcher {
    shared: Arc<Shared>,
    /// The plugins at start, named in the reports of rejected entries.
    registry: &'static Registry,
    tracker: StabilityTracker,
    poll: Duration,
    scheduler: Recipient<Submit>,
    cancels: Recipient<Cancel>,
}

impl Watcher {
    pub fn new(
        shared: Arc<Shared>,
        registry: &'static Registry,
        poll: Duration,
        scheduler: Recipient<Submit>,
        cancels: Recipient<Cancel>,
    ) -> Self {
        Watcher {
            registry,
            tracker: StabilityTracker::new(shared.config.settle)
                .with_sidecars(shared.config.ready_sidecars),
            shared,
            poll,
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
                        let job = Submit::claimed(&self.shared, id, waiting, claimed, true);
                        let _ = self.scheduler.try_send(job);
                    }
                    Err(e) => tracing::error!("cannot claim {}: {e}", waiting.display()),
                }
            } else if let Err(e) = self.cancels.try_send(Cancel {
                root: self.shared.index,
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
            crate::rejected::quarantine(&self.shared, self.registry, &rejected);
        }
        for file in ready {
            let stem = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let id = JobId::new(&stem);
            match self.shared.root.claim(&file, &id) {
                Ok(claimed) => {
                    tracing::info!(
                        job = %id,
                        root = %self.shared.config.name,
                        file = %file.display(),
                        "manifest claimed"
                    );
                    let sidecar = deliver_watch::ready_sidecar(&file);
                    if sidecar.exists() {
                        if let Err(e) = std::fs::remove_file(&sidecar) {
                            tracing::warn!("cannot remove {}: {e}", sidecar.display());
                        }
                    }
                    let msg = Submit::claimed(&self.shared, id, file, claimed, false);
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
        tracing::info!(
            root = %self.shared.config.name,
            path = %self.shared.root.root().display(),
            "watching"
        );
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

/// The plugin libraries in the plugin directories: (path, size, mtime),
/// sorted. A change means the registry is loaded again.
pub type Fingerprint = Vec<(PathBuf, u64, Option<SystemTime>)>;

/// The libraries [`Registry::load`] would load from `dirs` (the same name
/// rule: `libdeliver_plugin_*` with the platform's suffix).
fn plugin_fingerprint(dirs: &[PathBuf]) -> Fingerprint {
    let mut fp: Fingerprint = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.filter_map(Result::ok))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libdeliver_plugin_") && name.ends_with(std::env::consts::DLL_SUFFIX)
        })
        .filter_map(|e| {
            let md = std::fs::metadata(e.path()).ok()?;
            Some((e.path(), md.len(), md.modified().ok()))
        })
        .collect();
    fp.sort();
    fp
}

/// A job holding a slot.
struct Active {
    seq: u64,
    job: Submit,
}

/// A job waiting for a plugin, without a slot.
struct Parked {
    seq: u64,
    generation: u64,
    job: Submit,
}

/// Queues the jobs of every root and runs them; keeps the plugin registry
/// current.
pub struct Scheduler {
    roots: Vec<Arc<Shared>>,
    settings: Settings,
    schedule: Schedule<Submit>,
    /// Running jobs, for cancel requests and to give their slots back.
    active: Vec<Active>,
    /// Jobs waiting for a plugin.
    waiting: Vec<Parked>,
    /// The registry new jobs get, and its generation (counts reloads).
    registry: &'static Registry,
    generation: u64,
    plugin_dirs: Vec<PathBuf>,
    /// The libraries `registry` was loaded from.
    plugins_loaded: Fingerprint,
    /// Libraries seen that differ from those: loaded once they look the
    /// same at the next scan (a library being copied in is not loaded).
    plugins_seen: Option<Fingerprint>,
    loading: bool,
    finished: usize,
    /// Called with every finished job (the demo prints them).
    on_finished: Option<Box<OnFinished>>,
}

impl Scheduler {
    /// A scheduler for `roots` (each at its [`Shared::index`]), starting
    /// jobs with `registry` until the plugins in `plugin_dirs` change.
    pub fn new(
        roots: Vec<Arc<Shared>>,
        registry: &'static Registry,
        plugin_dirs: Vec<PathBuf>,
        settings: Settings,
    ) -> Self {
        let policies: Vec<RootPolicy> = roots
            .iter()
            .map(|s| RootPolicy {
                priority: s.config.priority,
                weight: s.config.weight,
                concurrency: s.config.concurrency,
            })
            .collect();
        Scheduler {
            schedule: Schedule::new(&policies, settings.max_jobs),
            plugins_loaded: plugin_fingerprint(&plugin_dirs),
            plugin_dirs,
            roots,
            settings,
            active: Vec::new(),
            waiting: Vec::new(),
            registry,
            generation: 0,
            plugins_seen: None,
            loading: false,
            finished: 0,
            on_finished: None,
        }
    }

    /// Sets a callback for finished jobs.
    pub fn on_finished(mut self, f: impl Fn(&JobId, Verdict, Option<&Path>) + 'static) -> Self {
        self.on_finished = Some(Box::new(f));
        self
    }

    fn pump(&mut self, ctx: &mut Context<Self>) {
        while let Some(s) = self.schedule.pop() {
            let shared = self.roots[s.root].clone();
            shared.journal(&s.item.id, State::Running, None, None);
            if self.spawn(shared, s.item.clone(), ctx) {
                self.active.push(Active {
                    seq: s.seq,
                    job: s.item,
                });
            } else {
                // It stays in processing/ as `running`: the next start
                // resumes it.
                self.schedule.done(s.root);
            }
        }
    }

    /// Runs `job` on its own thread with the current registry; false if
    /// the thread could not start.
    fn spawn(&mut self, shared: Arc<Shared>, job: Submit, ctx: &mut Context<Self>) -> bool {
        let addr = ctx.address();
        let reg = self.registry;
        let generation = self.generation;
        let name = format!("job-{}", job.id);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let (root, id) = (job.root, job.id.clone());
            // `do_send`: a job's end must reach the scheduler even when its
            // mailbox is full (a flood of submits); at shutdown it is dropped.
            match process(&shared, reg, &job) {
                Outcome::Done(verdict, folder) => addr.do_send(Finished {
                    root,
                    id,
                    verdict,
                    folder,
                }),
                Outcome::Waiting(detail) => addr.do_send(Waiting {
                    root,
                    id,
                    detail,
                    generation,
                }),
            }
        });
        if let Err(e) = spawned {
            tracing::error!("cannot start a job thread: {e}");
            return false;
        }
        true
    }

    /// Looks at the plugin directories; loads them again (on a thread of
    /// its own) once a change has held still for one scan.
    fn rescan(&mut self, ctx: &mut Context<Self>) {
        if self.loading {
            return;
        }
        let now = plugin_fingerprint(&self.plugin_dirs);
        if now == self.plugins_loaded {
            self.plugins_seen = None;
            return;
        }
        if self.plugins_seen.as_ref() != Some(&now) {
            self.plugins_seen = Some(now);
            return;
        }
        self.loading = true;
        let dirs = self.plugin_dirs.clone();
        let addr = ctx.address();
        let spawned = std::thread::Builder::new()
            .name("plugin-scan".into())
            .spawn(move || {
                // A library still open for writing is being copied in: a
                // truncated ELF file can crash the loader.
                let deadline = Instant::now() + Duration::from_secs(60);
                while Instant::now() < deadline
                    && plugin_fingerprint(&dirs)
                        .iter()
                        .any(|(p, _, _)| deliver_watch::is_open_for_writing(p))
                {
                    std::thread::sleep(Duration::from_millis(500));
                }
                let fingerprint = plugin_fingerprint(&dirs);
                // Plugins are never unloaded (their code backs every handle
                // of the registries before this one): leaking is the point.
                let registry: &'static Registry = Box::leak(Box::new(Registry::load(&dirs)));
                addr.do_send(PluginsLoaded {
                    registry,
                    fingerprint,
                });
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the plugin loader: {e}");
            self.loading = false;
        }
    }

    /// Queues a waiting job again, at its old place.
    fn requeue(&mut self, p: Parked, why: &str) {
        let shared = &self.roots[p.job.root];
        shared.journal(&p.job.id, State::Queued, Some(why), None);
        self.schedule
            .push_again(p.job.root, p.job.priority, p.seq, p.job);
    }

    fn idle(&self) -> bool {
        if !self.active.is_empty() || self.schedule.queued() > 0 || self.schedule.running() > 0 {
            return false;
        }
        self.roots
            .iter()
            .all(|s| match std::fs::read_dir(s.root.incoming()) {
                Ok(rd) => !rd.filter_map(Result::ok).any(|e| is_manifest(&e.path())),
                Err(_) => true,
            })
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.plugin_rescan, |act, ctx| act.rescan(ctx));
        if self.settings.exit_when_idle {
            ctx.run_interval(Duration::from_millis(200), |act, _| {
                if act.idle() {
                    if !act.waiting.is_empty() {
                        tracing::warn!(
                            jobs = act.waiting.len(),
                            "stopping with jobs waiting for a plugin: they are tried again at \
                             the next start"
                        );
                    }
                    tracing::info!(jobs = act.finished, "idle: stopping");
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
            let shared = self.roots[msg.root].clone();
            self.spawn(shared, msg, ctx);
            return;
        }
        self.schedule.push(msg.root, msg.priority, msg);
        self.pump(ctx);
    }
}

impl Handler<Cancel> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Cancel, ctx: &mut Self::Context) {
        let matches = |j: &Submit| {
            j.root == msg.root
                && (j.id.as_str() == msg.target
                    || j.dropped_as
                        .file_name()
                        .is_some_and(|n| n == msg.target.as_str()))
        };
        if let Some(a) = self.active.iter().rev().find(|a| matches(&a.job)) {
            tracing::info!(job = %a.job.id, "cancel requested: stopping the running job");
            a.job.cancel.store(true, Ordering::Relaxed);
            return;
        }
        let shared = self.roots[msg.root].clone();
        if let Some(job) = self.schedule.remove_newest(|_, j| matches(j)) {
            tracing::info!(job = %job.id, "cancel requested: removed from the queue");
            job.cancel.store(true, Ordering::Relaxed);
            self.spawn(shared, job, ctx);
            return;
        }
        if let Some(pos) = self.waiting.iter().rposition(|p| matches(&p.job)) {
            let p = self.waiting.remove(pos);
            tracing::info!(job = %p.job.id, "cancel requested: no longer waiting for a plugin");
            p.job.cancel.store(true, Ordering::Relaxed);
            self.spawn(shared, p.job, ctx);
            return;
        }
        tracing::warn!(target = %msg.target, "cancel requested for no queued or running job");
    }
}

impl Scheduler {
    /// Takes a job that ended or gave its slot back off the running list.
    fn release(&mut self, root: usize, id: &JobId) -> Option<Active> {
        // Jobs cancelled from the queue ran without a slot.
        let pos = self
            .active
            .iter()
            .position(|a| a.job.root == root && a.job.id == *id)?;
        self.schedule.done(root);
        Some(self.active.remove(pos))
    }
}

impl Handler<Finished> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Finished, ctx: &mut Self::Context) {
        self.release(msg.root, &msg.id);
        tracing::info!(
            job = %msg.id,
            root = %self.roots[msg.root].config.name,
            verdict = ?msg.verdict,
            folder = ?msg.folder,
            "job finished"
        );
        if let Some(cb) = &self.on_finished {
            cb(&msg.id, msg.verdict, msg.folder.as_deref());
        }
        self.finished += 1;
        self.pump(ctx);
    }
}

impl Handler<Waiting> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: Waiting, ctx: &mut Self::Context) {
        let Some(a) = self.release(msg.root, &msg.id) else {
            return;
        };
        let parked = Parked {
            seq: a.seq,
            generation: msg.generation,
            job: a.job,
        };
        if parked.generation < self.generation {
            // The plugins changed while it was being checked.
            self.requeue(parked, "the plugins changed: trying again");
        } else {
            // The job's thread logged and journalled what it waits for.
            self.waiting.push(parked);
        }
        self.pump(ctx);
    }
}

impl Handler<PluginsLoaded> for Scheduler {
    type Result = ();

    fn handle(&mut self, msg: PluginsLoaded, ctx: &mut Self::Context) {
        self.loading = false;
        self.plugins_seen = None;
        self.plugins_loaded = msg.fingerprint;
        self.registry = msg.registry;
        self.generation += 1;
        tracing::info!(
            generation = self.generation,
            plugins = %capability::loaded(self.registry),
            waiting = self.waiting.len(),
            "plugin directories changed: registry loaded again"
        );
        let generation = self.generation;
        let (again, still): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|p| p.generation < generation);
        self.waiting = still;
        for p in again {
            self.requeue(p, "the plugins changed: trying again");
        }
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

/// How a job's thread ended.
enum Outcome {
    /// Its report is written and its folder moved to done/ or failed/
    /// (`None`: the move failed).
    Done(Verdict, Option<PathBuf>),
    /// No loaded plugin can make its deliverables: it stays in
    /// `processing/` (journal state `waiting`, with this detail) and gives
    /// its slot back until the plugins change.
    Waiting(String),
}

impl From<(Verdict, Option<PathBuf>)> for Outcome {
    fn from((verdict, folder): (Verdict, Option<PathBuf>)) -> Self {
        Outcome::Done(verdict, folder)
    }
}

/// Runs one claimed job to its end with the plugins of `reg`: report
/// written, folder published or quarantined; or, when no loaded plugin can
/// make it, leaves it waiting. Never panics on bad input.
fn process(shared: &Shared, reg: &'static Registry, job: &Submit) -> Outcome {
    let started = report::now();
    let job_dir = shared.root.job_dir(&job.id);
    let ctx = LoadContext {
        media_roots: shared.config.media_roots.clone(),
        base_dir: Some(shared.root.incoming().to_owned()),
        max_bytes: MAX_MANIFEST_BYTES,
        default_presets: shared.config.presets.clone(),
        probe: Some(manifest::MediaProbe(Arc::new(move |p: &Path| {
            crate::render::probe_size(reg, p)
        }))),
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
    let deadline = Instant::now() + shared.config.media_wait;
    let mut said = false;
    let loaded = loop {
        let r = load();
        if let Ok(m) = &r {
            let arriving = arriving_media(m, shared.config.settle);
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
                        shared.config.media_wait.as_secs(),
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
    if let (Ok(m), false) = (&loaded, job.cancel.load(Ordering::Relaxed)) {
        let missing = capability::missing(m, reg, &shared.presets);
        if !missing.is_empty() {
            let detail = capability::waiting_detail(&missing, reg);
            tracing::warn!(job = %job.id, "{detail}");
            shared.journal(&job.id, State::Waiting, Some(&detail), None);
            return Outcome::Waiting(detail);
        }
    }
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
            let seconds = shared
                .config
                .segment_seconds
                .unwrap_or(crate::segments::DEFAULT_SECONDS);
            let segments = (seconds > 0.0)
                .then(|| match Journal::open_path(shared.journal.path()) {
                    Ok(journal) => Some(Segmenting {
                        seconds,
                        ledger: Arc::new(JournalLedger {
                            journal,
                            job: job.id.to_string(),
                        }),
                    }),
                    Err(e) => {
                        tracing::warn!(job = %job.id, "no segments, so no resume for this job: {e}");
                        None
                    }
                })
                .flatten();
            let opts = JobOptions {
                segments,
                isolation: shared.config.isolation,
                // `deliver watch` refused a bad value at start.
                renderer: crate::render::RendererChoice::from_env().unwrap_or_default(),
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
    finish(shared, &job.id, report.verdict).into()
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
        priority: i64,
    ) {
        if let Err(e) = self.journal.claimed(id, dropped_as, claimed, priority) {
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
            root: shared.index,
            id,
            dropped_as,
            claimed,
            priority: i32::try_from(row.priority)
                .unwrap_or(manifest::validate::DEFAULT_PRIORITY.into()),
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
            again.push(Submit::claimed(shared, id, dropped_as, claimed, false));
        }
    }
    again
}

/// Runs the watch host until it is stopped (or, with `exit_when_idle`, until
/// there is nothing left to do): a watcher per root, one scheduler.
///
/// # Errors
/// Only if the actix system cannot run.
pub fn run(
    host: Host,
    settings: Settings,
    on_finished: impl Fn(&JobId, Verdict, Option<&Path>) + 'static,
) -> std::io::Result<()> {
    let roots: Vec<Arc<Shared>> = host
        .roots
        .into_iter()
        .enumerate()
        .map(|(i, mut s)| {
            s.index = i;
            Arc::new(s)
        })
        .collect();
    let sys = System::new();
    sys.block_on(async move {
        let scheduler = Scheduler::new(
            roots.clone(),
            host.registry,
            host.plugin_dirs,
            settings.clone(),
        )
        .on_finished(on_finished)
        .start();
        for shared in roots {
            Watcher::new(
                shared,
                host.registry,
                settings.poll,
                scheduler.clone().recipient(),
                scheduler.clone().recipient(),
            )
            .start();
        }
    });
    sys.run()
}
