//! `deliver plugins check <library>`: holds one plugin library to the
//! contract of the plugin ABI, step by step, the way the host will use it.
//!
//! It loads the library as the host does (same checks, same refusal
//! messages), lists what it declares, and for every encoder it declares:
//! encodes a few small frames (video: a moving pattern in each declared
//! pixel format; audio: a tone in the common layouts), drains it (EOF must
//! come; dts must not decrease; pts must not precede dts), muxes the packets
//! into every container the plugin offers and reads the files back, decodes
//! the packets with the plugin's own decoder (else with the FFmpeg plugin
//! beside it), and tries the error paths a host can hit: unknown options,
//! undeclared pixel formats, frames after the drain, null and empty option
//! strings. Every step is PASS, FAIL or SKIP with a reason.
//!
//! The plugin runs in this process. Panics are caught at the boundary by the
//! plugin's own guard (`export_plugin!`) and reported as FAIL; a crash in
//! native code (a segfault, an abort) ends the run. Each step also runs under
//! `catch_unwind` here, which catches the runner's own panics, not crashes.

use crate::encode::wants_global_header;
use crate::isolate::{Isolated, Transport};
use crate::plugins;
use deliver_plugin_api::abi::{self, cap, media, pix, status, OwnedStr, Rational, Str};
use deliver_plugin_api::host::{CallError, CapabilityInfo, Frame, PacketBuf, PluginRef};
use deliver_plugin_api::plugin::{EncoderSettings, StreamInfo, VideoView};
use serde::Serialize;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What the header says about isolation, in text and JSON.
pub const IN_PROCESS_NOTE: &str = "each encoder is first run in a child `deliver plugin-host` (a crash probe): one that kills its child (segfault, abort) is a FAIL and its other steps are skipped; the rest run inside this process, where a panic is caught at the ABI boundary and reported as FAIL";

/// The FFmpeg plugin's file name: the decoder of last resort, looked for
/// beside the library under test.
const FFMPEG_PLUGIN: &str = "libdeliver_plugin_ffmpeg.so";

/// An option key no plugin has: it must be refused, by name.
const UNKNOWN_KEY: &str = "deliver_conformance_no_such_option";

/// Audio layouts tried on every audio encoder, the host's default mix first.
/// Capability tables (ABI 1.1) declare no rates or channel counts, so a
/// layout refused with a clean error is a SKIP; refusing them all is a FAIL.
const AUDIO_LAYOUTS: &[(u32, u32)] = &[(48_000, 2), (48_000, 1), (44_100, 2), (48_000, 6)];

/// The frame rate of every video encode; audio is sent one video frame's
/// worth at a time, as the host's renderer makes it, so that both streams
/// of a muxed file last as long (1920 samples at 48 kHz: not a multiple of
/// common codec frame sizes, 1024 or 960, so encoders must re-block).
const FPS: i32 = 25;

/// Sizes tried, in order, for a format the runner's own size cannot carry
/// (DNxHR needs at least 256×120; DNxHD's classes are 720p and 1080p).
const FALLBACK_SIZES: &[(u32, u32)] = &[(256, 144), (1280, 720)];

fn audio_chunk(rate: u32) -> usize {
    (rate / FPS as u32) as usize
}

/// A video encoder declares the pixel formats it takes; anything else is
/// fed audio.
fn is_video_encoder(c: &CapabilityInfo) -> bool {
    c.media & media::VIDEO != 0 && !c.pix_fmts.is_empty()
}

/// Receives beyond this many without NEED_MORE or EOF mean a loop that
/// never ends.
const MAX_RECEIVES: usize = 100_000;

/// The probe's verdict on an error from an isolated encoder: how the child
/// died, or `None` for an error the plugin returned and the child survived.
fn enc_death(enc: Option<&Isolated>, e: CallError) -> Option<String> {
    match enc {
        Some(enc) if enc.is_dead() => Some(e.message),
        Some(_) => None,
        // Not opened: a refusal the child answered is the plugin's error;
        // a child that never answered is a death.
        None if e.message.contains("(out of process, pid") => Some(e.message),
        None => None,
    }
}

/// How much work each encode does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Frames per encode (video), or as many frames' worth of audio.
    pub frames: u32,
    pub width: u32,
    pub height: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            frames: 5,
            width: 64,
            height: 64,
        }
    }
}

/// A step's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One checked step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: String,
    pub outcome: Outcome,
    /// Why: what was seen, or the plugin's own message.
    pub detail: String,
}

/// Who the plugin says it is.
#[derive(Debug, Clone, Serialize)]
pub struct PluginSummary {
    pub name: String,
    pub version: String,
    pub abi: String,
    pub description: String,
}

/// One declared capability.
#[derive(Debug, Clone, Serialize)]
pub struct CapabilitySummary {
    pub kind: &'static str,
    pub media: &'static str,
    pub name: String,
    pub implementation: String,
    pub pix_fmts: Vec<String>,
    pub profiles: Vec<String>,
    pub hardware: bool,
    pub rank: i32,
}

/// Everything a check found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub library: PathBuf,
    pub host_abi: String,
    pub isolation: &'static str,
    pub plugin: Option<PluginSummary>,
    pub capabilities: Vec<CapabilitySummary>,
    pub steps: Vec<Step>,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub seconds: f64,
}

impl Report {
    /// No step failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

fn media_word(m: u32) -> &'static str {
    match m {
        media::VIDEO => "video",
        media::AUDIO => "audio",
        media::ANY => "video+audio",
        _ => "unknown",
    }
}

/// Runs the check and prints it: text as it goes (so that a crash leaves
/// the steps before it on screen), or one JSON document at the end.
/// Returns whether every step passed or was skipped.
///
/// # Errors
/// Only if the JSON cannot be written.
pub fn run(library: &Path, opts: &Options, json: bool) -> Result<bool, serde_json::Error> {
    use std::io::Write as _;
    if !json {
        println!("deliver plugins check {}", library.display());
        println!(
            "host plugin ABI {}.{}; {} frame(s) per encode at {}x{}",
            abi::ABI_MAJOR,
            abi::ABI_MINOR,
            opts.frames,
            opts.width,
            opts.height
        );
        println!("note: {IN_PROCESS_NOTE}\n");
        let _ = std::io::stdout().flush();
    }
    let report = check(library, opts, &mut |s| {
        if !json {
            // Plugins' messages may span lines (a TOML parser's caret
            // diagram): one step, one line.
            let detail: Vec<&str> = s
                .detail
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .collect();
            println!("{}  {}: {}", s.outcome.word(), s.step, detail.join(" | "));
            let _ = std::io::stdout().flush();
        }
    });
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "\n{} passed, {} failed, {} skipped in {:.1} s: {}",
            report.passed,
            report.failed,
            report.skipped,
            report.seconds,
            if report.ok() {
                "conforms"
            } else {
                "does NOT conform"
            }
        );
    }
    Ok(report.ok())
}

/// Checks `library`, calling `on_step` after each step.
pub fn check(library: &Path, opts: &Options, on_step: &mut dyn FnMut(&Step)) -> Report {
    let start = Instant::now();
    let dir = std::env::temp_dir().join(format!(
        "deliver-check-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let mut r = Runner {
        opts: opts.clone(),
        library: library.to_owned(),
        dir,
        steps: Vec::new(),
        on_step,
        fallback: None,
        files: 0,
        kept: Vec::new(),
    };
    let (plugin, capabilities) = r.run_all();
    let _ = std::fs::remove_dir_all(&r.dir);
    let count = |o| r.steps.iter().filter(|s| s.outcome == o).count();
    Report {
        library: library.to_owned(),
        host_abi: format!("{}.{}", abi::ABI_MAJOR, abi::ABI_MINOR),
        isolation: IN_PROCESS_NOTE,
        plugin,
        capabilities,
        passed: count(Outcome::Pass),
        failed: count(Outcome::Fail),
        skipped: count(Outcome::Skip),
        steps: r.steps,
        seconds: start.elapsed().as_secs_f64(),
    }
}

// ---------------------------------------------------------------------------
// Test media.

/// A picture in one of the ABI's formats, planes packed (stride = row).
#[derive(Clone)]
struct Picture {
    fmt: u32,
    width: u32,
    height: u32,
    planes: Vec<(Vec<u8>, usize)>,
}

/// `(rows, bytes per row)` of plane `i`; chroma rounds up, as the host's
/// converters and FFmpeg do for odd sizes.
fn plane_shape(l: pix::Layout, i: usize, w: u32, h: u32) -> (usize, usize) {
    let chroma = (i == 1 || i == 2) && l.planes >= 3;
    let (sw, sh) = if chroma {
        (l.chroma_shift_x, l.chroma_shift_y)
    } else {
        (0, 0)
    };
    (
        h.div_ceil(1 << sh) as usize,
        w.div_ceil(1 << sw) as usize * l.bytes_per_sample,
    )
}

impl Picture {
    /// Frame `n` of a moving pattern: smooth ramps that shift every frame,
    /// so that a lossy codec keeps it recognisable and a frame mix-up shows.
    fn pattern(fmt: u32, width: u32, height: u32, n: u32) -> Option<Picture> {
        let l = pix::layout(fmt)?;
        let max = (1u32 << l.bit_depth) - 1;
        let scale = |v8: u32| v8 * max / 255;
        let planes = (0..l.planes)
            .map(|i| {
                let (rows, row) = plane_shape(l, i, width, height);
                let mut data = Vec::with_capacity(rows * row);
                for y in 0..rows as u32 {
                    for x in 0..(row / l.bytes_per_sample) as u32 {
                        let v8 = match (fmt, i) {
                            (pix::RGBA, _) => {
                                let px = [x * 4 + n * 6, y * 4, 128 + n * 4, 255];
                                data.extend(px.iter().map(|c| (c % 256) as u8));
                                continue;
                            }
                            (_, 0) => 32 + (x * 2 + y + n * 6) % 192,
                            (_, 1) => 96 + (x + n * 2) % 64,
                            (_, 2) => 96 + (y + n) % 64,
                            _ => 255,
                        };
                        let v = scale(v8);
                        if l.bytes_per_sample == 2 {
                            data.extend_from_slice(&(v as u16).to_le_bytes());
                        } else {
                            data.push(v as u8);
                        }
                    }
                }
                (data, row)
            })
            .collect();
        Some(Picture {
            fmt,
            width,
            height,
            planes,
        })
    }

    fn view(&self, pts: i64, time_base: Rational) -> VideoView<'_> {
        let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
        for (i, (d, s)) in self.planes.iter().enumerate() {
            planes[i] = (d, *s);
        }
        VideoView {
            width: self.width,
            height: self.height,
            pix_fmt: self.fmt,
            planes,
            n_planes: self.planes.len(),
            pts,
            time_base,
            color: abi::ColorTags::BT709_LIMITED,
            key: pts == 0,
        }
    }
}

/// Interleaved 1 kHz tone at -20 dBFS, `n` samples per channel from sample
/// `from`.
fn tone(rate: u32, channels: u32, from: usize, n: usize) -> Vec<f32> {
    (from..from + n)
        .flat_map(|i| {
            let v = 0.1 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / rate as f64).sin();
            std::iter::repeat_n(v as f32, channels as usize)
        })
        .collect()
}

/// Reads plane `i` of a decoded frame row by row, refusing one too short
/// for its rows (the host would read past its end).
fn plane_rows<'a>(v: &VideoView<'a>, l: pix::Layout, i: usize) -> Result<Vec<&'a [u8]>, String> {
    let (rows, row) = plane_shape(l, i, v.width, v.height);
    let (data, stride) = v.planes[i];
    if stride < row || data.len() < stride * rows.saturating_sub(1) + row {
        return Err(format!(
            "plane {i} has stride {stride} and {} bytes, but {rows} rows of {row} bytes need more",
            data.len()
        ));
    }
    Ok((0..rows)
        .map(|r| &data[r * stride..r * stride + row])
        .collect())
}

/// PSNR of plane 0 (luma, or the packed RGBA plane), in dB; infinite when
/// equal.
fn psnr(a: &[&[u8]], b: &[u8], row: usize, l: pix::Layout) -> f64 {
    let mut se = 0f64;
    let mut n = 0usize;
    for (r, ra) in a.iter().enumerate() {
        let rb = &b[r * row..(r + 1) * row];
        if l.bytes_per_sample == 2 {
            for (x, y) in ra.chunks_exact(2).zip(rb.chunks_exact(2)) {
                let d = u16::from_le_bytes([x[0], x[1]]) as f64
                    - u16::from_le_bytes([y[0], y[1]]) as f64;
                se += d * d;
                n += 1;
            }
        } else {
            for (x, y) in ra.iter().zip(rb) {
                let d = *x as f64 - *y as f64;
                se += d * d;
                n += 1;
            }
        }
    }
    if se == 0.0 || n == 0 {
        return f64::INFINITY;
    }
    let max = ((1u32 << l.bit_depth) - 1) as f64;
    10.0 * (max * max / (se / n as f64)).log10()
}

/// A packet's decode time (its presentation time if it has no dts), in
/// seconds.
fn seconds(p: &PacketBuf, params: &StreamInfo) -> f64 {
    let t = if p.dts != abi::NO_PTS { p.dts } else { p.pts };
    let tb = if p.time_base.num > 0 && p.time_base.den > 0 {
        p.time_base
    } else {
        params.time_base
    };
    if t == abi::NO_PTS || tb.den == 0 {
        return 0.0;
    }
    t as f64 * tb.num as f64 / tb.den as f64
}

/// Packet stream rules every encoder must keep.
fn packet_problems(packets: &[PacketBuf], params: &StreamInfo) -> Vec<String> {
    let mut out = Vec::new();
    if packets.is_empty() {
        out.push("no packet at all".to_owned());
        return out;
    }
    let positive = |r: Rational| r.num > 0 && r.den > 0;
    let mut last_dts: Option<i64> = None;
    for (i, p) in packets.iter().enumerate() {
        if p.data.is_empty() {
            // FFmpeg's muxers refuse them, and a stream decoder reads an
            // empty packet as "drain".
            out.push(format!("packet {i} is empty"));
        }
        if !positive(p.time_base) && !positive(params.time_base) {
            out.push(format!(
                "packet {i} has time base {}/{} and the stream params none either",
                p.time_base.num, p.time_base.den
            ));
        }
        if p.dts != abi::NO_PTS {
            if let Some(l) = last_dts.filter(|l| p.dts < *l) {
                out.push(format!(
                    "packet {i}: dts {} after dts {l} (decreasing)",
                    p.dts
                ));
            }
            last_dts = Some(p.dts);
        }
        if p.pts != abi::NO_PTS && p.dts != abi::NO_PTS && p.pts < p.dts {
            out.push(format!(
                "packet {i}: pts {} before its dts {}",
                p.pts, p.dts
            ));
        }
        if out.len() >= 5 {
            out.push("…".to_owned());
            break;
        }
    }
    if params.media == media::VIDEO && !packets[0].key {
        out.push("the first video packet is not flagged as a key frame".to_owned());
    }
    out
}

// ---------------------------------------------------------------------------
// The runner.

/// Why a receive loop stopped early.
struct Stop {
    message: String,
    /// The plugin panicked: the handle must now be poisoned.
    panicked: bool,
}

impl From<CallError> for Stop {
    fn from(e: CallError) -> Stop {
        Stop {
            panicked: e.status == status::PANICKED,
            message: e.to_string(),
        }
    }
}

/// What one encode made, for muxing and decoding.
#[derive(Clone)]
struct Encoded {
    label: String,
    /// Encoded with codec headers out of band.
    global_header: bool,
    params: StreamInfo,
    packets: Vec<PacketBuf>,
    /// The pictures sent (video).
    pictures: Vec<Picture>,
    /// Samples per channel sent (audio).
    samples: usize,
}

struct Runner<'a> {
    opts: Options,
    library: PathBuf,
    dir: PathBuf,
    steps: Vec<Step>,
    on_step: &'a mut dyn FnMut(&Step),
    /// The FFmpeg plugin beside the library, loaded when first needed.
    fallback: Option<Option<PluginRef>>,
    files: usize,
    /// The first encode of each encoder and header variant: audio is muxed
    /// beside video, and the muxers' error paths need packets.
    kept: Vec<Encoded>,
}

/// Calls the entry point of an already loaded library a second time, as the
/// watch host does when it rescans its plugin folders, and returns the raw
/// descriptor for the checks the safe wrappers cannot make.
fn entry_again(library: &Path) -> Result<&'static abi::PluginDescriptor, String> {
    // SAFETY: the library is already loaded (this only takes a reference);
    // it is never unloaded.
    let lib = unsafe { libloading::Library::new(library) }.map_err(|e| format!("{e:?}"))?;
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry: libloading::Symbol<'static, abi::EntryFn> =
        unsafe { lib.get(abi::ENTRY_SYMBOL.as_bytes()) }.map_err(|e| format!("{e:?}"))?;
    // SAFETY: the documented protocol; a non-null descriptor lives for the process.
    unsafe { entry(&crate::plugins::HOST_API).as_ref() }
        .ok_or_else(|| "it returned null".to_owned())
}

/// The error message of a raw call, freed with the plugin's `free_string`.
fn take_err(vt: &abi::VTable, e: OwnedStr) -> String {
    if e.ptr.is_null() {
        return "no message".to_owned();
    }
    // SAFETY: the plugin wrote `len` bytes at `ptr`.
    let m =
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(e.ptr, e.len) }).into_owned();
    if let Some(free) = vt.free_string {
        // SAFETY: returned once to the allocator that made it.
        unsafe { free(e) };
    }
    m
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

impl Runner<'_> {
    fn record(&mut self, step: impl Into<String>, outcome: Outcome, detail: impl Into<String>) {
        let s = Step {
            step: step.into(),
            outcome,
            detail: detail.into(),
        };
        (self.on_step)(&s);
        self.steps.push(s);
    }

    fn pass(&mut self, step: impl Into<String>, detail: impl Into<String>) {
        self.record(step, Outcome::Pass, detail);
    }

    fn fail(&mut self, step: impl Into<String>, detail: impl Into<String>) {
        self.record(step, Outcome::Fail, detail);
    }

    fn skip(&mut self, step: impl Into<String>, detail: impl Into<String>) {
        self.record(step, Outcome::Skip, detail);
    }

    /// Runs a group of steps; a panic in the runner fails it and the run
    /// goes on.
    fn guarded<T>(&mut self, what: &str, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(v) => Some(v),
            Err(p) => {
                self.fail(
                    what,
                    format!(
                        "the runner panicked (a runner bug, or plugin output it could not read): {}",
                        panic_text(&*p)
                    ),
                );
                None
            }
        }
    }

    fn new_path(&mut self, label: &str, ext: &str) -> String {
        self.files += 1;
        let stem: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        self.dir
            .join(format!("{:03}-{stem}.{ext}", self.files))
            .to_string_lossy()
            .into_owned()
    }

    /// The FFmpeg plugin beside the library under test, unless that is it.
    fn fallback(&mut self) -> Option<PluginRef> {
        if let Some(f) = self.fallback {
            return f;
        }
        let candidate = self.library.parent().map(|d| d.join(FFMPEG_PLUGIN));
        let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        };
        let f = candidate
            .filter(|c| c.exists() && !same(c, &self.library))
            .and_then(|c| match plugins::load_file(&c) {
                Ok(l) => Some(l.plugin),
                Err(e) => {
                    tracing::warn!("the decoder of last resort did not load: {e}");
                    None
                }
            });
        self.fallback = Some(f);
        f
    }

    /// A stream decoder for `codec`: the plugin's own, else the FFmpeg
    /// plugin's beside it.
    fn stream_decoder(&mut self, own: PluginRef, codec: &str) -> Option<(PluginRef, String)> {
        let has = |p: &PluginRef| {
            p.capabilities()
                .iter()
                .any(|c| c.kind == cap::STREAM_DECODE && c.name == codec)
        };
        if has(&own) {
            return Some((own, "its own decoder".to_owned()));
        }
        self.fallback()
            .filter(has)
            .map(|p| (p, format!("the `{}` plugin beside it", p.name())))
    }

    /// A file decoder for `container`: the plugin's own, else the FFmpeg
    /// plugin's beside it.
    fn file_decoder(&mut self, own: PluginRef, container: &str) -> Option<(PluginRef, String)> {
        let has = |p: &PluginRef| {
            p.capabilities()
                .iter()
                .any(|c| c.kind == cap::FILE_DECODE && (c.name == "*" || c.name == container))
        };
        if has(&own) {
            return Some((own, "its own file decoder".to_owned()));
        }
        self.fallback()
            .filter(has)
            .map(|p| (p, format!("the `{}` plugin beside it", p.name())))
    }

    fn run_all(&mut self) -> (Option<PluginSummary>, Vec<CapabilitySummary>) {
        // 1. The host's own loader: the same checks and refusal messages.
        let loaded = match plugins::load_file(&self.library) {
            Ok(l) => l,
            Err(e) => {
                self.fail("load", e.to_string());
                return (None, Vec::new());
            }
        };
        let p = loaded.plugin;
        let (ma, mi) = p.abi();
        let minor = match mi.cmp(&abi::ABI_MINOR) {
            std::cmp::Ordering::Equal => String::new(),
            std::cmp::Ordering::Greater => format!(
                "; a newer minor: the host uses the {}.{} fields it knows and ignores the rest",
                abi::ABI_MAJOR,
                abi::ABI_MINOR
            ),
            std::cmp::Ordering::Less => {
                format!("; an older minor: fields added after {ma}.{mi} read as zero (unknown)")
            }
        };
        self.pass(
            "load",
            format!(
                "`{}` {}, ABI {ma}.{mi} (host {}.{}){minor}, {} capabilities",
                p.name(),
                p.version(),
                abi::ABI_MAJOR,
                abi::ABI_MINOR,
                loaded.capabilities.len()
            ),
        );
        let summary = PluginSummary {
            name: p.name(),
            version: p.version(),
            abi: format!("{ma}.{mi}"),
            description: p.description(),
        };
        let caps = loaded.capabilities.clone();
        let summaries = caps
            .iter()
            .map(|c| CapabilitySummary {
                kind: c.kind_name(),
                media: media_word(c.media),
                name: c.name.clone(),
                implementation: c.implementation.clone(),
                pix_fmts: c.pix_fmts.clone(),
                profiles: c.profiles.clone(),
                hardware: c.hardware,
                rank: c.rank,
            })
            .collect();

        // 2. The raw descriptor, for what the safe wrappers cannot see.
        let vt = self
            .guarded("entry point called again", |r| r.check_descriptor(&caps))
            .flatten();
        self.guarded("capabilities", |r| r.check_capabilities(&caps));
        let _ = std::fs::create_dir_all(&self.dir);

        // 3. Every encoder, with muxing and decoding of what it made.
        // Video first: audio is muxed beside it.
        let mut seen = std::collections::BTreeSet::new();
        let mut encoders: Vec<&CapabilityInfo> =
            caps.iter().filter(|c| c.kind == cap::ENCODE).collect();
        encoders.sort_by_key(|c| !is_video_encoder(c));
        for c in encoders {
            if !seen.insert((c.name.clone(), c.implementation.clone())) {
                continue;
            }
            let what = format!("encoder {} ({})", c.name, c.implementation);
            self.guarded(&what, |r| r.check_encoder(p, c, &caps, vt));
        }

        // 4. Decoders there is nothing to feed.
        for c in caps.iter().filter(|c| c.kind == cap::STREAM_DECODE) {
            if !caps
                .iter()
                .any(|e| e.kind == cap::ENCODE && e.name == c.name)
            {
                self.skip(
                    format!("decode {} ({})", c.name, c.implementation),
                    format!(
                        "this plugin has no `{}` encoder to make packets; decoding not exercised",
                        c.name
                    ),
                );
            }
        }

        // 5. Error paths of containers and file decoders.
        for c in caps.iter().filter(|c| c.kind == cap::MUX) {
            let what = format!("muxer {}", c.name);
            self.guarded(&what, |r| r.check_muxer_errors(p, c, vt));
        }
        if !caps.iter().any(|c| c.kind == cap::MUX) {
            self.skip(
                "mux",
                "the plugin offers no container: muxing not exercised",
            );
        }
        for c in caps.iter().filter(|c| c.kind == cap::FILE_DECODE) {
            let what = format!("file decoder {}", c.name);
            self.guarded(&what, |r| r.check_file_decoder_errors(p, c));
        }
        (Some(summary), summaries)
    }

    /// Calls the entry point again and checks the raw descriptor and vtable.
    fn check_descriptor(&mut self, caps: &[CapabilityInfo]) -> Option<&'static abi::VTable> {
        let step = "entry point called again";
        let desc = match entry_again(&self.library) {
            Ok(d) => d,
            Err(e) => {
                self.fail(
                    step,
                    format!(
                        "{e}; the watch host calls it again whenever it rescans its plugin folders"
                    ),
                );
                return None;
            }
        };
        if desc.abi_major != abi::ABI_MAJOR {
            self.fail(
                step,
                format!(
                    "the second call claims ABI {}.{}, the first did not",
                    desc.abi_major, desc.abi_minor
                ),
            );
            return None;
        }
        self.pass(
            step,
            "a descriptor again (the watch host calls the entry point whenever it rescans its plugin folders)",
        );
        // SAFETY: a checked, non-null descriptor that lives for the process.
        let Some(vt) = (unsafe { desc.vtable.as_ref() }) else {
            self.fail("vtable", "the second descriptor has a null vtable");
            return None;
        };
        let mut problems = Vec::new();
        let want = std::mem::size_of::<abi::VTable>() as u32;
        if vt.struct_size < want {
            problems.push(format!(
                "vtable struct_size is {} bytes, the host reads {want}",
                vt.struct_size
            ));
        }
        if desc.capabilities.is_null() && desc.n_capabilities > 0 {
            problems.push(format!(
                "{} capabilities declared behind a null pointer",
                desc.n_capabilities
            ));
        }
        let has = |k| caps.iter().any(|c| c.kind == k);
        let has_media = |m| {
            caps.iter()
                .any(|c| c.kind == cap::ENCODE && c.media & m != 0)
        };
        let mut need = |name: &str, present: bool, why: bool| {
            if why && !present {
                problems.push(format!("`{name}` is missing"));
            }
        };
        let any = !caps.is_empty();
        need("free_string", vt.free_string.is_some(), any);
        let enc = has(cap::ENCODE);
        need("encoder_open", vt.encoder_open.is_some(), enc);
        need(
            "encoder_send_video",
            vt.encoder_send_video.is_some(),
            has_media(media::VIDEO),
        );
        need(
            "encoder_send_audio",
            vt.encoder_send_audio.is_some(),
            has_media(media::AUDIO),
        );
        need("encoder_receive", vt.encoder_receive.is_some(), enc);
        need("packet_release", vt.packet_release.is_some(), enc);
        need("encoder_close", vt.encoder_close.is_some(), enc);
        let sd = has(cap::STREAM_DECODE);
        need("stream_decoder_open", vt.stream_decoder_open.is_some(), sd);
        need("stream_decoder_send", vt.stream_decoder_send.is_some(), sd);
        need(
            "stream_decoder_receive",
            vt.stream_decoder_receive.is_some(),
            sd,
        );
        need(
            "stream_decoder_close",
            vt.stream_decoder_close.is_some(),
            sd,
        );
        let mx = has(cap::MUX);
        need("muxer_open", vt.muxer_open.is_some(), mx);
        need("muxer_add_stream", vt.muxer_add_stream.is_some(), mx);
        need("muxer_write_header", vt.muxer_write_header.is_some(), mx);
        need("muxer_write_packet", vt.muxer_write_packet.is_some(), mx);
        need("muxer_finish", vt.muxer_finish.is_some(), mx);
        need("muxer_close", vt.muxer_close.is_some(), mx);
        let fd = has(cap::FILE_DECODE);
        need("decoder_open", vt.decoder_open.is_some(), fd);
        // The renderer seeks to a clip's in-point.
        need("decoder_seek", vt.decoder_seek.is_some(), fd);
        need("decoder_next", vt.decoder_next.is_some(), fd);
        need("decoder_close", vt.decoder_close.is_some(), fd);
        if problems.is_empty() {
            self.pass(
                "vtable",
                format!(
                    "{} bytes; every entry point its capabilities need is there",
                    vt.struct_size
                ),
            );
            Some(vt)
        } else {
            self.fail("vtable", problems.join("; "));
            None
        }
    }

    fn check_capabilities(&mut self, caps: &[CapabilityInfo]) {
        let mut problems = Vec::new();
        for c in caps {
            let who = format!("{} `{}` ({})", c.kind_name(), c.name, c.implementation);
            if !matches!(
                c.kind,
                cap::FILE_DECODE | cap::STREAM_DECODE | cap::ENCODE | cap::MUX
            ) {
                problems.push(format!("{who}: unknown kind {}", c.kind));
            }
            if c.media == 0 || c.media & !media::ANY != 0 {
                problems.push(format!(
                    "{who}: media mask {} is not video, audio or both",
                    c.media
                ));
            }
            if c.name.is_empty() {
                problems.push(format!("{who}: no name"));
            }
            if c.kind == cap::ENCODE && c.media == media::VIDEO && c.pix_fmts.is_empty() {
                problems.push(format!(
                    "{who}: a video encoder must list the pixel formats it takes"
                ));
            }
            for f in &c.pix_fmts {
                if pix::from_name(f).is_none() {
                    problems.push(format!(
                        "{who}: pixel format `{f}` is not one the ABI carries"
                    ));
                }
            }
        }
        let count = |k| caps.iter().filter(|c| c.kind == k).count();
        if problems.is_empty() {
            let list: Vec<String> = caps
                .iter()
                .map(|c| format!("{} {} ({})", c.kind_name(), c.name, c.implementation))
                .collect();
            self.pass(
                "capabilities",
                format!(
                    "{} encode, {} decode, {} mux, {} file-decode: {}",
                    count(cap::ENCODE),
                    count(cap::STREAM_DECODE),
                    count(cap::MUX),
                    count(cap::FILE_DECODE),
                    list.join(", ")
                ),
            );
        } else {
            self.fail("capabilities", problems.join("; "));
        }
    }

    fn video_settings(&self, c: &CapabilityInfo, fmt: u32, global_header: bool) -> EncoderSettings {
        EncoderSettings {
            media: media::VIDEO,
            codec: c.name.clone(),
            implementation: c.implementation.clone(),
            width: self.opts.width,
            height: self.opts.height,
            pix_fmt: fmt,
            frame_rate: Rational::new(FPS, 1),
            time_base: Rational::new(1, FPS),
            color: abi::ColorTags::BT709_LIMITED,
            global_header,
            // One thread: the runner wants behaviour, not speed, and the
            // machine may be shared.
            threads: 1,
            ..EncoderSettings::default()
        }
    }

    fn audio_settings(
        c: &CapabilityInfo,
        rate: u32,
        channels: u32,
        global_header: bool,
    ) -> EncoderSettings {
        EncoderSettings {
            media: media::AUDIO,
            codec: c.name.clone(),
            implementation: c.implementation.clone(),
            sample_rate: rate,
            channels,
            time_base: Rational::new(1, rate as i32),
            global_header,
            threads: 1,
            ..EncoderSettings::default()
        }
    }

    /// Everything for one encoder capability. Keeps its first encode of
    /// each header variant in `self.kept`.
    ///
    /// Each format (video) or the first accepted layout (audio) is encoded
    /// as the host would encode it for each container it muxes into: with
    /// codec headers in band, and again out of band for the containers the
    /// host asks a global header for. Audio is muxed beside the first video
    /// encode, as deliverables carry it (some containers, MXF, take no
    /// audio-only file).
    fn check_encoder(
        &mut self,
        p: PluginRef,
        c: &CapabilityInfo,
        caps: &[CapabilityInfo],
        vt: Option<&'static abi::VTable>,
    ) {
        let video = is_video_encoder(c);
        if let Some(death) = self.crash_probe(p, c, video) {
            self.fail(
                format!("encode {} ({})", c.name, c.implementation),
                format!(
                    "crash probe: {death}; its in-process steps are skipped, so this run survives to report the rest (run it with isolation = \"process\" until it is fixed)"
                ),
            );
            return;
        }
        let containers: Vec<CapabilityInfo> = caps
            .iter()
            .filter(|m| m.kind == cap::MUX)
            .cloned()
            .collect();
        let variants: Vec<bool> = if containers.is_empty() {
            vec![false]
        } else {
            [false, true]
                .into_iter()
                .filter(|gh| {
                    containers
                        .iter()
                        .any(|m| wants_global_header(&m.name) == *gh)
                })
                .collect()
        };
        let mut kept = [false; 2];
        let mut keep = |r: &mut Self, e: &Encoded| {
            if !kept[e.global_header as usize] {
                kept[e.global_header as usize] = true;
                r.kept.push(e.clone());
            }
        };
        if video {
            for (i, name) in c.pix_fmts.iter().enumerate() {
                let Some(fmt) = pix::from_name(name) else {
                    continue; // reported by the capabilities step
                };
                for (vi, &gh) in variants.iter().enumerate() {
                    let first = i == 0 && vi == 0;
                    let Some(e) = self.encode_video(p, c, fmt, gh, first) else {
                        continue;
                    };
                    self.decode_back(p, &e, first);
                    for m in containers
                        .iter()
                        .filter(|m| wants_global_header(&m.name) == gh)
                    {
                        self.mux(p, m, &e, None);
                    }
                    keep(self, &e);
                }
            }
        } else {
            let mut accepted = 0;
            for &(rate, channels) in AUDIO_LAYOUTS {
                // Containers care about the codec, not the channel count:
                // only the first accepted layout is muxed.
                let first_layout = accepted == 0;
                let vs = if first_layout {
                    &variants[..]
                } else {
                    &variants[..1]
                };
                for (vi, &gh) in vs.iter().enumerate() {
                    let first = first_layout && vi == 0;
                    let Some(got) = self.encode_audio(p, c, rate, channels, gh, first) else {
                        break; // this layout is refused
                    };
                    if vi == 0 {
                        accepted += 1;
                    }
                    let Some(e) = got else { continue };
                    self.decode_back(p, &e, first);
                    if first_layout {
                        let companion = self
                            .kept
                            .iter()
                            .find(|k| k.params.media == media::VIDEO && k.global_header == gh)
                            .cloned();
                        for m in containers
                            .iter()
                            .filter(|m| wants_global_header(&m.name) == gh)
                        {
                            self.mux(p, m, &e, companion.as_ref());
                        }
                    }
                    keep(self, &e);
                }
            }
            if accepted == 0 {
                self.fail(
                    format!("encode {} ({})", c.name, c.implementation),
                    format!(
                        "none of the layouts tried was accepted ({}); capability tables do not declare rates or channels, so the host cannot know which work",
                        AUDIO_LAYOUTS
                            .iter()
                            .map(|(r, ch)| format!("{r} Hz × {ch}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        for &gh in &variants {
            self.check_reopen(p, c, video, gh);
        }
        self.encoder_errors(p, c, video, vt);
    }

    /// The host encodes long deliverables in segments, each by a fresh
    /// encoder, and stitches them under the first one's stream params: two
    /// encoders opened with the same settings must describe the same stream
    /// (`segment_encoder` in `encode.rs` refuses the job otherwise).
    fn check_reopen(&mut self, p: PluginRef, c: &CapabilityInfo, video: bool, gh: bool) {
        let settings = if video {
            let Some(s) = self.plain_video_settings(p, c, gh) else {
                return;
            };
            s
        } else {
            let (rate, ch) = AUDIO_LAYOUTS[0];
            Self::audio_settings(c, rate, ch, gh)
        };
        let step = format!(
            "reopen {} ({}){}",
            c.name,
            c.implementation,
            if gh { ", global header" } else { "" }
        );
        let (a, b) = match (p.open_encoder(&settings), p.open_encoder(&settings)) {
            (Ok((_, a)), Ok((_, b))) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                self.skip(step, format!("the settings do not open: {}", e.message));
                return;
            }
        };
        if a == b {
            self.pass(
                step,
                format!(
                    "the same settings give the same stream params ({} bytes of extradata), so segments can be stitched",
                    a.extradata.len()
                ),
            );
        } else {
            let mut diff = Vec::new();
            if a.extradata != b.extradata {
                diff.push(format!(
                    "extradata ({} and {} bytes)",
                    a.extradata.len(),
                    b.extradata.len()
                ));
            }
            if (a.time_base, a.frame_size, a.initial_padding, a.bit_rate)
                != (b.time_base, b.frame_size, b.initial_padding, b.bit_rate)
            {
                diff.push("time base, frame size, priming or bit rate".into());
            }
            if diff.is_empty() {
                diff.push("other fields".into());
            }
            self.fail(
                step,
                format!(
                    "two encoders with the same settings describe different streams ({}); the host stitches segments under the first one's params and refuses this",
                    diff.join(", ")
                ),
            );
        }
    }

    /// Receives until NEED_MORE (before the drain) or EOF (after it).
    fn collect(
        enc: &mut deliver_plugin_api::host::Encoder,
        out: &mut Vec<PacketBuf>,
        drained: bool,
    ) -> Result<(), Stop> {
        for _ in 0..MAX_RECEIVES {
            match enc.receive()? {
                Ok(p) => out.push(p),
                Err(status::NEED_MORE) if !drained => return Ok(()),
                Err(status::NEED_MORE) => {
                    return Err(Stop {
                        message: "after the drain request, receive answered NEED_MORE instead of packets or EOF; the host asks until it sees EOF, so a job would never end".into(),
                        panicked: false,
                    })
                }
                Err(status::EOF) if drained => return Ok(()),
                Err(status::EOF) => {
                    return Err(Stop {
                        message: "receive answered EOF before the drain request".into(),
                        panicked: false,
                    })
                }
                Err(st) => {
                    return Err(Stop {
                        message: format!("receive returned status {st}, which the ABI does not define"),
                        panicked: false,
                    })
                }
            }
        }
        Err(Stop {
            message: format!("{MAX_RECEIVES} receives without NEED_MORE or EOF"),
            panicked: false,
        })
    }

    /// After a panic, the same handle must refuse calls.
    fn check_poisoned(&mut self, label: &str, enc: &mut deliver_plugin_api::host::Encoder) {
        let step = format!("after the panic {label}");
        match enc.receive() {
            Err(e) if e.status == status::POISONED => {
                self.pass(step, format!("the handle refuses calls: {e}"))
            }
            Err(e) => self.fail(
                step,
                format!("expected POISONED ({}), got: {e}", status::POISONED),
            ),
            Ok(_) => self.fail(
                step,
                "the handle answered a call after panicking; it must be poisoned",
            ),
        }
    }

    /// A call that must fail cleanly: ERROR (or UNSUPPORTED) with a message.
    fn expect_error<T>(&mut self, step: String, r: Result<T, CallError>, ok_means: &str) {
        match r {
            Err(e) if e.status == status::ERROR || e.status == status::UNSUPPORTED => {
                self.pass(step, format!("refused: {}", e.message))
            }
            Err(e) => self.fail(step, e.to_string()),
            Ok(_) => self.fail(step, ok_means.to_owned()),
        }
    }

    fn stream_problems(params: &StreamInfo, c: &CapabilityInfo) -> Vec<String> {
        let mut out = Vec::new();
        if params.codec != c.name {
            out.push(format!(
                "stream params name codec `{}` but the capability is `{}` (muxers and decoders are chosen by that name)",
                params.codec, c.name
            ));
        }
        if params.time_base.num <= 0 || params.time_base.den <= 0 {
            out.push(format!(
                "stream time base {}/{} is not positive",
                params.time_base.num, params.time_base.den
            ));
        }
        out
    }

    /// Settings under which a video encoder opens for one declared format.
    /// Some formats exist only at some sizes or under a named profile
    /// (DNxHD's classes are fixed frame sizes and bit rates, DNxHR starts at
    /// 256×120): when the runner's size without a profile is refused, each
    /// declared profile is tried, then at `FALLBACK_SIZES`; the first that
    /// opens is used, and `how` says which. Refused by all: `Err` holds the
    /// first refusal (what a preset without a profile would meet) and what
    /// else was tried.
    #[allow(clippy::type_complexity)]
    fn open_video_quietly(
        &self,
        p: PluginRef,
        c: &CapabilityInfo,
        fmt: u32,
        global_header: bool,
    ) -> Result<
        (
            EncoderSettings,
            deliver_plugin_api::host::Encoder,
            StreamInfo,
            String,
        ),
        String,
    > {
        let base = self.video_settings(c, fmt, global_header);
        let mut sizes = vec![(base.width, base.height)];
        sizes.extend(
            FALLBACK_SIZES
                .iter()
                .copied()
                .filter(|&(w, h)| w > base.width || h > base.height),
        );
        let profiles: Vec<Option<&String>> = std::iter::once(None)
            .chain(c.profiles.iter().map(Some))
            .collect();
        let mut first_error = None;
        for &(w, h) in &sizes {
            for profile in &profiles {
                let mut settings = base.clone();
                settings.width = w;
                settings.height = h;
                if let Some(profile) = profile {
                    settings.options =
                        format!("profile = {}", toml::Value::String(profile.to_string()));
                }
                match p.open_encoder(&settings) {
                    Ok((enc, params)) => {
                        let how = match (profile, (w, h) == (base.width, base.height)) {
                            (None, true) => String::new(),
                            (profile, _) => format!(
                                "; opened only {}at {w}x{h} (refused {}x{} without a profile: {})",
                                profile.map_or(String::new(), |p| format!("with profile `{p}` ")),
                                base.width,
                                base.height,
                                first_error.as_deref().unwrap_or("?")
                            ),
                        };
                        return Ok((settings, enc, params, how));
                    }
                    Err(e) => {
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
        let tried = if profiles.len() > 1 || sizes.len() > 1 {
            format!(
                " (and with each declared profile at {})",
                sizes
                    .iter()
                    .map(|(w, h)| format!("{w}x{h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            String::new()
        };
        Err(format!("{}{tried}", first_error.unwrap_or_default()))
    }

    /// [`Self::open_video_quietly`], recording a refusal as a failure of
    /// `encode {label}`.
    #[allow(clippy::type_complexity)]
    fn open_video(
        &mut self,
        p: PluginRef,
        c: &CapabilityInfo,
        fmt: u32,
        global_header: bool,
        label: &str,
    ) -> Option<(
        EncoderSettings,
        deliver_plugin_api::host::Encoder,
        StreamInfo,
        String,
    )> {
        match self.open_video_quietly(p, c, fmt, global_header) {
            Ok(x) => Some(x),
            Err(e) => {
                self.fail(
                    format!("encode {label}"),
                    format!("a declared format was refused: {e}"),
                );
                None
            }
        }
    }

    /// The settings the reopen and error-path checks start from: the
    /// first declared format, as [`Self::open_video_quietly`] found it to
    /// open (else as configured, and the checks skip).
    /// Runs `c` for the usual number of frames and a drain in a child
    /// `deliver plugin-host`, and answers how the child died if it did.
    /// Errors the plugin returns are left to the in-process steps, which
    /// name them; only a death (a signal, an exit, a broken protocol) is
    /// this probe's business, because in this process it would end the run.
    fn crash_probe(&mut self, p: PluginRef, c: &CapabilityInfo, video: bool) -> Option<String> {
        let settings = if video {
            self.plain_video_settings(p, c, false)?
        } else {
            let (rate, ch) = AUDIO_LAYOUTS[0];
            Self::audio_settings(c, rate, ch, false)
        };
        let (mut enc, _) = match Isolated::open(
            &p.name(),
            &self.library,
            &c.implementation,
            &settings,
            Transport::default(),
        ) {
            Ok(x) => x,
            Err(e) => return enc_death(None, e),
        };
        let fmt = settings.pix_fmt;
        let (w, h, tb) = (settings.width, settings.height, settings.time_base);
        let drain = |enc: &mut Isolated| -> Result<(), CallError> {
            for _ in 0..MAX_RECEIVES {
                if enc.receive()?.is_err() {
                    return Ok(()); // NEED_MORE, EOF, or a status: not a death
                }
            }
            Ok(())
        };
        let mut sent = 0;
        for n in 0..=self.opts.frames {
            let last = n == self.opts.frames;
            let r = if video {
                let pic = (!last).then(|| Picture::pattern(fmt, w, h, n)).flatten();
                enc.send_video(pic.as_ref().map(|p| p.view(n as i64, tb)).as_ref())
            } else {
                let (rate, ch) = (settings.sample_rate, settings.channels);
                let s = tone(rate, ch, sent, audio_chunk(rate));
                sent += audio_chunk(rate);
                enc.send_audio((!last).then_some((&s[..], rate, ch, sent as i64)))
            }
            .and_then(|()| drain(&mut enc));
            if let Err(e) = r {
                return enc_death(Some(&enc), e);
            }
        }
        None
    }

    fn plain_video_settings(
        &self,
        p: PluginRef,
        c: &CapabilityInfo,
        gh: bool,
    ) -> Option<EncoderSettings> {
        let fmt = c.pix_fmts.iter().find_map(|f| pix::from_name(f))?;
        Some(
            self.open_video_quietly(p, c, fmt, gh)
                .map(|(s, ..)| s)
                .unwrap_or_else(|_| self.video_settings(c, fmt, gh)),
        )
    }

    /// The flush step's verdict on a drained encoder's packets.
    fn check_drained(&mut self, step: String, packets: &[PacketBuf], params: &StreamInfo) {
        let problems = packet_problems(packets, params);
        if problems.is_empty() {
            self.pass(
                step,
                format!(
                    "EOF after the drain; {} packets, dts never decreases, pts never precedes dts",
                    packets.len()
                ),
            );
        } else {
            self.fail(step, problems.join("; "));
        }
    }

    fn encode_video(
        &mut self,
        p: PluginRef,
        c: &CapabilityInfo,
        fmt: u32,
        global_header: bool,
        first: bool,
    ) -> Option<Encoded> {
        let label = format!(
            "{} ({}) {}{}",
            c.name,
            c.implementation,
            pix::name(fmt).unwrap_or("?"),
            if global_header { ", global header" } else { "" }
        );
        let step = format!("encode {label}");
        let (settings, mut enc, params, how) = self.open_video(p, c, fmt, global_header, &label)?;
        let (w, h) = (settings.width, settings.height);
        let mut problems = Self::stream_problems(&params, c);
        if params.media != media::VIDEO || (params.width, params.height) != (w, h) {
            problems.push(format!(
                "stream params say media {} {}x{}, {w}x{h} video was configured",
                params.media, params.width, params.height
            ));
        }
        if !problems.is_empty() {
            self.fail(step, problems.join("; "));
            return None;
        }
        let tb = settings.time_base;
        let mut packets = Vec::new();
        let mut pictures = Vec::new();
        for n in 0..self.opts.frames {
            let pic = Picture::pattern(fmt, w, h, n).expect("declared formats have layouts");
            let sent = enc.send_video(Some(&pic.view(n as i64, tb)));
            pictures.push(pic);
            let r = sent
                .map_err(Stop::from)
                .and_then(|()| Self::collect(&mut enc, &mut packets, false));
            if let Err(s) = r {
                self.fail(
                    step,
                    format!("frame {} of {}: {}", n + 1, self.opts.frames, s.message),
                );
                if s.panicked {
                    self.check_poisoned(&label, &mut enc);
                }
                return None;
            }
        }
        self.pass(
            step,
            format!(
                "{} frames sent, {} packets before the drain; stream `{}`{} {}x{} {} tb {}/{}{how}",
                self.opts.frames,
                packets.len(),
                params.codec,
                if params.profile.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", params.profile)
                },
                params.width,
                params.height,
                pix::name(params.pix_fmt).unwrap_or("?"),
                params.time_base.num,
                params.time_base.den
            ),
        );
        let step = format!("flush {label}");
        if let Err(s) = enc
            .send_video(None)
            .map_err(Stop::from)
            .and_then(|()| Self::collect(&mut enc, &mut packets, true))
        {
            self.fail(step, s.message);
            if s.panicked {
                self.check_poisoned(&label, &mut enc);
            }
            return None;
        }
        self.check_drained(step, &packets, &params);
        if first {
            let pic = Picture::pattern(fmt, w, h, 0).expect("layout");
            let r = enc.send_video(Some(&pic.view(self.opts.frames as i64, tb)));
            self.expect_error(
                format!("send after flush {label}"),
                r,
                "a frame sent after the drain request was accepted",
            );
        }
        Some(Encoded {
            label,
            global_header,
            params,
            packets,
            pictures,
            samples: 0,
        })
    }

    /// `None`: the layout was refused (SKIP or FAIL recorded); `Some(None)`:
    /// accepted but failed later; `Some(Some(_))`: encoded.
    fn encode_audio(
        &mut self,
        p: PluginRef,
        c: &CapabilityInfo,
        rate: u32,
        channels: u32,
        global_header: bool,
        first: bool,
    ) -> Option<Option<Encoded>> {
        let label = format!(
            "{} ({}) {rate} Hz × {channels}{}",
            c.name,
            c.implementation,
            if global_header { ", global header" } else { "" }
        );
        let step = format!("encode {label}");
        let settings = Self::audio_settings(c, rate, channels, global_header);
        let (mut enc, params) = match p.open_encoder(&settings) {
            Ok(x) => x,
            Err(e) if e.status == status::ERROR => {
                self.skip(step, format!("layout refused cleanly: {}", e.message));
                return None;
            }
            Err(e) => {
                self.fail(step, e.to_string());
                return None;
            }
        };
        let mut problems = Self::stream_problems(&params, c);
        if params.media != media::AUDIO || params.sample_rate != rate || params.channels != channels
        {
            problems.push(format!(
                "stream params say media {} {} Hz × {}, {rate} Hz × {channels} audio was configured",
                params.media, params.sample_rate, params.channels
            ));
        }
        if !problems.is_empty() {
            self.fail(step, problems.join("; "));
            return Some(None);
        }
        let mut packets = Vec::new();
        let mut sent = 0;
        for n in 0..self.opts.frames {
            let s = tone(rate, channels, sent, audio_chunk(rate));
            let r = enc
                .send_audio(Some((&s, rate, channels, sent as i64)))
                .map_err(Stop::from)
                .and_then(|()| Self::collect(&mut enc, &mut packets, false));
            sent += audio_chunk(rate);
            if let Err(s) = r {
                self.fail(
                    step,
                    format!("chunk {} of {}: {}", n + 1, self.opts.frames, s.message),
                );
                if s.panicked {
                    self.check_poisoned(&label, &mut enc);
                }
                return Some(None);
            }
        }
        self.pass(
            step,
            format!(
                "{sent} samples per channel sent in chunks of {}, {} packets before the drain; stream `{}` frame size {}, priming {}",
                audio_chunk(rate),
                packets.len(),
                params.codec,
                params.frame_size,
                params.initial_padding
            ),
        );
        let step = format!("flush {label}");
        if let Err(s) = enc
            .send_audio(None)
            .map_err(Stop::from)
            .and_then(|()| Self::collect(&mut enc, &mut packets, true))
        {
            self.fail(step, s.message);
            if s.panicked {
                self.check_poisoned(&label, &mut enc);
            }
            return Some(None);
        }
        self.check_drained(step, &packets, &params);
        if first {
            let s = tone(rate, channels, sent, audio_chunk(rate));
            let r = enc.send_audio(Some((&s, rate, channels, sent as i64)));
            self.expect_error(
                format!("send after flush {label}"),
                r,
                "samples sent after the drain request were accepted",
            );
        }
        Some(Some(Encoded {
            label,
            global_header,
            params,
            packets,
            pictures: Vec::new(),
            samples: sent,
        }))
    }

    /// Decodes an encode's packets and compares with what was sent.
    fn decode_back(&mut self, own: PluginRef, e: &Encoded, first: bool) {
        let step = format!("decode {}", e.label);
        let Some((dp, who)) = self.stream_decoder(own, &e.params.codec) else {
            self.skip(
                step,
                format!(
                    "no `{}` decoder in this plugin, nor a {FFMPEG_PLUGIN} beside it that has one",
                    e.params.codec
                ),
            );
            return;
        };
        let video = e.params.media == media::VIDEO;
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: e.params.media,
            // Ask for the format that was encoded: every frame can then be
            // compared with the picture sent.
            video_pix_fmt: if video { e.params.pix_fmt } else { pix::NONE },
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 1,
            reserved: [0; 4],
        };
        let mut dec = match dp.open_stream_decoder(&e.params, &cfg) {
            Ok(d) => d,
            Err(err) => {
                self.fail(step, format!("with {who}: {err}"));
                return;
            }
        };
        let layout = pix::layout(e.params.pix_fmt);
        let mut frames = 0usize;
        let mut samples = 0usize;
        let mut problems: Vec<String> = Vec::new();
        let mut worst = f64::INFINITY;
        let mut exact = true;
        let mut ended = false;
        // Feeds every packet, then the drain; reads frames after each.
        for i in 0..=e.packets.len() {
            let sent = if i < e.packets.len() {
                dec.send(Some(&e.packets[i]))
            } else {
                dec.send(None)
            };
            if let Err(err) = sent {
                problems.push(format!("sending packet {i}: {err}"));
                break;
            }
            let drained = i == e.packets.len();
            let mut receives = 0;
            loop {
                receives += 1;
                if receives > MAX_RECEIVES {
                    problems.push(format!("{MAX_RECEIVES} receives without NEED_MORE or EOF"));
                    break;
                }
                match dec.receive() {
                    Err(err) => {
                        problems.push(err.to_string());
                        break;
                    }
                    Ok(Err(status::NEED_MORE)) if !drained => break,
                    Ok(Err(status::EOF)) if drained => {
                        ended = true;
                        break;
                    }
                    Ok(Err(st)) => {
                        problems.push(format!(
                            "receive answered status {st} {} the drain",
                            if drained { "after" } else { "before" }
                        ));
                        break;
                    }
                    Ok(Ok(Frame::Video(v))) => {
                        let n = frames;
                        frames += 1;
                        if !video {
                            problems.push("a video frame from an audio stream".into());
                            continue;
                        }
                        if (v.width, v.height, v.pix_fmt)
                            != (e.params.width, e.params.height, e.params.pix_fmt)
                        {
                            problems.push(format!(
                                "frame {n} is {}x{} {}, {}x{} {} was encoded and asked for",
                                v.width,
                                v.height,
                                pix::name(v.pix_fmt).unwrap_or("?"),
                                e.params.width,
                                e.params.height,
                                pix::name(e.params.pix_fmt).unwrap_or("?")
                            ));
                            continue;
                        }
                        let Some(l) = layout else { continue };
                        if v.n_planes < l.planes {
                            problems.push(format!(
                                "frame {n} has {} planes, {} expected",
                                v.n_planes, l.planes
                            ));
                            continue;
                        }
                        let mut rows = Vec::new();
                        for pi in 0..l.planes {
                            match plane_rows(&v, l, pi) {
                                Ok(r) => rows.push(r),
                                Err(m) => problems.push(format!("frame {n}: {m}")),
                            }
                        }
                        if rows.len() != l.planes {
                            continue;
                        }
                        if let Some(src) = e.pictures.get(n) {
                            worst = worst.min(psnr(&rows[0], &src.planes[0].0, src.planes[0].1, l));
                            for (pi, r) in rows.iter().enumerate() {
                                if r.concat() != src.planes[pi].0 {
                                    exact = false;
                                }
                            }
                        }
                    }
                    Ok(Ok(Frame::Audio {
                        sample_rate,
                        channels,
                        samples: s,
                        ..
                    })) => {
                        if video {
                            problems.push("an audio frame from a video stream".into());
                            continue;
                        }
                        if (sample_rate, channels) != (e.params.sample_rate, e.params.channels) {
                            problems.push(format!(
                                "audio came back at {sample_rate} Hz × {channels}, {} Hz × {} was encoded",
                                e.params.sample_rate, e.params.channels
                            ));
                        }
                        samples += s.len() / channels.max(1) as usize;
                    }
                }
                if problems.len() > 5 {
                    break;
                }
            }
            if !problems.is_empty() {
                break;
            }
        }
        if problems.is_empty() && !ended {
            problems.push("EOF never came after the drain".into());
        }
        if video && problems.is_empty() && frames != e.pictures.len() {
            problems.push(format!(
                "{frames} frames came back from {} sent",
                e.pictures.len()
            ));
        }
        // Raw video is lossless by definition.
        if video && problems.is_empty() && e.params.codec == "rawvideo" && !exact {
            problems.push("rawvideo frames came back changed".into());
        }
        // Every sample sent must come back; priming is the decoder's to drop
        // and padding may add a partial frame at the end, never remove one.
        if !video && problems.is_empty() && samples < e.samples {
            problems.push(format!(
                "{samples} samples per channel came back from {} sent",
                e.samples
            ));
        }
        if problems.is_empty() {
            let quality = if video {
                if exact {
                    "bit-exact".to_owned()
                } else {
                    format!("luma PSNR ≥ {worst:.1} dB")
                }
            } else {
                format!("{samples} samples per channel from {} sent", e.samples)
            };
            let count = if video {
                format!("{frames} frames, ")
            } else {
                String::new()
            };
            self.pass(
                step,
                format!("with {who}: {count}{quality}, EOF after the drain"),
            );
        } else {
            self.fail(step, format!("with {who}: {}", problems.join("; ")));
        }
        if let (true, true, Some(pkt)) = (first, ended, e.packets.first()) {
            let r = dec.send(Some(pkt));
            self.expect_error(
                format!("send after drain {}", e.label),
                r,
                "a packet sent after the drain was accepted",
            );
        }
    }

    /// Muxes an encode (audio beside `companion` video, if any) into one
    /// container and reads the file back.
    ///
    /// A container may refuse a stream before any packet is written (at
    /// `add_stream` or `write_header`): that is a limit of the container,
    /// and a SKIP with its reason. Failing after the header was accepted
    /// leaves a broken file, and is a FAIL.
    fn mux(&mut self, p: PluginRef, m: &CapabilityInfo, e: &Encoded, companion: Option<&Encoded>) {
        let companion = companion.filter(|_| m.media & media::VIDEO != 0);
        let step = match companion {
            Some(v) => format!("mux {} beside {} into {}", e.label, v.label, m.name),
            None => format!("mux {} into {}", e.label, m.name),
        };
        if m.media & e.params.media == 0 {
            self.skip(
                step,
                format!(
                    "the {} container is declared for {} only",
                    m.name,
                    media_word(m.media)
                ),
            );
            return;
        }
        let ext = match m.name.as_str() {
            "matroska" => "mkv",
            n => n,
        };
        let path = self.new_path(&format!("{} {}", e.label, m.name), ext);
        let mut mux = match p.open_muxer(&path, &m.name, "") {
            Ok(x) => x,
            Err(err) => {
                self.fail(step, format!("opening a declared container: {err}"));
                return;
            }
        };
        let streams: Vec<&Encoded> = companion.into_iter().chain([e]).collect();
        let mut idx = Vec::new();
        for s in &streams {
            match mux.add_stream(&s.params) {
                Ok(i) => idx.push(i),
                Err(err) if err.status == status::ERROR => {
                    self.skip(step, format!("refused at add_stream: {}", err.message));
                    return;
                }
                Err(err) => {
                    self.fail(step, err.to_string());
                    return;
                }
            }
        }
        match mux.write_header() {
            Ok(()) => {}
            Err(err) if err.status == status::ERROR => {
                self.skip(
                    step,
                    format!(
                        "refused at write_header (add_stream had accepted it, so a host learns only now): {}",
                        err.message
                    ),
                );
                return;
            }
            Err(err) => {
                self.fail(step, err.to_string());
                return;
            }
        }
        // Interleaved by decode time, as a host sends them.
        let mut order: Vec<(f64, usize, &PacketBuf)> = streams
            .iter()
            .enumerate()
            .flat_map(|(si, s)| {
                s.packets
                    .iter()
                    .map(move |pk| (seconds(pk, &s.params), si, pk))
            })
            .collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0));
        let written = order
            .iter()
            .enumerate()
            .try_for_each(|(i, (_, si, pk))| {
                mux.write_packet(idx[*si], pk)
                    .map_err(|err| format!("packet {i}: {err}"))
            })
            .and_then(|()| mux.finish().map_err(|err| format!("finish: {err}")));
        drop(mux);
        if let Err(msg) = written {
            self.fail(step, msg);
            return;
        }
        let size = std::fs::metadata(&path).map_or(0, |md| md.len());
        self.pass(step, format!("{} packets, {size} bytes", order.len()));
        self.read_back(p, m, &streams, &path);
        let _ = std::fs::remove_file(&path);
    }

    /// Reads a muxed file back: its streams, frame and sample counts, and
    /// a seek to the start.
    fn read_back(&mut self, own: PluginRef, m: &CapabilityInfo, streams: &[&Encoded], path: &str) {
        let labels: Vec<&str> = streams.iter().map(|s| s.label.as_str()).collect();
        let step = format!("read back {} from {}", labels.join(" + "), m.name);
        let Some((fp, who)) = self.file_decoder(own, &m.name) else {
            self.skip(
                step,
                format!(
                    "no file decoder for {} here, nor a {FFMPEG_PLUGIN} beside it",
                    m.name
                ),
            );
            return;
        };
        let video = streams.iter().find(|s| s.params.media == media::VIDEO);
        let audio = streams.iter().find(|s| s.params.media == media::AUDIO);
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: streams.iter().fold(0, |w, s| w | s.params.media),
            video_pix_fmt: pix::NONE,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 1,
            reserved: [0; 4],
        };
        let (mut dec, info) = match fp.open_file(path, &cfg) {
            Ok(x) => x,
            Err(err) => {
                self.fail(step, format!("with {who}: {err}"));
                return;
            }
        };
        let mut problems = Vec::new();
        if let Some(v) = video {
            if info.has_video == 0 || (info.width, info.height) != (v.params.width, v.params.height)
            {
                problems.push(format!(
                    "the file shows video {} {}x{}, {}x{} was written",
                    info.has_video, info.width, info.height, v.params.width, v.params.height
                ));
            }
        }
        if let Some(a) = audio {
            if info.has_audio == 0 || info.channels != a.params.channels {
                problems.push(format!(
                    "the file shows audio {} with {} channels, {} were written",
                    info.has_audio, info.channels, a.params.channels
                ));
            }
        }
        let (mut frames, mut samples) = (0usize, 0usize);
        for _ in 0..MAX_RECEIVES {
            match dec.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Video(_))) => frames += 1,
                Ok(Some(Frame::Audio {
                    samples: s,
                    channels,
                    ..
                })) => samples += s.len() / channels.max(1) as usize,
                Err(err) => {
                    problems.push(err.to_string());
                    break;
                }
            }
        }
        if problems.is_empty() {
            if let Some(v) = video.filter(|v| frames != v.pictures.len()) {
                problems.push(format!(
                    "{frames} frames read from {} written",
                    v.pictures.len()
                ));
            }
            // Priming is the reader's to drop (an edit list, a codec delay),
            // and containers without one keep it: more is allowed, less is
            // lost audio.
            if let Some(a) = audio.filter(|a| samples < a.samples) {
                problems.push(format!(
                    "{samples} samples per channel read from {} written",
                    a.samples
                ));
            }
        }
        // The renderer seeks to a clip's in-point before reading.
        if problems.is_empty() {
            match dec
                .seek(0)
                .and_then(|()| dec.next_frame().map(|f| f.is_some()))
            {
                Ok(true) => {}
                Ok(false) => problems.push("after seek(0) the next frame is EOF".into()),
                Err(err) => problems.push(format!("seek(0): {err}")),
            }
        }
        if problems.is_empty() {
            let mut what = Vec::new();
            if video.is_some() {
                what.push(format!("{frames} frames"));
            }
            if audio.is_some() {
                what.push(format!("{samples} samples per channel"));
            }
            self.pass(
                step,
                format!("with {who}: {}; seek(0) works", what.join(", ")),
            );
        } else {
            self.fail(step, format!("with {who}: {}", problems.join("; ")));
        }
    }

    /// Error paths of one encoder, and the option strings a host may send.
    fn encoder_errors(
        &mut self,
        p: PluginRef,
        c: &CapabilityInfo,
        video: bool,
        vt: Option<&'static abi::VTable>,
    ) {
        let who = format!("{} ({})", c.name, c.implementation);
        let base = if video {
            match self.plain_video_settings(p, c, false) {
                Some(s) => s,
                None => self.video_settings(c, pix::YUV420P, false),
            }
        } else {
            let (rate, ch) = AUDIO_LAYOUTS[0];
            Self::audio_settings(c, rate, ch, false)
        };
        // Only meaningful where the plain configuration opens.
        if p.open_encoder(&base).is_err() {
            self.skip(
                format!("error paths {who}"),
                "the plain configuration does not open, so refusals would prove nothing",
            );
            return;
        }

        let mut s = base.clone();
        // Kept: the profile the format needed to open.
        s.options = format!("{}\n{UNKNOWN_KEY} = 1", base.options);
        let step = format!("unknown option {who}");
        match p.open_encoder(&s) {
            Err(e) if e.status == status::ERROR && e.message.contains(UNKNOWN_KEY) => {
                self.pass(step, format!("refused by name: {}", e.message))
            }
            Err(e) if e.status == status::ERROR => self.fail(
                step,
                format!(
                    "refused, but the message does not name the key (the ABI asks for it): {}",
                    e.message
                ),
            ),
            Err(e) => self.fail(step, e.to_string()),
            Ok(_) => self.fail(step, format!("`{UNKNOWN_KEY} = 1` was accepted silently")),
        }
        let mut s = base.clone();
        s.options = "this is = = not TOML".into();
        let r = p.open_encoder(&s).map(|_| ());
        self.expect_error(
            format!("malformed options {who}"),
            r,
            "options that are not a TOML table were accepted",
        );

        if video {
            let declared: Vec<u32> = c
                .pix_fmts
                .iter()
                .filter_map(|f| pix::from_name(f))
                .collect();
            let other = pix::ALL
                .iter()
                .map(|(f, _)| *f)
                .find(|f| !declared.contains(f));
            for (fmt, what) in [
                (other, "an undeclared pixel format"),
                (Some(0xdead), "an unknown pixel format value"),
            ] {
                let Some(fmt) = fmt else { continue };
                let step = format!(
                    "{what} {who}: {}",
                    pix::name(fmt).map_or_else(|| fmt.to_string(), str::to_owned)
                );
                let mut s = base.clone();
                s.pix_fmt = fmt;
                match p.open_encoder(&s) {
                    Err(e) if e.status == status::ERROR => {
                        self.pass(step, format!("refused at open: {}", e.message))
                    }
                    Err(e) => self.fail(step, e.to_string()),
                    Ok((mut enc, _)) => {
                        // Opening is allowed if the first frame is refused.
                        let pic = Picture::pattern(fmt, s.width, s.height, 0);
                        let r = match &pic {
                            Some(pic) => enc.send_video(Some(&pic.view(0, s.time_base))),
                            None => {
                                let planes = [(&[0u8; 16][..], 4); 4];
                                enc.send_video(Some(&VideoView {
                                    width: 2,
                                    height: 2,
                                    pix_fmt: fmt,
                                    planes,
                                    n_planes: 4,
                                    pts: 0,
                                    time_base: s.time_base,
                                    color: s.color,
                                    key: true,
                                }))
                            }
                        };
                        self.expect_error(
                            step,
                            r,
                            "opened, and took a frame in a format it does not declare",
                        );
                    }
                }
            }
            // Wrong media and a frame of another size than configured.
            if let Ok((mut enc, _)) = p.open_encoder(&base) {
                let r = enc.send_audio(Some((&[0.0; 96], 48_000, 2, 0)));
                self.expect_error(
                    format!("audio sent to video encoder {who}"),
                    r,
                    "samples were accepted by a video encoder",
                );
            }
            if let Ok((mut enc, _)) = p.open_encoder(&base) {
                let pic = Picture::pattern(base.pix_fmt, base.width / 2, base.height / 2, 0)
                    .expect("layout");
                let r = enc.send_video(Some(&pic.view(0, base.time_base)));
                self.expect_error(
                    format!("a frame of another size {who}"),
                    r,
                    "a frame smaller than configured was accepted (it must be refused, not read past its planes)",
                );
            }
        } else {
            for (rate, ch, what) in [(0, 2, "0 Hz"), (48_000, 0, "0 channels")] {
                let r = p
                    .open_encoder(&Self::audio_settings(c, rate, ch, false))
                    .map(|_| ());
                self.expect_error(
                    format!("{what} {who}"),
                    r,
                    "an impossible layout was accepted",
                );
            }
            if let Ok((mut enc, _)) = p.open_encoder(&base) {
                let pic = Picture::pattern(pix::YUV420P, 16, 16, 0).expect("layout");
                let r = enc.send_video(Some(&pic.view(0, Rational::new(1, 25))));
                self.expect_error(
                    format!("video sent to audio encoder {who}"),
                    r,
                    "a video frame was accepted by an audio encoder",
                );
            }
        }

        // Option strings as the host may pass them: empty (a dangling
        // non-null pointer of length 0, as Rust's empty strings are), only
        // a comment, and null. All are the empty table. A format that opens
        // only with options (DNxHR's profile) cannot show that.
        if !base.options.is_empty() {
            for what in ["empty", "only a comment", "null"] {
                self.skip(
                    format!("{what} options {who}"),
                    format!(
                        "this encoder opens only with options (`{}`), so an empty table proves nothing",
                        base.options.trim()
                    ),
                );
            }
            return;
        }
        for (opts, what) in [("", "empty"), ("# no options\n", "only a comment")] {
            let mut s = base.clone();
            s.options = opts.into();
            let step = format!("{what} options {who}");
            match p.open_encoder(&s) {
                Ok(_) => self.pass(step, "accepted as the empty table"),
                Err(e) => self.fail(step, format!("an empty table was refused: {e}")),
            }
        }
        let step = format!("null options {who}");
        let Some(vt) = vt else {
            self.skip(step, "no usable raw vtable (see the vtable step)");
            return;
        };
        let Some(open) = vt.encoder_open else {
            self.skip(step, "no encoder_open");
            return;
        };
        let mut raw = base.as_raw();
        raw.options = Str::EMPTY; // null pointer, length 0
        let mut params = std::mem::MaybeUninit::<abi::StreamParams>::zeroed();
        let mut h: *mut c_void = std::ptr::null_mut();
        let mut err = OwnedStr::NULL;
        // SAFETY: every pointer is valid for the call; the strings borrow `base`.
        let st = unsafe { open(&raw, params.as_mut_ptr(), &mut h, &mut err) };
        let msg = take_err(vt, err);
        if st == status::OK {
            if let (Some(close), false) = (vt.encoder_close, h.is_null()) {
                // SAFETY: a handle this call made, closed once.
                unsafe { close(h) };
            }
            self.pass(step, "a null option string is the empty table");
        } else {
            self.fail(step, format!("status {st}: {msg}"));
        }
    }

    /// Error paths of one container.
    fn check_muxer_errors(
        &mut self,
        p: PluginRef,
        m: &CapabilityInfo,
        vt: Option<&'static abi::VTable>,
    ) {
        let encodes = self.kept.clone();
        let path = self.new_path(&format!("errors {}", m.name), "out");
        let step = format!("unknown option muxer {}", m.name);
        match p.open_muxer(&path, &m.name, &format!("{UNKNOWN_KEY} = 1")) {
            Err(e) if e.status == status::ERROR && e.message.contains(UNKNOWN_KEY) => {
                self.pass(step, format!("refused by name: {}", e.message))
            }
            Err(e) if e.status == status::ERROR => self.fail(
                step,
                format!(
                    "refused, but the message does not name the key: {}",
                    e.message
                ),
            ),
            Err(e) => self.fail(step, e.to_string()),
            Ok(_) => self.fail(step, format!("`{UNKNOWN_KEY} = 1` was accepted silently")),
        }
        let _ = std::fs::remove_file(&path);
        // A stream it takes, then a packet for a stream that does not exist.
        let step = format!("packet for a missing stream muxer {}", m.name);
        let mut done = false;
        for e in encodes.iter().filter(|e| {
            m.media & e.params.media != 0 && e.global_header == wants_global_header(&m.name)
        }) {
            let Ok(mut mux) = p.open_muxer(&path, &m.name, "") else {
                break;
            };
            let Ok(idx) = mux.add_stream(&e.params) else {
                continue;
            };
            if mux.write_header().is_err() {
                continue;
            }
            let r = mux.write_packet(idx + 7, &e.packets[0]);
            self.expect_error(
                step.clone(),
                r,
                "a packet for a stream that does not exist was accepted",
            );
            done = true;
            break;
        }
        let _ = std::fs::remove_file(&path);
        if !done {
            self.skip(step, "no encode here makes a stream this container takes");
        }
        let step = format!("null options muxer {}", m.name);
        let Some(open) = vt.and_then(|v| v.muxer_open) else {
            self.skip(step, "no usable raw vtable");
            return;
        };
        let vt = vt.expect("checked above");
        let mut h: *mut c_void = std::ptr::null_mut();
        let mut err = OwnedStr::NULL;
        // SAFETY: valid strings for the call; null options with length 0.
        let st = unsafe {
            open(
                Str::new(&path),
                Str::new(&m.name),
                Str::EMPTY,
                &mut h,
                &mut err,
            )
        };
        let msg = take_err(vt, err);
        if st == status::OK {
            if let (Some(close), false) = (vt.muxer_close, h.is_null()) {
                // SAFETY: a handle this call made, closed once.
                unsafe { close(h) };
            }
            self.pass(step, "a null option string is the empty table");
        } else {
            self.fail(step, format!("status {st}: {msg}"));
        }
        let _ = std::fs::remove_file(&path);
    }

    fn check_file_decoder_errors(&mut self, p: PluginRef, c: &CapabilityInfo) {
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::ANY,
            video_pix_fmt: pix::NONE,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 1,
            reserved: [0; 4],
        };
        let missing = self.dir.join("no-such-file.mov");
        let r = p.open_file(&missing.to_string_lossy(), &cfg).map(|_| ());
        self.expect_error(
            format!("missing file file decoder {}", c.name),
            r,
            "a file that does not exist was opened",
        );
        let junk = self.new_path("junk", "bin");
        let _ = std::fs::write(&junk, b"this is not a media file\n".repeat(40));
        let r = p.open_file(&junk, &cfg).map(|_| ());
        self.expect_error(
            format!("not a media file file decoder {}", c.name),
            r,
            "a text file was opened as media",
        );
        let _ = std::fs::remove_file(&junk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_fill_every_plane_of_every_format() {
        for &(fmt, name) in pix::ALL {
            let p = Picture::pattern(fmt, 5, 3, 1).unwrap();
            let l = pix::layout(fmt).unwrap();
            assert_eq!(p.planes.len(), l.planes, "{name}");
            for (i, (data, stride)) in p.planes.iter().enumerate() {
                let (rows, row) = plane_shape(l, i, 5, 3);
                assert_eq!((data.len(), *stride), (rows * row, row), "{name} plane {i}");
            }
            // Samples stay within the format's depth.
            if l.bytes_per_sample == 2 {
                let max = (1u16 << l.bit_depth) - 1;
                assert!(p.planes[0]
                    .0
                    .chunks_exact(2)
                    .all(|c| u16::from_le_bytes([c[0], c[1]]) <= max));
            }
        }
    }

    #[test]
    fn packet_rules() {
        let params = StreamInfo {
            media: media::VIDEO,
            time_base: Rational::new(1, 25),
            ..StreamInfo::default()
        };
        let pkt = |pts, dts, key| PacketBuf {
            data: vec![1],
            pts,
            dts,
            duration: 1,
            time_base: Rational::new(1, 25),
            key,
        };
        // B-frames: pts out of order, dts in order and never after pts.
        let good = [pkt(0, -1, true), pkt(3, 0, false), pkt(1, 1, false)];
        assert!(packet_problems(&good, &params).is_empty());
        let p = packet_problems(
            &[pkt(0, 0, true), pkt(2, 1, false), pkt(1, 0, false)],
            &params,
        );
        assert!(p.iter().any(|m| m.contains("decreasing")), "{p:?}");
        let p = packet_problems(&[pkt(0, 1, true)], &params);
        assert!(p.iter().any(|m| m.contains("before its dts")), "{p:?}");
        let p = packet_problems(&[pkt(0, 0, false)], &params);
        assert!(p.iter().any(|m| m.contains("key frame")), "{p:?}");
        assert!(!packet_problems(&[], &params).is_empty());
        // Unknown timestamps are not judged.
        assert!(packet_problems(&[pkt(abi::NO_PTS, abi::NO_PTS, true)], &params).is_empty());
    }

    #[test]
    fn psnr_is_infinite_when_equal_and_falls_with_error() {
        let l = pix::layout(pix::YUV420P).unwrap();
        let a = [&[10u8, 20][..], &[30, 40][..]];
        assert!(psnr(&a, &[10, 20, 30, 40], 2, l).is_infinite());
        let near = psnr(&a, &[11, 20, 30, 40], 2, l);
        let far = psnr(&a, &[60, 20, 30, 40], 2, l);
        assert!(near > far && far > 0.0, "{near} {far}");
    }

    #[test]
    fn a_library_that_is_not_there_fails_at_load() {
        let mut steps = Vec::new();
        let r = check(
            Path::new("/nonexistent/libdeliver_plugin_x.so"),
            &Options::default(),
            &mut |s| steps.push(s.clone()),
        );
        assert!(!r.ok());
        assert_eq!(r.steps.len(), 1);
        assert_eq!(steps[0].outcome, Outcome::Fail);
        assert!(
            steps[0].detail.contains("cannot load"),
            "{}",
            steps[0].detail
        );
    }
}
