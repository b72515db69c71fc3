//! Small, checked bridges between the ABI's plain integers and libav*'s C
//! types. Values that come from the host are untrusted: they are matched
//! against the declared variants of FFmpeg's enums rather than transmuted.

use deliver_plugin_api::abi::{self, pix};
use ffmpeg_next::ffi;
use std::ffi::{c_char, c_int, CStr, CString};

/// A C string from libav*, or "" for null.
pub(crate) fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: libav* returns NUL-terminated static strings here.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

/// A Rust string as a C string; interior NULs become an error naming `what`.
pub(crate) fn c_string(s: &str, what: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{what} `{s}` contains a NUL byte"))
}

/// Describes an FFmpeg error, with the last error line libav* logged on this
/// thread (x264's own reason for refusing a setting, for instance).
pub(crate) fn av_err(e: ffmpeg_next::Error) -> String {
    match crate::ffmpeg_log::take_last_error() {
        Some(detail) => format!("{e} (FFmpeg said: {detail})"),
        None => e.to_string(),
    }
}

/// [`av_err`] for a raw negative return code.
pub(crate) fn av_code(code: c_int) -> String {
    av_err(ffmpeg_next::Error::from(code))
}

pub(crate) fn av_rational(r: abi::Rational) -> ffi::AVRational {
    ffi::AVRational {
        num: r.num,
        den: r.den,
    }
}

pub(crate) fn abi_rational(r: ffi::AVRational) -> abi::Rational {
    abi::Rational::new(r.num, r.den)
}

/// A usable time base or frame rate: both terms positive.
pub(crate) fn is_positive(r: abi::Rational) -> bool {
    r.num > 0 && r.den > 0
}

/// Rescales a timestamp, leaving FFmpeg's "no timestamp" value alone.
pub(crate) fn rescale(ts: i64, from: ffi::AVRational, to: ffi::AVRational) -> i64 {
    if ts == ffi::AV_NOPTS_VALUE || from.num <= 0 || from.den <= 0 || to.num <= 0 || to.den <= 0 {
        return ts;
    }
    // SAFETY: pure arithmetic.
    unsafe { ffi::av_rescale_q(ts, from, to) }
}

const PIX_MAP: &[(u32, ffi::AVPixelFormat)] = {
    use ffi::AVPixelFormat::*;
    &[
        (pix::YUV420P, AV_PIX_FMT_YUV420P),
        (pix::YUV422P, AV_PIX_FMT_YUV422P),
        (pix::YUV444P, AV_PIX_FMT_YUV444P),
        (pix::YUV420P10, AV_PIX_FMT_YUV420P10LE),
        (pix::YUV422P10, AV_PIX_FMT_YUV422P10LE),
        (pix::YUV444P10, AV_PIX_FMT_YUV444P10LE),
        (pix::RGBA, AV_PIX_FMT_RGBA),
        (pix::GRAY8, AV_PIX_FMT_GRAY8),
        (pix::YUVA444P10, AV_PIX_FMT_YUVA444P10LE),
        (pix::YUVA444P12, AV_PIX_FMT_YUVA444P12LE),
        (pix::YUV444P12, AV_PIX_FMT_YUV444P12LE),
        (pix::YUV422P12, AV_PIX_FMT_YUV422P12LE),
    ]
};

/// The FFmpeg format for an ABI pixel format.
pub(crate) fn pix_to_av(p: u32) -> Option<ffi::AVPixelFormat> {
    PIX_MAP.iter().find(|(a, _)| *a == p).map(|(_, f)| *f)
}

/// The ABI pixel format for an FFmpeg one, [`pix::NONE`] if it is not ours.
pub(crate) fn pix_from_av(f: c_int) -> u32 {
    PIX_MAP
        .iter()
        .find(|(_, av)| *av as c_int == f)
        .map_or(pix::NONE, |(a, _)| *a)
}

/// An FFmpeg pixel format from the integer libav* stored in a frame or
/// parameters.
pub(crate) fn pix_enum(f: c_int) -> Option<ffi::AVPixelFormat> {
    if f < 0 || f >= ffi::AVPixelFormat::AV_PIX_FMT_NB as c_int {
        return None;
    }
    // SAFETY: AVPixelFormat's values run without gaps from NONE (-1) to NB,
    // and the bindings were generated from the headers of the library that
    // wrote `f`; the range is checked above.
    Some(unsafe { std::mem::transmute::<c_int, ffi::AVPixelFormat>(f) })
}

/// FFmpeg's name for a pixel format integer ("yuv420p"), "none" if unknown.
pub(crate) fn pix_name(f: c_int) -> String {
    match pix_enum(f) {
        // SAFETY: a valid format; the name is a static string.
        Some(p) => cstr(unsafe { ffi::av_get_pix_fmt_name(p) }),
        None => "none".to_owned(),
    }
}

/// Whether a pixel format stores RGB rather than luma/chroma.
pub(crate) fn pix_is_rgb(f: ffi::AVPixelFormat) -> bool {
    // SAFETY: a valid format; the descriptor is static.
    let d = unsafe { ffi::av_pix_fmt_desc_get(f) };
    // SAFETY: non-null descriptors are valid.
    !d.is_null() && unsafe { (*d).flags } & ffi::AV_PIX_FMT_FLAG_RGB as u64 != 0
}

/// The legacy full-range "J" formats, whose range the format itself implies.
pub(crate) fn pix_is_jpeg_range(f: ffi::AVPixelFormat) -> bool {
    use ffi::AVPixelFormat::*;
    matches!(
        f,
        AV_PIX_FMT_YUVJ420P
            | AV_PIX_FMT_YUVJ422P
            | AV_PIX_FMT_YUVJ444P
            | AV_PIX_FMT_YUVJ440P
            | AV_PIX_FMT_YUVJ411P
    )
}

macro_rules! checked_enum {
    ($(#[$m:meta])* $fn:ident, $ty:ident, $what:literal, [$($v:ident),* $(,)?]) => {
        $(#[$m])*
        pub(crate) fn $fn(v: u32) -> Result<ffi::$ty, String> {
            use ffi::$ty::*;
            const ALL: &[ffi::$ty] = &[$($v),*];
            ALL.iter().copied().find(|x| *x as u32 == v).ok_or_else(|| {
                let accepted: Vec<String> = ALL.iter().map(|x| (*x as u32).to_string()).collect();
                format!(
                    "colour {} {v} is not an ITU-T H.273 code point FFmpeg knows; accepted: {}",
                    $what,
                    accepted.join(", ")
                )
            })
        }
    };
}

checked_enum!(
    /// Colour primaries from an H.273 code point.
    primaries, AVColorPrimaries, "primaries", [
    AVCOL_PRI_BT709, AVCOL_PRI_UNSPECIFIED, AVCOL_PRI_BT470M, AVCOL_PRI_BT470BG,
    AVCOL_PRI_SMPTE170M, AVCOL_PRI_SMPTE240M, AVCOL_PRI_FILM, AVCOL_PRI_BT2020,
    AVCOL_PRI_SMPTE428, AVCOL_PRI_SMPTE431, AVCOL_PRI_SMPTE432, AVCOL_PRI_EBU3213,
]);

checked_enum!(
    /// Transfer characteristics from an H.273 code point.
    transfer, AVColorTransferCharacteristic, "transfer", [
    AVCOL_TRC_BT709, AVCOL_TRC_UNSPECIFIED, AVCOL_TRC_GAMMA22, AVCOL_TRC_GAMMA28,
    AVCOL_TRC_SMPTE170M, AVCOL_TRC_SMPTE240M, AVCOL_TRC_LINEAR, AVCOL_TRC_LOG,
    AVCOL_TRC_LOG_SQRT, AVCOL_TRC_IEC61966_2_4, AVCOL_TRC_BT1361_ECG, AVCOL_TRC_IEC61966_2_1,
    AVCOL_TRC_BT2020_10, AVCOL_TRC_BT2020_12, AVCOL_TRC_SMPTE2084, AVCOL_TRC_SMPTE428,
    AVCOL_TRC_ARIB_STD_B67,
]);

checked_enum!(
    /// Matrix coefficients from an H.273 code point.
    matrix, AVColorSpace, "matrix", [
    AVCOL_SPC_RGB, AVCOL_SPC_BT709, AVCOL_SPC_UNSPECIFIED, AVCOL_SPC_FCC, AVCOL_SPC_BT470BG,
    AVCOL_SPC_SMPTE170M, AVCOL_SPC_SMPTE240M, AVCOL_SPC_YCGCO, AVCOL_SPC_BT2020_NCL,
    AVCOL_SPC_BT2020_CL, AVCOL_SPC_SMPTE2085, AVCOL_SPC_CHROMA_DERIVED_NCL,
    AVCOL_SPC_CHROMA_DERIVED_CL, AVCOL_SPC_ICTCP,
]);

checked_enum!(
    /// Range: 0 unspecified, 1 limited, 2 full.
    range, AVColorRange, "range", [
    AVCOL_RANGE_UNSPECIFIED, AVCOL_RANGE_MPEG, AVCOL_RANGE_JPEG,
]);

/// The four colour enums for a set of tags, or an error naming the bad one.
pub(crate) struct AvColor {
    pub primaries: ffi::AVColorPrimaries,
    pub transfer: ffi::AVColorTransferCharacteristic,
    pub matrix: ffi::AVColorSpace,
    pub range: ffi::AVColorRange,
}

pub(crate) fn av_color(c: abi::ColorTags) -> Result<AvColor, String> {
    Ok(AvColor {
        primaries: primaries(c.primaries)?,
        transfer: transfer(c.transfer)?,
        matrix: matrix(c.matrix)?,
        range: range(c.range)?,
    })
}

/// Finds a codec id by FFmpeg's codec name ("h264", "aac"), falling back to
/// an implementation name ("libdav1d") so either spelling works.
pub(crate) fn codec_id_by_name(name: &str) -> Option<ffi::AVCodecID> {
    let c = CString::new(name).ok()?;
    // SAFETY: valid C string; descriptors and codecs are static.
    unsafe {
        let d = ffi::avcodec_descriptor_get_by_name(c.as_ptr());
        if !d.is_null() {
            return Some((*d).id);
        }
        let dec = ffi::avcodec_find_decoder_by_name(c.as_ptr());
        if !dec.is_null() {
            return Some((*dec).id);
        }
        let enc = ffi::avcodec_find_encoder_by_name(c.as_ptr());
        if !enc.is_null() {
            return Some((*enc).id);
        }
    }
    None
}

/// The decoder FFmpeg prefers for a codec name: by id first, so that "av1"
/// finds libdav1d rather than the hardware-only native decoder, then by
/// implementation name.
pub(crate) fn find_decoder(name: &str) -> Option<*const ffi::AVCodec> {
    let id = codec_id_by_name(name)?;
    // SAFETY: codecs are static.
    unsafe {
        let by_id = ffi::avcodec_find_decoder(id);
        if !by_id.is_null() {
            return Some(by_id);
        }
        let c = CString::new(name).ok()?;
        let by_name = ffi::avcodec_find_decoder_by_name(c.as_ptr());
        (!by_name.is_null()).then_some(by_name)
    }
}

/// FFmpeg's name for a codec id ("h264").
pub(crate) fn codec_name(id: ffi::AVCodecID) -> String {
    // SAFETY: returns a static string for any id.
    cstr(unsafe { ffi::avcodec_get_name(id) })
}

/// FFmpeg's name for a profile of a codec ("High", "LC"); "" if unknown.
pub(crate) fn profile_name(id: ffi::AVCodecID, profile: c_int) -> String {
    if profile == ffi::FF_PROFILE_UNKNOWN {
        return String::new();
    }
    // SAFETY: returns a static string or null.
    cstr(unsafe { ffi::avcodec_profile_name(id, profile) })
}

/// FFmpeg's number for a profile of a codec, by the name it displays
/// ("HQ" for ProRes), as [`profile_name`] gives it.
pub(crate) fn profile_id(id: ffi::AVCodecID, name: &str) -> Option<c_int> {
    if name.is_empty() {
        return None;
    }
    // SAFETY: descriptors are static; their profile lists end with
    // FF_PROFILE_UNKNOWN.
    unsafe {
        let desc = ffi::avcodec_descriptor_get(id);
        if desc.is_null() || (*desc).profiles.is_null() {
            return None;
        }
        let mut p = (*desc).profiles;
        while (*p).profile != ffi::FF_PROFILE_UNKNOWN {
            if !(*p).name.is_null() && cstr((*p).name) == name {
                return Some((*p).profile);
            }
            p = p.add(1);
        }
    }
    None
}

/// A fourcc as FFmpeg stores it (MKTAG: first character in the low byte).
pub(crate) fn fourcc(t: &str) -> u32 {
    t.bytes()
        .take(4)
        .enumerate()
        .fold(0, |acc, (i, b)| acc | u32::from(b) << (8 * i))
}

/// Apple's fourcc for a ProRes profile (`apco` … `ap4x`). FFmpeg's ProRes
/// decoder reads the profile, and the depth it decodes at (10 bits for
/// 4:2:2, 12 for 4444), from this tag, so a stream decoder is given it too.
pub(crate) fn prores_tag(profile: c_int) -> Option<u32> {
    let tag = match profile {
        ffi::FF_PROFILE_PRORES_PROXY => "apco",
        ffi::FF_PROFILE_PRORES_LT => "apcs",
        ffi::FF_PROFILE_PRORES_STANDARD => "apcn",
        ffi::FF_PROFILE_PRORES_HQ => "apch",
        ffi::FF_PROFILE_PRORES_4444 => "ap4h",
        ffi::FF_PROFILE_PRORES_XQ => "ap4x",
        _ => return None,
    };
    Some(fourcc(tag))
}

/// An `AVChannelLayout` that is uninitialised on drop (custom layouts own a map).
pub(crate) struct Layout(pub ffi::AVChannelLayout);

// SAFETY: the layout is plain data plus, for custom orders, a map it owns alone.
unsafe impl Send for Layout {}

impl Layout {
    /// FFmpeg's default layout for a channel count (1 mono, 2 stereo, 6 5.1).
    pub(crate) fn default_for(channels: u32) -> Layout {
        // SAFETY: zeroed is the documented "uninitialised" state.
        let mut l: ffi::AVChannelLayout = unsafe { std::mem::zeroed() };
        // SAFETY: `l` is a valid out-pointer.
        unsafe { ffi::av_channel_layout_default(&mut l, channels as c_int) };
        Layout(l)
    }

    /// A copy of a layout, replacing an unspecified order by the default for
    /// its channel count (swresample needs to know where channels are).
    pub(crate) fn copy_of(src: &ffi::AVChannelLayout) -> Layout {
        if src.order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_UNSPEC || src.nb_channels <= 0 {
            return Layout::default_for(src.nb_channels.max(1) as u32);
        }
        // SAFETY: zeroed is the documented "uninitialised" state.
        let mut l: ffi::AVChannelLayout = unsafe { std::mem::zeroed() };
        // SAFETY: both point at valid layouts.
        if unsafe { ffi::av_channel_layout_copy(&mut l, src) } < 0 {
            return Layout::default_for(src.nb_channels as u32);
        }
        Layout(l)
    }

    pub(crate) fn channels(&self) -> u32 {
        self.0.nb_channels.max(0) as u32
    }

    pub(crate) fn same_as(&self, other: &ffi::AVChannelLayout) -> bool {
        // SAFETY: both are valid layouts.
        unsafe { ffi::av_channel_layout_compare(&self.0, other) == 0 }
    }

    /// FFmpeg's description ("stereo", "5.1(side)").
    pub(crate) fn describe(&self) -> String {
        let mut buf = [0 as c_char; 64];
        // SAFETY: the buffer and its size match.
        unsafe { ffi::av_channel_layout_describe(&self.0, buf.as_mut_ptr(), buf.len()) };
        cstr(buf.as_ptr())
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        // SAFETY: initialised by av_channel_layout_default/copy.
        unsafe { ffi::av_channel_layout_uninit(&mut self.0) };
    }
}

/// Copies `data` into a buffer libav* may free: av_malloc'd, with the zeroed
/// padding that bitstream readers require after extradata.
pub(crate) fn av_extradata(data: &[u8]) -> Result<(*mut u8, c_int), String> {
    if data.is_empty() {
        return Ok((std::ptr::null_mut(), 0));
    }
    let len = c_int::try_from(data.len()).map_err(|_| "extradata is larger than 2 GiB")?;
    let size = data.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: plain allocation; checked for null.
    let p = unsafe { ffi::av_mallocz(size) } as *mut u8;
    if p.is_null() {
        return Err("out of memory copying extradata".into());
    }
    // SAFETY: `p` holds `size` >= data.len() bytes.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
    Ok((p, len))
}

/// Copies extradata out of a codec context or parameters.
pub(crate) fn read_extradata(p: *const u8, len: c_int) -> Vec<u8> {
    if p.is_null() || len <= 0 {
        Vec::new()
    } else {
        // SAFETY: libav* keeps `len` bytes at `p`.
        unsafe { std::slice::from_raw_parts(p, len as usize) }.to_vec()
    }
}

/// Writes `s` into a fixed ABI name.
pub(crate) fn name(s: &str) -> abi::Name {
    abi::name_from(s)
}

/// Microseconds from a timestamp in `tb`, -1 when unknown.
pub(crate) fn to_us(ts: i64, tb: ffi::AVRational) -> i64 {
    if ts == ffi::AV_NOPTS_VALUE || tb.num <= 0 || tb.den <= 0 {
        return -1;
    }
    rescale(
        ts,
        tb,
        ffi::AVRational {
            num: 1,
            den: 1_000_000,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourcc_is_little_endian_like_mktag() {
        assert_eq!(fourcc("apch"), u32::from_le_bytes(*b"apch"));
    }

    #[test]
    fn prores_profiles_have_apples_fourccs() {
        let tags: Vec<u32> = (0..6).filter_map(prores_tag).collect();
        let want: Vec<u32> = ["apco", "apcs", "apcn", "apch", "ap4h", "ap4x"]
            .iter()
            .map(|t| fourcc(t))
            .collect();
        assert_eq!(tags, want);
        assert_eq!(prores_tag(ffi::FF_PROFILE_UNKNOWN), None);
    }

    #[test]
    fn profile_names_and_numbers_round_trip() {
        use ffi::AVCodecID::*;
        for (id, n) in [
            (AV_CODEC_ID_PRORES, ffi::FF_PROFILE_PRORES_XQ),
            (AV_CODEC_ID_DNXHD, ffi::FF_PROFILE_DNXHR_HQX),
            (AV_CODEC_ID_MPEG2VIDEO, ffi::FF_PROFILE_MPEG2_422),
            (AV_CODEC_ID_HEVC, ffi::FF_PROFILE_HEVC_MAIN_10),
            (AV_CODEC_ID_AV1, ffi::FF_PROFILE_AV1_MAIN),
        ] {
            let name = profile_name(id, n);
            assert!(!name.is_empty(), "{id:?} {n}");
            assert_eq!(profile_id(id, &name), Some(n), "{name}");
        }
        assert_eq!(profile_id(AV_CODEC_ID_PRORES, "Ultra"), None);
        assert_eq!(profile_id(AV_CODEC_ID_PRORES, ""), None);
    }
}
