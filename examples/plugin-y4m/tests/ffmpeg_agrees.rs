//! The FFmpeg CLI is the independent judge: it must read what this plugin
//! writes (size, frame count, pixel format, range, and every byte), and this
//! plugin must read what FFmpeg writes. Everything goes through the C ABI,
//! as the host calls it. Needs `ffmpeg` and `ffprobe` on PATH.

use deliver_plugin_api::abi::{self, media, pix, ColorTags, Rational};
use deliver_plugin_api::host::{Frame, PluginRef};
use deliver_plugin_api::plugin::{EncoderSettings, VideoView};
use std::path::{Path, PathBuf};
use std::process::Command;

fn plugin() -> PluginRef {
    // SAFETY: a null HostApi is allowed; the descriptor lives for the process.
    let desc = unsafe { &*deliver_example_plugin_y4m::deliver_plugin_entry(std::ptr::null()) };
    unsafe { PluginRef::new(desc) }.expect("a vtable")
}

/// A folder removed on drop (std only: the example has no dependencies).
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("y4m-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (install Debian's ffmpeg)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `ffprobe` of the first video stream, as key=value pairs.
fn probe(path: &Path) -> Vec<(String, String)> {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,pix_fmt,color_range,nb_read_frames,r_frame_rate",
        ])
        .args(["-of", "default=nw=1"])
        .arg(path));
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn get<'a>(p: &'a [(String, String)], key: &str) -> &'a str {
    p.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {p:?}"))
}

/// Frame `n` of a test picture, as packed planes: every sample differs
/// from its neighbours and from frame to frame, and stays in range for the
/// format's depth.
fn picture(fmt: u32, w: u32, h: u32, n: u32) -> Vec<Vec<u8>> {
    let planes = deliver_example_plugin_y4m::y4m::planes(fmt, w, h).unwrap();
    let depth = pix::layout(fmt).unwrap().bit_depth;
    planes
        .iter()
        .enumerate()
        .map(|(i, &(rows, row))| {
            let bytes = if depth > 8 { 2 } else { 1 };
            let mut out = Vec::with_capacity(rows * row);
            for r in 0..rows {
                for c in 0..row / bytes {
                    let v = (r * 7 + c * 3 + i * 50 + n as usize * 11) as u32 % (1 << depth);
                    if bytes == 2 {
                        out.extend_from_slice(&(v as u16).to_le_bytes());
                    } else {
                        out.push(v as u8);
                    }
                }
            }
            out
        })
        .collect()
}

/// Encodes `frames` pictures through the plugin's encoder and muxer into
/// `path`; returns the bytes of every frame, packed.
fn write_y4m(path: &Path, fmt: u32, w: u32, h: u32, frames: u32, color: ColorTags) -> Vec<u8> {
    let p = plugin();
    let (mut enc, params) = p
        .open_encoder(&EncoderSettings {
            media: media::VIDEO,
            codec: "rawvideo".into(),
            width: w,
            height: h,
            pix_fmt: fmt,
            frame_rate: Rational::new(25, 1),
            time_base: Rational::new(1, 25),
            color,
            ..EncoderSettings::default()
        })
        .unwrap();
    let mut mux = p.open_muxer(path.to_str().unwrap(), "y4m", "").unwrap();
    let idx = mux.add_stream(&params).unwrap();
    mux.write_header().unwrap();
    let mut all = Vec::new();
    let planes = deliver_example_plugin_y4m::y4m::planes(fmt, w, h).unwrap();
    for n in 0..=frames {
        if n < frames {
            let pic = picture(fmt, w, h, n);
            let mut views: [(&[u8], usize); 4] = [(&[], 0); 4];
            for i in 0..3 {
                views[i] = (&pic[i], planes[i].1);
                all.extend_from_slice(&pic[i]);
            }
            enc.send_video(Some(&VideoView {
                width: w,
                height: h,
                pix_fmt: fmt,
                planes: views,
                n_planes: 3,
                pts: n as i64,
                time_base: Rational::new(1, 25),
                color,
                key: false,
            }))
            .unwrap();
        } else {
            enc.send_video(None).unwrap();
        }
        while let Ok(pkt) = enc.receive().unwrap() {
            mux.write_packet(idx, &pkt).unwrap();
        }
    }
    mux.finish().unwrap();
    all
}

#[test]
fn ffprobe_reads_size_frames_format_and_range_and_ffmpeg_every_byte() {
    let tmp = TempDir::new("probe");
    let full = ColorTags {
        range: 2,
        ..ColorTags::BT709_LIMITED
    };
    // Odd sizes too: chroma rounds up, as FFmpeg rounds it.
    for (fmt, w, h, color, range) in [
        (pix::YUV420P, 64, 48, ColorTags::BT709_LIMITED, "tv"),
        (pix::YUV422P, 64, 48, full, "pc"),
        (pix::YUV444P, 33, 17, ColorTags::BT709_LIMITED, "tv"),
        (pix::YUV420P10, 35, 19, ColorTags::BT709_LIMITED, "tv"),
        (pix::YUV422P10, 64, 48, full, "pc"),
        (pix::YUV444P10, 16, 16, ColorTags::BT709_LIMITED, "tv"),
    ] {
        let name = pix::name(fmt).unwrap();
        let path = tmp.0.join(format!("{name}.y4m"));
        let frames = 7;
        let bytes = write_y4m(&path, fmt, w, h, frames, color);
        let p = probe(&path);
        assert_eq!(get(&p, "codec_name"), "rawvideo", "{name}: {p:?}");
        assert_eq!(get(&p, "width"), w.to_string(), "{name}: {p:?}");
        assert_eq!(get(&p, "height"), h.to_string(), "{name}: {p:?}");
        assert_eq!(get(&p, "pix_fmt"), name, "{name}: {p:?}");
        assert_eq!(
            get(&p, "nb_read_frames"),
            frames.to_string(),
            "{name}: {p:?}"
        );
        assert_eq!(get(&p, "r_frame_rate"), "25/1", "{name}: {p:?}");
        assert_eq!(get(&p, "color_range"), range, "{name}: {p:?}");
        // FFmpeg's decode of the file is the plugin's input, byte for byte.
        let raw = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "rawvideo", "-"]));
        assert!(
            raw == bytes,
            "{name}: FFmpeg decoded other bytes than were encoded"
        );
    }
}

#[test]
fn the_file_decoder_reads_what_ffmpeg_writes() {
    let tmp = TempDir::new("read");
    for (ffmpeg_fmt, fmt) in [("yuv420p", pix::YUV420P), ("yuv422p10le", pix::YUV422P10)] {
        let path = tmp.0.join(format!("{ffmpeg_fmt}.y4m"));
        run(Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc=s=48x32:r=25:d=0.4",
            ])
            .args([
                "-pix_fmt",
                ffmpeg_fmt,
                "-color_range",
                "pc",
                "-strict",
                "-1",
            ])
            .arg(&path));
        let want = run(Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-f", "rawvideo", "-"]));
        let cfg = abi::DecoderConfig {
            struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
            want: media::VIDEO,
            video_pix_fmt: pix::NONE,
            audio_sample_rate: 0,
            audio_channels: 0,
            threads: 0,
            reserved: [0; 4],
        };
        let (mut dec, info) = plugin().open_file(path.to_str().unwrap(), &cfg).unwrap();
        assert_eq!((info.width, info.height, info.pix_fmt), (48, 32, fmt));
        assert_eq!(info.n_frames, 10, "0.4 s at 25 fps");
        assert_eq!(info.color.range, 2);
        let mut got = Vec::new();
        while let Some(f) = dec.next_frame().unwrap() {
            let Frame::Video(v) = f else {
                panic!("a y4m file holds video only")
            };
            for (data, _) in &v.planes[..v.n_planes] {
                got.extend_from_slice(data);
            }
        }
        assert!(
            got == want,
            "{ffmpeg_fmt}: the planes differ from FFmpeg's decode"
        );
    }
}
