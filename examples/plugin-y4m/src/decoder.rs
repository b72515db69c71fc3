//! Decoding: `rawvideo` packets back into frames (a stream decoder), and
//! y4m files into frames (a file decoder). Neither converts pixel formats:
//! asking for another format is refused, not silently ignored.

use crate::{encoder, y4m};
use deliver_plugin_api::abi::{self, media, pix, status, ColorTags, Rational};
use deliver_plugin_api::plugin::{self, FrameView, PResult, PacketView, StreamInfo, VideoView};
use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

/// Borrows a packed frame as a view: three planes, each with a stride of
/// exactly its row.
fn view<'a>(buf: &'a [u8], h: &Shape, pts: i64) -> VideoView<'a> {
    let planes = y4m::planes(h.pix_fmt, h.width, h.height).expect("shape checked at open");
    let mut out: [(&[u8], usize); 4] = [(&[], 0); 4];
    let mut at = 0;
    for (i, (rows, row)) in planes.into_iter().enumerate() {
        out[i] = (&buf[at..at + rows * row], row);
        at += rows * row;
    }
    VideoView {
        width: h.width,
        height: h.height,
        pix_fmt: h.pix_fmt,
        planes: out,
        n_planes: 3,
        pts,
        time_base: h.time_base,
        color: h.color,
        // Every raw frame stands alone.
        key: true,
    }
}

/// What every frame of a stream looks like.
struct Shape {
    width: u32,
    height: u32,
    pix_fmt: u32,
    time_base: Rational,
    color: ColorTags,
    frame_bytes: usize,
}

/// Refuses a conversion this plugin does not do.
fn check_request(cfg: &abi::DecoderConfig, native: u32) -> Result<(), String> {
    if cfg.video_pix_fmt != pix::NONE && cfg.video_pix_fmt != native {
        return Err(format!(
            "this decoder does not convert pixel formats: the stream is {} and {} ({}) was asked for",
            pix::name(native).unwrap_or("?"),
            cfg.video_pix_fmt,
            pix::name(cfg.video_pix_fmt).unwrap_or("unknown")
        ));
    }
    Ok(())
}

/// Decodes `rawvideo` packets as the encoder made them.
pub struct StreamDecoder {
    shape: Shape,
    queue: VecDeque<(Vec<u8>, i64)>,
    /// The frame handed out last; its view stays valid until the next call.
    current: Vec<u8>,
    draining: bool,
}

impl plugin::StreamDecoder for StreamDecoder {
    fn open(p: &StreamInfo, cfg: &abi::DecoderConfig) -> PResult<Self> {
        if p.codec != encoder::CODEC || (p.media != 0 && p.media != media::VIDEO) {
            return Err(format!(
                "this decoder reads `{}` video, not `{}` (media {})",
                encoder::CODEC,
                p.codec,
                p.media
            ));
        }
        let frame_bytes = y4m::frame_bytes(p.pix_fmt, p.width, p.height)
            .filter(|_| p.width > 0 && p.height > 0)
            .ok_or_else(|| {
                format!(
                    "cannot decode {}x{} {}; formats: {}",
                    p.width,
                    p.height,
                    pix::name(p.pix_fmt).unwrap_or("(unknown format)"),
                    y4m::format_names().join(", ")
                )
            })?;
        check_request(cfg, p.pix_fmt)?;
        Ok(StreamDecoder {
            shape: Shape {
                width: p.width,
                height: p.height,
                pix_fmt: p.pix_fmt,
                time_base: p.time_base,
                color: p.color,
                frame_bytes,
            },
            queue: VecDeque::new(),
            current: Vec::new(),
            draining: false,
        })
    }

    fn send(&mut self, pkt: Option<&PacketView<'_>>) -> PResult<()> {
        let Some(p) = pkt else {
            self.draining = true;
            return Ok(());
        };
        if self.draining {
            return Err("rawvideo decoder: a packet was sent after the drain request".into());
        }
        if p.data.len() != self.shape.frame_bytes {
            return Err(format!(
                "rawvideo decoder: a packet of {} bytes is not one frame ({} bytes)",
                p.data.len(),
                self.shape.frame_bytes
            ));
        }
        // The packet is borrowed for this call only: keep a copy.
        self.queue.push_back((p.data.to_vec(), p.pts));
        Ok(())
    }

    fn receive(&mut self) -> PResult<Result<FrameView<'_>, i32>> {
        match self.queue.pop_front() {
            Some((data, pts)) => {
                self.current = data;
                Ok(Ok(FrameView::Video(view(&self.current, &self.shape, pts))))
            }
            None if self.draining => Ok(Err(status::EOF)),
            None => Ok(Err(status::NEED_MORE)),
        }
    }
}

/// Reads a y4m file.
pub struct FileDecoder {
    path: String,
    file: BufReader<File>,
    shape: Shape,
    frame_rate: Rational,
    data_start: u64,
    want_video: bool,
    /// The index of the next frame.
    index: i64,
    current: Vec<u8>,
}

/// Reads one line (without `\n`), at most [`y4m::MAX_LINE`] bytes; `None`
/// at the end of the file.
fn read_line(r: &mut impl BufRead, what: &str) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(y4m::MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("reading {what}: {e}"))?;
    if n == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        return Err(format!(
            "{what} is longer than {} bytes or cut short",
            y4m::MAX_LINE
        ));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| format!("{what} is not text"))
}

impl FileDecoder {
    /// Reads the next `FRAME` line; `false` at a clean end of file.
    fn frame_line(&mut self) -> Result<bool, String> {
        let what = format!("{}: frame {} header", self.path, self.index);
        match read_line(&mut self.file, &what)? {
            None => Ok(false),
            Some(l) if l == y4m::FRAME || l.starts_with("FRAME ") => Ok(true),
            Some(l) => Err(format!("{what}: expected `FRAME`, found `{l}`")),
        }
    }
}

impl plugin::FileDecoder for FileDecoder {
    fn open(path: &str, cfg: &abi::DecoderConfig) -> PResult<(Self, abi::MediaInfo)> {
        let f = File::open(path).map_err(|e| format!("cannot open {path}: {e}"))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        let mut file = BufReader::new(f);
        let line = read_line(&mut file, &format!("{path}: the header"))?
            .ok_or_else(|| format!("{path} is empty"))?;
        let h = y4m::Header::parse(&line).map_err(|e| format!("{path}: {e}"))?;
        check_request(cfg, h.pix_fmt).map_err(|e| format!("{path}: {e}"))?;
        let frame_bytes = y4m::frame_bytes(h.pix_fmt, h.width, h.height)
            .expect("every format the header parser accepts has a size");
        let data_start = line.len() as u64 + 1;
        // Exact only when every frame header is a bare `FRAME` line, as
        // FFmpeg and this plugin write them; otherwise unknown.
        let per_frame = (y4m::FRAME.len() + 1 + frame_bytes) as u64;
        let body = size.saturating_sub(data_start);
        let n_frames = if body % per_frame == 0 {
            (body / per_frame) as i64
        } else {
            -1
        };
        let fps = h.frame_rate.num as f64 / h.frame_rate.den as f64;
        let mut info = abi::MediaInfo::EMPTY;
        // FFmpeg's demuxer name, so that reports agree with ffprobe.
        info.container = abi::name_from("yuv4mpegpipe");
        info.has_video = 1;
        info.video_codec = abi::name_from(encoder::CODEC);
        info.width = h.width;
        info.height = h.height;
        info.pix_fmt = h.pix_fmt;
        info.pix_fmt_name = abi::name_from(pix::name(h.pix_fmt).unwrap_or(""));
        info.frame_rate = h.frame_rate;
        info.n_frames = n_frames;
        info.bit_rate = (frame_bytes as f64 * 8.0 * fps) as i64;
        if n_frames >= 0 {
            info.video_duration_us = (n_frames as f64 * 1e6 / fps).round() as i64;
            info.duration_us = info.video_duration_us;
        }
        info.color = ColorTags {
            range: h.range,
            ..ColorTags::UNSPECIFIED
        };
        info.field_order = match h.interlace {
            'p' => 1,
            't' | 'b' => 2,
            _ => 0,
        };
        Ok((
            FileDecoder {
                path: path.to_owned(),
                file,
                shape: Shape {
                    width: h.width,
                    height: h.height,
                    pix_fmt: h.pix_fmt,
                    // Frame n is at n frame periods.
                    time_base: Rational::new(h.frame_rate.den, h.frame_rate.num),
                    color: info.color,
                    frame_bytes,
                },
                frame_rate: h.frame_rate,
                data_start,
                want_video: cfg.want & media::VIDEO != 0,
                index: 0,
                current: vec![0; frame_bytes],
            },
            info,
        ))
    }

    fn seek(&mut self, time_us: i64) -> PResult<()> {
        // The frame showing at `time_us`, so that decoding starts at or
        // before it.
        let target = (time_us.max(0) as i128 * self.frame_rate.num as i128
            / (self.frame_rate.den as i128 * 1_000_000)) as i64;
        self.file
            .seek(SeekFrom::Start(self.data_start))
            .map_err(|e| format!("{}: seeking: {e}", self.path))?;
        self.index = 0;
        // Frame headers may carry parameters, so their length is only known
        // by reading them: step over the frames before the target.
        while self.index < target {
            if !self.frame_line()? {
                return Ok(()); // past the end: the next call reports EOF
            }
            self.file
                .seek_relative(self.shape.frame_bytes as i64)
                .map_err(|e| format!("{}: seeking: {e}", self.path))?;
            self.index += 1;
        }
        Ok(())
    }

    fn next(&mut self) -> PResult<Option<FrameView<'_>>> {
        if !self.want_video || !self.frame_line()? {
            return Ok(None);
        }
        self.file.read_exact(&mut self.current).map_err(|e| {
            format!(
                "{}: frame {} is cut short ({} bytes expected): {e}",
                self.path, self.index, self.shape.frame_bytes
            )
        })?;
        let pts = self.index;
        self.index += 1;
        Ok(Some(FrameView::Video(view(
            &self.current,
            &self.shape,
            pts,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliver_plugin_api::plugin::{FileDecoder as _, StreamDecoder as _};

    fn cfg(want_pix: u32) -> abi::DecoderConfig {
        abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::VIDEO,
            video_pix_fmt: want_pix,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 0,
            reserved: [0; 4],
        }
    }

    fn params() -> StreamInfo {
        StreamInfo {
            media: media::VIDEO,
            codec: encoder::CODEC.into(),
            width: 2,
            height: 2,
            pix_fmt: pix::YUV420P,
            time_base: Rational::new(1, 25),
            ..StreamInfo::default()
        }
    }

    #[test]
    fn stream_decoder_splits_planes_and_ends_with_eof() {
        let mut d = StreamDecoder::open(&params(), &cfg(pix::NONE)).unwrap();
        let data = [1, 2, 3, 4, 5, 6];
        let pkt = PacketView {
            data: &data,
            pts: 3,
            dts: 3,
            duration: 1,
            time_base: Rational::new(1, 25),
            key: true,
        };
        assert_eq!(d.receive().unwrap().err(), Some(status::NEED_MORE));
        d.send(Some(&pkt)).unwrap();
        d.send(None).unwrap();
        match d.receive().unwrap() {
            Ok(FrameView::Video(v)) => {
                assert_eq!(v.pts, 3);
                assert_eq!(v.planes[0], (&[1, 2, 3, 4][..], 2));
                assert_eq!(v.planes[1], (&[5][..], 1));
                assert_eq!(v.planes[2], (&[6][..], 1));
            }
            _ => panic!("expected a video frame"),
        }
        assert_eq!(d.receive().unwrap().err(), Some(status::EOF));
        assert!(d.send(Some(&pkt)).unwrap_err().contains("after the drain"));
    }

    #[test]
    fn decoders_refuse_conversions() {
        let e = StreamDecoder::open(&params(), &cfg(pix::YUV444P))
            .err()
            .unwrap();
        assert!(
            e.contains("does not convert") && e.contains("yuv444p"),
            "{e}"
        );
    }

    #[test]
    fn file_decoder_reads_counts_and_seeks() {
        let path = std::env::temp_dir().join(format!("y4m-dec-{}.y4m", std::process::id()));
        let mut bytes = b"YUV4MPEG2 W2 H2 F25:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL\n".to_vec();
        for i in 0..3u8 {
            bytes.extend_from_slice(b"FRAME\n");
            bytes.extend_from_slice(&[i; 6]);
        }
        std::fs::write(&path, &bytes).unwrap();
        let (mut d, info) = FileDecoder::open(path.to_str().unwrap(), &cfg(pix::NONE)).unwrap();
        assert_eq!(info.n_frames, 3);
        assert_eq!(info.color.range, 2);
        assert_eq!(info.video_duration_us, 120_000);
        assert_eq!(abi::name_str(&info.pix_fmt_name), "yuv420p");
        // 50 ms is inside frame 1 (40..80 ms).
        d.seek(50_000).unwrap();
        match d.next().unwrap() {
            Some(FrameView::Video(v)) => assert_eq!((v.pts, v.planes[0].0[0]), (1, 1)),
            _ => panic!("expected frame 1"),
        }
        assert!(d.next().unwrap().is_some());
        assert!(d.next().unwrap().is_none());
        // A cut-short last frame is an error, not a silent end.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let (mut d, info) = FileDecoder::open(path.to_str().unwrap(), &cfg(pix::NONE)).unwrap();
        assert_eq!(info.n_frames, -1);
        d.next().unwrap();
        d.next().unwrap();
        let e = d.next().err().unwrap();
        assert!(e.contains("frame 2 is cut short"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
