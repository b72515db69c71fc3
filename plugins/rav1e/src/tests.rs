//! Encoding through the plugin's own trait implementation, checked by an
//! independent reading of the bitstream: the `av1C` record and the sequence
//! header OBU are parsed here as the AV1 specification (section 5.5) and
//! AV1-ISOBMFF lay them out, not with rav1e's code.

use crate::encode::Encoder;
use deliver_plugin_api::abi::{self, pix, status, ColorTags, Rational};
use deliver_plugin_api::plugin::{Encoder as _, EncoderSettings, OwnedPacket, VideoView};

const W: u32 = 64;
const H: u32 = 48;

fn settings(pix_fmt: u32, options: &str) -> EncoderSettings {
    sized_settings(pix_fmt, options, (W, H))
}

fn sized_settings(pix_fmt: u32, options: &str, (w, h): (u32, u32)) -> EncoderSettings {
    EncoderSettings {
        media: abi::media::VIDEO,
        codec: "av1".into(),
        implementation: "rav1e".into(),
        width: w,
        height: h,
        pix_fmt,
        frame_rate: Rational::new(25, 1),
        time_base: Rational::new(1, 25),
        color: ColorTags::BT709_LIMITED,
        threads: 1,
        options: options.into(),
        ..Default::default()
    }
}

/// A moving gradient in `pix_fmt`: planes and strides.
fn picture(pix_fmt: u32, n: i64) -> Vec<(Vec<u8>, usize)> {
    sized_picture(pix_fmt, n, (W, H))
}

fn sized_picture(pix_fmt: u32, n: i64, (pw, ph): (u32, u32)) -> Vec<(Vec<u8>, usize)> {
    let l = pix::layout(pix_fmt).unwrap();
    (0..l.planes)
        .map(|p| {
            let (sx, sy) = if p == 0 {
                (0, 0)
            } else {
                (l.chroma_shift_x, l.chroma_shift_y)
            };
            let w = (pw as usize).div_ceil(1 << sx);
            let h = (ph as usize).div_ceil(1 << sy);
            // Padded rows, as a host's planes may have.
            let stride = w * l.bytes_per_sample + 16;
            let mut data = vec![0u8; stride * h];
            for y in 0..h {
                for x in 0..w {
                    let v8 = ((x * 3 + y * 2 + n as usize * 4 + p * 40) % 200 + 16) as u16;
                    let at = y * stride + x * l.bytes_per_sample;
                    if l.bytes_per_sample == 1 {
                        data[at] = v8 as u8;
                    } else {
                        data[at..at + 2].copy_from_slice(&(v8 << 2).to_le_bytes());
                    }
                }
            }
            (data, stride)
        })
        .collect()
}

fn view<'a>(pix_fmt: u32, planes: &'a [(Vec<u8>, usize)], pts: i64) -> VideoView<'a> {
    sized_view(pix_fmt, planes, pts, (W, H))
}

fn sized_view<'a>(
    pix_fmt: u32,
    planes: &'a [(Vec<u8>, usize)],
    pts: i64,
    (w, h): (u32, u32),
) -> VideoView<'a> {
    let mut p: [(&[u8], usize); 4] = [(&[], 0); 4];
    for (i, (d, s)) in planes.iter().enumerate() {
        p[i] = (d.as_slice(), *s);
    }
    VideoView {
        width: w,
        height: h,
        pix_fmt,
        planes: p,
        n_planes: planes.len(),
        pts,
        time_base: Rational::new(1, 25),
        color: ColorTags::BT709_LIMITED,
        key: false,
    }
}

/// Sends `n` frames (pts `first..`) draining as the host does, then
/// flushes; returns the packets.
fn encode(enc: &mut Encoder, pix_fmt: u32, first: i64, n: i64) -> Vec<OwnedPacket> {
    sized_encode(enc, pix_fmt, first, n, (W, H))
}

fn sized_encode(
    enc: &mut Encoder,
    pix_fmt: u32,
    first: i64,
    n: i64,
    size: (u32, u32),
) -> Vec<OwnedPacket> {
    let mut out = Vec::new();
    let pull = |enc: &mut Encoder, out: &mut Vec<OwnedPacket>| loop {
        match enc.receive().unwrap() {
            Ok(p) => out.push(p),
            Err(s) => return s,
        }
    };
    for i in 0..n {
        let planes = sized_picture(pix_fmt, i, size);
        enc.send_video(Some(&sized_view(pix_fmt, &planes, first + i, size)))
            .unwrap();
        assert_eq!(pull(enc, &mut out), status::NEED_MORE);
    }
    enc.send_video(None).unwrap();
    assert_eq!(pull(enc, &mut out), status::EOF);
    // EOF stays EOF.
    assert_eq!(enc.receive().unwrap().unwrap_err(), status::EOF);
    out
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn f(&mut self, n: usize) -> u32 {
        let mut v = 0;
        for _ in 0..n {
            let bit = (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1;
            v = (v << 1) | u32::from(bit);
            self.pos += 1;
        }
        v
    }
}

/// `leb128()` of the AV1 spec: (value, bytes read).
fn leb128(data: &[u8]) -> (usize, usize) {
    let mut v = 0usize;
    for (i, b) in data.iter().enumerate().take(8) {
        v |= ((b & 0x7f) as usize) << (i * 7);
        if b & 0x80 == 0 {
            return (v, i + 1);
        }
    }
    panic!("unterminated leb128");
}

/// The OBUs of a temporal unit: (type, payload).
fn obus(mut data: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let header = data[0];
        assert_eq!(header & 0x80, 0, "obu_forbidden_bit");
        let kind = (header >> 3) & 0xf;
        let ext = header & 0x4 != 0;
        assert!(header & 0x2 != 0, "rav1e writes obu_has_size_field");
        let skip = 1 + usize::from(ext);
        let (size, n) = leb128(&data[skip..]);
        let start = skip + n;
        out.push((kind, &data[start..start + size]));
        data = &data[start + size..];
    }
    out
}

const OBU_SEQUENCE_HEADER: u8 = 1;
const OBU_TEMPORAL_DELIMITER: u8 = 2;

#[derive(Debug, PartialEq)]
struct SeqHeader {
    profile: u32,
    width: u32,
    height: u32,
    bit_depth: u32,
    subsampling: (u32, u32),
    /// (primaries, transfer, matrix) when a colour description is present.
    colour: Option<(u32, u32, u32)>,
    full_range: bool,
}

/// `sequence_header_obu()` up to the end of `color_config()`.
fn parse_sequence_header(data: &[u8]) -> SeqHeader {
    let mut b = Bits { data, pos: 0 };
    let profile = b.f(3);
    let _still_picture = b.f(1);
    let reduced = b.f(1);
    assert_eq!(reduced, 0, "rav1e writes full sequence headers for video");
    let timing_info_present = b.f(1);
    assert_eq!(timing_info_present, 0, "timing info is not enabled");
    let _initial_display_delay_present = b.f(1);
    let op_count = b.f(5) + 1;
    for _ in 0..op_count {
        let _idc = b.f(12);
        let level = b.f(5);
        if level > 7 {
            let _tier = b.f(1);
        }
    }
    let wbits = b.f(4) as usize + 1;
    let hbits = b.f(4) as usize + 1;
    let width = b.f(wbits) + 1;
    let height = b.f(hbits) + 1;
    if b.f(1) == 1 {
        // frame_id_numbers_present_flag
        b.f(4);
        b.f(3);
    }
    let _sb128 = b.f(1);
    let _filter_intra = b.f(1);
    let _intra_edge = b.f(1);
    let _interintra = b.f(1);
    let _masked = b.f(1);
    let _warped = b.f(1);
    let _dual_filter = b.f(1);
    let order_hint = b.f(1);
    if order_hint == 1 {
        b.f(1); // jnt_comp
        b.f(1); // ref_frame_mvs
    }
    let force_sct = if b.f(1) == 1 { 2 } else { b.f(1) };
    if force_sct > 0 && b.f(1) == 0 {
        b.f(1); // seq_force_integer_mv
    }
    if order_hint == 1 {
        b.f(3);
    }
    let _superres = b.f(1);
    let _cdef = b.f(1);
    let _restoration = b.f(1);
    // color_config()
    let high_bitdepth = b.f(1);
    let bit_depth = if profile == 2 && high_bitdepth == 1 {
        if b.f(1) == 1 {
            12
        } else {
            10
        }
    } else if high_bitdepth == 1 {
        10
    } else {
        8
    };
    let mono = if profile == 1 { 0 } else { b.f(1) };
    assert_eq!(mono, 0);
    let colour = (b.f(1) == 1).then(|| (b.f(8), b.f(8), b.f(8)));
    let full_range = b.f(1) == 1;
    let subsampling = match profile {
        0 => (1, 1),
        1 => (0, 0),
        _ => {
            let x = b.f(1);
            (x, if x == 1 { b.f(1) } else { 0 })
        }
    };
    SeqHeader {
        profile,
        width,
        height,
        bit_depth,
        subsampling,
        colour,
        full_range,
    }
}

/// Encodes a few frames of `pix_fmt` and checks the stream description,
/// the av1C record, the sequence header in the first packet and the
/// packets' timing.
fn encodes(pix_fmt: u32, profile: &str, seq_profile: u32, depth: u32, sub: (u32, u32)) {
    let (mut enc, info) = Encoder::open(&settings(pix_fmt, "speed = 10")).unwrap();
    assert_eq!(info.codec, "av1");
    assert_eq!(info.profile, profile);
    assert_eq!((info.width, info.height, info.pix_fmt), (W, H, pix_fmt));
    assert_eq!(info.color, ColorTags::BT709_LIMITED);
    assert_eq!(info.time_base, Rational::new(1, 25));

    // AV1CodecConfigurationRecord: marker 1, version 1, then seq_profile,
    // level, tier, high_bitdepth, twelve_bit, monochrome, subsampling x/y.
    let c = &info.extradata;
    assert_eq!(c.len(), 4, "{c:?}");
    assert_eq!(c[0], 0x81);
    assert_eq!(u32::from(c[1] >> 5), seq_profile);
    assert_eq!(u32::from((c[2] >> 6) & 1), u32::from(depth > 8));
    assert_eq!(
        (u32::from((c[2] >> 3) & 1), u32::from((c[2] >> 2) & 1)),
        sub
    );

    let first = 100;
    let packets = encode(&mut enc, pix_fmt, first, 6);
    assert_eq!(packets.len(), 6, "one packet per frame");
    for (i, p) in packets.iter().enumerate() {
        assert_eq!(p.pts, first + i as i64, "packet {i}");
        assert_eq!(p.dts, p.pts);
        assert_eq!(p.duration, 1);
        assert_eq!(p.time_base, Rational::new(1, 25));
        assert!(!p.data.is_empty());
    }
    assert!(packets[0].key, "the stream starts with a key frame");

    let units = obus(&packets[0].data);
    assert_eq!(units[0].0, OBU_TEMPORAL_DELIMITER);
    let seq = units
        .iter()
        .find(|(k, _)| *k == OBU_SEQUENCE_HEADER)
        .expect("the first temporal unit carries the sequence header");
    assert_eq!(
        parse_sequence_header(seq.1),
        SeqHeader {
            profile: seq_profile,
            width: W,
            height: H,
            bit_depth: depth,
            subsampling: sub,
            colour: Some((1, 1, 1)),
            full_range: false,
        }
    );
}

#[test]
fn encodes_8_bit_4_2_0() {
    encodes(pix::YUV420P, "Main", 0, 8, (1, 1));
}

#[test]
fn encodes_10_bit_4_2_0() {
    encodes(pix::YUV420P10, "Main", 0, 10, (1, 1));
}

#[test]
fn encodes_8_bit_4_4_4_as_high() {
    encodes(pix::YUV444P, "High", 1, 8, (0, 0));
}

#[test]
fn encodes_10_bit_4_4_4_as_high() {
    encodes(pix::YUV444P10, "High", 1, 10, (0, 0));
}

/// Sizes that are not a multiple of rav1e's 8-sample allocation, and odd
/// ones (4:2:0 chroma then covers the last luma column and row).
#[test]
fn sizes_off_the_8_sample_grid() {
    for size in [(66, 38), (321, 181)] {
        for fmt in [pix::YUV420P, pix::YUV420P10] {
            let (mut enc, info) = Encoder::open(&sized_settings(fmt, "speed = 10", size)).unwrap();
            assert_eq!((info.width, info.height), size);
            let packets = sized_encode(&mut enc, fmt, 0, 3, size);
            assert_eq!(packets.len(), 3);
            let units = obus(&packets[0].data);
            let seq = units
                .iter()
                .find(|(k, _)| *k == OBU_SEQUENCE_HEADER)
                .unwrap();
            let h = parse_sequence_header(seq.1);
            assert_eq!((h.width, h.height), size);
        }
    }
}

#[test]
fn full_range_bt2020_pq_is_written_into_the_sequence_header() {
    let mut s = settings(pix::YUV420P10, "speed = 10\nlow_latency = true");
    s.color = ColorTags {
        primaries: 9,
        transfer: 16,
        matrix: 9,
        range: 2,
    };
    let (mut enc, info) = Encoder::open(&s).unwrap();
    assert_eq!(info.color, s.color);
    let packets = encode(&mut enc, pix::YUV420P10, 0, 2);
    let units = obus(&packets[0].data);
    let seq = units
        .iter()
        .find(|(k, _)| *k == OBU_SEQUENCE_HEADER)
        .unwrap();
    let h = parse_sequence_header(seq.1);
    assert_eq!(h.colour, Some((9, 16, 9)));
    assert!(h.full_range);
}

#[test]
fn unspecified_colour_leaves_the_description_out() {
    let mut s = settings(pix::YUV420P, "speed = 10");
    s.color = ColorTags::UNSPECIFIED;
    let (mut enc, info) = Encoder::open(&s).unwrap();
    // AV1 has no "unspecified" range: the header says limited.
    assert_eq!(info.color.range, 1);
    let packets = encode(&mut enc, pix::YUV420P, 0, 1);
    let units = obus(&packets[0].data);
    let seq = units
        .iter()
        .find(|(k, _)| *k == OBU_SEQUENCE_HEADER)
        .unwrap();
    assert_eq!(parse_sequence_header(seq.1).colour, None);
}

#[test]
fn a_drain_without_frames_gives_eof_at_once() {
    let (mut enc, _) = Encoder::open(&settings(pix::YUV420P, "")).unwrap();
    assert_eq!(enc.receive().unwrap().unwrap_err(), status::NEED_MORE);
    enc.send_video(None).unwrap();
    enc.send_video(None).unwrap(); // twice is once
    assert_eq!(enc.receive().unwrap().unwrap_err(), status::EOF);
    assert_eq!(enc.receive().unwrap().unwrap_err(), status::EOF);
}

#[test]
fn frames_after_the_drain_and_audio_are_refused() {
    let (mut enc, _) = Encoder::open(&settings(pix::YUV420P, "speed = 10")).unwrap();
    enc.send_video(None).unwrap();
    let planes = picture(pix::YUV420P, 0);
    let e = enc
        .send_video(Some(&view(pix::YUV420P, &planes, 0)))
        .unwrap_err();
    assert!(e.contains("after the drain"), "{e}");
    let e = enc.send_audio(None).unwrap_err();
    assert!(e.contains("video only"), "{e}");
}

#[test]
fn timestamps_must_increase() {
    let (mut enc, _) = Encoder::open(&settings(pix::YUV420P, "speed = 10")).unwrap();
    let planes = picture(pix::YUV420P, 0);
    enc.send_video(Some(&view(pix::YUV420P, &planes, 5)))
        .unwrap();
    let e = enc
        .send_video(Some(&view(pix::YUV420P, &planes, 5)))
        .unwrap_err();
    assert!(e.contains("pts 5 does not follow"), "{e}");
}

#[test]
fn a_frame_of_another_format_or_too_short_is_refused() {
    let (mut enc, _) = Encoder::open(&settings(pix::YUV420P, "speed = 10")).unwrap();
    let planes = picture(pix::YUV420P10, 0);
    let e = enc
        .send_video(Some(&view(pix::YUV420P10, &planes, 0)))
        .unwrap_err();
    assert!(e.contains("yuv420p10le frame"), "{e}");
    let mut planes = picture(pix::YUV420P, 0);
    planes[1].0.truncate(10);
    let e = enc
        .send_video(Some(&view(pix::YUV420P, &planes, 0)))
        .unwrap_err();
    assert!(e.contains("plane 1"), "{e}");
}

#[test]
fn an_unsupported_pixel_format_is_refused_with_the_accepted_ones() {
    let e = match Encoder::open(&settings(pix::YUV422P, "")) {
        Err(e) => e,
        Ok(_) => panic!("yuv422p was accepted"),
    };
    assert!(e.contains("yuv422p frames"), "{e}");
    assert!(
        e.contains("yuv420p, yuv420p10le, yuv444p, yuv444p10le"),
        "{e}"
    );
}

#[test]
fn bad_options_and_settings_are_refused_at_open() {
    let open_err = |s: EncoderSettings| match Encoder::open(&s) {
        Err(e) => e,
        Ok(_) => panic!("accepted: {s:?}"),
    };
    let e = open_err(settings(pix::YUV420P, "crf = 30"));
    assert!(e.contains("unknown rav1e encoder option `crf`"), "{e}");
    assert!(e.contains("speed, quantizer"), "{e}");
    let mut s = settings(pix::YUV420P, "");
    s.codec = "h264".into();
    assert!(open_err(s).contains("not `h264`"));
    let mut s = settings(pix::YUV420P, "");
    s.implementation = "libsvtav1".into();
    assert!(open_err(s).contains("no `libsvtav1` encoder"));
    let mut s = settings(pix::YUV420P, "");
    s.frame_rate = Rational::new(0, 1);
    assert!(open_err(s).contains("needs a frame rate"));
    let mut s = settings(pix::YUV420P, "");
    s.width = 8;
    let e = open_err(s);
    assert!(e.contains("invalid width 8"), "{e}");
    let mut s = settings(pix::YUV420P, "");
    s.color.primaries = 3;
    assert!(open_err(s).contains("primaries 3"));
}

#[test]
fn bitrate_mode_tiles_and_forced_key_frames() {
    let mut s = settings(
        pix::YUV420P,
        "speed = 10\ntile_cols = 2\ntile_rows = 2\nmin_quantizer = 40\nkeyint = 3\nmin_keyint = 1",
    );
    s.bit_rate = 300_000;
    let (mut enc, info) = Encoder::open(&s).unwrap();
    assert_eq!(info.bit_rate, 300_000);
    let packets = encode(&mut enc, pix::YUV420P, 0, 7);
    let keys: Vec<i64> = packets.iter().filter(|p| p.key).map(|p| p.pts).collect();
    assert_eq!(keys, [0, 3, 6], "keyint = 3");

    // A frame marked key becomes a key frame.
    let (mut enc, _) = Encoder::open(&settings(pix::YUV420P, "speed = 10")).unwrap();
    let mut out = Vec::new();
    for i in 0..4 {
        let planes = picture(pix::YUV420P, i);
        let mut v = view(pix::YUV420P, &planes, i);
        v.key = i == 2;
        enc.send_video(Some(&v)).unwrap();
        while let Ok(p) = enc.receive().unwrap() {
            out.push(p);
        }
    }
    enc.send_video(None).unwrap();
    while let Ok(p) = enc.receive().unwrap() {
        out.push(p);
    }
    let keys: Vec<i64> = out.iter().filter(|p| p.key).map(|p| p.pts).collect();
    assert_eq!(keys, [0, 2]);
}

/// Through the C ABI, as the host calls it: the option error crosses as a
/// string, and the capability is declared as documented.
#[test]
fn through_the_c_abi() {
    use deliver_plugin_api::host::PluginRef;
    // SAFETY: a null HostApi is allowed; the descriptor lives for the process.
    let desc = unsafe { &*crate::deliver_plugin_entry(std::ptr::null()) };
    let plugin = unsafe { PluginRef::new(desc) }.unwrap();
    let caps = plugin.capabilities();
    assert_eq!(
        caps[0].pix_fmts.join(","),
        "yuv420p,yuv420p10le,yuv444p,yuv444p10le"
    );
    assert_eq!(caps[0].profiles.join(","), "main,high");
    assert_eq!(caps[0].rank, crate::RANK);
    let e = plugin
        .open_encoder(&settings(pix::YUV420P, "speed = 12"))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`speed` = 12"), "{e}");
    let (mut enc, params) = plugin
        .open_encoder(&settings(pix::YUV420P, "speed = 10"))
        .unwrap();
    assert_eq!(params.extradata.len(), 4);
    let planes = picture(pix::YUV420P, 0);
    enc.send_video(Some(&view(pix::YUV420P, &planes, 0)))
        .unwrap();
    enc.send_video(None).unwrap();
    let p = enc.receive().unwrap().unwrap();
    assert_eq!((p.pts, p.duration), (0, 1));
    assert_eq!(enc.receive().unwrap().unwrap_err(), status::EOF);
}
