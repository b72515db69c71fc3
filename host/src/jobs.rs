//! One job: a validated manifest rendered once and fanned out to every
//! deliverable through bounded channels, then reported.

use crate::encode::{self, Chunk, Plan};
use crate::loudness::{Analysis, Measurement, Meter};
use crate::manifest::model::Manifest;
use crate::manifest::model::Primaries;
use crate::manifest::InputError;
use crate::plugins::Registry;
use crate::preset::PresetLibrary;
use crate::render::audio::{sample_of_frame, total_samples, AudioMixer};
use crate::render::plan::{LinearImage, OutputFormat, Renderer};
use crate::render::timeline::{self, Timeline};
use crate::render::{convert, lut, open_renderer, RendererChoice, Yuv};
use crate::report::{
    self, DeliverableReport, ErrorReport, HostInfo, JobReport, RenderReport, Verdict,
};
use crate::segments::{Segmenting, Segments};
use crossbeam_channel::bounded;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Frames buffered between the render and each deliverable: enough to keep
/// both busy, small enough that memory does not depend on duration.
const QUEUE_DEPTH: usize = 4;

/// Progress of a running job.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Frames that every deliverable has encoded.
    pub frames_done: u64,
    pub total: u64,
    pub fps: f64,
    pub eta_s: Option<f64>,
}

/// Callback for progress; called from the job's thread.
pub type ProgressFn = dyn Fn(&Progress) + Send + Sync;

/// How to run a job.
pub struct JobOptions {
    pub job_id: String,
    pub out_dir: PathBuf,
    pub cancel: Arc<AtomicBool>,
    pub progress: Option<Box<ProgressFn>>,
    /// Encode long deliverables in recorded segments, so that a run that is
    /// killed resumes where it stopped (the watch host sets it; `None`
    /// encodes each deliverable in one piece).
    pub segments: Option<Segmenting>,
    /// Where every encoder of the job runs at least (the watch root's
    /// `isolation`); a preset may still ask for a child process.
    pub isolation: crate::isolate::Isolation,
    /// Which renderer draws the frames.
    pub renderer: RendererChoice,
}

/// Why a job stopped before it could report on deliverables.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0}")]
    Input(#[from] InputError),
    #[error("{0}")]
    Plan(#[from] encode::PlanError),
    #[error("{0}")]
    Render(#[from] crate::render::RenderError),
    #[error("audio: {0}")]
    Audio(String),
    #[error("renderer: {0}")]
    Renderer(String),
    #[error("job cancelled")]
    Cancelled,
}

impl JobError {
    pub fn to_report(&self) -> ErrorReport {
        let (kind, input) = match self {
            JobError::Input(e) => ("input", Some(e.clone())),
            JobError::Plan(_) => ("preset", None),
            JobError::Render(_) => ("render", None),
            JobError::Audio(_) => ("render", None),
            JobError::Renderer(_) => ("render", None),
            JobError::Cancelled => ("cancelled", None),
        };
        ErrorReport {
            kind,
            message: self.to_string(),
            input,
        }
    }
}

/// Host facts for the report.
pub fn host_info(reg: &Registry) -> HostInfo {
    HostInfo {
        deliver_version: env!("CARGO_PKG_VERSION"),
        plugins: reg
            .plugins
            .iter()
            .map(|l| {
                format!(
                    "{} {} ({})",
                    l.plugin.name(),
                    l.plugin.version(),
                    l.file.display()
                )
            })
            .collect(),
    }
}

/// A report for a job that failed before rendering.
pub fn error_report(
    job_id: &str,
    manifest: &Path,
    reg: &Registry,
    err: &JobError,
    started: &str,
) -> JobReport {
    JobReport {
        schema: report::SCHEMA,
        job_id: job_id.to_owned(),
        manifest: manifest.to_owned(),
        name: manifest
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        verdict: Verdict::Fail,
        started: started.to_owned(),
        finished: report::now(),
        seconds: 0.0,
        host: host_info(reg),
        render: None,
        deliverables: Vec::new(),
        error: Some(err.to_report()),
        warnings: Vec::new(),
    }
}

fn measure_programme(
    m: &Manifest,
    reg: &Registry,
    cancel: &AtomicBool,
) -> Result<Option<Analysis>, JobError> {
    let mut mixer = AudioMixer::new(m, reg);
    if !mixer.has_audio() {
        return Ok(None);
    }
    let c = &m.canvas;
    let mut meter =
        Meter::new(c.channels, c.sample_rate).map_err(|e| JobError::Audio(e.to_string()))?;
    let total = total_samples(c);
    let block = c.sample_rate as u64;
    let mut buf = Vec::new();
    let mut pos = 0;
    while pos < total {
        if cancel.load(Ordering::Relaxed) {
            return Err(JobError::Cancelled);
        }
        let n = block.min(total - pos);
        buf.resize((n * c.channels as u64) as usize, 0.0);
        mixer.render(pos, &mut buf).map_err(JobError::Audio)?;
        meter
            .add(&buf)
            .map_err(|e| JobError::Audio(e.to_string()))?;
        pos += n;
    }
    Ok(Some(meter.analysis()))
}

/// Most passes [`refine_gain`] makes over the mix.
const MAX_GAIN_PASSES: usize = 4;
/// When the simulated delivery is this close to the target, stop refining.
const GAIN_CONVERGED_LU: f64 = 0.05;

/// Renders the mix through what the deliverable will do to it (gain, the
/// limiter in limiter mode, and for a lossy codec the encoder and a decoder)
/// and measures the result: integrated loudness and true peak.
#[allow(clippy::type_complexity)]
fn simulate_delivery(
    m: &Manifest,
    reg: &Registry,
    plan: &encode::Plan,
    n: &crate::normalize::Normalization,
    cancel: &AtomicBool,
) -> Result<
    (
        Measurement,
        Option<crate::limiter::LimiterStats>,
        Option<(
            Vec<deliver_plugin_api::host::PacketBuf>,
            deliver_plugin_api::plugin::StreamInfo,
        )>,
    ),
    JobError,
> {
    let c = &m.canvas;
    let audio = |e: String| JobError::Audio(format!("deliverable `{}`: {e}", plan.name));
    let mut mixer = AudioMixer::new(m, reg);
    let mut limiter = n.limiter_ceiling_dbtp.map(|ceiling| {
        crate::limiter::Limiter::new(
            c.channels,
            c.sample_rate,
            ceiling,
            encode::LIMITER_LOOKAHEAD_MS,
            encode::LIMITER_RELEASE_MS,
        )
    });
    let mut codec = encode::AudioRoundTrip::open(plan).map_err(audio)?;
    let mut meter = Meter::new(c.channels, c.sample_rate).map_err(|e| audio(e.to_string()))?;
    let gain = crate::normalize::gain_factor(n.gain_db);
    let total = total_samples(c);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    let mut feed = |samples: &[f32], meter: &mut Meter| -> Result<(), JobError> {
        match codec.as_mut() {
            Some(rt) => rt
                .push(Some(samples), &mut |d| {
                    meter.add(d).map_err(|e| e.to_string())
                })
                .map_err(audio),
            None => meter.add(samples).map_err(|e| audio(e.to_string())),
        }
    };
    let mut pos = 0;
    while pos < total {
        if cancel.load(Ordering::Relaxed) {
            return Err(JobError::Cancelled);
        }
        // A quarter second at a time: cancel is looked at between chunks.
        let len = (c.sample_rate as u64 / 4).min(total - pos);
        buf.resize((len * c.channels as u64) as usize, 0.0);
        mixer.render(pos, &mut buf).map_err(JobError::Audio)?;
        buf.iter_mut().for_each(|v| *v *= gain);
        match limiter.as_mut() {
            Some(l) => {
                out.clear();
                l.process(&buf, &mut out);
                feed(&out, &mut meter)?;
            }
            None => feed(&buf, &mut meter)?,
        }
        pos += len;
    }
    if let Some(l) = limiter.as_mut() {
        out.clear();
        l.flush(&mut out);
        feed(&out, &mut meter)?;
    }
    if let Some(rt) = codec.as_mut() {
        rt.push(None, &mut |d| meter.add(d).map_err(|e| e.to_string()))
            .map_err(audio)?;
    }
    let packets = codec.map(|rt| (rt.packets, rt.params));
    Ok((meter.finish(), limiter.map(|l| l.stats()), packets))
}

/// Corrects the gain until the deliverable's audio, as delivered, is on
/// target. Two things move loudness after the gain: the limiter (it takes
/// energy out of the peaks) and a lossy codec (its low-pass takes energy out
/// of the top octave, 0.3 LU for full-band noise through AAC at 192 kb/s).
/// The loop runs on the audio alone, beside the video encode (which starts
/// at once; the deliverable holds its audio until the gain is known). In
/// linear mode the gain never rises past what the true-peak ceiling allows.
pub fn refine_gain(
    m: &Manifest,
    reg: &Registry,
    plan: &encode::Plan,
    cancel: &AtomicBool,
) -> Result<encode::Refined, JobError> {
    let Some(mut n) = plan.normalization.clone() else {
        return Ok(encode::Refined {
            normalization: None,
            audio: None,
        });
    };
    let lossy = plan
        .preset
        .audio
        .as_ref()
        .is_some_and(|a| !a.codec.starts_with("pcm_"));
    if n.refused.is_some() || (n.mode == "linear" && !lossy) {
        return Ok(encode::Refined {
            normalization: Some(n),
            audio: None,
        });
    }
    // The last pass's packets, valid while the gain stays what they were made with.
    let mut audio = None;
    for pass in 1..=MAX_GAIN_PASSES {
        let (d, limiter, packets) = simulate_delivery(m, reg, plan, &n, cancel)?;
        n.limiter = limiter;
        audio = packets;
        let Some(i) = d.integrated_lufs else {
            break;
        };
        n.gain_passes = pass;
        n.predicted_lufs = Some(i);
        let miss = n.target_lufs - i;
        if miss.abs() < GAIN_CONVERGED_LU {
            break;
        }
        if n.mode == "linear" {
            let headroom = d
                .true_peak_dbtp
                .map_or(f64::INFINITY, |tp| n.ceiling_dbtp - tp);
            if miss > headroom {
                break;
            }
        }
        n.gain_db += miss;
        audio = None;
    }
    Ok(encode::Refined {
        normalization: Some(n),
        audio,
    })
}

fn plan_all(
    m: &Manifest,
    reg: &Registry,
    presets: &PresetLibrary,
    out_dir: &Path,
    programme: Option<&Analysis>,
    isolation: crate::isolate::Isolation,
) -> Result<Vec<Plan>, JobError> {
    let mut plans = Vec::new();
    for d in &m.deliverables {
        let preset = presets.resolve_request(d, &m.path)?;
        let mut plan = encode::plan(m, reg, &d.name, preset, out_dir, programme)?;
        plan.video.isolation = plan.video.isolation.max(isolation);
        if let Some(a) = &mut plan.audio {
            a.isolation = a.isolation.max(isolation);
        }
        encode::confirm_hardware(&mut plan, m, reg);
        plans.push(plan);
    }
    Ok(plans)
}

/// The segment plan of a deliverable. Segments are whole GOPs where the
/// preset fixes the GOP length (`gop` or `g` in its video options), and a
/// segment made for another plan (preset, size, format, plugin) is never
/// reused.
fn segments_of(seg: &Segmenting, plan: &Plan, m: &Manifest, out_dir: &Path) -> Option<Segments> {
    let v = &plan.preset.video;
    let gop = ["gop", "g"]
        .iter()
        .find_map(|k| v.options.get(*k).and_then(toml::Value::as_integer))
        .and_then(|g| u64::try_from(g).ok());
    let key = format!(
        "{}|{:?}|{}|{:?}|{}x{}|{}|{:?}|{} {} {}",
        plan.preset.id,
        v,
        plan.preset.container,
        plan.preset.container_options,
        plan.width,
        plan.height,
        plan.pix_fmt,
        plan.color,
        plan.video.plugin.name(),
        plan.video.plugin.version(),
        // `prefer` may pick hardware on one run and software on the next.
        plan.video.capability.implementation
    );
    let rate = m.canvas.frame_rate;
    Segments::new(
        seg,
        &plan.name,
        out_dir,
        rate.num as f64 / rate.den as f64,
        m.canvas.frames,
        gop,
        &key,
    )
}

/// The picture formats the deliverables need, each once, and for each plan
/// the index of its format. Formats are checked here, so that a tag the
/// conversion cannot honour fails the job before anything is encoded.
fn output_formats(plans: &[Plan]) -> Result<(Vec<OutputFormat>, Vec<usize>), JobError> {
    let mut formats: Vec<OutputFormat> = Vec::new();
    let mut index = Vec::with_capacity(plans.len());
    for p in plans {
        let f = OutputFormat {
            width: p.width,
            height: p.height,
            pix_fmt: p.pix_fmt,
            primaries: p.color.primaries,
            transfer: p.color.transfer,
            matrix: p.color.matrix,
            range: p.color.range,
            // Ordered dither at every depth: no banding on gradients, and
            // values already on a code (flat fields, bars) stay on it.
            dither: true,
        };
        convert::check(&f).map_err(|message| encode::PlanError {
            name: p.name.clone(),
            preset: p.preset.id.clone(),
            file: p.preset.file.display().to_string(),
            message,
        })?;
        index.push(match formats.iter().position(|g| *g == f) {
            Some(i) => i,
            None => {
                formats.push(f);
                formats.len() - 1
            }
        });
    }
    Ok((formats, index))
}

/// Frame `n` as every format needs it: the converted pictures, and the ΔE
/// references (the rendered canvas at each format's ΔE grid, encoded by
/// the format's primaries and transfer; see `encode::Chunk`).
#[allow(clippy::type_complexity)]
fn render_frame(
    frame: timeline::AheadFrame,
    renderer: &mut dyn Renderer,
    canvas_primaries: Primaries,
    formats: &[OutputFormat],
) -> Result<(Vec<Arc<Yuv>>, Vec<Arc<Vec<[f32; 3]>>>), JobError> {
    let (n, made) = frame;
    let (plan, sources) = made?;
    let (pictures, canvas): (Vec<Yuv>, Arc<LinearImage>) = renderer
        .render_with_canvas(&plan, &sources, formats)
        .map_err(|e| JobError::Renderer(format!("{}: frame {n}: {e}", renderer.name())))?;
    let references = formats
        .iter()
        .map(|f| {
            let step = crate::deltae::Grid::new(f.width as usize, f.height as usize).step;
            Arc::new(convert::reference_rgb(&canvas, canvas_primaries, f, step))
        })
        .collect();
    Ok((pictures.into_iter().map(Arc::new).collect(), references))
}

/// Runs a validated manifest: plans every deliverable, renders once, encodes
/// and validates each, renames the valid outputs from `*.partial` to their
/// final names, and returns the report (not yet written).
pub fn run(m: &Manifest, reg: &Registry, presets: &PresetLibrary, opts: &JobOptions) -> JobReport {
    let started_at = report::now();
    let started = Instant::now();
    let span = tracing::info_span!("job", id = %opts.job_id, manifest = %m.path.display());
    let _enter = span.enter();
    let result = run_inner(m, reg, presets, opts);
    // The segment spool is only for resuming this job: whatever the
    // outcome, the job is over.
    let spool = opts.out_dir.join(".segments");
    if spool.exists() {
        if let Err(e) = std::fs::remove_dir_all(&spool) {
            tracing::warn!("cannot remove {}: {e}", spool.display());
        }
    }
    let (render, deliverables, error) = match result {
        Ok((r, d)) => (Some(r), d, None),
        Err(e) => {
            tracing::error!("{e}");
            (None, Vec::new(), Some(e.to_report()))
        }
    };
    let verdict = if error.is_some() || deliverables.is_empty() {
        Verdict::Fail
    } else {
        deliverables
            .iter()
            .fold(Verdict::Pass, |v, d| v.worst(d.verdict))
    };
    JobReport {
        schema: report::SCHEMA,
        job_id: opts.job_id.clone(),
        manifest: m.path.clone(),
        name: m.name.clone(),
        verdict,
        started: started_at,
        finished: report::now(),
        seconds: started.elapsed().as_secs_f64(),
        host: host_info(reg),
        render,
        deliverables,
        error,
        warnings: m.warnings.clone(),
    }
}

fn run_inner(
    m: &Manifest,
    reg: &Registry,
    presets: &PresetLibrary,
    opts: &JobOptions,
) -> Result<(RenderReport, Vec<DeliverableReport>), JobError> {
    // Every source is opened (and every LUT, still and font loaded) before
    // anything is measured or encoded: a bad file fails the job here.
    let mut timeline = Timeline::new(m, reg, &lut::load)?;
    let (canvas_primaries, _) = timeline::canvas_colour(&m.canvas.colour_space);
    let programme = measure_programme(m, reg, &opts.cancel)?;
    if let Some(p) = &programme {
        tracing::info!(
            integrated = ?p.summary.integrated_lufs,
            true_peak = ?p.summary.true_peak_dbtp,
            "programme loudness measured"
        );
    }
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| {
        JobError::Audio(format!(
            "cannot create output directory {}: {e}",
            opts.out_dir.display()
        ))
    })?;
    let plans = plan_all(
        m,
        reg,
        presets,
        &opts.out_dir,
        programme.as_ref(),
        opts.isolation,
    )?;
    let (formats, format_of) = output_formats(&plans)?;
    let mut renderer =
        open_renderer(opts.renderer, canvas_primaries).map_err(JobError::Renderer)?;
    tracing::info!(renderer = %renderer.name(), "rendering {} frames", m.canvas.frames);
    timeline.grade_sources(renderer.wants_graded_sources());
    let c = &m.canvas;
    let total = c.frames;
    let render_start = Instant::now();
    // Each deliverable counts its own encoded frames; progress is the slowest.
    let counters: Vec<AtomicU64> = plans.iter().map(|_| AtomicU64::new(0)).collect();
    let report_progress = |counters: &[AtomicU64]| {
        if let Some(cb) = &opts.progress {
            let done = counters
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .min()
                .unwrap_or(0);
            let secs = render_start.elapsed().as_secs_f64();
            let fps = if secs > 0.0 { done as f64 / secs } else { 0.0 };
            cb(&Progress {
                frames_done: done,
                total,
                fps,
                eta_s: (fps > 0.0).then(|| (total - done) as f64 / fps),
            });
        }
    };
    let mut mixer = AudioMixer::new(m, reg);
    let mut cancelled = false;
    let mut render_err = None;
    let reports = std::thread::scope(|scope| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for (i, plan) in plans.iter().enumerate() {
            let (tx, rx) = bounded::<Chunk>(QUEUE_DEPTH);
            senders.push(Some(tx));
            // The final gain, from a pass over the audio alone.
            let (gain_tx, gain_rx) = bounded(1);
            std::thread::Builder::new()
                .name(format!("gain-{}", plan.name))
                .spawn_scoped(scope, move || {
                    let _ = gain_tx
                        .send(refine_gain(m, reg, plan, &opts.cancel).map_err(|e| e.to_string()));
                })
                .expect("spawning a gain thread");
            let segments = opts
                .segments
                .as_ref()
                .and_then(|seg| segments_of(seg, plan, m, &opts.out_dir));
            let counters = &counters;
            let report_progress = &report_progress;
            let span =
                tracing::info_span!("deliverable", name = %plan.name, preset = %plan.preset.id);
            let h = std::thread::Builder::new()
                .name(format!("encode-{}", plan.name))
                .spawn_scoped(scope, move || {
                    let _e = span.enter();
                    let tick = move |n: u64| {
                        counters[i].store(n, Ordering::Relaxed);
                        if i == 0 {
                            report_progress(counters);
                        }
                    };
                    encode::run(plan, m, rx, gain_rx, &tick, &opts.cancel, segments)
                })
                .expect("spawning an encode thread");
            handles.push(h);
        }
        // The timeline makes frame n + 1 (decodes, linearizes) on its own
        // thread while frame n is drawn here.
        let frames = timeline::frames_ahead(scope, &mut timeline, 0..total);
        for frame in frames {
            let n = frame.0;
            if opts.cancel.load(Ordering::Relaxed) {
                cancelled = true;
                break;
            }
            let frame = render_frame(frame, renderer.as_mut(), canvas_primaries, &formats);
            let (pictures, references) = match frame {
                Ok(f) => f,
                Err(e) => {
                    render_err = Some(e);
                    break;
                }
            };
            let (a, b) = (sample_of_frame(c, n), sample_of_frame(c, n + 1));
            let mut audio = vec![0f32; ((b - a) * c.channels as u64) as usize];
            if let Err(e) = mixer.render(a, &mut audio) {
                render_err = Some(JobError::Audio(e));
                break;
            }
            let audio = Arc::new(audio);
            for (tx, &f) in senders.iter_mut().zip(&format_of) {
                // A deliverable whose encoder failed has dropped its receiver;
                // the others go on, and its report carries the error.
                if let Some(t) = tx {
                    if t.send(Chunk {
                        index: n,
                        picture: pictures[f].clone(),
                        reference: references[f].clone(),
                        audio: audio.clone(),
                    })
                    .is_err()
                    {
                        *tx = None;
                    }
                }
            }
            if senders.iter().all(Option::is_none) {
                break;
            }
        }
        drop(senders);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .expect("encode threads report errors, they do not panic")
            })
            .collect::<Vec<_>>()
    });
    if cancelled || opts.cancel.load(Ordering::Relaxed) {
        for p in &plans {
            let _ = std::fs::remove_file(deliver_watch::partial_path(&p.output));
        }
        return Err(JobError::Cancelled);
    }
    if let Some(e) = render_err {
        return Err(e);
    }
    let render = RenderReport {
        renderer: renderer.name(),
        notes: timeline.notes(),
        width: c.width,
        height: c.height,
        frame_rate: c.frame_rate.to_string(),
        frames: total,
        seconds: render_start.elapsed().as_secs_f64(),
    };
    let mut reports = reports;
    for (r, p) in reports.iter_mut().zip(&plans) {
        // An encode that failed (no checks were made: a write error, a full
        // disk, an encoder error) leaves a truncated file that no one can
        // use: it goes, and frees its space. A file that was made and then
        // failed its checks stays, kept apart as `.partial`.
        if r.error.is_some() && r.checks.is_empty() {
            let partial = deliver_watch::partial_path(&p.output);
            if partial.exists() {
                match std::fs::remove_file(&partial) {
                    Ok(()) => {
                        if let Some(e) = r.error.as_mut() {
                            e.push_str(" (the incomplete output was removed)");
                        }
                        r.file = None;
                    }
                    Err(e) => tracing::warn!("cannot remove {}: {e}", partial.display()),
                }
            }
        }
        if r.verdict.publishable() {
            match deliver_watch::commit_partial(&deliver_watch::partial_path(&p.output)) {
                Ok(f) => r.file = Some(f),
                Err(e) => {
                    r.verdict = Verdict::Fail;
                    r.error = Some(e.to_string());
                }
            }
        }
        tracing::info!(
            deliverable = %r.name,
            verdict = ?r.verdict,
            file = ?r.file,
            error = ?r.error,
            "deliverable finished"
        );
        // The report lives beside its files and moves with them (to done/
        // or failed/): it names them relative to its own folder.
        r.file = r
            .file
            .as_ref()
            .and_then(|f| f.file_name())
            .map(PathBuf::from);
    }
    Ok((render, reports))
}
