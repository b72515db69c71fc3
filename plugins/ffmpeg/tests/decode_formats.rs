//! The file decoder on inputs the roundtrip does not make: 10-bit ProRes with
//! 5.1 PCM in MOV, and interlaced MPEG-2 in MPEG-TS (a stream that does not
//! start at 0). Fixtures are generated with the `ffmpeg` CLI.

use deliver_plugin_api::abi::{self, media, pix};
use deliver_plugin_api::host::{Frame, PluginRef};
use std::path::Path;
use std::process::Command;

fn plugin() -> PluginRef {
    // SAFETY: a null HostApi is allowed; the descriptor lives for the process.
    let desc = unsafe { deliver_plugin_ffmpeg::deliver_plugin_entry(std::ptr::null()).as_ref() }
        .expect("descriptor");
    // SAFETY: as above.
    unsafe { PluginRef::new(desc) }.expect("vtable")
}

fn generate(path: &Path, args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn config(pix_fmt: u32, channels: u32) -> abi::DecoderConfig {
    abi::DecoderConfig {
        struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
        want: media::ANY,
        video_pix_fmt: pix_fmt,
        audio_sample_rate: 0,
        audio_channels: channels,
        threads: 0,
        reserved: [0; 4],
    }
}

#[test]
fn prores_10bit_with_surround_pcm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.mov");
    generate(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=1",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=1",
            "-ac",
            "6",
            "-c:v",
            "prores_ks",
            "-profile:v",
            "2",
            "-pix_fmt",
            "yuv422p10le",
            "-c:a",
            "pcm_s24le",
        ],
    );
    let p = plugin();
    let (mut dec, info) = p
        .open_file(path.to_str().unwrap(), &config(pix::NONE, 2))
        .expect("open");
    assert_eq!(abi::name_str(&info.video_codec), "prores");
    assert_eq!(
        info.pix_fmt,
        pix::YUV422P10,
        "native 10-bit 4:2:2 is an ABI format"
    );
    assert_eq!(abi::name_str(&info.audio_codec), "pcm_s24le");
    assert_eq!(info.channels, 6);
    let (mut frames, mut samples) = (0, 0);
    while let Some(f) = dec.next_frame().expect("decode") {
        match f {
            Frame::Video(v) => {
                assert_eq!((v.pix_fmt, v.n_planes), (pix::YUV422P10, 3));
                assert!(v.planes[0].1 >= 320 * 2 && v.planes[1].1 >= 160 * 2);
                let luma = &v.planes[0].0;
                let sample = u16::from_le_bytes([luma[0], luma[1]]);
                assert!(sample < 1024, "10-bit samples in 16-bit words");
                frames += 1;
            }
            Frame::Audio {
                channels,
                sample_rate,
                samples: s,
                ..
            } => {
                assert_eq!((channels, sample_rate), (2, 48_000), "downmixed to stereo");
                samples += s.len() / 2;
            }
        }
    }
    assert_eq!(frames, 25);
    assert_eq!(samples, 48_000, "PCM has no priming or padding");
}

#[test]
fn interlaced_mpeg2_in_ts_converted_and_seeked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broadcast.ts");
    generate(
        &path,
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
            "-c:v",
            "mpeg2video",
            "-flags",
            "+ilme+ildct",
            "-top",
            "1",
            "-g",
            "12",
            "-q:v",
            "3",
        ],
    );
    let p = plugin();
    let (mut dec, info) = p
        .open_file(path.to_str().unwrap(), &config(pix::YUV444P, 0))
        .expect("open");
    assert_eq!(abi::name_str(&info.video_codec), "mpeg2video");
    assert_eq!(info.field_order, 2, "interlaced");
    assert_eq!(info.has_audio, 0);
    let mut first_pts = None;
    let mut frames = 0;
    while let Some(f) = dec.next_frame().expect("decode") {
        let Frame::Video(v) = f else {
            panic!("no audio was in the file")
        };
        assert_eq!((v.pix_fmt, v.n_planes), (pix::YUV444P, 3));
        assert!(
            v.planes[1].1 >= 320,
            "chroma at full width after conversion"
        );
        first_pts.get_or_insert((v.pts, v.time_base));
        frames += 1;
    }
    assert_eq!(frames, 50);
    let (pts0, tb) = first_pts.unwrap();
    let start = pts0 as f64 * tb.num as f64 / tb.den as f64;
    assert!(start > 0.5, "MPEG-TS timestamps start late ({start} s)");

    // Seeks are relative to the start of the file, whatever its timestamps,
    // and land at or before the target even without an index.
    dec.seek(1_000_000).expect("seek");
    let mut after = Vec::new();
    while let Some(f) = dec.next_frame().expect("decode after seek") {
        if let Frame::Video(v) = f {
            after.push(v.pts as f64 * tb.num as f64 / tb.den as f64 - start);
        }
    }
    let t = after[0];
    assert!((-1e-6..=1.0 + 1e-6).contains(&t), "landed at {t} s");
    let expected = 50 - (t * 25.0).round() as usize;
    assert_eq!(after.len(), expected, "every frame from {t} s to the end");
}
