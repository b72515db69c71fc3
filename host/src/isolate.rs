//! Out-of-process encoders: a codec plugin's encoder running in a child
//! process (`deliver plugin-host --library <file>`), so that a native codec
//! that crashes (a segfault, an abort) fails the one deliverable it was
//! encoding, not the host and every other job in it.
//!
//! The host side, [`Encoder`], offers exactly what the in-process wrapper
//! ([`deliver_plugin_api::host::Encoder`]) does — `send_video`, `send_audio`,
//! `receive` with the same statuses and the same [`CallError`]s — so the
//! pipeline does not care where the encoder runs. A plugin's own errors
//! and panics cross unchanged (status and message); a child that dies is
//! an error naming the encoder, the library, the pid, the signal and what
//! it was doing:
//!
//! ```text
//! plugin `panic-test` failed in encoder_send_video: encoder segfault-test in plugin
//! libdeliver_plugin_panic.so (out of process, pid 4242) died with signal 11 (SIGSEGV)
//! while encoding frame 5 (pts 4)
//! ```
//!
//! # Protocol
//!
//! One encoder session per child, over its stdin (requests) and a copy of
//! its stdout (replies; the child points fd 1 at stderr first, so a plugin
//! that prints cannot corrupt the stream). Every message is
//! `tag: u8, len: u64 LE, payload: len bytes`; integers are little-endian,
//! strings and byte runs are `len: u64` then the bytes. The child speaks
//! first (`READY` or `ERROR` if the library did not load), then answers
//! each request with one reply: `OPEN` → `OPENED` (stream parameters),
//! `VIDEO`/`AUDIO` (a frame, or none to drain) → `OK`, `RECEIVE` →
//! `PACKET` or `STATUS` (NEED_MORE/EOF), any of them → `ERROR` (the
//! plugin's status and message), `CLOSE` → the child closes the encoder
//! and exits.
//!
//! Frame planes travel through shared memory ([`Transport::SharedMemory`],
//! the default): a file under `/dev/shm` that the host creates, sizes to
//! the frame, maps, and names in a `SHM` request; the child maps it and
//! answers, and the host unlinks it at once, so nothing is left behind
//! whichever side dies. The host copies each frame's planes into it and
//! the `VIDEO` request carries only their strides and lengths; the mapping
//! is safe to reuse because every request waits for its reply (the ABI
//! lends a frame for the duration of the call). Over the pipe instead
//! ([`Transport::Pipe`], and the fallback where `/dev/shm` cannot be
//! used), a 1080p 10-bit 4:2:2 frame (8.3 MB) costs two kernel copies and
//! about 130 pipe wake-ups: the `isolation` test measures both.

use crate::plugins::{load_file, Choice};
use deliver_plugin_api::abi::{self, status};
use deliver_plugin_api::host::{self, CallError, PacketBuf};
use deliver_plugin_api::plugin::{EncoderSettings, StreamInfo, VideoView};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where a plugin's encoder runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// In the host's process (the default: no copies, no extra process).
    #[default]
    InProcess,
    /// In a child process of its own, one per encoder.
    Process,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::InProcess => "in-process",
            Isolation::Process => "process",
        }
    }

    /// Reads a configuration value.
    pub fn parse(s: &str) -> Option<Isolation> {
        match s {
            "in-process" => Some(Isolation::InProcess),
            "process" => Some(Isolation::Process),
            _ => None,
        }
    }

    /// What a configuration error says is accepted.
    pub const EXPECTED: &'static str =
        "\"in-process\" (default) or \"process\" (the encoder runs in a child process, so a crash fails only its job)";

    /// The stricter of two settings: a host-wide `process` wins over a
    /// preset's default.
    pub fn max(self, other: Isolation) -> Isolation {
        if self == Isolation::Process || other == Isolation::Process {
            Isolation::Process
        } else {
            Isolation::InProcess
        }
    }
}

/// An encoder, in this process or in a child one.
pub enum Encoder {
    InProcess(host::Encoder),
    /// Boxed: its pipes' buffers make it ten times the in-process handle.
    Isolated(Box<Isolated>),
}

impl Encoder {
    /// Opens the encoder `choice` names, where its isolation says.
    ///
    /// # Errors
    /// The plugin refuses the settings, or (isolated) the child cannot be
    /// started or dies.
    pub fn open(
        choice: &Choice,
        set: &EncoderSettings,
    ) -> Result<(Encoder, StreamInfo), CallError> {
        match choice.isolation {
            Isolation::InProcess => {
                let (e, info) = choice.plugin.open_encoder(set)?;
                Ok((Encoder::InProcess(e), info))
            }
            Isolation::Process => {
                let (e, info) = Isolated::open(
                    &choice.plugin.name(),
                    &choice.file,
                    &choice.capability.implementation,
                    set,
                    Transport::default(),
                )?;
                Ok((Encoder::Isolated(Box::new(e)), info))
            }
        }
    }

    /// Sends a frame, or `None` to drain.
    ///
    /// # Errors
    /// As the plugin's `encoder_send_video`, or the child died.
    pub fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> Result<(), CallError> {
        match self {
            Encoder::InProcess(e) => e.send_video(frame),
            Encoder::Isolated(e) => e.send_video(frame),
        }
    }

    /// Sends interleaved samples `(samples, rate, channels, pts)`, or `None`
    /// to drain.
    ///
    /// # Errors
    /// As the plugin's `encoder_send_audio`, or the child died.
    pub fn send_audio(
        &mut self,
        samples: Option<(&[f32], u32, u32, i64)>,
    ) -> Result<(), CallError> {
        match self {
            Encoder::InProcess(e) => e.send_audio(samples),
            Encoder::Isolated(e) => e.send_audio(samples),
        }
    }

    /// A packet, or the status (NEED_MORE / EOF).
    ///
    /// # Errors
    /// As the plugin's `encoder_receive`, or the child died.
    pub fn receive(&mut self) -> Result<Result<PacketBuf, i32>, CallError> {
        match self {
            Encoder::InProcess(e) => e.receive(),
            Encoder::Isolated(e) => e.receive(),
        }
    }

    /// The child's process id, for an isolated encoder.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Encoder::InProcess(_) => None,
            Encoder::Isolated(e) => Some(e.child.id()),
        }
    }
}

mod tag {
    // child → host
    pub const READY: u8 = 1;
    pub const OPENED: u8 = 2;
    pub const OK: u8 = 3;
    pub const PACKET: u8 = 4;
    pub const STATUS: u8 = 5;
    pub const ERROR: u8 = 6;
    // host → child
    pub const OPEN: u8 = 10;
    pub const VIDEO: u8 = 11;
    pub const AUDIO: u8 = 12;
    pub const RECEIVE: u8 = 13;
    pub const CLOSE: u8 = 14;
    pub const SHM: u8 = 15;
}

/// `VIDEO`'s first byte: no frame (drain), planes in the message, or
/// planes at the start of the shared mapping, one after the other.
mod carry {
    pub const NONE: u8 = 0;
    pub const INLINE: u8 = 1;
    pub const SHARED: u8 = 2;
}

/// How frames reach an isolated encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// Planes are copied once into memory both processes map (the default;
    /// the pipe where `/dev/shm` cannot be used).
    #[default]
    SharedMemory,
    /// Planes are written into the pipe.
    Pipe,
}

/// A shared mapping of a `/dev/shm` file, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is owned by one encoder, used from one thread at a time.
unsafe impl Send for Mapping {}

impl Mapping {
    fn map(file: &std::fs::File, len: usize, writable: bool) -> io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return Err(proto("empty shared mapping"));
        }
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a fresh shared mapping of a file we hold open, of a size
        // the file has; released in Drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `len` mapped bytes; the other process writes them only
        // while this one waits for a reply.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; mapped writable by the host.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps what `map` mapped, once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// A message body being written.
#[derive(Default)]
struct Out(Vec<u8>);

impl Out {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u64(v.len() as u64);
        self.0.extend_from_slice(v);
        self
    }
    fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    fn rational(&mut self, r: abi::Rational) -> &mut Self {
        self.i32(r.num).i32(r.den)
    }
    fn color(&mut self, c: abi::ColorTags) -> &mut Self {
        self.u32(c.primaries)
            .u32(c.transfer)
            .u32(c.matrix)
            .u32(c.range)
    }
}

/// A message body being read; every read is bounds-checked, so a short or
/// garbled message is an error, never a panic.
struct In<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> In<'a> {
    fn new(b: &'a [u8]) -> Self {
        In { b, pos: 0 }
    }
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.b.len());
        let end = end.ok_or_else(|| proto("message shorter than its fields"))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> io::Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn bytes(&mut self) -> io::Result<&'a [u8]> {
        let n = usize::try_from(self.u64()?).map_err(|_| proto("length out of range"))?;
        self.take(n)
    }
    fn string(&mut self) -> io::Result<String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| proto("string is not UTF-8"))
    }
    fn rational(&mut self) -> io::Result<abi::Rational> {
        Ok(abi::Rational::new(self.i32()?, self.i32()?))
    }
    fn color(&mut self) -> io::Result<abi::ColorTags> {
        Ok(abi::ColorTags {
            primaries: self.u32()?,
            transfer: self.u32()?,
            matrix: self.u32()?,
            range: self.u32()?,
        })
    }
}

fn proto(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("protocol error: {what}"),
    )
}

/// Writes one message whose payload is `head` followed by `tail` slices
/// (frame planes go straight from the caller's buffers to the pipe).
fn write_msg(w: &mut impl Write, tag: u8, head: &[u8], tail: &[&[u8]]) -> io::Result<()> {
    let len = head.len() + tail.iter().map(|t| t.len()).sum::<usize>();
    let mut hdr = [0u8; 9];
    hdr[0] = tag;
    hdr[1..].copy_from_slice(&(len as u64).to_le_bytes());
    w.write_all(&hdr)?;
    w.write_all(head)?;
    for t in tail {
        w.write_all(t)?;
    }
    w.flush()
}

/// Largest message accepted: a 8K 16-bit 4:4:4:4 frame is 265 MB.
const MAX_MSG: u64 = 1 << 30;

/// Reads one message into `buf`; `None` at a clean end of stream.
fn read_msg(r: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<Option<u8>> {
    let mut hdr = [0u8; 9];
    match r.read_exact(&mut hdr[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut hdr[1..])?;
    let len = u64::from_le_bytes(hdr[1..].try_into().expect("8"));
    if len > MAX_MSG {
        return Err(proto(&format!("message of {len} bytes")));
    }
    buf.clear();
    buf.resize(len as usize, 0);
    r.read_exact(buf)?;
    Ok(Some(hdr[0]))
}

fn put_settings(o: &mut Out, s: &EncoderSettings) {
    o.u32(s.media)
        .str(&s.codec)
        .str(&s.implementation)
        .u32(s.width)
        .u32(s.height)
        .u32(s.pix_fmt)
        .rational(s.frame_rate)
        .rational(s.time_base)
        .color(s.color)
        .u32(s.sample_rate)
        .u32(s.channels)
        .i64(s.bit_rate)
        .u8(s.global_header as u8)
        .u32(s.threads)
        .str(&s.options);
}

fn get_settings(i: &mut In<'_>) -> io::Result<EncoderSettings> {
    Ok(EncoderSettings {
        media: i.u32()?,
        codec: i.string()?,
        implementation: i.string()?,
        width: i.u32()?,
        height: i.u32()?,
        pix_fmt: i.u32()?,
        frame_rate: i.rational()?,
        time_base: i.rational()?,
        color: i.color()?,
        sample_rate: i.u32()?,
        channels: i.u32()?,
        bit_rate: i.i64()?,
        global_header: i.u8()? != 0,
        threads: i.u32()?,
        options: i.string()?,
    })
}

fn put_info(o: &mut Out, s: &StreamInfo) {
    o.u32(s.media)
        .str(&s.codec)
        .str(&s.profile)
        .u32(s.width)
        .u32(s.height)
        .u32(s.pix_fmt)
        .color(s.color)
        .rational(s.frame_rate)
        .u32(s.sample_rate)
        .u32(s.channels)
        .u32(s.frame_size)
        .u32(s.initial_padding)
        .i64(s.bit_rate)
        .rational(s.time_base)
        .bytes(&s.extradata);
}

fn get_info(i: &mut In<'_>) -> io::Result<StreamInfo> {
    Ok(StreamInfo {
        media: i.u32()?,
        codec: i.string()?,
        profile: i.string()?,
        width: i.u32()?,
        height: i.u32()?,
        pix_fmt: i.u32()?,
        color: i.color()?,
        frame_rate: i.rational()?,
        sample_rate: i.u32()?,
        channels: i.u32()?,
        frame_size: i.u32()?,
        initial_padding: i.u32()?,
        bit_rate: i.i64()?,
        time_base: i.rational()?,
        extradata: i.bytes()?.to_vec(),
    })
}

/// The `deliver` executable that serves `plugin-host`: `DELIVER_PLUGIN_HOST`,
/// else this executable if it is `deliver`, else a `deliver` beside it (or
/// one folder up, for test binaries in `target/<profile>/deps`).
fn plugin_host_exe() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("DELIVER_PLUGIN_HOST") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let name = format!("deliver{}", std::env::consts::EXE_SUFFIX);
    if exe.file_name().is_some_and(|n| n == name.as_str()) {
        return Ok(exe);
    }
    let dir = exe.parent().unwrap_or(Path::new("."));
    for d in [Some(dir), dir.parent()].into_iter().flatten() {
        let p = d.join(&name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(format!(
        "no `deliver` executable beside {} to run the plugin host; set DELIVER_PLUGIN_HOST",
        exe.display()
    ))
}

/// Widens a pipe so that a frame crosses in fewer wake-ups (best effort:
/// the kernel caps it at `/proc/sys/fs/pipe-max-size`).
fn widen_pipe(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on an fd we own; failure leaves the pipe as it was.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 1 << 20);
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTRAP => "SIGTRAP",
        _ => "signal",
    }
}

/// An encoder served by a child process. Closed (and the child reaped) on
/// drop.
pub struct Isolated {
    child: Child,
    tx: BufWriter<ChildStdin>,
    rx: BufReader<ChildStdout>,
    buf: Vec<u8>,
    plugin: String,
    library: PathBuf,
    implementation: String,
    /// Frames sent so far, for the message when the child dies.
    frames: u64,
    /// Once the child died or broke the protocol: the error every later
    /// call returns.
    dead: Option<CallError>,
    transport: Transport,
    /// The frame mapping shared with the child, once a frame was sent.
    shm: Option<Mapping>,
    /// Kills the child when one call takes longer than the call limit.
    watchdog: Watchdog,
}

/// How long one call into an isolated encoder may take before the child is
/// killed as hung: `DELIVER_PLUGIN_TIMEOUT_S` seconds (default 300; the
/// slowest honest call, one 2160p frame of a slow AV1 preset, takes well
/// under a minute on a small machine).
pub fn call_limit() -> Duration {
    const DEFAULT: u64 = 300;
    static LIMIT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let v = std::env::var("DELIVER_PLUGIN_TIMEOUT_S").ok();
        match v.as_deref().map(str::parse::<f64>) {
            None => Duration::from_secs(DEFAULT),
            Some(Ok(s)) if s > 0.0 && s.is_finite() => Duration::from_secs_f64(s),
            Some(_) => {
                tracing::warn!(
                    "DELIVER_PLUGIN_TIMEOUT_S={:?} is not a number of seconds above 0; using {DEFAULT}",
                    v.unwrap_or_default()
                );
                Duration::from_secs(DEFAULT)
            }
        }
    })
}

/// A thread that kills a child whose call outlives its deadline: a hung
/// codec (a deadlock, an endless loop) ends as an error naming it instead
/// of a job that never finishes and cannot be cancelled.
struct Watchdog {
    shared: std::sync::Arc<(std::sync::Mutex<Watch>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    limit: Duration,
}

#[derive(Default)]
struct Watch {
    deadline: Option<Instant>,
    fired: bool,
    stop: bool,
}

impl Watchdog {
    fn new(pid: u32, limit: Duration) -> Watchdog {
        let shared = std::sync::Arc::new((
            std::sync::Mutex::new(Watch::default()),
            std::sync::Condvar::new(),
        ));
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("watchdog-{pid}"))
            .spawn(move || {
                let (m, cv) = &*s;
                let mut w = m.lock().unwrap_or_else(|e| e.into_inner());
                while !w.stop {
                    match w.deadline {
                        Some(d) if Instant::now() >= d => {
                            // SAFETY: a plain kill(2) of our own child, which
                            // is not reaped while the watchdog runs (Drop
                            // stops this thread before waiting for it).
                            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                            w.fired = true;
                            w.deadline = None;
                        }
                        Some(d) => {
                            let wait = d.saturating_duration_since(Instant::now());
                            w = cv
                                .wait_timeout(w, wait)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                        None => w = cv.wait(w).unwrap_or_else(|e| e.into_inner()),
                    }
                }
            })
            .ok();
        Watchdog {
            shared,
            thread,
            limit,
        }
    }

    fn arm(&self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).deadline = Some(Instant::now() + self.limit);
        cv.notify_one();
    }

    fn disarm(&self) {
        let (m, _) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).deadline = None;
    }

    fn fired(&self) -> bool {
        let (m, _) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).fired
    }

    fn stop(&mut self) {
        let (m, cv) = &*self.shared;
        m.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Isolated {
    /// Whether the child died or broke the protocol: every later call
    /// fails the same way.
    pub fn is_dead(&self) -> bool {
        self.dead.is_some()
    }

    /// Starts a child for `library` and opens the encoder in it.
    ///
    /// # Errors
    /// The child cannot start, the library does not load in it, the plugin
    /// refuses the settings, or the child dies.
    pub fn open(
        plugin: &str,
        library: &Path,
        implementation: &str,
        set: &EncoderSettings,
        transport: Transport,
    ) -> Result<(Isolated, StreamInfo), CallError> {
        let fail = |message: String| CallError {
            plugin: plugin.to_owned(),
            call: "encoder_open",
            status: status::ERROR,
            message,
        };
        let exe = plugin_host_exe().map_err(fail)?;
        let mut child = Command::new(&exe)
            .arg("plugin-host")
            .arg("--library")
            .arg(library)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| fail(format!("cannot start `{} plugin-host`: {e}", exe.display())))?;
        let (stdin, stdout) = (
            child.stdin.take().expect("piped"),
            child.stdout.take().expect("piped"),
        );
        {
            use std::os::fd::AsRawFd;
            widen_pipe(stdin.as_raw_fd());
            widen_pipe(stdout.as_raw_fd());
        }
        let watchdog = Watchdog::new(child.id(), call_limit());
        let mut enc = Isolated {
            watchdog,
            child,
            tx: BufWriter::with_capacity(1 << 16, stdin),
            rx: BufReader::with_capacity(1 << 16, stdout),
            buf: Vec::new(),
            plugin: plugin.to_owned(),
            library: library.to_owned(),
            implementation: implementation.to_owned(),
            frames: 0,
            dead: None,
            transport,
            shm: None,
        };
        tracing::debug!(
            pid = enc.child.id(),
            library = %library.display(),
            "plugin host started"
        );
        let ready = enc.reply("encoder_open", "starting")?;
        if ready != tag::READY {
            return Err(enc.protocol("encoder_open", ready));
        }
        let mut o = Out::default();
        put_settings(&mut o, set);
        let t = enc.request("encoder_open", "opening", tag::OPEN, &o.0, &[])?;
        if t != tag::OPENED {
            return Err(enc.protocol("encoder_open", t));
        }
        let info = get_info(&mut In::new(&enc.buf)).map_err(|e| enc.broken("encoder_open", e))?;
        Ok((enc, info))
    }

    /// Sends a request and reads its reply's tag (the body is in `buf`);
    /// a plugin error becomes the plugin's [`CallError`], a dead child the
    /// error that says so.
    fn request(
        &mut self,
        call: &'static str,
        doing: &str,
        t: u8,
        head: &[u8],
        tail: &[&[u8]],
    ) -> Result<u8, CallError> {
        if let Some(e) = &self.dead {
            return Err(e.clone());
        }
        // A child that stopped reading blocks the write once the pipe is full.
        self.watchdog.arm();
        let w = write_msg(&mut self.tx, t, head, tail);
        self.watchdog.disarm();
        if let Err(e) = w {
            return Err(self.died(call, doing, Some(e)));
        }
        self.reply(call, doing)
    }

    fn reply(&mut self, call: &'static str, doing: &str) -> Result<u8, CallError> {
        self.watchdog.arm();
        let r = read_msg(&mut self.rx, &mut self.buf);
        self.watchdog.disarm();
        match r {
            Ok(Some(tag::ERROR)) => {
                let mut i = In::new(&self.buf);
                match (i.i32(), i.string()) {
                    (Ok(st), Ok(message)) => Err(CallError {
                        plugin: self.plugin.clone(),
                        call,
                        status: if st < 0 { st } else { status::ERROR },
                        message,
                    }),
                    (Err(e), _) | (_, Err(e)) => Err(self.broken(call, e)),
                }
            }
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(self.died(call, doing, None)),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(self.broken(call, e)),
            Err(e) => Err(self.died(call, doing, Some(e))),
        }
    }

    fn who(&self) -> String {
        let file = self
            .library
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.library.display().to_string());
        format!(
            "encoder {} in plugin {file} (out of process, pid {})",
            self.implementation,
            self.child.id()
        )
    }

    /// The child is gone (end of stream, or a broken pipe): waits for it
    /// and names how it ended.
    fn died(&mut self, call: &'static str, doing: &str, io: Option<io::Error>) -> CallError {
        let how = match wait_for_exit(&mut self.child, Duration::from_secs(5)) {
            Some(_) if self.watchdog.fired() => format!(
                "gave no answer for {} s (DELIVER_PLUGIN_TIMEOUT_S) and was killed as hung",
                self.watchdog.limit.as_secs_f64()
            ),
            Some(st) => describe_exit(st),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                format!(
                    "stopped answering ({}) and was killed",
                    io.map_or_else(|| "end of stream".to_owned(), |e| e.to_string())
                )
            }
        };
        let e = CallError {
            plugin: self.plugin.clone(),
            call,
            status: status::ERROR,
            message: format!("{} {how} while {doing}", self.who()),
        };
        tracing::error!("{}", e.message);
        self.dead = Some(e.clone());
        e
    }

    /// The child answered something this host does not understand: it is
    /// killed, and the session is over.
    fn broken(&mut self, call: &'static str, e: io::Error) -> CallError {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let e = CallError {
            plugin: self.plugin.clone(),
            call,
            status: status::ERROR,
            message: format!("{} was killed: {e}", self.who()),
        };
        self.dead = Some(e.clone());
        e
    }

    fn protocol(&mut self, call: &'static str, t: u8) -> CallError {
        self.broken(call, proto(&format!("unexpected reply {t}")))
    }

    /// Sends a frame, or `None` to drain.
    ///
    /// # Errors
    /// As the plugin's, or the child died.
    pub fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> Result<(), CallError> {
        let mut o = Out::default();
        let mut tail: [&[u8]; 4] = [&[]; 4];
        let doing = match frame {
            Some(v) => {
                let n = v.n_planes.min(4);
                let total: usize = v.planes.iter().take(n).map(|p| p.0.len()).sum();
                let shared = self.transport == Transport::SharedMemory && self.share(total)?;
                o.u8(if shared { carry::SHARED } else { carry::INLINE })
                    .u32(v.width)
                    .u32(v.height)
                    .u32(v.pix_fmt)
                    .u32(n as u32)
                    .i64(v.pts)
                    .rational(v.time_base)
                    .color(v.color)
                    .u8(v.key as u8);
                let mut at = 0;
                for (k, (data, stride)) in v.planes.iter().take(n).enumerate() {
                    o.u64(*stride as u64).u64(data.len() as u64);
                    match self.shm.as_mut().filter(|_| shared) {
                        Some(m) => m.bytes_mut()[at..at + data.len()].copy_from_slice(data),
                        None => tail[k] = data,
                    }
                    at += data.len();
                }
                self.frames += 1;
                format!("encoding frame {} (pts {})", self.frames, v.pts)
            }
            None => {
                o.u8(carry::NONE);
                format!("draining after {} frames", self.frames)
            }
        };
        let t = self.request("encoder_send_video", &doing, tag::VIDEO, &o.0, &tail)?;
        if t != tag::OK {
            return Err(self.protocol("encoder_send_video", t));
        }
        Ok(())
    }

    /// Makes sure a shared mapping of at least `len` bytes is mapped on
    /// both sides; `false` where shared memory cannot be had here (the
    /// session then sends planes in the pipe, and says so once).
    fn share(&mut self, len: usize) -> Result<bool, CallError> {
        if self.shm.as_ref().is_some_and(|m| m.len >= len) {
            return Ok(true);
        }
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = PathBuf::from(format!(
            "/dev/shm/deliver-frames-{}-{}-{}",
            std::process::id(),
            self.child.id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mapped = (|| {
            use std::os::unix::fs::OpenOptionsExt;
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            let r = f
                .set_len(len as u64)
                .and_then(|()| Mapping::map(&f, len, true));
            if r.is_err() {
                let _ = std::fs::remove_file(&path);
            }
            r
        })();
        let m = match mapped {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    "{}: no shared memory for frames ({}: {e}); sending them through the pipe",
                    self.who(),
                    path.display()
                );
                self.transport = Transport::Pipe;
                return Ok(false);
            }
        };
        // The old mapping goes first: the child drops its own on SHM.
        self.shm = None;
        let mut o = Out::default();
        o.str(&path.to_string_lossy());
        let doing = format!("mapping frame memory before frame {}", self.frames + 1);
        let r = self.request("encoder_send_video", &doing, tag::SHM, &o.0, &[]);
        // Mapped by both (or the child is gone): the name is not needed.
        let _ = std::fs::remove_file(&path);
        match r? {
            tag::OK => {
                self.shm = Some(m);
                Ok(true)
            }
            t => Err(self.protocol("encoder_send_video", t)),
        }
    }

    /// Sends interleaved samples, or `None` to drain.
    ///
    /// # Errors
    /// As the plugin's, or the child died.
    pub fn send_audio(
        &mut self,
        samples: Option<(&[f32], u32, u32, i64)>,
    ) -> Result<(), CallError> {
        let mut o = Out::default();
        let doing = match samples {
            Some((s, rate, ch, pts)) => {
                o.u8(1).u32(rate).u32(ch).i64(pts).u64(s.len() as u64);
                o.0.reserve(s.len() * 4);
                for v in s {
                    o.0.extend_from_slice(&v.to_le_bytes());
                }
                format!("encoding audio at sample {pts}")
            }
            None => {
                o.u8(0);
                "draining audio".to_owned()
            }
        };
        let t = self.request("encoder_send_audio", &doing, tag::AUDIO, &o.0, &[])?;
        if t != tag::OK {
            return Err(self.protocol("encoder_send_audio", t));
        }
        Ok(())
    }

    /// A packet, or the status (NEED_MORE / EOF).
    ///
    /// # Errors
    /// As the plugin's, or the child died.
    pub fn receive(&mut self) -> Result<Result<PacketBuf, i32>, CallError> {
        let doing = format!("receiving a packet after {} frames", self.frames);
        let t = self.request("encoder_receive", &doing, tag::RECEIVE, &[], &[])?;
        let mut i = In::new(&self.buf);
        let r = match t {
            tag::STATUS => i.i32().map(Err),
            tag::PACKET => (|| {
                Ok(Ok(PacketBuf {
                    pts: i.i64()?,
                    dts: i.i64()?,
                    duration: i.i64()?,
                    time_base: i.rational()?,
                    key: i.u8()? != 0,
                    data: i.bytes()?.to_vec(),
                }))
            })(),
            _ => return Err(self.protocol("encoder_receive", t)),
        };
        r.map_err(|e| self.broken("encoder_receive", e))
    }
}

impl Drop for Isolated {
    fn drop(&mut self) {
        self.watchdog.stop();
        if self.dead.is_none() {
            let _ = write_msg(&mut self.tx, tag::CLOSE, &[], &[]);
        }
        if wait_for_exit(&mut self.child, Duration::from_secs(10)).is_none() {
            tracing::warn!("{} did not exit after close; killed", self.who());
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(st)) => return Some(st),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(5)),
            _ => return None,
        }
    }
}

fn describe_exit(st: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (st.signal(), st.code()) {
        (Some(sig), _) => format!(
            "died with signal {sig} ({}){}",
            signal_name(sig),
            if st.core_dumped() {
                ", core dumped"
            } else {
                ""
            }
        ),
        (None, Some(code)) => format!("exited with status {code}"),
        (None, None) => format!("ended ({st})"),
    }
}

/// `deliver plugin-host --library <file>`: serves one encoder session on
/// stdin/stdout (see the module docs) and returns when the host closes it.
///
/// # Errors
/// Only I/O errors on the pipes; the library's and the plugin's errors go to
/// the host as `ERROR` replies.
pub fn serve(library: &Path) -> io::Result<()> {
    // The protocol gets its own copy of stdout, and fd 1 becomes stderr: a
    // plugin (or a library it links) that prints must not write into it.
    // SAFETY: plain fd calls on this process's standard descriptors.
    let out_fd = unsafe {
        let fd = libc::dup(1);
        if fd < 0 || libc::dup2(2, 1) < 0 {
            return Err(io::Error::last_os_error());
        }
        fd
    };
    // SAFETY: `out_fd` is a fresh descriptor that only this File owns.
    let out: std::fs::File = unsafe { std::os::fd::FromRawFd::from_raw_fd(out_fd) };
    widen_pipe(0);
    widen_pipe(out_fd);
    let mut tx = BufWriter::with_capacity(1 << 16, out);
    let mut rx = BufReader::with_capacity(1 << 16, io::stdin().lock());
    let err = |tx: &mut BufWriter<std::fs::File>, st: i32, m: &str| {
        let mut o = Out::default();
        o.i32(st).str(m);
        write_msg(tx, tag::ERROR, &o.0, &[])
    };
    let loaded = match load_file(library) {
        Ok(l) => l,
        Err(e) => return err(&mut tx, status::ERROR, &e.to_string()),
    };
    write_msg(&mut tx, tag::READY, &[], &[])?;
    let mut enc: Option<host::Encoder> = None;
    let mut shm: Option<Mapping> = None;
    let mut buf = Vec::new();
    let mut samples: Vec<f32> = Vec::new();
    while let Some(t) = read_msg(&mut rx, &mut buf)? {
        let mut i = In::new(&buf);
        let r: Result<(u8, Out), CallError> = match (t, enc.as_mut()) {
            (tag::OPEN, None) => {
                let set = get_settings(&mut i)?;
                loaded.plugin.open_encoder(&set).map(|(e, info)| {
                    enc = Some(e);
                    let mut o = Out::default();
                    put_info(&mut o, &info);
                    (tag::OPENED, o)
                })
            }
            (tag::SHM, Some(_)) => {
                drop(shm.take());
                let path = PathBuf::from(i.string()?);
                let f = std::fs::File::open(&path)?;
                let len = usize::try_from(f.metadata()?.len()).map_err(|_| proto("size"))?;
                shm = Some(Mapping::map(&f, len, false)?);
                Ok((tag::OK, Out::default()))
            }
            (tag::VIDEO, Some(e)) => {
                let how = i.u8()?;
                let r = if how == carry::NONE {
                    e.send_video(None)
                } else {
                    let (width, height, pix_fmt, n) = (i.u32()?, i.u32()?, i.u32()?, i.u32()?);
                    let (pts, time_base, color, key) =
                        (i.i64()?, i.rational()?, i.color()?, i.u8()? != 0);
                    let n = (n as usize).min(4);
                    let mut shape = [(0usize, 0usize); 4];
                    for s in shape.iter_mut().take(n) {
                        *s = (i.u64()? as usize, i.u64()? as usize);
                    }
                    let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
                    let mut from = match (how, &shm) {
                        (carry::INLINE, _) => i,
                        (carry::SHARED, Some(m)) => In::new(m.bytes()),
                        _ => return Err(proto("frame in shared memory that is not mapped")),
                    };
                    for (p, (stride, len)) in planes.iter_mut().zip(shape).take(n) {
                        *p = (from.take(len)?, stride);
                    }
                    e.send_video(Some(&VideoView {
                        width,
                        height,
                        pix_fmt,
                        planes,
                        n_planes: n,
                        pts,
                        time_base,
                        color,
                        key,
                    }))
                };
                r.map(|()| (tag::OK, Out::default()))
            }
            (tag::AUDIO, Some(e)) => {
                let r = if i.u8()? == 0 {
                    e.send_audio(None)
                } else {
                    let (rate, ch, pts, n) = (i.u32()?, i.u32()?, i.i64()?, i.u64()?);
                    let n = usize::try_from(n).map_err(|_| proto("sample count"))?;
                    let bytes = i.take(n.checked_mul(4).ok_or_else(|| proto("sample count"))?)?;
                    samples.clear();
                    samples.extend(
                        bytes
                            .chunks_exact(4)
                            .map(|b| f32::from_le_bytes(b.try_into().expect("4"))),
                    );
                    e.send_audio(Some((&samples, rate, ch, pts)))
                };
                r.map(|()| (tag::OK, Out::default()))
            }
            (tag::RECEIVE, Some(e)) => e.receive().map(|r| {
                let mut o = Out::default();
                match r {
                    Ok(p) => {
                        o.i64(p.pts)
                            .i64(p.dts)
                            .i64(p.duration)
                            .rational(p.time_base)
                            .u8(p.key as u8)
                            .bytes(&p.data);
                        (tag::PACKET, o)
                    }
                    Err(st) => {
                        o.i32(st);
                        (tag::STATUS, o)
                    }
                }
            }),
            (tag::CLOSE, _) => break,
            (t, _) => return Err(proto(&format!("request {t} out of order"))),
        };
        match r {
            Ok((t, o)) => write_msg(&mut tx, t, &o.0, &[])?,
            Err(e) => err(&mut tx, e.status, &e.message)?,
        }
    }
    drop(enc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_stream_info_survive_the_wire() {
        let set = EncoderSettings {
            media: abi::media::VIDEO,
            codec: "prores".into(),
            implementation: "prores_ks".into(),
            width: 1920,
            height: 1080,
            pix_fmt: abi::pix::YUV422P10,
            frame_rate: abi::Rational::new(25, 1),
            time_base: abi::Rational::new(1, 25),
            color: abi::ColorTags::BT709_LIMITED,
            sample_rate: 0,
            channels: 0,
            bit_rate: 123,
            global_header: true,
            threads: 3,
            options: "profile = \"hq\"\n".into(),
        };
        let mut o = Out::default();
        put_settings(&mut o, &set);
        let back = get_settings(&mut In::new(&o.0)).unwrap();
        assert_eq!(format!("{back:?}"), format!("{set:?}"));

        let info = StreamInfo {
            media: abi::media::AUDIO,
            codec: "aac".into(),
            profile: "LC".into(),
            sample_rate: 48000,
            channels: 2,
            frame_size: 1024,
            initial_padding: 1024,
            time_base: abi::Rational::new(1, 48000),
            extradata: vec![0x11, 0x90],
            ..Default::default()
        };
        let mut o = Out::default();
        put_info(&mut o, &info);
        assert_eq!(get_info(&mut In::new(&o.0)).unwrap(), info);
        // Every prefix is refused, never read past.
        for n in 0..o.0.len() {
            assert!(get_info(&mut In::new(&o.0[..n])).is_err(), "prefix {n}");
        }
    }

    #[test]
    fn messages_frame_and_oversized_ones_are_refused() {
        let mut wire = Vec::new();
        write_msg(&mut wire, tag::VIDEO, b"head", &[b"ab", b"", b"cde"]).unwrap();
        write_msg(&mut wire, tag::CLOSE, &[], &[]).unwrap();
        let mut r = &wire[..];
        let mut buf = Vec::new();
        assert_eq!(read_msg(&mut r, &mut buf).unwrap(), Some(tag::VIDEO));
        assert_eq!(buf, b"headabcde");
        assert_eq!(read_msg(&mut r, &mut buf).unwrap(), Some(tag::CLOSE));
        assert!(buf.is_empty());
        assert_eq!(read_msg(&mut r, &mut buf).unwrap(), None);

        let mut huge = vec![tag::VIDEO];
        huge.extend_from_slice(&(MAX_MSG + 1).to_le_bytes());
        assert!(read_msg(&mut &huge[..], &mut buf).is_err());
    }

    #[test]
    fn exits_are_described_by_signal_name() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            describe_exit(ExitStatus::from_raw(libc::SIGSEGV)),
            "died with signal 11 (SIGSEGV)"
        );
        assert_eq!(
            describe_exit(ExitStatus::from_raw(3 << 8)),
            "exited with status 3"
        );
    }
}
