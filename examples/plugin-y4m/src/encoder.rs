//! The `rawvideo` "encoder": each frame becomes one packet holding its
//! planes packed without padding, which is exactly a y4m frame's payload.

use crate::y4m;
use deliver_plugin_api::abi::{media, pix, status, Rational};
use deliver_plugin_api::plugin::{
    self, AudioView, EncoderSettings, OwnedPacket, PResult, StreamInfo, VideoView,
};
use std::collections::VecDeque;

/// The codec id, FFmpeg's name for uncompressed video (what `ffprobe`
/// reports for a y4m stream).
pub const CODEC: &str = "rawvideo";
/// This plugin's implementation name.
pub const IMPLEMENTATION: &str = "y4m-rawvideo";

/// An open encoder.
pub struct Encoder {
    width: u32,
    height: u32,
    pix_fmt: u32,
    time_base: Rational,
    /// One frame in `time_base` units.
    frame_duration: i64,
    /// Packets made by `send_video`, handed out by `receive`: a raw frame is
    /// "encoded" the moment it arrives.
    ready: VecDeque<OwnedPacket>,
    draining: bool,
}

fn positive(r: Rational) -> bool {
    r.num > 0 && r.den > 0
}

/// `v` (in `from` units) in `to` units, rounded to nearest; 128-bit so that
/// no time base overflows.
fn rescale(v: i64, from: Rational, to: Rational) -> i64 {
    let num = v as i128 * from.num as i128 * to.den as i128;
    let den = from.den as i128 * to.num as i128;
    let half = den / 2;
    let q = if num >= 0 { num + half } else { num - half } / den;
    q as i64
}

/// Copies the planes of `v` into one buffer, dropping stride padding.
///
/// # Errors
/// A plane shorter than its rows need.
pub fn pack(v: &VideoView<'_>) -> Result<Vec<u8>, String> {
    let planes = y4m::planes(v.pix_fmt, v.width, v.height)
        .ok_or_else(|| format!("pixel format {} is not handled", v.pix_fmt))?;
    if v.n_planes < 3 {
        return Err(format!("the frame has {} planes, 3 expected", v.n_planes));
    }
    let mut out = Vec::with_capacity(planes.iter().map(|(r, b)| r * b).sum());
    for (i, &(rows, row)) in planes.iter().enumerate() {
        let (data, stride) = v.planes[i];
        // The last row need not carry its stride padding.
        if stride < row || data.len() < stride * (rows - 1) + row {
            return Err(format!(
                "plane {i} has stride {stride} and {} bytes; {rows} rows of {row} bytes need more",
                data.len()
            ));
        }
        for r in 0..rows {
            out.extend_from_slice(&data[r * stride..r * stride + row]);
        }
    }
    Ok(out)
}

impl plugin::Encoder for Encoder {
    fn open(cfg: &EncoderSettings) -> PResult<(Self, StreamInfo)> {
        if cfg.media != media::VIDEO {
            return Err(format!(
                "{IMPLEMENTATION} encodes video (media {}), not media {}",
                media::VIDEO,
                cfg.media
            ));
        }
        if cfg.codec != CODEC {
            return Err(format!(
                "{IMPLEMENTATION} encodes `{CODEC}`, not `{}`",
                cfg.codec
            ));
        }
        if !cfg.implementation.is_empty() && cfg.implementation != IMPLEMENTATION {
            return Err(format!(
                "this plugin's `{CODEC}` encoder is `{IMPLEMENTATION}`, not `{}`",
                cfg.implementation
            ));
        }
        y4m::refuse_options(&cfg.options, "rawvideo encoder")?;
        if y4m::tag_of(cfg.pix_fmt).is_none() {
            return Err(format!(
                "{IMPLEMENTATION} does not take pixel format {} ({}); accepted: {}",
                cfg.pix_fmt,
                pix::name(cfg.pix_fmt).unwrap_or("unknown"),
                y4m::format_names().join(", ")
            ));
        }
        if cfg.width == 0 || cfg.height == 0 {
            return Err(format!(
                "{IMPLEMENTATION}: frame size {}x{} must be at least 1x1",
                cfg.width, cfg.height
            ));
        }
        if !positive(cfg.frame_rate) || !positive(cfg.time_base) {
            return Err(format!(
                "{IMPLEMENTATION}: frame rate {}/{} and time base {}/{} must be positive",
                cfg.frame_rate.num, cfg.frame_rate.den, cfg.time_base.num, cfg.time_base.den
            ));
        }
        let one_frame = Rational::new(cfg.frame_rate.den, cfg.frame_rate.num);
        let frame_bytes =
            y4m::frame_bytes(cfg.pix_fmt, cfg.width, cfg.height).expect("format checked above");
        let info = StreamInfo {
            media: media::VIDEO,
            codec: CODEC.into(),
            width: cfg.width,
            height: cfg.height,
            pix_fmt: cfg.pix_fmt,
            color: cfg.color,
            frame_rate: cfg.frame_rate,
            bit_rate: (frame_bytes as f64 * 8.0 * cfg.frame_rate.num as f64
                / cfg.frame_rate.den as f64) as i64,
            time_base: cfg.time_base,
            ..StreamInfo::default()
        };
        Ok((
            Encoder {
                width: cfg.width,
                height: cfg.height,
                pix_fmt: cfg.pix_fmt,
                time_base: cfg.time_base,
                frame_duration: rescale(1, one_frame, cfg.time_base).max(1),
                ready: VecDeque::new(),
                draining: false,
            },
            info,
        ))
    }

    fn send_video(&mut self, frame: Option<&VideoView<'_>>) -> PResult<()> {
        let Some(v) = frame else {
            self.draining = true;
            return Ok(());
        };
        if self.draining {
            return Err(format!(
                "{IMPLEMENTATION}: a frame was sent after the drain request"
            ));
        }
        if (v.width, v.height, v.pix_fmt) != (self.width, self.height, self.pix_fmt) {
            return Err(format!(
                "{IMPLEMENTATION} was opened for {}x{} {} but got a {}x{} {} frame",
                self.width,
                self.height,
                pix::name(self.pix_fmt).unwrap_or("?"),
                v.width,
                v.height,
                pix::name(v.pix_fmt).unwrap_or("unknown format")
            ));
        }
        let pts = if positive(v.time_base) && v.time_base != self.time_base {
            rescale(v.pts, v.time_base, self.time_base)
        } else {
            v.pts
        };
        let data = pack(v).map_err(|e| format!("{IMPLEMENTATION}: {e}"))?;
        self.ready.push_back(OwnedPacket {
            data,
            pts,
            // Every frame is its own packet, in order: decode order is
            // presentation order.
            dts: pts,
            duration: self.frame_duration,
            time_base: self.time_base,
            key: true,
        });
        Ok(())
    }

    fn send_audio(&mut self, _: Option<&AudioView<'_>>) -> PResult<()> {
        Err(format!(
            "{IMPLEMENTATION} encodes video; samples go to an audio encoder"
        ))
    }

    fn receive(&mut self) -> PResult<Result<OwnedPacket, i32>> {
        Ok(match self.ready.pop_front() {
            Some(p) => Ok(p),
            // After the drain request EOF must come, never NEED_MORE: the
            // host keeps asking until it sees EOF.
            None if self.draining => Err(status::EOF),
            None => Err(status::NEED_MORE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliver_plugin_api::abi::ColorTags;
    use deliver_plugin_api::plugin::Encoder as _;

    fn settings(fmt: u32) -> EncoderSettings {
        EncoderSettings {
            media: media::VIDEO,
            codec: CODEC.into(),
            width: 4,
            height: 2,
            pix_fmt: fmt,
            frame_rate: Rational::new(25, 1),
            time_base: Rational::new(1, 25),
            color: ColorTags::BT709_LIMITED,
            ..EncoderSettings::default()
        }
    }

    #[test]
    fn packs_strided_planes_tightly_and_drains_to_eof() {
        let (mut enc, info) = Encoder::open(&settings(pix::YUV420P)).unwrap();
        assert_eq!(
            (info.codec.as_str(), info.width, info.height),
            (CODEC, 4, 2)
        );
        // Luma rows of 4 bytes in a stride of 6; chroma 2×1 in a stride of 3.
        let y = [1, 2, 3, 4, 0, 0, 5, 6, 7, 8];
        let (u, v) = ([9, 10], [11, 12]);
        let frame = VideoView {
            width: 4,
            height: 2,
            pix_fmt: pix::YUV420P,
            planes: [(&y[..], 6), (&u[..], 3), (&v[..], 3), (&[], 0)],
            n_planes: 3,
            pts: 7,
            time_base: Rational::new(1, 25),
            color: ColorTags::BT709_LIMITED,
            key: false,
        };
        assert_eq!(enc.receive().unwrap().unwrap_err(), status::NEED_MORE);
        enc.send_video(Some(&frame)).unwrap();
        enc.send_video(None).unwrap();
        let p = enc.receive().unwrap().unwrap();
        assert_eq!(p.data, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!((p.pts, p.dts, p.duration, p.key), (7, 7, 1, true));
        assert_eq!(enc.receive().unwrap().unwrap_err(), status::EOF);
        let e = enc.send_video(Some(&frame)).unwrap_err();
        assert!(e.contains("after the drain"), "{e}");
    }

    #[test]
    fn refuses_formats_options_and_sizes_it_does_not_take() {
        let e = Encoder::open(&settings(pix::RGBA)).err().unwrap();
        assert!(e.contains("rgba") && e.contains("yuv420p, yuv422p"), "{e}");
        let mut s = settings(pix::YUV444P);
        s.options = "crf = 18".into();
        assert!(Encoder::open(&s).err().unwrap().contains("`crf`"));
        let mut s = settings(pix::YUV444P);
        s.width = 0;
        assert!(Encoder::open(&s).err().unwrap().contains("0x2"));
    }

    #[test]
    fn rescales_pts_and_durations() {
        assert_eq!(
            rescale(1, Rational::new(1, 25), Rational::new(1, 90000)),
            3600
        );
        assert_eq!(rescale(-3, Rational::new(1, 25), Rational::new(1, 50)), -6);
        assert_eq!(
            rescale(1, Rational::new(1001, 30000), Rational::new(1, 30000)),
            1001
        );
    }
}
