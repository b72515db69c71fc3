//! The `deliver` command line.

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use deliver::host::{self, Host, Settings, Shared};
use deliver::jobs::{self, JobOptions};
use deliver::manifest::{self, LoadContext};
use deliver::plugins::Registry;
use deliver::preset::PresetLibrary;
use deliver::report;
use deliver::watch_config::{RootConfig, WatchConfig};
use deliver_plugin_api::abi;
use deliver_watch::WatchRoot;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "deliver",
    version,
    about = "Render, encode, normalize, validate and publish deliverables"
)]
struct Cli {
    /// Directory to load codec plugins from (repeatable; default: next to the executable).
    #[arg(long, global = true)]
    plugin_dir: Vec<PathBuf>,
    /// Directory of presets that override or add to the built-in library (repeatable).
    #[arg(long, global = true)]
    presets: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Watch a root folder: manifests dropped into <root>/incoming/ are delivered to done/ or failed/.
    /// With --config, watch every root of a watch configuration instead.
    Watch {
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        root: Option<PathBuf>,
        /// A watch configuration (watch.toml, see examples/watch.toml):
        /// several roots, each with its own settings, default presets,
        /// priority and fair-share weight. The flags below are per root and
        /// are set in the file instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// A file is taken once its size and mtime are unchanged this long.
        #[arg(long, default_value_t = 1000, conflicts_with = "config")]
        settle_ms: u64,
        /// Jobs run at once.
        #[arg(long, default_value_t = 1, conflicts_with = "config")]
        concurrency: usize,
        /// Folders media may be read from (repeatable; default: the watch root).
        #[arg(long, conflicts_with = "config")]
        media_root: Vec<PathBuf>,
        /// Stop when incoming/ is empty and no job runs.
        #[arg(long)]
        exit_when_idle: bool,
        /// Take a file only once the sender has written `<name>.ready`
        /// beside it (the settle time then does not apply).
        #[arg(long, conflicts_with = "config")]
        ready_sidecar: bool,
        /// Encode deliverables longer than this in recorded segments of
        /// this many seconds, so a killed host resumes where it stopped
        /// (0: no segments).
        #[arg(long, default_value_t = deliver::segments::DEFAULT_SECONDS, conflicts_with = "config")]
        segment_seconds: f64,
    },
    /// Deliver one manifest (TOML) or OpenTimelineIO timeline (.otio) in the foreground.
    Render {
        manifest: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Folders media may be read from (repeatable; default: the manifest's folder).
        #[arg(long)]
        media_root: Vec<PathBuf>,
        /// Presets delivered when the manifest or timeline names no
        /// deliverables (repeatable; a timeline without either gets
        /// web/h264-1080p).
        #[arg(long)]
        preset: Vec<String>,
        /// Which renderer draws the frames: `cpu` (the reference), `gpu`
        /// (wgpu; fails without an adapter) or `auto` (a hardware GPU when
        /// there is one, else the CPU). Default: `DELIVER_RENDERER`, else auto.
        #[arg(long, value_parser = parse_renderer)]
        renderer: Option<deliver::render::RendererChoice>,
    },
    /// Validate a manifest or timeline (and its presets) without rendering.
    Check {
        manifest: PathBuf,
        #[arg(long)]
        media_root: Vec<PathBuf>,
        /// As for `render`.
        #[arg(long)]
        preset: Vec<String>,
    },
    /// Cancel a queued or running job of a watch host: by job id, or by the
    /// file name the manifest was dropped as. The job stops within a second
    /// and lands in failed/ with reason `cancelled`.
    Cancel {
        /// The watch root the host watches.
        root: PathBuf,
        /// A job id (`promo-20261125T181502-3f2a`) or a dropped file name (`promo.toml`).
        job: String,
    },
    /// List a watch root's jobs and their states, from its journal (with
    /// --config, those of every root of a watch configuration).
    Status {
        #[arg(required_unless_present = "config", conflicts_with = "config")]
        root: Option<PathBuf>,
        /// A watch configuration: every root it names.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Finished jobs to list besides those not finished.
        #[arg(long, default_value_t = 20)]
        recent: usize,
        /// One job's transitions.
        #[arg(long)]
        job: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Hold any media file to a preset's spec checks (its QC profile):
    /// codec, profile, format, colour tags, legal range, black, freeze,
    /// flashes, silence, channels, timecode. Exit status 1 on an
    /// error-level finding.
    Qc {
        file: PathBuf,
        /// The preset whose promises and QC profile apply.
        #[arg(long)]
        preset: String,
        /// The exact frame count (and so duration) the file must have.
        #[arg(long)]
        frames: Option<u64>,
        /// Print JSON (probe, checks) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List loaded plugins, their capabilities and ABI version.
    Plugins {
        #[command(subcommand)]
        cmd: Option<PluginsCmd>,
    },
    /// List presets: where each comes from (built in, or a file of the user's
    /// preset directory, `$DELIVER_PRESETS` or `~/.config/deliver/presets`,
    /// or of `--presets`), what it extends and what it replaces.
    Presets {
        #[command(subcommand)]
        cmd: Option<PresetsCmd>,
    },
    /// Measure a media file's loudness (ITU-R BS.1770-4, EBU Tech 3341/3342):
    /// integrated, loudness range, true peak per channel, max momentary and
    /// short-term loudness.
    Loudness {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Compare a distorted file with a reference: SSIM and PSNR on every
    /// plane as FFmpeg's ssim/psnr filters compute them, and ΔE2000.
    Compare {
        reference: PathBuf,
        distorted: PathBuf,
        /// Print JSON (summary and per-frame series) instead of text.
        #[arg(long)]
        json: bool,
        /// Compare at most this many frames.
        #[arg(long)]
        frames: Option<u64>,
        /// SSIM and PSNR only (ΔE2000 is the costliest measure).
        #[arg(long)]
        no_delta_e: bool,
    },
    /// Serve one out-of-process encoder session on stdin/stdout for the
    /// host (`isolation = "process"`); not for people.
    #[command(hide = true)]
    PluginHost {
        /// The plugin library whose encoder to serve.
        #[arg(long)]
        library: PathBuf,
    },
    /// Run the embedded example: a temporary watch root with the example
    /// manifests, processed until idle.
    Demo {
        /// Where to make the watch root (default: a new temporary folder).
        #[arg(long)]
        root: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PresetsCmd {
    /// One preset fully resolved (its chain of `extends` merged, loudness
    /// profile expanded), with the files it comes from.
    Show {
        id: String,
        /// Print JSON (the chain, the merged table and the validated preset).
        #[arg(long)]
        json: bool,
    },
    /// Parse, resolve and hold presets to what the loaded plugins offer
    /// (codec, encoder, profile, pixel format, container, audio codec).
    /// Exit status 1 on any error.
    Check {
        /// Preset ids or preset files (default: every loaded preset).
        targets: Vec<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write `<dir>/<new-id>.toml`: `extends = "<from>"` and, as comments,
    /// the keys one usually changes. Never overwrites.
    New {
        new_id: String,
        /// The preset to start from.
        #[arg(long)]
        from: String,
        /// Where to write it (default: the user's preset directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// Hold one plugin library to the ABI's contract: load it as the host
    /// does, then encode, drain, mux, decode back and try the error paths
    /// of everything it declares. Each step prints PASS, FAIL or SKIP with
    /// a reason; the exit status is 1 if any step failed.
    Check {
        /// The plugin library (`.so`), loaded whatever its name.
        library: PathBuf,
        /// Print one JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Frames per encode (video), or as many frames' worth of audio.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
        frames: u32,
    },
}

/// The example manifests, embedded so that `deliver demo` runs anywhere.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "promo.toml",
        include_str!("../../examples/watch/incoming/promo.toml"),
    ),
    (
        "slate.toml",
        include_str!("../../examples/watch/incoming/slate.toml"),
    ),
];

fn plugin_dirs(cli: &Cli) -> Vec<PathBuf> {
    if cli.plugin_dir.is_empty() {
        deliver::plugins::default_dirs()
    } else {
        cli.plugin_dir.clone()
    }
}

fn registry(cli: &Cli) -> &'static Registry {
    let dirs = plugin_dirs(cli);
    let reg = Registry::global(&dirs);
    if reg.plugins.is_empty() {
        tracing::warn!(
            "no plugins loaded from {}",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    reg
}

/// `deliver qc`: a preset's spec checks on any file.
fn qc_file(
    cli: &Cli,
    file: &Path,
    preset: &str,
    frames: Option<u64>,
    json: bool,
) -> Result<std::process::ExitCode> {
    use deliver::qc;
    let reg = registry(cli);
    let lib = presets(cli)?;
    let p = lib.resolve(preset, &toml::Table::new())?;
    let Some(decoder) = qc::file_decoder(reg) else {
        bail!("no loaded plugin decodes files");
    };
    let v = &p.video;
    let expect = qc::Expect {
        codec: Some(v.codec.clone()),
        profile: v.profile.clone(),
        level: None,
        pix_fmt: Some(v.pix_fmt.clone()),
        width: v.width,
        height: v.height,
        frame_rate: None,
        scan: Some(qc::Scan::Progressive),
        frames,
        colour: Some(abi::ColorTags {
            primaries: v.colour.primaries,
            transfer: v.colour.transfer,
            matrix: v.colour.matrix,
            range: v.colour.range,
        }),
        audio: p.audio.as_ref().map(|a| qc::AudioExpect {
            codec: Some(a.codec.clone()),
            sample_rate: Some(a.sample_rate),
            channels: Some(a.channels),
            bit_depth: deliver::encode::pcm_bits(&a.codec),
        }),
        start_timecode: None,
    };
    let r = qc::check_file(&decoder, file, &expect, &p.qc).map_err(anyhow::Error::msg)?;
    let verdict = report::verdict_of(&r.checks);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "file": file,
                "preset": p.id,
                "verdict": verdict,
                "probe": r.probe,
                "checks": r.checks,
            }))?
        );
    } else {
        println!("{}: {verdict:?} against {}", file.display(), p.id);
        for c in &r.checks {
            let mark = if c.pass { "ok  " } else { c.severity.as_str() };
            println!(
                "  {mark:<8} {:<22} {}  (want {})",
                c.id, c.value, c.threshold
            );
            for e in &c.events {
                println!("           {} – {}  {}", e.tc_in, e.tc_out, e.detail);
            }
        }
    }
    Ok(if verdict.publishable() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// The journal of a watch root, if a host has watched it.
fn journal_of(root: &Path) -> Result<Option<deliver::journal::Journal>> {
    let file = root.join(".deliver").join(deliver::journal::FILE);
    if !file.is_file() {
        return Ok(None);
    }
    Ok(Some(deliver::journal::Journal::open_path(&file)?))
}

/// Prints the journal's view of a watch root.
fn status(root: &Path, recent: usize, job: Option<&str>, json: bool) -> Result<()> {
    let Some(journal) = journal_of(root)? else {
        bail!(
            "{} has no journal ({}): no host has watched it",
            root.display(),
            root.join(".deliver").join(deliver::journal::FILE).display()
        );
    };
    if let Some(id) = job {
        if !print_job(&journal, id, json)? {
            bail!("no job `{id}` in {}", journal.path().display());
        }
        return Ok(());
    }
    let rows = journal.jobs(recent)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_jobs(&rows);
    }
    Ok(())
}

/// `deliver status --config`: every root of a watch configuration.
fn status_config(
    cli: &Cli,
    file: &Path,
    recent: usize,
    job: Option<&str>,
    json: bool,
) -> Result<()> {
    let config = WatchConfig::load(file, &presets(cli)?)?;
    if let Some(id) = job {
        for r in &config.roots {
            if let Some(journal) = journal_of(&r.path)? {
                if print_job(&journal, id, json)? {
                    return Ok(());
                }
            }
        }
        bail!("no job `{id}` in the roots of {}", file.display());
    }
    let mut all = Vec::new();
    for r in &config.roots {
        let rows = match journal_of(&r.path)? {
            Some(journal) => Some(journal.jobs(recent)?),
            None => None,
        };
        if json {
            all.push(serde_json::json!({"root": r.name, "path": r.path, "jobs": rows}));
            continue;
        }
        println!("{} ({})", r.name, r.path.display());
        match rows {
            Some(rows) => print_jobs(&rows),
            None => println!("  no journal: no host has watched it"),
        }
        println!();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    }
    Ok(())
}

/// Prints one job's transitions; false if the journal does not know it.
fn print_job(journal: &deliver::journal::Journal, id: &str, json: bool) -> Result<bool> {
    let Some(row) = journal.job(id)? else {
        return Ok(false);
    };
    let history = journal.history(id)?;
    let segments = journal.segments(id, None)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"job": row, "transitions": history, "segments": segments})
            )?
        );
    } else {
        println!("{} ({}): {}", row.id, row.name, row.state.as_str());
        for t in history {
            println!(
                "  {}  {} → {}{}",
                t.at,
                t.from.as_deref().unwrap_or("-"),
                t.to,
                t.detail.map(|d| format!("  ({d})")).unwrap_or_default()
            );
        }
        if !segments.is_empty() {
            println!("  segments recorded (resume point):");
        }
        for s in &segments {
            println!(
                "  {}  {} #{:<3} frames {}..{}  {} bytes{}",
                s.at,
                s.deliverable,
                s.idx,
                s.first_frame,
                s.first_frame + s.frames,
                s.bytes,
                if s.encodes > 1 {
                    format!("  (encoded {} times)", s.encodes)
                } else {
                    String::new()
                }
            );
        }
    }
    Ok(true)
}

fn print_jobs(rows: &[deliver::journal::JobRow]) {
    println!(
        "{:<40} {:<9} {:<7} {:>8}  {:<24}  detail",
        "job", "state", "verdict", "attempts", "updated"
    );
    for r in rows {
        println!(
            "{:<40} {:<9} {:<7} {:>8}  {:<24}  {}",
            r.id,
            r.state.as_str(),
            r.verdict.as_deref().unwrap_or("-"),
            r.attempts,
            r.updated,
            r.detail.as_deref().unwrap_or("")
        );
    }
}

/// Leaves a cancel request where the watch host looks for them.
fn request_cancel(root: &Path, job: &str) -> Result<()> {
    if !root.join("incoming").is_dir() {
        bail!(
            "{} is not a watch root (no incoming/ folder)",
            root.display()
        );
    }
    deliver_watch::JobId::parse(job)?;
    let root = WatchRoot::open(root)?;
    let names = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    };
    let running = names(root.processing());
    let known = running
        .iter()
        .any(|id| id == job || root.processing().join(id).join(job).is_file())
        || root.incoming().join(job).is_file();
    if !known {
        bail!(
            "no job `{job}` in {}: processing/ holds {}",
            root.root().display(),
            if running.is_empty() {
                "nothing".to_owned()
            } else {
                running.join(", ")
            }
        );
    }
    let dir = host::cancel_dir(&root);
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!(".{job}.tmp"));
    std::fs::write(&tmp, b"")?;
    std::fs::rename(&tmp, dir.join(job))?;
    println!("cancel requested for `{job}`");
    Ok(())
}

/// The user's preset directories, then `--presets` (later wins).
fn preset_dirs(cli: &Cli) -> Vec<PathBuf> {
    let mut dirs = deliver::preset::user_dirs();
    dirs.extend(cli.presets.iter().cloned());
    dirs
}

fn presets(cli: &Cli) -> Result<PresetLibrary> {
    Ok(PresetLibrary::load(&preset_dirs(cli))?)
}

/// A warning for each loaded preset the loaded plugins cannot deliver, so
/// that a watch host says so at start rather than when a job asks.
fn warn_undeliverable(lib: &PresetLibrary, reg: &Registry) {
    for (id, p) in lib.validate_all() {
        let Ok(p) = p else { continue };
        let found = deliver::capability::check_preset(&p, lib, reg);
        if let Some(first) = found.first() {
            let more = match found.len() {
                1 => String::new(),
                n => format!(" (and {} more: `deliver presets check {id}`)", n - 1),
            };
            tracing::warn!(preset = %id, "the loaded plugins cannot deliver it: {first}{more}");
        }
    }
}

/// `deliver presets`: every preset, where it comes from and what it
/// replaces or extends.
fn presets_list(cli: &Cli) -> Result<std::process::ExitCode> {
    let (lib, errors) = PresetLibrary::read(&preset_dirs(cli));
    for id in lib.ids() {
        match lib.resolve(&id, &toml::Table::new()) {
            Ok(p) => println!(
                "{id:<28} {:<5} {}{} — {}",
                p.container,
                p.video.codec,
                p.audio
                    .as_ref()
                    .map(|a| format!(" + {}", a.codec))
                    .unwrap_or_default(),
                p.description
            ),
            Err(e) => println!("{id:<28} invalid: {e}"),
        }
        let file = lib.source(&id).map(|s| s.file.display().to_string());
        let mut from = vec![file.unwrap_or_default()];
        if let Ok(chain) = lib.chain(&id) {
            if let Some(parent) = chain.get(1) {
                from.push(format!("extends {}", parent.id));
            }
        }
        for r in lib.replaced(&id) {
            from.push(format!("replaces {}", r.display()));
        }
        println!("{:<28} {}", "", from.join("; "));
    }
    println!("\nloudness profiles (presets name them with [loudness] profile = \"...\"):");
    for name in lib.profiles() {
        println!("  {name}");
    }
    for e in &errors {
        println!("\nunreadable: {e}");
    }
    Ok(if errors.is_empty() {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// `deliver presets show`.
fn presets_show(cli: &Cli, id: &str, json: bool) -> Result<()> {
    let (lib, _) = PresetLibrary::read(&preset_dirs(cli));
    let chain = lib.chain(id)?;
    let merged = lib.merged(id)?;
    let preset = lib.resolve(id, &toml::Table::new())?;
    let replaced = lib.replaced(id);
    if json {
        let chain: Vec<_> = chain
            .iter()
            .map(|s| serde_json::json!({"id": s.id, "file": s.file}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "id": id,
                "file": preset.file,
                "chain": chain,
                "replaces": replaced,
                "table": merged,
                "preset": preset,
            }))?
        );
        return Ok(());
    }
    println!("# {id}: {}", preset.description);
    for (i, s) in chain.iter().enumerate() {
        let how = if i == 0 { "from" } else { "extends" };
        println!("# {how:<8} {} ({})", s.id, s.file.display());
    }
    for r in replaced {
        println!("# replaces {}", r.display());
    }
    print!("\n{}", toml::to_string_pretty(&merged)?);
    Ok(())
}

/// The id a preset file has: its path under a preset directory, else its
/// file name without `.toml`.
fn id_of_file(file: &Path, dirs: &[PathBuf]) -> String {
    let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_owned());
    for dir in dirs.iter().rev() {
        let Ok(dir) = std::fs::canonicalize(dir) else {
            continue;
        };
        if let Ok(rel) = abs.strip_prefix(&dir) {
            return rel
                .with_extension("")
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
        }
    }
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `deliver presets check`.
fn presets_check(cli: &Cli, targets: &[String], json: bool) -> Result<std::process::ExitCode> {
    let dirs = preset_dirs(cli);
    let (mut lib, read_errors) = PresetLibrary::read(&dirs);
    let reg = registry(cli);
    // Problems that belong to no preset id: unreadable files and folders.
    let mut general: Vec<deliver::manifest::InputError> = Vec::new();
    let mut ids = Vec::new();
    if targets.is_empty() {
        general.extend(read_errors.iter().cloned());
        ids = lib.ids();
    }
    for t in targets {
        let path = Path::new(t);
        if !(path.is_file() || t.ends_with(".toml")) {
            ids.push(t.clone());
            continue;
        }
        let id = id_of_file(path, &dirs);
        let file = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
        let loaded = lib
            .source(&id)
            .is_some_and(|s| std::fs::canonicalize(&s.file).is_ok_and(|f| f == file));
        let unreadable: Vec<_> = read_errors
            .iter()
            .filter(|e| std::fs::canonicalize(&e.file).is_ok_and(|f| f == file))
            .cloned()
            .collect();
        if !unreadable.is_empty() {
            general.extend(unreadable);
        } else if loaded {
            ids.push(id);
        } else {
            match lib.add_file(path, &id) {
                Ok(()) => ids.push(id),
                Err(e) => general.push(e),
            }
        }
    }
    let mut results = Vec::new();
    for id in &ids {
        let errors = match lib.resolve(id, &toml::Table::new()) {
            Ok(p) => deliver::capability::check_preset(&p, &lib, reg),
            Err(e) => vec![e],
        };
        let file = lib.source(id).map(|s| s.file.clone());
        results.push((id.clone(), file, errors));
    }
    let ok = general.is_empty() && results.iter().all(|(_, _, e)| e.is_empty());
    if json {
        let presets: Vec<_> = results
            .iter()
            .map(|(id, file, errors)| {
                serde_json::json!({"id": id, "file": file, "ok": errors.is_empty(), "errors": errors})
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "ok": ok,
                "plugins": deliver::capability::loaded(reg),
                "presets": presets,
                "errors": general,
            }))?
        );
    } else {
        for (id, file, errors) in &results {
            let file = file.as_ref().map(|f| f.display().to_string());
            if errors.is_empty() {
                println!("ok    {id} ({})", file.unwrap_or_default());
            } else {
                println!("FAIL  {id} ({})", file.unwrap_or_default());
                for e in errors {
                    println!("      {e}");
                }
            }
        }
        for e in &general {
            println!("FAIL  {e}");
        }
        println!(
            "{} presets checked against plugins {}: {}",
            results.len(),
            deliver::capability::loaded(reg),
            if ok { "ok" } else { "errors above" }
        );
    }
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    })
}

/// `deliver presets new`.
fn presets_new(cli: &Cli, new_id: &str, from: &str, dir: Option<&Path>) -> Result<()> {
    let (lib, _) = PresetLibrary::read(&preset_dirs(cli));
    let text = lib.new_preset(new_id, from)?;
    let dir = match dir {
        Some(d) => d.to_owned(),
        None => deliver::preset::user_dir().ok_or_else(|| {
            anyhow::anyhow!("no user preset directory (set DELIVER_PRESETS or HOME), give --dir")
        })?,
    };
    let file = dir.join(format!("{new_id}.toml"));
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            bail!("{} exists: not overwritten", file.display())
        }
        Err(e) => bail!("cannot write {}: {e}", file.display()),
    };
    std::io::Write::write_all(&mut f, text.as_bytes())?;
    println!("{}", file.display());
    Ok(())
}

fn main() -> std::process::ExitCode {
    deliver::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: &Cli) -> Result<std::process::ExitCode> {
    use std::process::ExitCode;
    match &cli.cmd {
        Cmd::Status {
            root,
            config,
            recent,
            job,
            json,
        } => {
            match (root, config) {
                (_, Some(file)) => status_config(cli, file, *recent, job.as_deref(), *json)?,
                (Some(root), None) => status(root, *recent, job.as_deref(), *json)?,
                (None, None) => bail!("name a watch root or --config"),
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Qc {
            file,
            preset,
            frames,
            json,
        } => qc_file(cli, file, preset, *frames, *json),
        Cmd::Cancel { root, job } => {
            request_cancel(root, job)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Cmd::Loudness { file, json } => {
            let a = deliver::loudness::measure_file(registry(cli), file)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&a.summary_json())?);
            } else {
                println!("{}\n{a}", file.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Compare {
            reference,
            distorted,
            json,
            frames,
            no_delta_e,
        } => {
            let opts = deliver::compare::Options {
                frames: *frames,
                delta_e: !no_delta_e,
                ..Default::default()
            };
            let c = deliver::compare::compare(registry(cli), reference, distorted, &opts)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&c)?);
            } else {
                print!("{}", c.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plugins {
            cmd:
                Some(PluginsCmd::Check {
                    library,
                    json,
                    frames,
                }),
        } => {
            let opts = deliver::conformance::Options {
                frames: *frames,
                ..Default::default()
            };
            let ok = deliver::conformance::run(library, &opts, *json)?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::PluginHost { library } => {
            deliver::isolate::serve(library)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plugins { cmd: None } => {
            let reg = registry(cli);
            println!("host plugin ABI {}.{}", abi::ABI_MAJOR, abi::ABI_MINOR);
            for l in &reg.plugins {
                let (ma, mi) = l.plugin.abi();
                println!(
                    "\n{} {} (ABI {ma}.{mi}) — {}\n  {}",
                    l.plugin.name(),
                    l.plugin.version(),
                    l.plugin.description(),
                    l.file.display()
                );
                if reg.isolation_of(&l.plugin.name()) == deliver::isolate::Isolation::Process {
                    println!("  encoders run out of process (isolated by DELIVER_ISOLATE)");
                }
                for c in &l.capabilities {
                    let mut extra = Vec::new();
                    if !c.profiles.is_empty() {
                        extra.push(format!("profiles: {}", c.profiles.join(",")));
                    }
                    if !c.pix_fmts.is_empty() {
                        extra.push(format!("pix_fmts: {}", c.pix_fmts.join(",")));
                    }
                    if c.hardware {
                        extra.push("hardware".into());
                    }
                    println!(
                        "  {:<12} {:<8} {:<12} rank {:<4} {}",
                        c.kind_name(),
                        c.name,
                        c.implementation,
                        c.rank,
                        extra.join("; ")
                    );
                }
            }
            for r in &reg.refused {
                println!("\nrefused: {r}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Presets { cmd: None } => presets_list(cli),
        Cmd::Presets {
            cmd: Some(PresetsCmd::Show { id, json }),
        } => {
            presets_show(cli, id, *json)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Presets {
            cmd: Some(PresetsCmd::Check { targets, json }),
        } => presets_check(cli, targets, *json),
        Cmd::Presets {
            cmd: Some(PresetsCmd::New { new_id, from, dir }),
        } => {
            presets_new(cli, new_id, from, dir.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check {
            manifest: path,
            media_root,
            preset,
        } => {
            let reg = registry(cli);
            let ctx = load_context(path, media_root, preset, reg);
            let m = manifest::load(path, &ctx)?;
            for w in &m.warnings {
                eprintln!("warning: {}: {w}", path.display());
            }
            let lib = presets(cli)?;
            for d in &m.deliverables {
                // Field by field, with the preset file's line: what the
                // plan below would refuse in one sentence.
                let found = deliver::capability::check_request(d, path, &lib, reg)?;
                if !found.is_empty() {
                    bail!(
                        "deliverable `{}` cannot be made with the loaded plugins:\n  {}",
                        d.name,
                        found
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("\n  ")
                    );
                }
                let preset = lib.resolve_request(d, path)?;
                // Planning chooses the plugins: a codec or container that no
                // loaded plugin offers is reported now, not after a render.
                deliver::encode::plan(&m, reg, &d.name, preset, Path::new("."), None)?;
            }
            println!(
                "{}: ok — {}x{} @ {} fps, {} frames, {} video / {} audio tracks, {} deliverables",
                path.display(),
                m.canvas.width,
                m.canvas.height,
                m.canvas.frame_rate,
                m.canvas.frames,
                m.video.len(),
                m.audio.len(),
                m.deliverables.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Render {
            manifest: path,
            out,
            media_root,
            preset,
            renderer,
        } => {
            let renderer = match renderer {
                Some(r) => *r,
                None => deliver::render::RendererChoice::from_env().map_err(anyhow::Error::msg)?,
            };
            let reg = registry(cli);
            let lib = presets(cli)?;
            let ctx = load_context(path, media_root, preset, reg);
            let m = manifest::load(path, &ctx)?;
            for w in &m.warnings {
                eprintln!("warning: {}: {w}", path.display());
            }
            // The job fails at planning and says so in its report; this
            // names the preset file, line and field first.
            for d in &m.deliverables {
                for e in deliver::capability::check_request(d, path, &lib, reg).unwrap_or_default()
                {
                    tracing::error!(deliverable = %d.name, "{e}");
                }
            }
            let bar = indicatif::ProgressBar::new(m.canvas.frames);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} frames {msg}",
                )
                .expect("static template"),
            );
            let b2 = bar.clone();
            let opts = JobOptions {
                segments: None,
                isolation: Default::default(),
                renderer,
                job_id: format!("render-{}", m.name),
                out_dir: out.clone(),
                cancel: Arc::new(AtomicBool::new(false)),
                progress: Some(Box::new(move |p: &jobs::Progress| {
                    b2.set_position(p.frames_done);
                    b2.set_message(format!(
                        "{:.1} fps, ETA {}",
                        p.fps,
                        p.eta_s
                            .map(|s| format!("{s:.0} s"))
                            .unwrap_or_else(|| "-".into())
                    ));
                })),
            };
            let r = jobs::run(&m, reg, &lib, &opts);
            bar.finish_and_clear();
            std::fs::create_dir_all(out)?;
            let rp = report::write(&r, out)?;
            print_summary(&r, &rp);
            Ok(if r.verdict.publishable() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Watch {
            root,
            config,
            settle_ms,
            concurrency,
            media_root,
            exit_when_idle,
            ready_sidecar,
            segment_seconds,
        } => {
            // Checked before anything starts: each job reads it again.
            deliver::render::RendererChoice::from_env().map_err(anyhow::Error::msg)?;
            // The presets first: a configuration names some of them.
            let lib = presets(cli)?;
            let config = match (root, config) {
                (_, Some(file)) => WatchConfig::load(file, &lib)?,
                (Some(root), None) => {
                    let mut rc = RootConfig::single(
                        root,
                        Duration::from_millis(*settle_ms),
                        *concurrency,
                        media_root,
                        *ready_sidecar,
                    );
                    rc.segment_seconds = Some(*segment_seconds);
                    WatchConfig::single(rc)
                }
                (None, None) => bail!("name a watch root or --config"),
            };
            watch(cli, lib, &config, *exit_when_idle)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo { root } => {
            let root = match root {
                Some(r) => r.clone(),
                None => std::env::temp_dir().join(format!(
                    "deliver-demo-{}",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string()
                        .replace(':', "")
                )),
            };
            let wr = WatchRoot::open(&root)?;
            for (name, text) in EXAMPLES {
                std::fs::write(wr.incoming().join(name), text)?;
            }
            println!("demo watch root: {}", root.display());
            let config = WatchConfig::single(RootConfig::single(
                &root,
                Duration::from_millis(300),
                1,
                &[],
                false,
            ));
            watch(cli, presets(cli)?, &config, true)?;
            let failed = std::fs::read_dir(wr.failed())?.count();
            println!("\ndeliverables and reports: {}", wr.done().display());
            if failed > 0 {
                println!("quarantined jobs: {}", wr.failed().display());
                bail!("{failed} demo job(s) failed: see their report.json");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// A timeline that names no deliverables and gets no `--preset`.
const TIMELINE_DEFAULT_PRESET: &str = "web/h264-1080p";

fn load_context(
    manifest: &Path,
    media_root: &[PathBuf],
    presets: &[String],
    reg: &'static Registry,
) -> LoadContext {
    let default_presets = if presets.is_empty() && manifest::is_otio(manifest) {
        vec![TIMELINE_DEFAULT_PRESET.to_owned()]
    } else {
        presets.to_vec()
    };
    LoadContext {
        media_roots: if media_root.is_empty() {
            vec![manifest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_owned()]
        } else {
            media_root.to_vec()
        },
        base_dir: None,
        max_bytes: host::MAX_MANIFEST_BYTES,
        default_presets,
        probe: Some(manifest::MediaProbe(Arc::new(move |p: &Path| {
            deliver::render::probe_size(reg, p)
        }))),
    }
}

/// Opens every root of `config` (a root that cannot be used stops the host
/// now, naming it) and runs the host until it stops.
fn watch(cli: &Cli, lib: PresetLibrary, config: &WatchConfig, exit_when_idle: bool) -> Result<()> {
    warn_undeliverable(&lib, registry(cli));
    let lib = Arc::new(lib);
    let roots = config
        .roots
        .iter()
        .map(|r| Shared::open(r.clone(), lib.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    let host = Host {
        roots,
        registry: registry(cli),
        plugin_dirs: plugin_dirs(cli),
    };
    let settings = Settings {
        poll: Duration::from_millis(250),
        exit_when_idle,
        max_jobs: config.max_jobs,
        plugin_rescan: Duration::from_secs(2),
    };
    host::run(host, settings, |id, verdict, folder| {
        println!(
            "{id}: {verdict:?} → {}",
            folder
                .map(|f| f.display().to_string())
                .unwrap_or_else(|| "-".into())
        );
        if let Some(Ok(rd)) = folder.map(std::fs::read_dir) {
            let mut files: Vec<_> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            for p in files {
                println!("    {}", p.display());
            }
        }
    })?;
    Ok(())
}

fn print_summary(r: &report::JobReport, report_path: &Path) {
    if let Some(e) = &r.error {
        println!("job failed ({}): {}", e.kind, e.message);
    }
    for d in &r.deliverables {
        println!(
            "{:<20} {:?}  {}",
            d.name,
            d.verdict,
            d.file
                .as_ref()
                .map(|f| report_path.with_file_name(f).display().to_string())
                .unwrap_or_default()
        );
        for c in d.checks.iter().filter(|c| !c.pass) {
            println!("    failed {}: {} (want {})", c.id, c.value, c.threshold);
        }
        if let Some(e) = &d.error {
            println!("    error: {e}");
        }
    }
    println!("report: {}", report_path.display());
}

fn parse_renderer(s: &str) -> Result<deliver::render::RendererChoice, String> {
    deliver::render::RendererChoice::parse(s)
        .ok_or_else(|| format!("`{s}` is not a renderer: expected cpu, gpu or auto"))
}
