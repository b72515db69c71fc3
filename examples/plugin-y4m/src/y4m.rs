//! YUV4MPEG2: the stream header line, its tags, and the size of a frame.
//!
//! A file is one header line (`YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg`),
//! then, per frame, a `FRAME` line and the planes Y, Cb, Cr back to back
//! without padding. Samples deeper than 8 bits are little-endian 16-bit
//! words, which is also how the plugin ABI carries them, so frames cross
//! unchanged.

use deliver_plugin_api::abi::{pix, Rational};

/// The formats this plugin handles, with the `C` tag it writes for each
/// (FFmpeg's spelling: `420jpeg` is what its muxer writes for yuv420p with
/// no chroma siting, and what readers assume when `C` is absent).
pub const FORMATS: &[(u32, &str)] = &[
    (pix::YUV420P, "420jpeg"),
    (pix::YUV422P, "422"),
    (pix::YUV444P, "444"),
    (pix::YUV420P10, "420p10"),
    (pix::YUV422P10, "422p10"),
    (pix::YUV444P10, "444p10"),
];

/// Other spellings of the same formats that readers must accept: 4:2:0
/// with another chroma siting is still 4:2:0 to the planes.
const READ_ALIASES: &[(&str, u32)] = &[
    ("420", pix::YUV420P),
    ("420mpeg2", pix::YUV420P),
    ("420paldv", pix::YUV420P),
];

/// The `C` tag for an ABI pixel format, `None` if this plugin does not
/// handle it.
pub fn tag_of(fmt: u32) -> Option<&'static str> {
    FORMATS.iter().find(|(f, _)| *f == fmt).map(|(_, t)| *t)
}

/// The ABI pixel format of a `C` tag.
pub fn pix_of_tag(tag: &str) -> Option<u32> {
    FORMATS
        .iter()
        .map(|(f, t)| (*t, *f))
        .chain(READ_ALIASES.iter().copied())
        .find(|(t, _)| *t == tag)
        .map(|(_, f)| f)
}

/// The FFmpeg names of the formats handled, for capability tables and
/// error messages.
pub fn format_names() -> Vec<&'static str> {
    FORMATS.iter().filter_map(|(f, _)| pix::name(*f)).collect()
}

/// `(rows, bytes per row)` of each of the three planes of a `width` ×
/// `height` picture. Subsampled chroma rounds up, as FFmpeg and the host do
/// for odd sizes.
pub fn planes(fmt: u32, width: u32, height: u32) -> Option<[(usize, usize); 3]> {
    tag_of(fmt)?;
    let l = pix::layout(fmt)?;
    let up = |v: u32, shift: u32| v.div_ceil(1 << shift) as usize;
    let bytes = l.bytes_per_sample;
    let luma = (height as usize, width as usize * bytes);
    let chroma = (
        up(height, l.chroma_shift_y),
        up(width, l.chroma_shift_x) * bytes,
    );
    Some([luma, chroma, chroma])
}

/// Bytes of one frame's planes.
pub fn frame_bytes(fmt: u32, width: u32, height: u32) -> Option<usize> {
    planes(fmt, width, height).map(|p| p.iter().map(|(rows, row)| rows * row).sum())
}

/// What a header line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub frame_rate: Rational,
    /// One of [`FORMATS`].
    pub pix_fmt: u32,
    /// ABI colour range: 0 unspecified, 1 limited, 2 full (`XCOLORRANGE`).
    pub range: u32,
    /// The `I` tag: `p` progressive, `t`/`b` top/bottom field first, `m`
    /// mixed, `?` unknown.
    pub interlace: char,
    /// The `A` tag (sample aspect ratio); 0:0 is unknown.
    pub aspect: Rational,
}

/// The magic that opens every file.
pub const MAGIC: &str = "YUV4MPEG2";
/// The line that opens every frame (parameters may follow before `\n`).
pub const FRAME: &str = "FRAME";
/// Longer header lines are refused rather than read without bound.
pub const MAX_LINE: usize = 1024;

impl Header {
    /// The header line, with its newline.
    pub fn to_line(&self) -> String {
        let mut s = format!(
            "{MAGIC} W{} H{} F{}:{} I{} A{}:{} C{}",
            self.width,
            self.height,
            self.frame_rate.num,
            self.frame_rate.den,
            self.interlace,
            self.aspect.num,
            self.aspect.den,
            tag_of(self.pix_fmt).unwrap_or("420jpeg"),
        );
        // y4m has no tags for primaries, transfer or matrix; the range is an
        // `X` extension that FFmpeg writes and reads.
        match self.range {
            1 => s.push_str(" XCOLORRANGE=LIMITED"),
            2 => s.push_str(" XCOLORRANGE=FULL"),
            _ => {}
        }
        s.push('\n');
        s
    }

    /// Parses a header line (without its newline).
    ///
    /// # Errors
    /// A missing magic, width, height or frame rate; a zero or malformed
    /// value; a `C` tag this plugin does not read (naming the accepted ones).
    pub fn parse(line: &str) -> Result<Header, String> {
        let mut words = line.split(' ').filter(|w| !w.is_empty());
        if words.next() != Some(MAGIC) {
            return Err(format!(
                "not a YUV4MPEG2 file: it does not start with `{MAGIC} `"
            ));
        }
        let (mut width, mut height, mut rate) = (None, None, None);
        let mut h = Header {
            width: 0,
            height: 0,
            frame_rate: Rational::new(0, 1),
            // A file without `C` is 4:2:0 8-bit, by the format's definition.
            pix_fmt: pix::YUV420P,
            range: 0,
            interlace: '?',
            aspect: Rational::new(0, 0),
        };
        for w in words {
            let (tag, value) = w.split_at(1);
            match tag {
                "W" => width = Some(positive(value, "W (width)")?),
                "H" => height = Some(positive(value, "H (height)")?),
                "F" => rate = Some(ratio(value, "F (frame rate)")?),
                "A" => h.aspect = ratio(value, "A (aspect)").unwrap_or(Rational::new(0, 0)),
                "I" => h.interlace = value.chars().next().unwrap_or('?'),
                "C" => {
                    h.pix_fmt = pix_of_tag(value).ok_or_else(|| {
                        format!(
                            "colour space tag C{value} is not read by this plugin; accepted: {}",
                            FORMATS
                                .iter()
                                .map(|(_, t)| *t)
                                .chain(READ_ALIASES.iter().map(|(t, _)| *t))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?
                }
                "X" => match value {
                    "COLORRANGE=LIMITED" => h.range = 1,
                    "COLORRANGE=FULL" => h.range = 2,
                    // Other extensions (XYSCSS=…) repeat or refine what the
                    // standard tags say; unknown ones are ignored, as the
                    // format asks of readers.
                    _ => {}
                },
                _ => {}
            }
        }
        h.width = width.ok_or("the header has no W (width) tag")?;
        h.height = height.ok_or("the header has no H (height) tag")?;
        let rate = rate.ok_or("the header has no F (frame rate) tag")?;
        if rate.num <= 0 || rate.den <= 0 {
            return Err(format!(
                "frame rate F{}:{} must be positive",
                rate.num, rate.den
            ));
        }
        h.frame_rate = rate;
        Ok(h)
    }
}

fn positive(v: &str, what: &str) -> Result<u32, String> {
    match v.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{what} `{v}` is not a positive integer")),
    }
}

fn ratio(v: &str, what: &str) -> Result<Rational, String> {
    let (n, d) = v
        .split_once(':')
        .ok_or_else(|| format!("{what} `{v}` is not of the form N:D"))?;
    match (n.parse(), d.parse()) {
        (Ok(num), Ok(den)) => Ok(Rational { num, den }),
        _ => Err(format!("{what} `{v}` is not of the form N:D")),
    }
}

/// A plugin that takes no options still has to refuse the ones it is given,
/// naming them: the host passes a TOML table, and a typo must not be
/// silently ignored. This needs no TOML parser: a table with no keys has
/// only blank lines and comments.
///
/// # Errors
/// The first key (or table header) found, with `owner` ("y4m muxer").
pub fn refuse_options(text: &str, owner: &str) -> Result<(), String> {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        None => Ok(()),
        Some(line) => {
            let key = line.split('=').next().unwrap_or(line).trim();
            Err(format!(
                "unknown {owner} option `{key}` (in `{line}`); the {owner} takes no options"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_range() {
        let h = Header {
            width: 64,
            height: 48,
            frame_rate: Rational::new(30000, 1001),
            pix_fmt: pix::YUV422P10,
            range: 2,
            interlace: 'p',
            aspect: Rational::new(1, 1),
        };
        let line = h.to_line();
        assert_eq!(
            line,
            "YUV4MPEG2 W64 H48 F30000:1001 Ip A1:1 C422p10 XCOLORRANGE=FULL\n"
        );
        assert_eq!(Header::parse(line.trim_end()).unwrap(), h);
    }

    #[test]
    fn reads_what_ffmpeg_writes() {
        // Written by `ffmpeg ... -pix_fmt yuv420p out.y4m` (FFmpeg 5.1).
        let h = Header::parse(
            "YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED",
        )
        .unwrap();
        assert_eq!(
            (h.width, h.height, h.pix_fmt, h.range),
            (64, 48, pix::YUV420P, 1)
        );
        // No C tag: 4:2:0 8-bit.
        let h = Header::parse("YUV4MPEG2 W2 H2 F25:1").unwrap();
        assert_eq!((h.pix_fmt, h.range, h.interlace), (pix::YUV420P, 0, '?'));
    }

    #[test]
    fn refuses_what_it_cannot_read_and_says_why() {
        let e = Header::parse("YUV4MPEG2 W64 H48 F25:1 C411").unwrap_err();
        assert!(e.contains("C411") && e.contains("420jpeg, 422"), "{e}");
        assert!(Header::parse("YUV4MPEG W64 H48 F25:1")
            .unwrap_err()
            .contains("not a YUV4MPEG2"));
        assert!(Header::parse("YUV4MPEG2 W64 F25:1")
            .unwrap_err()
            .contains("H (height)"));
        assert!(Header::parse("YUV4MPEG2 W64 H48 F25:0")
            .unwrap_err()
            .contains("positive"));
        assert!(Header::parse("YUV4MPEG2 W0 H48 F25:1")
            .unwrap_err()
            .contains("W (width)"));
    }

    #[test]
    fn frame_sizes_round_chroma_up() {
        assert_eq!(frame_bytes(pix::YUV420P, 64, 48), Some(64 * 48 * 3 / 2));
        assert_eq!(frame_bytes(pix::YUV444P10, 4, 2), Some(4 * 2 * 2 * 3));
        // 5×3 4:2:0: chroma is 3×2.
        assert_eq!(frame_bytes(pix::YUV420P, 5, 3), Some(15 + 2 * 6));
        assert_eq!(frame_bytes(pix::RGBA, 4, 4), None);
    }

    #[test]
    fn options_are_refused_by_name_and_comments_are_not_options() {
        assert!(refuse_options("", "y4m muxer").is_ok());
        assert!(refuse_options("  \n# just a comment\n", "y4m muxer").is_ok());
        let e = refuse_options("\ncrf = 18\n", "rawvideo encoder").unwrap_err();
        assert!(e.contains("`crf`") && e.contains("takes no options"), "{e}");
    }
}
