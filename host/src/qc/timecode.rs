//! SMPTE ST 12 timecode: frame numbers to and from `HH:MM:SS:FF`, with
//! drop-frame counting (`HH:MM:SS;FF`) at 29.97 and 59.94 frames per second.

use deliver_plugin_api::abi::Rational;

/// How a programme counts its frames in timecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcFormat {
    /// Frames per timecode second: the frame rate rounded (30 for 29.97).
    pub nominal: u32,
    /// Drop-frame: frame numbers 0 and 1 (0–3 at 59.94) are skipped at
    /// the start of every minute except each tenth.
    pub drop: bool,
}

impl TcFormat {
    /// The counting for a frame rate: drop-frame at 30000/1001 and
    /// 60000/1001 unless `drop` says otherwise (a start timecode written with
    /// `:` at 29.97 is non-drop).
    pub fn for_rate(rate: Rational, drop: Option<bool>) -> TcFormat {
        let fps = rate.as_f64();
        let nominal = if fps > 0.0 { fps.round() as u32 } else { 25 }.max(1);
        let fractional = rate.den > 0 && rate.num % rate.den != 0;
        let can_drop = fractional && (nominal == 30 || nominal == 60);
        TcFormat {
            nominal,
            drop: can_drop && drop.unwrap_or(true),
        }
    }

    /// Frame numbers dropped at each minute boundary.
    fn dropped(self) -> u64 {
        if self.drop {
            u64::from(self.nominal / 15)
        } else {
            0
        }
    }

    /// Frames in 24 hours of timecode (where the count wraps).
    fn per_day(self) -> u64 {
        let n = u64::from(self.nominal);
        n * 86_400 - self.dropped() * (24 * 60 - 24 * 6)
    }
}

/// A timecode that does not parse, or names a frame that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timecode {value:?}: {why}")]
pub struct TcError {
    pub value: String,
    pub why: String,
}

/// Parses `HH:MM:SS:FF` (or `;`/`.` before the frames for drop-frame) to a
/// frame count since 00:00:00:00; returns it with whether the text was
/// drop-frame.
///
/// # Errors
/// A [`TcError`] naming the value and the field that is out of range.
pub fn parse(text: &str, rate: Rational) -> Result<(u64, bool), TcError> {
    let err = |why: String| TcError {
        value: text.to_owned(),
        why,
    };
    let t = text.trim();
    let drop_sep = t.contains(';') || t.contains('.');
    let parts: Vec<&str> = t.split([':', ';', '.']).collect();
    if parts.len() != 4 || parts.iter().any(|p| p.is_empty() || p.len() > 2) {
        return Err(err(
            "expected HH:MM:SS:FF (or HH:MM:SS;FF for drop-frame)".into()
        ));
    }
    let mut v = [0u64; 4];
    for (i, p) in parts.iter().enumerate() {
        v[i] = p
            .parse::<u64>()
            .map_err(|_| err(format!("`{p}` is not a number")))?;
    }
    let f = TcFormat::for_rate(rate, Some(drop_sep));
    let [hh, mm, ss, ff] = v;
    if hh > 23 || mm > 59 || ss > 59 {
        return Err(err("hours 0–23, minutes and seconds 0–59".into()));
    }
    if ff >= u64::from(f.nominal) {
        return Err(err(format!(
            "frame {ff} does not exist at {} frames per second",
            f.nominal
        )));
    }
    if f.drop && ss == 0 && mm % 10 != 0 && ff < f.dropped() {
        return Err(err(format!(
            "frames 0–{} of this minute are dropped in drop-frame timecode",
            f.dropped() - 1
        )));
    }
    let minutes = hh * 60 + mm;
    let frames = (hh * 3600 + mm * 60 + ss) * u64::from(f.nominal) + ff
        - f.dropped() * (minutes - minutes / 10);
    Ok((frames, f.drop))
}

/// The timecode of frame `frame` counted from `start` (frames since
/// midnight), wrapping at 24 hours.
pub fn format(start: u64, frame: u64, f: TcFormat) -> String {
    let mut n = (start + frame) % f.per_day();
    let d = f.dropped();
    if d > 0 {
        let nominal = u64::from(f.nominal);
        let per_10min = nominal * 600 - d * 9;
        let per_min = nominal * 60 - d;
        let tens = n / per_10min;
        let rem = n % per_10min;
        n += d * 9 * tens;
        if rem > d {
            n += d * ((rem - d) / per_min);
        }
    }
    let nominal = u64::from(f.nominal);
    let ff = n % nominal;
    let secs = n / nominal;
    format!(
        "{:02}:{:02}:{:02}{}{:02}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        if f.drop { ';' } else { ':' },
        ff
    )
}

/// Timecodes of a programme: its start (frames since midnight) and counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    pub start: u64,
    pub format: TcFormat,
}

impl Clock {
    /// From the file's start timecode, or 00:00:00:00 (drop-frame at 29.97
    /// and 59.94) when it has none or it does not parse.
    pub fn new(start: Option<&str>, rate: Rational) -> Clock {
        match start.map(|s| parse(s, rate)) {
            Some(Ok((start, drop))) => Clock {
                start,
                format: TcFormat::for_rate(rate, Some(drop)),
            },
            _ => Clock {
                start: 0,
                format: TcFormat::for_rate(rate, None),
            },
        }
    }

    /// The timecode of a frame (0-based from the start of the file).
    pub fn at(&self, frame: u64) -> String {
        format(self.start, frame, self.format)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NTSC: Rational = Rational::new(30000, 1001);

    #[test]
    fn non_drop_at_25() {
        let r = Rational::new(25, 1);
        let f = TcFormat::for_rate(r, None);
        assert!(!f.drop);
        assert_eq!(format(0, 25, f), "00:00:01:00");
        assert_eq!(format(0, 50, f), "00:00:02:00");
        let (start, _) = parse("10:00:00:00", r).unwrap();
        assert_eq!(start, 10 * 3600 * 25);
        assert_eq!(format(start, 25, f), "10:00:01:00");
        assert_eq!(format(0, 86_400 * 25, f), "00:00:00:00", "wraps at 24 h");
    }

    /// The drop-frame boundaries of SMPTE ST 12-1: 00:00:59;29 is followed
    /// by 00:01:00;02, but 00:09:59;29 by 00:10:00;00.
    #[test]
    fn drop_frame_skips_two_numbers_a_minute_except_each_tenth() {
        let f = TcFormat::for_rate(NTSC, None);
        assert!(f.drop);
        assert_eq!(format(0, 1799, f), "00:00:59;29");
        assert_eq!(format(0, 1800, f), "00:01:00;02");
        assert_eq!(format(0, 17_981, f), "00:09:59;29");
        assert_eq!(format(0, 17_982, f), "00:10:00;00");
        // One hour of drop-frame timecode is 107 892 frames.
        assert_eq!(parse("01:00:00;00", NTSC).unwrap(), (107_892, true));
        for n in [0, 1799, 1800, 17_981, 17_982, 107_891, 1_000_000] {
            assert_eq!(parse(&format(0, n, f), NTSC).unwrap().0, n, "frame {n}");
        }
        assert!(parse("00:01:00;01", NTSC).is_err(), "a dropped number");
    }

    #[test]
    fn colon_at_29_97_is_non_drop_and_bad_values_are_named() {
        let (n, drop) = parse("00:01:00:00", NTSC).unwrap();
        assert_eq!((n, drop), (1800, false));
        let e = parse("10:00:00:25", Rational::new(25, 1)).unwrap_err();
        assert!(e.why.contains("frame 25"), "{e}");
        assert!(parse("10:00:00", Rational::new(25, 1)).is_err());
    }
}
