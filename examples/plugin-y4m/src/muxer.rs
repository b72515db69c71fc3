//! The `y4m` muxer: one raw video stream, written as a YUV4MPEG2 file.

use crate::{encoder, y4m};
use deliver_plugin_api::abi::{media, pix, NO_PTS};
use deliver_plugin_api::plugin::{self, PResult, PacketView, StreamInfo};
use std::fs::File;
use std::io::{BufWriter, Write};

/// The container name in capability tables and presets.
pub const CONTAINER: &str = "y4m";

/// A y4m file being written.
pub struct Muxer {
    path: String,
    out: Option<BufWriter<File>>,
    header: Option<y4m::Header>,
    frame_bytes: usize,
    written: bool,
    last_pts: Option<i64>,
    frames: u64,
}

impl Muxer {
    fn out(&mut self) -> Result<&mut BufWriter<File>, String> {
        let path = &self.path;
        self.out
            .as_mut()
            .ok_or_else(|| format!("{path}: the file is already finished"))
    }
}

impl plugin::Muxer for Muxer {
    fn open(path: &str, container: &str, options: &str) -> PResult<Self> {
        if container != CONTAINER {
            return Err(format!(
                "cannot write {path}: this plugin writes `{CONTAINER}`, not `{container}`"
            ));
        }
        y4m::refuse_options(options, "y4m muxer").map_err(|e| format!("{path}: {e}"))?;
        let file = File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
        Ok(Muxer {
            path: path.to_owned(),
            out: Some(BufWriter::new(file)),
            header: None,
            frame_bytes: 0,
            written: false,
            last_pts: None,
            frames: 0,
        })
    }

    fn add_stream(&mut self, p: &StreamInfo) -> PResult<u32> {
        let path = &self.path;
        if self.header.is_some() {
            return Err(format!("{path}: a y4m file holds one video stream"));
        }
        if p.media != media::VIDEO || p.codec != encoder::CODEC {
            return Err(format!(
                "{path}: a y4m file carries `{}` video only, not `{}` (media {})",
                encoder::CODEC,
                p.codec,
                p.media
            ));
        }
        let frame_bytes = y4m::frame_bytes(p.pix_fmt, p.width, p.height)
            .filter(|_| p.width > 0 && p.height > 0)
            .ok_or_else(|| {
                format!(
                    "{path}: cannot write {}x{} {}; formats: {}",
                    p.width,
                    p.height,
                    pix::name(p.pix_fmt).unwrap_or("(unknown format)"),
                    y4m::format_names().join(", ")
                )
            })?;
        if p.frame_rate.num <= 0 || p.frame_rate.den <= 0 {
            return Err(format!(
                "{path}: y4m needs a frame rate, and {}/{} is not one",
                p.frame_rate.num, p.frame_rate.den
            ));
        }
        self.header = Some(y4m::Header {
            width: p.width,
            height: p.height,
            frame_rate: p.frame_rate,
            pix_fmt: p.pix_fmt,
            range: p.color.range,
            // The host makes progressive, square-pixel pictures; the ABI's
            // stream params carry neither field order nor aspect.
            interlace: 'p',
            aspect: deliver_plugin_api::abi::Rational::new(1, 1),
        });
        self.frame_bytes = frame_bytes;
        Ok(0)
    }

    fn write_header(&mut self) -> PResult<()> {
        let line = match &self.header {
            None => return Err(format!("{}: add the stream before the header", self.path)),
            Some(_) if self.written => {
                return Err(format!("{}: the header is already written", self.path))
            }
            Some(h) => h.to_line(),
        };
        let path = self.path.clone();
        self.out()?
            .write_all(line.as_bytes())
            .map_err(|e| format!("writing {path}: {e}"))?;
        self.written = true;
        Ok(())
    }

    fn write_packet(&mut self, stream: u32, pkt: &PacketView<'_>) -> PResult<()> {
        let path = self.path.clone();
        if !self.written {
            return Err(format!("{path}: write the header before packets"));
        }
        if stream != 0 {
            return Err(format!("{path}: no stream {stream} (a y4m file has one)"));
        }
        if pkt.data.len() != self.frame_bytes {
            return Err(format!(
                "{path}: a packet of {} bytes is not one frame ({} bytes)",
                pkt.data.len(),
                self.frame_bytes
            ));
        }
        // y4m has no timestamps: frames play in file order, one per frame
        // period. A packet out of order would play at the wrong time.
        if pkt.pts != NO_PTS {
            if let Some(last) = self.last_pts.filter(|l| pkt.pts <= *l) {
                return Err(format!(
                    "{path}: frame pts {} after pts {last}; y4m stores frames in presentation order",
                    pkt.pts
                ));
            }
            self.last_pts = Some(pkt.pts);
        }
        let out = self.out()?;
        out.write_all(b"FRAME\n")
            .and_then(|()| out.write_all(pkt.data))
            .map_err(|e| format!("writing frame to {path}: {e}"))?;
        self.frames += 1;
        Ok(())
    }

    fn finish(&mut self) -> PResult<()> {
        if !self.written {
            return Err(format!("{}: nothing was written (no header)", self.path));
        }
        if let Some(mut out) = self.out.take() {
            let path = &self.path;
            out.flush().map_err(|e| format!("finishing {path}: {e}"))?;
            plugin::log(
                plugin::level::DEBUG,
                "y4m",
                &format!("wrote {path}: {} frames", self.frames),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deliver_plugin_api::abi::{ColorTags, Rational};
    use deliver_plugin_api::plugin::Muxer as _;

    fn params() -> StreamInfo {
        StreamInfo {
            media: media::VIDEO,
            codec: encoder::CODEC.into(),
            width: 2,
            height: 2,
            pix_fmt: pix::YUV444P,
            color: ColorTags::BT709_LIMITED,
            frame_rate: Rational::new(25, 1),
            time_base: Rational::new(1, 25),
            ..StreamInfo::default()
        }
    }

    fn packet(data: &[u8], pts: i64) -> PacketView<'_> {
        PacketView {
            data,
            pts,
            dts: pts,
            duration: 1,
            time_base: Rational::new(1, 25),
            key: true,
        }
    }

    #[test]
    fn writes_header_and_frames() {
        let path = std::env::temp_dir().join(format!("y4m-mux-{}.y4m", std::process::id()));
        let p = path.to_str().unwrap();
        let mut m = Muxer::open(p, CONTAINER, "").unwrap();
        assert_eq!(m.add_stream(&params()).unwrap(), 0);
        assert!(m.add_stream(&params()).is_err(), "one stream only");
        m.write_header().unwrap();
        m.write_packet(0, &packet(&[7; 12], 0)).unwrap();
        let e = m.write_packet(0, &packet(&[7; 12], 0)).unwrap_err();
        assert!(e.contains("presentation order"), "{e}");
        assert!(m
            .write_packet(0, &packet(&[7; 11], 1))
            .unwrap_err()
            .contains("11 bytes"));
        assert!(m
            .write_packet(1, &packet(&[7; 12], 1))
            .unwrap_err()
            .contains("no stream 1"));
        m.finish().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let head = b"YUV4MPEG2 W2 H2 F25:1 Ip A1:1 C444 XCOLORRANGE=LIMITED\nFRAME\n";
        assert_eq!(&bytes[..head.len()], head);
        assert_eq!(&bytes[head.len()..], &[7; 12]);
    }

    #[test]
    fn refuses_other_codecs_containers_and_options() {
        let path = std::env::temp_dir().join(format!("y4m-refuse-{}.y4m", std::process::id()));
        let p = path.to_str().unwrap();
        assert!(Muxer::open(p, "mp4", "")
            .err()
            .unwrap()
            .contains("not `mp4`"));
        assert!(Muxer::open(p, CONTAINER, "x = 1")
            .err()
            .unwrap()
            .contains("`x`"));
        let mut m = Muxer::open(p, CONTAINER, "").unwrap();
        let mut h264 = params();
        h264.codec = "h264".into();
        assert!(m.add_stream(&h264).unwrap_err().contains("`h264`"));
        assert!(m.write_header().unwrap_err().contains("add the stream"));
        let _ = std::fs::remove_file(&path);
    }
}
