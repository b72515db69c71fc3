//! Encode → mux → probe → decode, through the C ABI exactly as the host
//! drives a loaded plugin, on real libx264/AAC output checked with `ffprobe`
//! and the `ffmpeg` CLI as peers.

use deliver_plugin_api::abi::{self, media, pix, status};
use deliver_plugin_api::host::{self, Frame, PacketBuf, PluginRef};
use deliver_plugin_api::plugin::{EncoderSettings, StreamInfo, VideoView};
use std::path::Path;
use std::process::Command;

const W: u32 = 320;
const H: u32 = 240;
const FRAMES: usize = 50;
const FPS: i32 = 25;
const RATE: u32 = 48_000;
const CHANNELS: u32 = 2;
const SAMPLES: usize = 2 * RATE as usize;
const TONE_HZ: f64 = 1000.0;
const AMPLITUDE: f64 = 0.5;

fn plugin() -> PluginRef {
    // SAFETY: a null HostApi is allowed; the descriptor lives for the process.
    let desc = unsafe { deliver_plugin_ffmpeg::deliver_plugin_entry(std::ptr::null()).as_ref() }
        .expect("the entry point returns a descriptor");
    assert_eq!(desc.abi_major, abi::ABI_MAJOR);
    // SAFETY: as above.
    unsafe { PluginRef::new(desc) }.expect("the descriptor has a vtable")
}

/// A smooth gradient that moves 4 pixels a frame: triangle waves, so there
/// are no wrap-around edges for the encoder to smear.
fn source_planes(i: usize) -> [Vec<u8>; 3] {
    let tri = |t: usize, half: usize| {
        let t = t % (2 * half);
        if t < half {
            t
        } else {
            2 * half - 1 - t
        }
    };
    let (w, h) = (W as usize, H as usize);
    let mut y = vec![0u8; w * h];
    for r in 0..h {
        for c in 0..w {
            y[r * w + c] = (16 + tri(c + r / 2 + 4 * i, 220)) as u8;
        }
    }
    let (cw, ch) = (w / 2, h / 2);
    let mut u = vec![0u8; cw * ch];
    let mut v = vec![0u8; cw * ch];
    for r in 0..ch {
        for c in 0..cw {
            u[r * cw + c] = (96 + tri(c + 2 * i, 64)) as u8;
            v[r * cw + c] = (96 + tri(r + i, 64)) as u8;
        }
    }
    [y, u, v]
}

/// The same tone on every channel.
fn tone(n: usize) -> f32 {
    (AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * n as f64 / RATE as f64).sin()) as f32
}

fn video_settings(options: &str) -> EncoderSettings {
    EncoderSettings {
        media: media::VIDEO,
        codec: "h264".into(),
        implementation: "libx264".into(),
        width: W,
        height: H,
        pix_fmt: pix::YUV420P,
        frame_rate: abi::Rational::new(FPS, 1),
        time_base: abi::Rational::new(1, FPS),
        color: abi::ColorTags::BT709_LIMITED,
        global_header: true,
        options: options.into(),
        ..EncoderSettings::default()
    }
}

fn audio_settings(options: &str) -> EncoderSettings {
    EncoderSettings {
        media: media::AUDIO,
        codec: "aac".into(),
        sample_rate: RATE,
        channels: CHANNELS,
        global_header: true,
        options: options.into(),
        ..EncoderSettings::default()
    }
}

fn collect(enc: &mut host::Encoder, out: &mut Vec<PacketBuf>) -> i32 {
    loop {
        match enc.receive().expect("encoder receive") {
            Ok(p) => out.push(p),
            Err(s) => return s,
        }
    }
}

fn encode_video(p: &PluginRef) -> (StreamInfo, Vec<PacketBuf>) {
    let (mut enc, info) = p
        .open_encoder(&video_settings("crf = 18\npreset = \"veryfast\""))
        .expect("open libx264");
    let mut packets = Vec::new();
    for i in 0..FRAMES {
        let planes = source_planes(i);
        let frame = VideoView {
            width: W,
            height: H,
            pix_fmt: pix::YUV420P,
            planes: [
                (&planes[0][..], W as usize),
                (&planes[1][..], W as usize / 2),
                (&planes[2][..], W as usize / 2),
                (&[][..], 0),
            ],
            n_planes: 3,
            pts: i as i64,
            time_base: abi::Rational::new(1, FPS),
            color: abi::ColorTags::BT709_LIMITED,
            key: i == 0,
        };
        enc.send_video(Some(&frame)).expect("send frame");
        assert_eq!(collect(&mut enc, &mut packets), status::NEED_MORE);
    }
    enc.send_video(None).expect("drain");
    assert_eq!(collect(&mut enc, &mut packets), status::EOF);
    (info, packets)
}

fn encode_audio(p: &PluginRef) -> (StreamInfo, Vec<PacketBuf>) {
    let (mut enc, info) = p.open_encoder(&audio_settings("")).expect("open aac");
    let interleaved: Vec<f32> = (0..SAMPLES)
        .flat_map(|n| (0..CHANNELS as usize).map(move |_| tone(n)))
        .collect();
    let mut packets = Vec::new();
    // Chunks that are not a multiple of the AAC frame, as a mixer sends them.
    let chunk = 1000;
    let mut n = 0;
    while n < SAMPLES {
        let len = chunk.min(SAMPLES - n);
        let s = &interleaved[n * 2..(n + len) * 2];
        enc.send_audio(Some((s, RATE, CHANNELS, n as i64)))
            .expect("send audio");
        collect(&mut enc, &mut packets);
        n += len;
    }
    enc.send_audio(None).expect("drain");
    assert_eq!(collect(&mut enc, &mut packets), status::EOF);
    (info, packets)
}

fn seconds(ts: i64, tb: abi::Rational) -> f64 {
    ts as f64 * tb.num as f64 / tb.den as f64
}

fn mux(p: &PluginRef, path: &Path, streams: &[(&StreamInfo, &[PacketBuf])]) {
    let mut m = p
        .open_muxer(path.to_str().unwrap(), "mp4", "faststart = true")
        .expect("open muxer");
    let idx: Vec<u32> = streams
        .iter()
        .map(|(info, _)| m.add_stream(info).expect("add stream"))
        .collect();
    m.write_header().expect("write header");
    // Interleave by decode time, as the host's muxing stage does.
    let mut all: Vec<(f64, u32, &PacketBuf)> = streams
        .iter()
        .zip(&idx)
        .flat_map(|((_, pkts), &i)| {
            pkts.iter()
                .map(move |p| (seconds(p.dts, p.time_base), i, p))
        })
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, i, pkt) in all {
        m.write_packet(i, pkt).expect("write packet");
    }
    m.finish().expect("finish");
}

fn decoder_config(want: u32, pix_fmt: u32, rate: u32, channels: u32) -> abi::DecoderConfig {
    abi::DecoderConfig {
        struct_size: std::mem::size_of::<abi::DecoderConfig>() as u32,
        want,
        video_pix_fmt: pix_fmt,
        audio_sample_rate: rate,
        audio_channels: channels,
        threads: 0,
        reserved: [0; 4],
    }
}

/// Squared luma error of a decoded frame against source frame `i`.
fn luma_sse(v: &VideoView<'_>, i: usize) -> f64 {
    let src = source_planes(i);
    let (plane, stride) = v.planes[0];
    let mut sse = 0.0;
    for r in 0..H as usize {
        for c in 0..W as usize {
            let d = plane[r * stride + c] as f64 - src[0][r * W as usize + c] as f64;
            sse += d * d;
        }
    }
    sse
}

fn psnr(sse: f64, frames: usize) -> f64 {
    let mse = sse / (frames as f64 * W as f64 * H as f64);
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// SNR of decoded stereo against the source tone, over the middle of the
/// programme. A one-sample misalignment of a 1 kHz tone at 48 kHz alone
/// limits this to 20·log10(1 / (2·sin(π/48))) = 17.7 dB, so a result above
/// 20 dB shows the priming samples were removed exactly.
fn tone_snr(samples: &[f32]) -> f64 {
    let (mut sig, mut err) = (0.0, 0.0);
    for n in RATE as usize / 10..SAMPLES - RATE as usize / 10 {
        for c in 0..2 {
            let s = tone(n) as f64;
            let d = samples[n * 2 + c] as f64 - s;
            sig += s * s;
            err += d * d;
        }
    }
    10.0 * (sig / err).log10()
}

/// The top-level MP4 boxes, in file order.
fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = 0;
    let mut out = Vec::new();
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        if size < 8 {
            break;
        }
        at += size;
    }
    out
}

/// Decodes the file's audio with the `ffmpeg` CLI, the peer our decoder is
/// compared with.
fn ffmpeg_decoded_audio(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a", "-f", "f32le", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

#[test]
fn h264_aac_mp4_roundtrip() {
    let p = plugin();
    let caps = p.capabilities();
    assert!(caps
        .iter()
        .any(|c| c.kind == abi::cap::ENCODE && c.name == "h264" && c.implementation == "libx264"));

    let (vinfo, vpkts) = encode_video(&p);
    let (ainfo, apkts) = encode_audio(&p);
    assert_eq!(vinfo.codec, "h264");
    assert_eq!(vinfo.profile, "High");
    assert!(!vinfo.extradata.is_empty(), "global header requested");
    assert_eq!(vpkts.len(), FRAMES);
    assert!(vpkts.iter().all(|p| p.duration > 0));
    assert_eq!(ainfo.codec, "aac");
    assert_eq!(ainfo.profile, "LC");
    assert_eq!(
        (ainfo.sample_rate, ainfo.channels, ainfo.frame_size),
        (RATE, CHANNELS, 1024)
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.mp4");
    mux(&p, &path, &[(&vinfo, &vpkts), (&ainfo, &apkts)]);

    // What a delivery team's tools see.
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-count_frames",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let probe: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let streams = probe["streams"].as_array().unwrap();
    let v = streams.iter().find(|s| s["codec_type"] == "video").unwrap();
    let a = streams.iter().find(|s| s["codec_type"] == "audio").unwrap();
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["profile"], "High");
    assert_eq!(v["nb_read_frames"], FRAMES.to_string());
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(W as u64), Some(H as u64))
    );
    assert_eq!(v["pix_fmt"], "yuv420p");
    assert_eq!(v["color_primaries"], "bt709");
    assert_eq!(v["color_transfer"], "bt709");
    assert_eq!(v["color_space"], "bt709");
    assert_eq!(v["color_range"], "tv");
    assert_eq!(v["avg_frame_rate"], "25/1");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["profile"], "LC");
    assert_eq!(a["sample_rate"], RATE.to_string());
    assert_eq!(a["channels"], CHANNELS);
    let boxes = top_level_boxes(&path);
    let pos = |t: &str| boxes.iter().position(|b| b == t).unwrap();
    assert!(
        pos("moov") < pos("mdat"),
        "faststart puts moov first: {boxes:?}"
    );

    // Decode the file back with the plugin's file decoder.
    let (mut dec, info) = p
        .open_file(
            path.to_str().unwrap(),
            &decoder_config(media::ANY, pix::NONE, 0, 0),
        )
        .expect("open file");
    assert_eq!(abi::name_str(&info.video_codec), "h264");
    assert_eq!(abi::name_str(&info.video_profile), "High");
    assert_eq!(
        (info.width, info.height, info.pix_fmt),
        (W, H, pix::YUV420P)
    );
    assert_eq!(abi::name_str(&info.pix_fmt_name), "yuv420p");
    assert_eq!(info.n_frames, FRAMES as i64);
    assert_eq!(info.frame_rate, abi::Rational::new(FPS, 1));
    assert_eq!(info.color, abi::ColorTags::BT709_LIMITED);
    assert_eq!(info.field_order, 1);
    assert_eq!(abi::name_str(&info.audio_codec), "aac");
    assert_eq!(abi::name_str(&info.audio_profile), "LC");
    assert_eq!((info.sample_rate, info.channels), (RATE, CHANNELS));
    assert!(abi::name_str(&info.container).contains("mp4"));

    let (mut frames, mut sse, mut audio) = (0, 0.0, Vec::<f32>::new());
    let mut next_audio_pts = None;
    while let Some(f) = dec.next_frame().expect("decode") {
        match f {
            Frame::Video(v) => {
                let i = (seconds(v.pts, v.time_base) * FPS as f64).round() as usize;
                assert_eq!(i, frames, "frames come in presentation order");
                assert_eq!(v.color, abi::ColorTags::BT709_LIMITED);
                assert_eq!(v.key, i == 0);
                sse += luma_sse(&v, i);
                frames += 1;
            }
            Frame::Audio {
                sample_rate,
                channels,
                pts,
                samples,
            } => {
                assert_eq!((sample_rate, channels), (RATE, CHANNELS));
                assert_eq!(
                    pts,
                    next_audio_pts.unwrap_or(pts),
                    "audio pts are contiguous"
                );
                next_audio_pts = Some(pts + (samples.len() / 2) as i64);
                if audio.is_empty() {
                    assert_eq!(pts, 0, "priming is trimmed, so audio starts at 0");
                }
                audio.extend_from_slice(samples);
            }
        }
    }
    assert_eq!(frames, FRAMES);
    // crf 18 is x264's "visually lossless" setting; 35 dB luma PSNR is well
    // below what it reaches on smooth content and far above a broken picture.
    let file_psnr = psnr(sse, frames);
    eprintln!("file decoder: luma PSNR {file_psnr:.2} dB");
    assert!(file_psnr > 35.0, "file decoder luma PSNR {file_psnr:.2} dB");
    // The peer: FFmpeg's own CLI decodes exactly the same samples.
    let peer = ffmpeg_decoded_audio(&path);
    assert_eq!(
        audio.len(),
        peer.len(),
        "same sample count as the ffmpeg CLI"
    );
    // FFmpeg 5.1's MP4 demuxer trims the priming but not the padding of the
    // last AAC frame: at most one frame (1024 samples) beyond the programme.
    let n = audio.len() / 2;
    assert!((SAMPLES..SAMPLES + 1024).contains(&n), "{n} samples");
    // The container still declares the programme's length.
    assert_eq!(info.audio_duration_us, 2_000_000);
    assert_eq!(info.video_duration_us, 2_000_000);
    let native_samples = n;
    let max_diff = audio
        .iter()
        .zip(&peer)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        max_diff < 1e-6,
        "differs from ffmpeg's decode by {max_diff}"
    );
    let snr = tone_snr(&audio);
    eprintln!(
        "file decoder: tone SNR {snr:.1} dB, {n} samples (ffmpeg CLI: {})",
        peer.len() / 2
    );
    assert!(snr > 20.0, "file decoder tone SNR {snr:.1} dB");

    // And from the encoder's packets, as validation does without a container.
    let mut vdec = p
        .open_stream_decoder(&vinfo, &decoder_config(media::VIDEO, pix::NONE, 0, 0))
        .expect("open h264 stream decoder");
    let (mut frames, mut sse) = (0, 0.0);
    let take = |d: &mut host::StreamDecoder, frames: &mut usize, sse: &mut f64| loop {
        match d.receive().expect("receive") {
            Ok(Frame::Video(v)) => {
                assert_eq!(v.pts, *frames as i64, "pts in the encoder's time base");
                *sse += luma_sse(&v, *frames);
                *frames += 1;
            }
            Ok(Frame::Audio { .. }) => panic!("audio from a video decoder"),
            Err(s) => return s,
        }
    };
    for pkt in &vpkts {
        vdec.send(Some(pkt)).expect("send packet");
        assert_eq!(take(&mut vdec, &mut frames, &mut sse), status::NEED_MORE);
    }
    vdec.send(None).expect("drain");
    assert_eq!(take(&mut vdec, &mut frames, &mut sse), status::EOF);
    assert_eq!(frames, FRAMES);
    let stream_psnr = psnr(sse, frames);
    assert!(
        stream_psnr > 35.0,
        "stream decoder luma PSNR {stream_psnr:.2} dB"
    );
    assert!(
        (stream_psnr - file_psnr).abs() < 1e-9,
        "same pictures either way"
    );

    let mut adec = p
        .open_stream_decoder(&ainfo, &decoder_config(media::AUDIO, pix::NONE, 0, 0))
        .expect("open aac stream decoder");
    let mut samples = Vec::<f32>::new();
    let take_audio = |d: &mut host::StreamDecoder, out: &mut Vec<f32>| loop {
        match d.receive().expect("receive") {
            Ok(Frame::Audio { pts, samples, .. }) => {
                assert_eq!(
                    pts as usize,
                    out.len() / 2,
                    "contiguous from 0 after priming"
                );
                out.extend_from_slice(samples);
            }
            Ok(Frame::Video(_)) => panic!("video from an audio decoder"),
            Err(s) => return s,
        }
    };
    for pkt in &apkts {
        adec.send(Some(pkt)).expect("send packet");
        take_audio(&mut adec, &mut samples);
    }
    adec.send(None).expect("drain");
    assert_eq!(take_audio(&mut adec, &mut samples), status::EOF);
    // Without a container's edit list the last frame's padding stays: at
    // most one AAC frame (1024 samples) beyond the programme.
    let n = samples.len() / 2;
    assert!((SAMPLES..SAMPLES + 1024).contains(&n), "{n} samples");
    let snr = tone_snr(&samples);
    eprintln!("stream decoder: tone SNR {snr:.1} dB, {n} samples");
    assert!(snr > 20.0, "stream decoder tone SNR {snr:.1} dB");

    converted_decode_and_seek(&p, &path, native_samples);
}

/// The same file, asking the decoder for RGBA and 44.1 kHz mono, then seeking.
fn converted_decode_and_seek(p: &PluginRef, path: &Path, native_samples: usize) {
    let cfg = decoder_config(media::ANY, pix::RGBA, 44_100, 1);
    let (mut dec, _) = p.open_file(path.to_str().unwrap(), &cfg).expect("open");
    let (mut frames, mut samples) = (0, 0usize);
    while let Some(f) = dec.next_frame().expect("decode") {
        match f {
            Frame::Video(v) => {
                assert_eq!(
                    (v.pix_fmt, v.n_planes, v.width, v.height),
                    (pix::RGBA, 1, W, H)
                );
                let (plane, stride) = v.planes[0];
                assert!(stride >= W as usize * 4);
                assert!(
                    (0..H as usize).all(|r| plane[r * stride + 3] == 255),
                    "opaque"
                );
                assert_eq!(
                    (v.color.matrix, v.color.range),
                    (0, 2),
                    "RGB is tagged as such"
                );
                frames += 1;
            }
            Frame::Audio {
                sample_rate,
                channels,
                pts,
                samples: s,
            } => {
                assert_eq!((sample_rate, channels), (44_100, 1));
                assert_eq!(pts as usize, samples);
                samples += s.len();
            }
        }
    }
    assert_eq!(frames, FRAMES);
    // The native decode rescaled to 44.1 kHz; the resampler's flush may
    // round by a sample.
    let expected = native_samples * 44_100 / RATE as usize;
    assert!(
        samples.abs_diff(expected) <= 1,
        "{samples} samples at 44.1 kHz, {expected} expected"
    );

    dec.seek(1_000_000).expect("seek to 1 s");
    let mut first = None;
    let mut last = 0.0;
    while let Some(f) = dec.next_frame().expect("decode after seek") {
        if let Frame::Video(v) = f {
            let t = seconds(v.pts, v.time_base);
            first.get_or_insert(t);
            last = t;
        }
    }
    let first = first.expect("video after the seek");
    assert!(
        first <= 1.0,
        "seek lands at or before the target, got {first}"
    );
    assert!(
        (last - (FRAMES - 1) as f64 / FPS as f64).abs() < 1e-9,
        "decodes on to the end"
    );
}

#[test]
fn unknown_encoder_option_is_named() {
    let p = plugin();
    let e = p
        .open_encoder(&video_settings("crf = 18\nturbo = true"))
        .err()
        .expect("unknown key refused");
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("`turbo`") && msg.contains("true"), "{msg}");
    assert!(
        msg.contains("crf, preset, tune, profile, level, gop, bframes"),
        "{msg}"
    );

    let msg = p
        .open_encoder(&video_settings("crf = 60"))
        .err()
        .expect("out-of-range value refused")
        .to_string();
    assert!(
        msg.contains("`crf` = 60") && msg.contains("from 0 to 51"),
        "{msg}"
    );

    let msg = p
        .open_encoder(&audio_settings("vbr = 3"))
        .err()
        .expect("unknown AAC key refused")
        .to_string();
    assert!(msg.contains("`vbr`") && msg.contains("bit_rate"), "{msg}");
}

#[test]
fn profile_and_format_mismatch_is_named() {
    let p = plugin();
    let mut s = video_settings("profile = \"baseline\"");
    s.pix_fmt = pix::YUV444P;
    let msg = p
        .open_encoder(&s)
        .err()
        .expect("baseline 4:4:4 refused")
        .to_string();
    assert!(
        msg.contains("`baseline` cannot carry yuv444p; it takes: yuv420p"),
        "{msg}"
    );
}

#[test]
fn encoder_refusal_carries_ffmpegs_reason() {
    let p = plugin();
    let s = video_settings("x264_params = \"no-such-option=1\"");
    let msg = p
        .open_encoder(&s)
        .err()
        .expect("x264 refuses the option")
        .to_string();
    eprintln!("{msg}");
    assert!(
        msg.contains("libx264 did not take the settings") && msg.contains("no-such-option"),
        "{msg}"
    );
}

#[test]
fn unknown_muxer_option_is_named() {
    let p = plugin();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.mp4");
    let msg = p
        .open_muxer(path.to_str().unwrap(), "mp4", "fast_start = true")
        .err()
        .expect("unknown key refused")
        .to_string();
    assert!(
        msg.contains("`fast_start`") && msg.contains("faststart, brand"),
        "{msg}"
    );
    let msg = p
        .open_muxer(path.to_str().unwrap(), "mkv", "")
        .err()
        .expect("container not offered")
        .to_string();
    assert!(msg.contains("mkv") && msg.contains("mp4, mov"), "{msg}");
}
