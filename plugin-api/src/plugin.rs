//! The plugin author's side: implement the traits, then `export_plugin!`.
//!
//! Every generated entry point runs the trait method under `catch_unwind`: a
//! panic becomes [`status::PANICKED`] with the panic message as the error, and
//! the handle is poisoned, so later calls on it answer [`status::POISONED`]
//! instead of touching state a panic may have left half-written. Memory a
//! plugin hands out (packets, error strings) is freed by the plugin's own
//! entry points, so host and plugin never free each other's allocations.

use crate::abi::{self, status, OwnedStr, Str};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

/// Borrowed planes of a video frame.
#[derive(Debug, Clone, Copy)]
pub struct VideoView<'a> {
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    /// `(data, stride)` per plane.
    pub planes: [(&'a [u8], usize); 4],
    pub n_planes: usize,
    pub pts: i64,
    pub time_base: abi::Rational,
    pub color: abi::ColorTags,
    pub key: bool,
}

/// Borrowed interleaved `f32` audio.
#[derive(Debug, Clone, Copy)]
pub struct AudioView<'a> {
    pub sample_rate: u32,
    pub channels: u32,
    pub samples: &'a [f32],
    pub pts: i64,
}

/// A decoded item, borrowed from the decoder until its next call.
#[derive(Debug, Clone, Copy)]
pub enum FrameView<'a> {
    Video(VideoView<'a>),
    Audio(AudioView<'a>),
}

/// A borrowed packet passed in by the host.
#[derive(Debug, Clone, Copy)]
pub struct PacketView<'a> {
    pub data: &'a [u8],
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub time_base: abi::Rational,
    pub key: bool,
}

/// A packet produced by an encoder; the trampoline keeps it alive until the
/// host releases it.
#[derive(Debug, Clone, Default)]
pub struct OwnedPacket {
    pub data: Vec<u8>,
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub time_base: abi::Rational,
    pub key: bool,
}

/// What an encoder's stream looks like (the owned form of [`abi::StreamParams`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamInfo {
    pub media: u32,
    pub codec: String,
    pub profile: String,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    pub color: abi::ColorTags,
    pub frame_rate: abi::Rational,
    pub sample_rate: u32,
    pub channels: u32,
    pub frame_size: u32,
    pub initial_padding: u32,
    pub bit_rate: i64,
    pub time_base: abi::Rational,
    pub extradata: Vec<u8>,
}

impl StreamInfo {
    /// Borrows this as raw params; valid while `self` is.
    pub fn as_raw(&self) -> abi::StreamParams {
        abi::StreamParams {
            struct_size: std::mem::size_of::<abi::StreamParams>() as u32,
            media: self.media,
            codec: Str::new(&self.codec),
            profile: Str::new(&self.profile),
            width: self.width,
            height: self.height,
            pix_fmt: self.pix_fmt,
            color: self.color,
            frame_rate: self.frame_rate,
            sample_rate: self.sample_rate,
            channels: self.channels,
            frame_size: self.frame_size,
            initial_padding: self.initial_padding,
            bit_rate: self.bit_rate,
            time_base: self.time_base,
            extradata: if self.extradata.is_empty() {
                std::ptr::null()
            } else {
                self.extradata.as_ptr()
            },
            extradata_len: self.extradata.len(),
            reserved: [0; 4],
        }
    }

    /// Copies raw params.
    ///
    /// # Safety
    /// The pointers in `p` must be valid as documented on [`abi::StreamParams`].
    pub unsafe fn from_raw(p: &abi::StreamParams) -> Result<StreamInfo, String> {
        // SAFETY: guaranteed by the caller.
        let (codec, profile) = unsafe { (p.codec.to_str(), p.profile.to_str()) };
        let extradata = if p.extradata.is_null() || p.extradata_len == 0 {
            Vec::new()
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(p.extradata, p.extradata_len) }.to_vec()
        };
        Ok(StreamInfo {
            media: p.media,
            codec: codec
                .map_err(|e| format!("codec name is not UTF-8: {e}"))?
                .to_owned(),
            profile: profile
                .map_err(|e| format!("profile is not UTF-8: {e}"))?
                .to_owned(),
            width: p.width,
            height: p.height,
            pix_fmt: p.pix_fmt,
            color: p.color,
            frame_rate: p.frame_rate,
            sample_rate: p.sample_rate,
            channels: p.channels,
            frame_size: p.frame_size,
            initial_padding: p.initial_padding,
            bit_rate: p.bit_rate,
            time_base: p.time_base,
            extradata,
        })
    }
}

/// The owned form of [`abi::EncoderConfig`].
#[derive(Debug, Clone, Default)]
pub struct EncoderSettings {
    pub media: u32,
    pub codec: String,
    pub implementation: String,
    pub width: u32,
    pub height: u32,
    pub pix_fmt: u32,
    pub frame_rate: abi::Rational,
    pub time_base: abi::Rational,
    pub color: abi::ColorTags,
    pub sample_rate: u32,
    pub channels: u32,
    pub bit_rate: i64,
    pub global_header: bool,
    pub threads: u32,
    /// A TOML table.
    pub options: String,
}

impl EncoderSettings {
    /// Borrows this as a raw config; valid while `self` is.
    pub fn as_raw(&self) -> abi::EncoderConfig {
        abi::EncoderConfig {
            struct_size: std::mem::size_of::<abi::EncoderConfig>() as u32,
            media: self.media,
            codec: Str::new(&self.codec),
            implementation: Str::new(&self.implementation),
            width: self.width,
            height: self.height,
            pix_fmt: self.pix_fmt,
            frame_rate: self.frame_rate,
            time_base: self.time_base,
            color: self.color,
            sample_rate: self.sample_rate,
            channels: self.channels,
            bit_rate: self.bit_rate,
            global_header: self.global_header as u32,
            threads: self.threads,
            options: Str::new(&self.options),
            reserved: [0; 4],
        }
    }

    /// # Safety
    /// The strings in `c` must be valid for the call.
    unsafe fn from_raw(c: &abi::EncoderConfig) -> Result<Self, String> {
        let s = |x: Str, what: &str| {
            // SAFETY: guaranteed by the caller.
            unsafe { x.to_str() }
                .map(str::to_owned)
                .map_err(|e| format!("{what} is not UTF-8: {e}"))
        };
        Ok(EncoderSettings {
            media: c.media,
            codec: s(c.codec, "codec")?,
            implementation: s(c.implementation, "implementation")?,
            width: c.width,
            height: c.height,
            pix_fmt: c.pix_fmt,
            frame_rate: c.frame_rate,
            time_base: c.time_base,
            color: c.color,
            sample_rate: c.sample_rate,
            channels: c.channels,
            bit_rate: c.bit_rate,
            global_header: c.global_header != 0,
            threads: c.threads,
            options: s(c.options, "options")?,
        })
    }
}

/// The owned form of a capability.
#[derive(Debug, Clone, Default)]
pub struct CapabilitySpec {
    pub kind: u32,
    pub media: u32,
    pub name: String,
    pub implementation: String,
    pub profiles: Vec<String>,
    pub pix_fmts: Vec<String>,
    pub hardware: bool,
    pub rank: i32,
}

/// Result type of plugin methods: the error is a message for the user.
pub type PResult<T> = Result<T, String>;

/// Opens files and yields decoded frames.
pub trait FileDecoder: Sized + Send + 'static {
    fn open(path: &str, cfg: &abi::DecoderConfig) -> PResult<(Self, abi::MediaInfo)>;
    fn seek(&mut self, time_us: i64) -> PResult<()>;
    /// The next frame, or `None` at the end.
    fn next(&mut self) -> PResult<Option<FrameView<'_>>>;
}

/// Decodes packets of one stream.
pub trait StreamDecoder: Sized + Send + 'static {
    fn open(params: &StreamInfo, cfg: &abi::DecoderConfig) -> PResult<Self>;
    /// `None` drains.
    fn send(&mut self, pkt: Option<&PacketView<'_>>) -> PResult<()>;
    /// `Ok(Err(status))` carries NEED_MORE or EOF.
    fn receive(&mut self) -> PResult<Result<FrameView<'_>, i32>>;
}

/// Encodes frames into packets. Sends always accept: there is no "full"
/// status, so an encoder that cannot take a frame yet queues it and hands out
/// packets from `receive` as they come.
pub trait Encoder: Sized + Send + 'static {
    fn open(cfg: &EncoderSettings) -> PResult<(Self, StreamInfo)>;
    /// `None` drains.
    fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> PResult<()>;
    /// `None` drains.
    fn send_audio(&mut self, frame: Option<&AudioView<'_>>) -> PResult<()>;
    /// `Ok(Err(status))` carries NEED_MORE or EOF.
    fn receive(&mut self) -> PResult<Result<OwnedPacket, i32>>;
}

/// Writes a container.
pub trait Muxer: Sized + Send + 'static {
    fn open(path: &str, container: &str, options: &str) -> PResult<Self>;
    fn add_stream(&mut self, params: &StreamInfo) -> PResult<u32>;
    fn write_header(&mut self) -> PResult<()>;
    fn write_packet(&mut self, stream: u32, pkt: &PacketView<'_>) -> PResult<()>;
    fn finish(&mut self) -> PResult<()>;
}

/// A plugin: its identity, its capabilities and its implementations. Use
/// [`Unsupported`] for the kinds it does not offer.
pub trait Plugin: 'static {
    const NAME: &'static str;
    const VERSION: &'static str;
    const DESCRIPTION: &'static str;
    type FileDecoder: FileDecoder;
    type StreamDecoder: StreamDecoder;
    type Encoder: Encoder;
    type Muxer: Muxer;
    /// Called once, after the host's logger is installed: probe what works.
    fn capabilities() -> Vec<CapabilitySpec>;
}

/// Stands for a capability kind a plugin does not have.
pub enum Unsupported {}

const UNSUPPORTED: &str = "this plugin does not offer that capability";

impl FileDecoder for Unsupported {
    fn open(_: &str, _: &abi::DecoderConfig) -> PResult<(Self, abi::MediaInfo)> {
        Err(UNSUPPORTED.into())
    }
    fn seek(&mut self, _: i64) -> PResult<()> {
        match *self {}
    }
    fn next(&mut self) -> PResult<Option<FrameView<'_>>> {
        match *self {}
    }
}
impl StreamDecoder for Unsupported {
    fn open(_: &StreamInfo, _: &abi::DecoderConfig) -> PResult<Self> {
        Err(UNSUPPORTED.into())
    }
    fn send(&mut self, _: Option<&PacketView<'_>>) -> PResult<()> {
        match *self {}
    }
    fn receive(&mut self) -> PResult<Result<FrameView<'_>, i32>> {
        match *self {}
    }
}
impl Encoder for Unsupported {
    fn open(_: &EncoderSettings) -> PResult<(Self, StreamInfo)> {
        Err(UNSUPPORTED.into())
    }
    fn send_video(&mut self, _: Option<&VideoView<'_>>) -> PResult<()> {
        match *self {}
    }
    fn send_audio(&mut self, _: Option<&AudioView<'_>>) -> PResult<()> {
        match *self {}
    }
    fn receive(&mut self) -> PResult<Result<OwnedPacket, i32>> {
        match *self {}
    }
}
impl Muxer for Unsupported {
    fn open(_: &str, _: &str, _: &str) -> PResult<Self> {
        Err(UNSUPPORTED.into())
    }
    fn add_stream(&mut self, _: &StreamInfo) -> PResult<u32> {
        match *self {}
    }
    fn write_header(&mut self) -> PResult<()> {
        match *self {}
    }
    fn write_packet(&mut self, _: u32, _: &PacketView<'_>) -> PResult<()> {
        match *self {}
    }
    fn finish(&mut self) -> PResult<()> {
        match *self {}
    }
}

// ---------------------------------------------------------------------------
// Logging through the host.

static HOST_LOG: OnceLock<Option<unsafe extern "C" fn(u32, Str, Str)>> = OnceLock::new();

/// Log levels for [`log`].
pub mod level {
    pub const ERROR: u32 = 1;
    pub const WARN: u32 = 2;
    pub const INFO: u32 = 3;
    pub const DEBUG: u32 = 4;
    pub const TRACE: u32 = 5;
}

/// Logs a message through the host's subscriber. Without a host (a plugin's
/// own tests), warnings and errors go to stderr and the rest is dropped.
pub fn log(level: u32, target: &str, message: &str) {
    match HOST_LOG.get().copied().flatten() {
        // SAFETY: the host promised the callback is valid for the process.
        Some(f) => unsafe { f(level, Str::new(target), Str::new(message)) },
        None if level <= level::WARN => eprintln!("[{target}] {message}"),
        None => {}
    }
}

// ---------------------------------------------------------------------------
// Trampolines.

struct Handle<T> {
    inner: T,
    poisoned: bool,
    /// Keeps returned params alive until close.
    params: Option<StreamInfo>,
}

fn set_err(err: *mut OwnedStr, msg: String) {
    if err.is_null() {
        return;
    }
    let mut bytes = msg.into_bytes().into_boxed_slice();
    let len = bytes.len();
    let ptr = bytes.as_mut_ptr();
    std::mem::forget(bytes);
    // SAFETY: the host passes a valid out-pointer or null (checked above).
    unsafe {
        *err = OwnedStr { ptr, len, cap: len };
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_owned()
    }
}

/// Runs `f` on the handle's state, catching panics and honouring poison.
///
/// # Safety
/// `h` must be a handle made by this module for type `T`, or null.
unsafe fn with_handle<T>(
    h: *mut c_void,
    err: *mut OwnedStr,
    f: impl FnOnce(&mut Handle<T>) -> PResult<i32>,
) -> i32 {
    if h.is_null() {
        set_err(err, "null handle".into());
        return status::ERROR;
    }
    // SAFETY: guaranteed by the caller; the host never shares a handle between threads at once.
    let handle = unsafe { &mut *(h as *mut Handle<T>) };
    if handle.poisoned {
        set_err(err, "handle is poisoned by an earlier panic".into());
        return status::POISONED;
    }
    match catch_unwind(AssertUnwindSafe(|| f(&mut *handle))) {
        Ok(Ok(s)) => s,
        Ok(Err(msg)) => {
            set_err(err, msg);
            status::ERROR
        }
        Err(p) => {
            handle.poisoned = true;
            set_err(err, format!("plugin panicked: {}", panic_message(&*p)));
            status::PANICKED
        }
    }
}

/// Runs a constructor, catching panics.
fn guard_open<T>(
    out: *mut *mut c_void,
    err: *mut OwnedStr,
    f: impl FnOnce() -> PResult<(T, Option<StreamInfo>)>,
) -> i32 {
    if out.is_null() {
        set_err(err, "null out-pointer".into());
        return status::ERROR;
    }
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok((inner, params))) => {
            let b = Box::new(Handle {
                inner,
                poisoned: false,
                params,
            });
            // SAFETY: checked non-null above.
            unsafe { *out = Box::into_raw(b) as *mut c_void };
            status::OK
        }
        Ok(Err(msg)) => {
            set_err(err, msg);
            status::ERROR
        }
        Err(p) => {
            set_err(err, format!("plugin panicked: {}", panic_message(&*p)));
            status::PANICKED
        }
    }
}

unsafe fn close<T>(h: *mut c_void) {
    if !h.is_null() {
        // Dropping codec state can itself panic; never let that cross the boundary.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: made by guard_open for this T; the host closes once.
            drop(unsafe { Box::from_raw(h as *mut Handle<T>) });
        }));
    }
}

fn frame_to_raw(f: &FrameView<'_>, out: &mut abi::Decoded) {
    *out = abi::Decoded::EMPTY;
    match f {
        FrameView::Video(v) => {
            out.media = abi::media::VIDEO;
            out.video = video_to_raw(v);
        }
        FrameView::Audio(a) => {
            out.media = abi::media::AUDIO;
            out.audio = abi::AudioFrame {
                sample_rate: a.sample_rate,
                channels: a.channels,
                n_samples: (a.samples.len() / a.channels.max(1) as usize) as u32,
                data: a.samples.as_ptr(),
                pts: a.pts,
            };
        }
    }
}

/// Borrows a view as a raw frame.
pub fn video_to_raw(v: &VideoView<'_>) -> abi::VideoFrame {
    let mut planes = [abi::Plane::NULL; 4];
    for (i, (data, stride)) in v.planes.iter().enumerate().take(v.n_planes.min(4)) {
        planes[i] = abi::Plane {
            data: data.as_ptr(),
            stride: *stride,
            len: data.len(),
        };
    }
    abi::VideoFrame {
        width: v.width,
        height: v.height,
        pix_fmt: v.pix_fmt,
        n_planes: v.n_planes as u32,
        planes,
        pts: v.pts,
        time_base: v.time_base,
        color: v.color,
        key: v.key as u32,
    }
}

/// Reads a raw frame as a view.
///
/// # Safety
/// The planes must be readable for `len` bytes for `'a`.
pub unsafe fn video_from_raw<'a>(f: &abi::VideoFrame) -> VideoView<'a> {
    let mut planes: [(&[u8], usize); 4] = [(&[], 0); 4];
    let n = (f.n_planes as usize).min(4);
    for (i, p) in f.planes.iter().enumerate().take(n) {
        if !p.data.is_null() {
            // SAFETY: guaranteed by the caller.
            planes[i] = (
                unsafe { std::slice::from_raw_parts(p.data, p.len) },
                p.stride,
            );
        }
    }
    VideoView {
        width: f.width,
        height: f.height,
        pix_fmt: f.pix_fmt,
        planes,
        n_planes: n,
        pts: f.pts,
        time_base: f.time_base,
        color: f.color,
        key: f.key != 0,
    }
}

/// # Safety
/// `p.data` must be readable for `p.len` bytes for `'a`.
pub unsafe fn packet_from_raw<'a>(p: &abi::Packet) -> PacketView<'a> {
    PacketView {
        data: if p.data.is_null() {
            &[]
        } else {
            // SAFETY: guaranteed by the caller.
            unsafe { std::slice::from_raw_parts(p.data, p.len) }
        },
        pts: p.pts,
        dts: p.dts,
        duration: p.duration,
        time_base: p.time_base,
        key: p.flags & abi::packet_flags::KEY != 0,
    }
}

unsafe extern "C" fn free_string(s: OwnedStr) {
    if !s.ptr.is_null() {
        // SAFETY: made by set_err from a boxed slice of exactly this length.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(s.ptr, s.len)) });
    }
}

unsafe extern "C" fn decoder_open<P: Plugin>(
    path: Str,
    cfg: *const abi::DecoderConfig,
    info: *mut abi::MediaInfo,
    out: *mut *mut c_void,
    err: *mut OwnedStr,
) -> i32 {
    guard_open(out, err, || {
        // SAFETY: the host passes valid pointers for the call.
        let path = unsafe { path.to_str() }.map_err(|e| format!("path is not UTF-8: {e}"))?;
        let cfg = unsafe { cfg.as_ref() }.ok_or("null decoder config")?;
        let (d, mi) = P::FileDecoder::open(path, cfg)?;
        if let Some(info) = unsafe { info.as_mut() } {
            *info = mi;
        }
        Ok((d, None))
    })
}

unsafe extern "C" fn decoder_seek<P: Plugin>(h: *mut c_void, t: i64, err: *mut OwnedStr) -> i32 {
    // SAFETY: h was made by decoder_open::<P>.
    unsafe {
        with_handle::<P::FileDecoder>(h, err, |hd| {
            hd.inner.seek(t)?;
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn decoder_next<P: Plugin>(
    h: *mut c_void,
    out: *mut abi::Decoded,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by decoder_open::<P>; out is valid for the call.
    unsafe {
        with_handle::<P::FileDecoder>(h, err, |hd| {
            let out = out.as_mut().ok_or("null out-pointer")?;
            match hd.inner.next()? {
                Some(f) => {
                    frame_to_raw(&f, out);
                    Ok(status::OK)
                }
                None => Ok(status::EOF),
            }
        })
    }
}

unsafe extern "C" fn decoder_close<P: Plugin>(h: *mut c_void) {
    // SAFETY: h was made by decoder_open::<P>.
    unsafe { close::<P::FileDecoder>(h) }
}

unsafe extern "C" fn sdec_open<P: Plugin>(
    params: *const abi::StreamParams,
    cfg: *const abi::DecoderConfig,
    out: *mut *mut c_void,
    err: *mut OwnedStr,
) -> i32 {
    guard_open(out, err, || {
        // SAFETY: valid for the call.
        let params = unsafe { params.as_ref() }.ok_or("null stream params")?;
        let params = unsafe { StreamInfo::from_raw(params) }?;
        let cfg = unsafe { cfg.as_ref() }.ok_or("null decoder config")?;
        Ok((P::StreamDecoder::open(&params, cfg)?, None))
    })
}

unsafe extern "C" fn sdec_send<P: Plugin>(
    h: *mut c_void,
    pkt: *const abi::Packet,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by sdec_open::<P>; pkt is valid for the call.
    unsafe {
        with_handle::<P::StreamDecoder>(h, err, |hd| {
            match pkt.as_ref() {
                Some(p) => hd.inner.send(Some(&packet_from_raw(p)))?,
                None => hd.inner.send(None)?,
            }
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn sdec_receive<P: Plugin>(
    h: *mut c_void,
    out: *mut abi::Decoded,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by sdec_open::<P>; out is valid for the call.
    unsafe {
        with_handle::<P::StreamDecoder>(h, err, |hd| {
            let out = out.as_mut().ok_or("null out-pointer")?;
            match hd.inner.receive()? {
                Ok(f) => {
                    frame_to_raw(&f, out);
                    Ok(status::OK)
                }
                Err(s) => Ok(s),
            }
        })
    }
}

unsafe extern "C" fn sdec_close<P: Plugin>(h: *mut c_void) {
    // SAFETY: h was made by sdec_open::<P>.
    unsafe { close::<P::StreamDecoder>(h) }
}

unsafe extern "C" fn encoder_open<P: Plugin>(
    cfg: *const abi::EncoderConfig,
    params: *mut abi::StreamParams,
    out: *mut *mut c_void,
    err: *mut OwnedStr,
) -> i32 {
    let st = guard_open(out, err, || {
        // SAFETY: valid for the call.
        let cfg = unsafe { cfg.as_ref() }.ok_or("null encoder config")?;
        let settings = unsafe { EncoderSettings::from_raw(cfg) }?;
        let (enc, info) = P::Encoder::open(&settings)?;
        Ok((enc, Some(info)))
    });
    if st == status::OK && !params.is_null() {
        // SAFETY: guard_open stored a Handle<P::Encoder> in *out.
        let hd = unsafe { &*(*out as *const Handle<P::Encoder>) };
        if let Some(p) = &hd.params {
            // SAFETY: params is a valid out-pointer; the strings borrow hd, which lives until close.
            unsafe { *params = p.as_raw() };
        }
    }
    st
}

unsafe extern "C" fn encoder_send_video<P: Plugin>(
    h: *mut c_void,
    frame: *const abi::VideoFrame,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by encoder_open::<P>; frame is valid for the call.
    unsafe {
        with_handle::<P::Encoder>(h, err, |hd| {
            match frame.as_ref() {
                Some(f) => hd.inner.send_video(Some(&video_from_raw(f)))?,
                None => hd.inner.send_video(None)?,
            }
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn encoder_send_audio<P: Plugin>(
    h: *mut c_void,
    frame: *const abi::AudioFrame,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by encoder_open::<P>; frame is valid for the call.
    unsafe {
        with_handle::<P::Encoder>(h, err, |hd| {
            match frame.as_ref() {
                Some(f) => {
                    let n = f.n_samples as usize * f.channels as usize;
                    let samples = if f.data.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(f.data, n)
                    };
                    hd.inner.send_audio(Some(&AudioView {
                        sample_rate: f.sample_rate,
                        channels: f.channels,
                        samples,
                        pts: f.pts,
                    }))?
                }
                None => hd.inner.send_audio(None)?,
            }
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn encoder_receive<P: Plugin>(
    h: *mut c_void,
    out: *mut abi::Packet,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by encoder_open::<P>; out is valid for the call.
    unsafe {
        with_handle::<P::Encoder>(h, err, |hd| {
            let out = out.as_mut().ok_or("null out-pointer")?;
            match hd.inner.receive()? {
                Ok(pkt) => {
                    let b = Box::new(pkt);
                    *out = abi::Packet {
                        data: b.data.as_ptr(),
                        len: b.data.len(),
                        pts: b.pts,
                        dts: b.dts,
                        duration: b.duration,
                        time_base: b.time_base,
                        flags: if b.key { abi::packet_flags::KEY } else { 0 },
                        private: Box::into_raw(b) as *mut c_void,
                    };
                    Ok(status::OK)
                }
                Err(s) => Ok(s),
            }
        })
    }
}

unsafe extern "C" fn packet_release(pkt: *mut abi::Packet) {
    // SAFETY: the host passes a packet it received from encoder_receive, once.
    if let Some(p) = unsafe { pkt.as_mut() } {
        if !p.private.is_null() {
            drop(unsafe { Box::from_raw(p.private as *mut OwnedPacket) });
            p.private = std::ptr::null_mut();
            p.data = std::ptr::null();
            p.len = 0;
        }
    }
}

unsafe extern "C" fn encoder_close<P: Plugin>(h: *mut c_void) {
    // SAFETY: h was made by encoder_open::<P>.
    unsafe { close::<P::Encoder>(h) }
}

unsafe extern "C" fn muxer_open<P: Plugin>(
    path: Str,
    container: Str,
    options: Str,
    out: *mut *mut c_void,
    err: *mut OwnedStr,
) -> i32 {
    guard_open(out, err, || {
        // SAFETY: valid for the call.
        let path = unsafe { path.to_str() }.map_err(|e| format!("path is not UTF-8: {e}"))?;
        let container = unsafe { container.to_str() }.map_err(|e| e.to_string())?;
        let options = unsafe { options.to_str() }.map_err(|e| e.to_string())?;
        Ok((P::Muxer::open(path, container, options)?, None))
    })
}

unsafe extern "C" fn muxer_add_stream<P: Plugin>(
    h: *mut c_void,
    params: *const abi::StreamParams,
    index: *mut u32,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by muxer_open::<P>; pointers valid for the call.
    unsafe {
        with_handle::<P::Muxer>(h, err, |hd| {
            let p = params.as_ref().ok_or("null stream params")?;
            let info = StreamInfo::from_raw(p)?;
            let i = hd.inner.add_stream(&info)?;
            if let Some(index) = index.as_mut() {
                *index = i;
            }
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn muxer_write_header<P: Plugin>(h: *mut c_void, err: *mut OwnedStr) -> i32 {
    // SAFETY: h was made by muxer_open::<P>.
    unsafe {
        with_handle::<P::Muxer>(h, err, |hd| {
            hd.inner.write_header()?;
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn muxer_write_packet<P: Plugin>(
    h: *mut c_void,
    stream: u32,
    pkt: *const abi::Packet,
    err: *mut OwnedStr,
) -> i32 {
    // SAFETY: h was made by muxer_open::<P>; pkt valid for the call.
    unsafe {
        with_handle::<P::Muxer>(h, err, |hd| {
            let p = pkt.as_ref().ok_or("null packet")?;
            hd.inner.write_packet(stream, &packet_from_raw(p))?;
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn muxer_finish<P: Plugin>(h: *mut c_void, err: *mut OwnedStr) -> i32 {
    // SAFETY: h was made by muxer_open::<P>.
    unsafe {
        with_handle::<P::Muxer>(h, err, |hd| {
            hd.inner.finish()?;
            Ok(status::OK)
        })
    }
}

unsafe extern "C" fn muxer_close<P: Plugin>(h: *mut c_void) {
    // SAFETY: h was made by muxer_open::<P>.
    unsafe { close::<P::Muxer>(h) }
}

/// Builds the descriptor. Called by the code `export_plugin!` generates; not
/// for direct use.
///
/// # Safety
/// `host` must be null or point at a valid [`abi::HostApi`].
#[doc(hidden)]
pub unsafe fn entry<P: Plugin>(host: *const abi::HostApi) -> *const abi::PluginDescriptor {
    static DESC: OnceLock<usize> = OnceLock::new();
    // SAFETY: guaranteed by the caller.
    if let Some(h) = unsafe { host.as_ref() } {
        let _ = HOST_LOG.set(h.log);
    }
    let built = catch_unwind(|| {
        *DESC.get_or_init(|| {
            let caps: Vec<CapabilitySpec> = P::capabilities();
            // Everything below is leaked on purpose: libraries are never
            // unloaded, and the descriptor must outlive every call.
            let leak = |s: String| -> Str { Str::new(Box::leak(s.into_boxed_str())) };
            let raw_caps: Vec<abi::Capability> = caps
                .into_iter()
                .map(|c| abi::Capability {
                    kind: c.kind,
                    media: c.media,
                    name: leak(c.name),
                    implementation: leak(c.implementation),
                    profiles: leak(c.profiles.join(",")),
                    pix_fmts: leak(c.pix_fmts.join(",")),
                    hardware: c.hardware as u32,
                    rank: c.rank,
                })
                .collect();
            let raw_caps: &'static [abi::Capability] = Box::leak(raw_caps.into_boxed_slice());
            let vtable: &'static abi::VTable = Box::leak(Box::new(abi::VTable {
                struct_size: std::mem::size_of::<abi::VTable>() as u32,
                free_string: Some(free_string),
                decoder_open: Some(decoder_open::<P>),
                decoder_seek: Some(decoder_seek::<P>),
                decoder_next: Some(decoder_next::<P>),
                decoder_close: Some(decoder_close::<P>),
                stream_decoder_open: Some(sdec_open::<P>),
                stream_decoder_send: Some(sdec_send::<P>),
                stream_decoder_receive: Some(sdec_receive::<P>),
                stream_decoder_close: Some(sdec_close::<P>),
                encoder_open: Some(encoder_open::<P>),
                encoder_send_video: Some(encoder_send_video::<P>),
                encoder_send_audio: Some(encoder_send_audio::<P>),
                encoder_receive: Some(encoder_receive::<P>),
                packet_release: Some(packet_release),
                encoder_close: Some(encoder_close::<P>),
                muxer_open: Some(muxer_open::<P>),
                muxer_add_stream: Some(muxer_add_stream::<P>),
                muxer_write_header: Some(muxer_write_header::<P>),
                muxer_write_packet: Some(muxer_write_packet::<P>),
                muxer_finish: Some(muxer_finish::<P>),
                muxer_close: Some(muxer_close::<P>),
                reserved: [0; 8],
            }));
            let desc = Box::leak(Box::new(abi::PluginDescriptor {
                abi_major: abi::ABI_MAJOR,
                abi_minor: abi::ABI_MINOR,
                struct_size: std::mem::size_of::<abi::PluginDescriptor>() as u32,
                name: Str::new(P::NAME),
                version: Str::new(P::VERSION),
                description: Str::new(P::DESCRIPTION),
                capabilities: raw_caps.as_ptr(),
                n_capabilities: raw_caps.len(),
                vtable,
                reserved: [0; 8],
            }));
            desc as *const abi::PluginDescriptor as usize
        })
    });
    match built {
        Ok(p) => p as *const abi::PluginDescriptor,
        Err(p) => {
            log(
                level::ERROR,
                P::NAME,
                &format!("plugin panicked while starting: {}", panic_message(&*p)),
            );
            std::ptr::null()
        }
    }
}

/// Exports a [`Plugin`] as this library's entry point.
///
/// ```ignore
/// struct MyPlugin;
/// impl deliver_plugin_api::plugin::Plugin for MyPlugin { /* ... */ }
/// deliver_plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The plugin's entry point (see `deliver_plugin_api::abi::EntryFn`).
        ///
        /// # Safety
        /// Called by the host with a valid `HostApi` or null.
        #[no_mangle]
        pub unsafe extern "C" fn deliver_plugin_entry(
            host: *const $crate::abi::HostApi,
        ) -> *const $crate::abi::PluginDescriptor {
            // SAFETY: forwarded from the host.
            unsafe { $crate::plugin::entry::<$plugin>(host) }
        }
    };
}
