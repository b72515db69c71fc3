//! The host's side: safe, owning wrappers over a plugin's vtable. Loading the
//! library (and refusing a wrong ABI) is the host's business; this module
//! starts from a descriptor that has passed those checks.

use crate::abi::{self, status, OwnedStr, Str};
use crate::plugin::{StreamInfo, VideoView};
use std::ffi::c_void;
use std::fmt;

/// An error from a plugin call.
#[derive(Debug, Clone)]
pub struct CallError {
    /// The plugin's name.
    pub plugin: String,
    /// The entry point.
    pub call: &'static str,
    /// The status it returned.
    pub status: i32,
    /// Its message.
    pub message: String,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.status {
            status::PANICKED => "panicked",
            status::POISONED => "refused a call after an earlier panic",
            status::UNSUPPORTED => "does not support",
            _ => "failed",
        };
        write!(
            f,
            "plugin `{}` {what} in {}: {}",
            self.plugin, self.call, self.message
        )
    }
}

impl std::error::Error for CallError {}

/// A loaded, checked plugin. Cheap to copy: the descriptor lives forever.
#[derive(Clone, Copy)]
pub struct PluginRef {
    desc: &'static abi::PluginDescriptor,
    vt: &'static abi::VTable,
}

impl fmt::Debug for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginRef")
            .field("name", &self.name())
            .finish()
    }
}

/// An owned capability, read from a descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityInfo {
    pub kind: u32,
    pub media: u32,
    pub name: String,
    pub implementation: String,
    pub profiles: Vec<String>,
    pub pix_fmts: Vec<String>,
    pub hardware: bool,
    pub rank: i32,
}

impl CapabilityInfo {
    /// A word for the kind.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            abi::cap::FILE_DECODE => "file-decode",
            abi::cap::STREAM_DECODE => "decode",
            abi::cap::ENCODE => "encode",
            abi::cap::MUX => "mux",
            _ => "unknown",
        }
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

impl PluginRef {
    /// Wraps a descriptor the host has already checked (ABI major, struct
    /// sizes, non-null vtable).
    ///
    /// # Safety
    /// `desc` and everything it points at must live for the process.
    pub unsafe fn new(desc: &'static abi::PluginDescriptor) -> Option<PluginRef> {
        // SAFETY: guaranteed by the caller.
        let vt = unsafe { desc.vtable.as_ref() }?;
        Some(PluginRef { desc, vt })
    }

    fn s(&self, s: Str) -> String {
        // SAFETY: descriptor strings live for the process.
        unsafe { s.to_str() }.unwrap_or("<not UTF-8>").to_owned()
    }

    pub fn name(&self) -> String {
        self.s(self.desc.name)
    }

    pub fn version(&self) -> String {
        self.s(self.desc.version)
    }

    pub fn description(&self) -> String {
        self.s(self.desc.description)
    }

    pub fn abi(&self) -> (u32, u32) {
        (self.desc.abi_major, self.desc.abi_minor)
    }

    /// The capability table.
    pub fn capabilities(&self) -> Vec<CapabilityInfo> {
        if self.desc.capabilities.is_null() {
            return Vec::new();
        }
        // SAFETY: the descriptor's table lives for the process.
        let caps =
            unsafe { std::slice::from_raw_parts(self.desc.capabilities, self.desc.n_capabilities) };
        caps.iter()
            .map(|c| CapabilityInfo {
                kind: c.kind,
                media: c.media,
                name: self.s(c.name),
                implementation: self.s(c.implementation),
                profiles: split_list(&self.s(c.profiles)),
                pix_fmts: split_list(&self.s(c.pix_fmts)),
                hardware: c.hardware != 0,
                rank: c.rank,
            })
            .collect()
    }

    fn err(&self, call: &'static str, st: i32, e: OwnedStr) -> CallError {
        let message = if e.ptr.is_null() {
            format!("status {st}")
        } else {
            // SAFETY: the plugin wrote `len` bytes at `ptr`.
            let bytes = unsafe { std::slice::from_raw_parts(e.ptr, e.len) };
            let m = String::from_utf8_lossy(bytes).into_owned();
            if let Some(free) = self.vt.free_string {
                // SAFETY: returned to the allocator that made it, once.
                unsafe { free(e) };
            }
            m
        };
        CallError {
            plugin: self.name(),
            call,
            status: st,
            message,
        }
    }

    fn unknown_media(&self, call: &'static str, media: u32) -> CallError {
        CallError {
            plugin: self.name(),
            call,
            status: status::ERROR,
            message: format!("returned OK with an unknown media kind {media}"),
        }
    }

    fn missing(&self, call: &'static str) -> CallError {
        CallError {
            plugin: self.name(),
            call,
            status: status::UNSUPPORTED,
            message: "entry point not provided".into(),
        }
    }

    /// Runs one raw call and turns its status and error string into a Result.
    fn call(
        &self,
        name: &'static str,
        f: impl FnOnce(*mut OwnedStr) -> i32,
    ) -> Result<i32, CallError> {
        let mut e = OwnedStr::NULL;
        let st = f(&mut e);
        if st < 0 {
            Err(self.err(name, st, e))
        } else {
            if !e.ptr.is_null() {
                if let Some(free) = self.vt.free_string {
                    // SAFETY: as above.
                    unsafe { free(e) };
                }
            }
            Ok(st)
        }
    }

    /// Opens a media file for decoding.
    pub fn open_file(
        &self,
        path: &str,
        cfg: &abi::DecoderConfig,
    ) -> Result<(FileDecoder, abi::MediaInfo), CallError> {
        let open = self
            .vt
            .decoder_open
            .ok_or_else(|| self.missing("decoder_open"))?;
        let mut info = abi::MediaInfo::EMPTY;
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call.
        self.call("decoder_open", |e| unsafe {
            open(Str::new(path), cfg, &mut info, &mut h, e)
        })?;
        Ok((
            FileDecoder {
                p: *self,
                h,
                cur: abi::Decoded::EMPTY,
            },
            info,
        ))
    }

    /// Opens a packet decoder.
    pub fn open_stream_decoder(
        &self,
        params: &StreamInfo,
        cfg: &abi::DecoderConfig,
    ) -> Result<StreamDecoder, CallError> {
        let open = self
            .vt
            .stream_decoder_open
            .ok_or_else(|| self.missing("stream_decoder_open"))?;
        let raw = params.as_raw();
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call.
        self.call("stream_decoder_open", |e| unsafe {
            open(&raw, cfg, &mut h, e)
        })?;
        Ok(StreamDecoder {
            p: *self,
            h,
            cur: abi::Decoded::EMPTY,
        })
    }

    /// Opens an encoder.
    pub fn open_encoder(
        &self,
        cfg: &crate::plugin::EncoderSettings,
    ) -> Result<(Encoder, StreamInfo), CallError> {
        let open = self
            .vt
            .encoder_open
            .ok_or_else(|| self.missing("encoder_open"))?;
        let raw = cfg.as_raw();
        let mut params = std::mem::MaybeUninit::<abi::StreamParams>::zeroed();
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call.
        self.call("encoder_open", |e| unsafe {
            open(&raw, params.as_mut_ptr(), &mut h, e)
        })?;
        let enc = Encoder { p: *self, h };
        // SAFETY: filled by the plugin on OK; its strings live until close, and we copy now.
        let params = unsafe { params.assume_init() };
        let info = unsafe { StreamInfo::from_raw(&params) }.map_err(|m| CallError {
            plugin: self.name(),
            call: "encoder_open",
            status: status::ERROR,
            message: m,
        })?;
        Ok((enc, info))
    }

    /// Creates an output file.
    pub fn open_muxer(
        &self,
        path: &str,
        container: &str,
        options: &str,
    ) -> Result<Muxer, CallError> {
        let open = self
            .vt
            .muxer_open
            .ok_or_else(|| self.missing("muxer_open"))?;
        let mut h: *mut c_void = std::ptr::null_mut();
        // SAFETY: all pointers are valid for the call.
        self.call("muxer_open", |e| unsafe {
            open(
                Str::new(path),
                Str::new(container),
                Str::new(options),
                &mut h,
                e,
            )
        })?;
        Ok(Muxer { p: *self, h })
    }
}

/// What a decoder yields, borrowed until its next call.
#[derive(Debug)]
pub enum Frame<'a> {
    Video(VideoView<'a>),
    Audio {
        sample_rate: u32,
        channels: u32,
        pts: i64,
        samples: &'a [f32],
    },
}

fn decoded_view(d: &abi::Decoded) -> Option<Frame<'_>> {
    match d.media {
        abi::media::VIDEO => {
            // SAFETY: the plugin guarantees the planes until the next call, which
            // needs `&mut` on the decoder that this borrow holds.
            Some(Frame::Video(unsafe {
                crate::plugin::video_from_raw(&d.video)
            }))
        }
        abi::media::AUDIO => {
            let a = &d.audio;
            let n = a.n_samples as usize * a.channels as usize;
            let samples = if a.data.is_null() || n == 0 {
                &[][..]
            } else {
                // SAFETY: as above.
                unsafe { std::slice::from_raw_parts(a.data, n) }
            };
            Some(Frame::Audio {
                sample_rate: a.sample_rate,
                channels: a.channels,
                pts: a.pts,
                samples,
            })
        }
        _ => None,
    }
}

/// An open file decoder; closed on drop.
pub struct FileDecoder {
    p: PluginRef,
    h: *mut c_void,
    cur: abi::Decoded,
}

// SAFETY: plugin handles are used from one thread at a time (`&mut self`).
unsafe impl Send for FileDecoder {}

impl FileDecoder {
    /// Seeks to at or before `time_us`.
    pub fn seek(&mut self, time_us: i64) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .decoder_seek
            .ok_or_else(|| self.p.missing("decoder_seek"))?;
        let h = self.h;
        // SAFETY: valid handle.
        self.p
            .call("decoder_seek", |e| unsafe { f(h, time_us, e) })?;
        Ok(())
    }

    /// The next frame, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CallError> {
        let f = self
            .p
            .vt
            .decoder_next
            .ok_or_else(|| self.p.missing("decoder_next"))?;
        let h = self.h;
        let cur: *mut abi::Decoded = &mut self.cur;
        // SAFETY: valid handle and out-pointer.
        let st = self.p.call("decoder_next", |e| unsafe { f(h, cur, e) })?;
        if st == status::EOF {
            return Ok(None);
        }
        let (p, media) = (self.p, self.cur.media);
        decoded_view(&self.cur)
            .map(Some)
            .ok_or_else(|| p.unknown_media("decoder_next", media))
    }
}

impl Drop for FileDecoder {
    fn drop(&mut self) {
        if let Some(f) = self.p.vt.decoder_close {
            // SAFETY: closed once.
            unsafe { f(self.h) }
        }
    }
}

/// An open packet decoder; closed on drop.
pub struct StreamDecoder {
    p: PluginRef,
    h: *mut c_void,
    cur: abi::Decoded,
}

// SAFETY: as for FileDecoder.
unsafe impl Send for StreamDecoder {}

impl StreamDecoder {
    /// Sends a packet, or `None` to drain.
    pub fn send(&mut self, pkt: Option<&PacketBuf>) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .stream_decoder_send
            .ok_or_else(|| self.p.missing("stream_decoder_send"))?;
        let h = self.h;
        let raw = pkt.map(PacketBuf::as_raw);
        let ptr = raw
            .as_ref()
            .map_or(std::ptr::null(), |r| r as *const abi::Packet);
        // SAFETY: valid handle; the packet is borrowed for the call.
        self.p
            .call("stream_decoder_send", |e| unsafe { f(h, ptr, e) })?;
        Ok(())
    }

    /// `Ok(Ok(frame))`, or `Ok(Err(status))` with [`status::NEED_MORE`] or
    /// [`status::EOF`].
    pub fn receive(&mut self) -> Result<Result<Frame<'_>, i32>, CallError> {
        let f = self
            .p
            .vt
            .stream_decoder_receive
            .ok_or_else(|| self.p.missing("stream_decoder_receive"))?;
        let h = self.h;
        let cur: *mut abi::Decoded = &mut self.cur;
        // SAFETY: valid handle and out-pointer.
        let st = self
            .p
            .call("stream_decoder_receive", |e| unsafe { f(h, cur, e) })?;
        if st != status::OK {
            return Ok(Err(st));
        }
        let (p, media) = (self.p, self.cur.media);
        decoded_view(&self.cur)
            .map(Ok)
            .ok_or_else(|| p.unknown_media("stream_decoder_receive", media))
    }
}

impl Drop for StreamDecoder {
    fn drop(&mut self) {
        if let Some(f) = self.p.vt.stream_decoder_close {
            // SAFETY: closed once.
            unsafe { f(self.h) }
        }
    }
}

/// A packet copied out of the plugin, owned by the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketBuf {
    pub data: Vec<u8>,
    pub pts: i64,
    pub dts: i64,
    pub duration: i64,
    pub time_base: abi::Rational,
    pub key: bool,
}

impl PacketBuf {
    /// Borrows as a raw packet (valid while `self` is).
    pub fn as_raw(&self) -> abi::Packet {
        abi::Packet {
            data: self.data.as_ptr(),
            len: self.data.len(),
            pts: self.pts,
            dts: self.dts,
            duration: self.duration,
            time_base: self.time_base,
            flags: if self.key { abi::packet_flags::KEY } else { 0 },
            private: std::ptr::null_mut(),
        }
    }
}

/// An open encoder; closed on drop.
pub struct Encoder {
    p: PluginRef,
    h: *mut c_void,
}

// SAFETY: as for FileDecoder.
unsafe impl Send for Encoder {}

impl Encoder {
    /// Sends a frame, or `None` to drain.
    pub fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .encoder_send_video
            .ok_or_else(|| self.p.missing("encoder_send_video"))?;
        let raw = frame.map(crate::plugin::video_to_raw);
        let ptr = raw
            .as_ref()
            .map_or(std::ptr::null(), |r| r as *const abi::VideoFrame);
        let h = self.h;
        // SAFETY: valid handle; the frame is borrowed for the call.
        self.p
            .call("encoder_send_video", |e| unsafe { f(h, ptr, e) })?;
        Ok(())
    }

    /// Sends interleaved samples, or `None` to drain.
    pub fn send_audio(
        &mut self,
        samples: Option<(&[f32], u32, u32, i64)>,
    ) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .encoder_send_audio
            .ok_or_else(|| self.p.missing("encoder_send_audio"))?;
        let raw = samples.map(|(s, rate, ch, pts)| abi::AudioFrame {
            sample_rate: rate,
            channels: ch,
            n_samples: (s.len() / ch.max(1) as usize) as u32,
            data: s.as_ptr(),
            pts,
        });
        let ptr = raw
            .as_ref()
            .map_or(std::ptr::null(), |r| r as *const abi::AudioFrame);
        let h = self.h;
        // SAFETY: valid handle; the samples are borrowed for the call.
        self.p
            .call("encoder_send_audio", |e| unsafe { f(h, ptr, e) })?;
        Ok(())
    }

    /// A packet (copied, and released back to the plugin), or the status
    /// (NEED_MORE / EOF).
    pub fn receive(&mut self) -> Result<Result<PacketBuf, i32>, CallError> {
        let f = self
            .p
            .vt
            .encoder_receive
            .ok_or_else(|| self.p.missing("encoder_receive"))?;
        let h = self.h;
        let mut pkt = abi::Packet::EMPTY;
        // SAFETY: valid handle and out-pointer.
        let st = self
            .p
            .call("encoder_receive", |e| unsafe { f(h, &mut pkt, e) })?;
        if st != status::OK {
            return Ok(Err(st));
        }
        let data = if pkt.data.is_null() {
            Vec::new()
        } else {
            // SAFETY: the plugin owns `len` bytes at `data` until release.
            unsafe { std::slice::from_raw_parts(pkt.data, pkt.len) }.to_vec()
        };
        let out = PacketBuf {
            data,
            pts: pkt.pts,
            dts: pkt.dts,
            duration: pkt.duration,
            time_base: pkt.time_base,
            key: pkt.flags & abi::packet_flags::KEY != 0,
        };
        if let Some(rel) = self.p.vt.packet_release {
            // SAFETY: released once, to the plugin that made it.
            unsafe { rel(&mut pkt) };
        }
        Ok(Ok(out))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if let Some(f) = self.p.vt.encoder_close {
            // SAFETY: closed once.
            unsafe { f(self.h) }
        }
    }
}

/// An open muxer; closed on drop (without `finish`, the file is incomplete).
pub struct Muxer {
    p: PluginRef,
    h: *mut c_void,
}

// SAFETY: as for FileDecoder.
unsafe impl Send for Muxer {}

impl Muxer {
    pub fn add_stream(&mut self, params: &StreamInfo) -> Result<u32, CallError> {
        let f = self
            .p
            .vt
            .muxer_add_stream
            .ok_or_else(|| self.p.missing("muxer_add_stream"))?;
        let raw = params.as_raw();
        let mut idx = 0u32;
        let h = self.h;
        // SAFETY: valid handle and pointers for the call.
        self.p
            .call("muxer_add_stream", |e| unsafe { f(h, &raw, &mut idx, e) })?;
        Ok(idx)
    }

    pub fn write_header(&mut self) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .muxer_write_header
            .ok_or_else(|| self.p.missing("muxer_write_header"))?;
        let h = self.h;
        // SAFETY: valid handle.
        self.p.call("muxer_write_header", |e| unsafe { f(h, e) })?;
        Ok(())
    }

    pub fn write_packet(&mut self, stream: u32, pkt: &PacketBuf) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .muxer_write_packet
            .ok_or_else(|| self.p.missing("muxer_write_packet"))?;
        let raw = pkt.as_raw();
        let h = self.h;
        // SAFETY: valid handle; the packet is borrowed for the call.
        self.p
            .call("muxer_write_packet", |e| unsafe { f(h, stream, &raw, e) })?;
        Ok(())
    }

    pub fn finish(&mut self) -> Result<(), CallError> {
        let f = self
            .p
            .vt
            .muxer_finish
            .ok_or_else(|| self.p.missing("muxer_finish"))?;
        let h = self.h;
        // SAFETY: valid handle.
        self.p.call("muxer_finish", |e| unsafe { f(h, e) })?;
        Ok(())
    }
}

impl Drop for Muxer {
    fn drop(&mut self) {
        if let Some(f) = self.p.vt.muxer_close {
            // SAFETY: closed once.
            unsafe { f(self.h) }
        }
    }
}
