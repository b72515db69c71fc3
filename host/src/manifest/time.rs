//! Times and frame rates as manifests write them, converted exactly.
//!
//! A time is one of:
//!
//! | written as        | meaning                                              |
//! | ----------------- | ---------------------------------------------------- |
//! | `"5s"`, `"2.5s"`  | seconds (up to 9 decimal places)                     |
//! | `"500ms"`         | milliseconds (up to 9 decimal places)                |
//! | `"125f"`          | frames at the canvas rate                            |
//! | `"00:01:02:03"`   | SMPTE non-drop timecode `HH:MM:SS:FF` at the canvas rate |
//! | `125` (integer)   | frames at the canvas rate                            |
//!
//! Seconds are kept as exact rationals and converted to frames only at the end,
//! **rounded to the nearest frame, halves rounded up** (so `"0.02s"` at 25 fps is
//! frame 1 rather than 0.5 frames): editors think in frames, and an exact
//! rational avoids the drift a float would accumulate at 30000/1001.
//!
//! Non-drop timecode counts frames at the *nominal* integer rate (30 for
//! 30000/1001), as SMPTE 12M does: `00:00:01:00` at 30000/1001 is frame 30,
//! which is 1.001 s of real time.

use super::model::Rate;

/// What a time or frame-rate field accepts, for error messages.
pub const TIME_EXPECTED: &str = "a time such as \"5s\", \"2.5s\", \"500ms\", \"125f\", \
     \"00:00:05:00\" (HH:MM:SS:FF non-drop timecode at the canvas rate) or an integer number of frames";

/// What a frame-rate field accepts, for error messages.
pub const RATE_EXPECTED: &str =
    "a frame rate from 1 to 240 fps written as an integer (25), \"25\", \"25/1\" or \"30000/1001\"";

/// Largest magnitude accepted for any number inside a time (keeps the exact
/// arithmetic far from overflow; 10^9 seconds is 31 years).
const MAX_TIME_NUMBER: u128 = 1_000_000_000;
/// Most decimal places accepted in `"2.5s"` / `"500ms"` (nanoseconds).
const MAX_DECIMALS: u32 = 9;

/// A time as written, before the canvas rate is applied: an exact number of
/// frames or an exact rational number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    Frames(u64),
    /// `num / den` seconds, `den > 0`.
    Seconds {
        num: u128,
        den: u128,
    },
}

/// Why a time or rate could not be read. The message is a predicate that
/// follows the bad value ("value \"5x\" has an unknown unit `x`").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    pub message: String,
}

impl TimeError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// An exact non-negative rational number of seconds, used to subtract times
/// (`out - in`) before rounding to frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExactSeconds {
    pub num: u128,
    pub den: u128,
}

impl ExactSeconds {
    /// `self - other`, or `None` when the result would be negative.
    pub fn checked_sub(self, other: ExactSeconds) -> Option<ExactSeconds> {
        let a = self.num.checked_mul(other.den)?;
        let b = other.num.checked_mul(self.den)?;
        let num = a.checked_sub(b)?;
        let den = self.den.checked_mul(other.den)?;
        Some(reduce(num, den))
    }

    /// Frames at `rate`, rounded to the nearest frame (halves up).
    pub fn to_frames(self, rate: Rate) -> u64 {
        let num = self.num * u128::from(rate.num);
        let den = self.den * u128::from(rate.den);
        let frames = (2 * num + den) / (2 * den);
        u64::try_from(frames).unwrap_or(u64::MAX)
    }

    pub fn as_f64(self) -> f64 {
        self.num as f64 / self.den as f64
    }

    pub fn is_zero(self) -> bool {
        self.num == 0
    }
}

impl Time {
    /// Reads a string time (`"5s"`, `"500ms"`, `"125f"`, `"HH:MM:SS:FF"`).
    /// `rate` is needed for timecode, whose frame field must stay below the
    /// nominal rate.
    ///
    /// # Errors
    ///
    /// A [`TimeError`] saying what is wrong with the text; pair it with
    /// [`TIME_EXPECTED`].
    pub fn parse(text: &str, rate: Rate) -> Result<Time, TimeError> {
        let s = text.trim();
        if s.is_empty() {
            return Err(TimeError::new("is empty"));
        }
        if s.starts_with('-') {
            return Err(TimeError::new("is negative; times count from 0"));
        }
        if s.contains(';') {
            return Err(TimeError::new(
                "is drop-frame timecode, which manifest v1 does not support; \
                 write non-drop HH:MM:SS:FF or seconds",
            ));
        }
        if s.contains(':') {
            return parse_timecode(s, rate);
        }
        let unit_at = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                TimeError::new(format!(
                    "has no unit; write \"{s}f\" for frames or \"{s}s\" for seconds"
                ))
            })?;
        let (number, unit) = s.split_at(unit_at);
        let unit = unit.trim_start();
        if number.is_empty() {
            return Err(TimeError::new("does not start with a number"));
        }
        match unit {
            "s" | "ms" => {
                let (num, mut den) = parse_decimal(number)?;
                if unit == "ms" {
                    den *= 1000;
                }
                let r = reduce(num, den);
                Ok(Time::Seconds {
                    num: r.num,
                    den: r.den,
                })
            }
            "f" => {
                if number.contains('.') {
                    return Err(TimeError::new(
                        "is a fractional number of frames; frames are whole numbers",
                    ));
                }
                let n = parse_integer(number)?;
                Ok(Time::Frames(n as u64))
            }
            other => Err(TimeError::new(format!(
                "has an unknown unit `{other}` (units are s, ms and f)"
            ))),
        }
    }

    /// A bare TOML integer: a number of frames.
    ///
    /// # Errors
    ///
    /// Negative or absurdly large counts.
    pub fn from_frames(n: i64) -> Result<Time, TimeError> {
        if n < 0 {
            return Err(TimeError::new("is negative; times count from 0"));
        }
        if n as u128 > MAX_TIME_NUMBER * 1000 {
            return Err(TimeError::new("is too large"));
        }
        Ok(Time::Frames(n as u64))
    }

    /// The time as exact seconds at `rate`.
    pub fn seconds(self, rate: Rate) -> ExactSeconds {
        match self {
            Time::Frames(f) => reduce(u128::from(f) * u128::from(rate.den), u128::from(rate.num)),
            Time::Seconds { num, den } => ExactSeconds { num, den },
        }
    }

    /// Frames at `rate`, rounded to the nearest frame (halves up).
    pub fn to_frames(self, rate: Rate) -> u64 {
        match self {
            Time::Frames(f) => f,
            Time::Seconds { .. } => self.seconds(rate).to_frames(rate),
        }
    }
}

/// The nominal (integer) frame rate non-drop timecode counts at: 30 for
/// 30000/1001, 25 for 25/1.
pub fn nominal_fps(rate: Rate) -> u64 {
    u64::from(rate.num).div_ceil(u64::from(rate.den))
}

fn parse_timecode(s: &str, rate: Rate) -> Result<Time, TimeError> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 4 {
        return Err(TimeError::new(
            "is not HH:MM:SS:FF timecode (it needs exactly four fields)",
        ));
    }
    let mut fields = [0u64; 4];
    for (slot, (part, name)) in fields
        .iter_mut()
        .zip(parts.iter().zip(["hours", "minutes", "seconds", "frames"]))
    {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TimeError::new(format!(
                "has timecode {name} `{part}` that is not a number of at most 3 digits"
            )));
        }
        *slot = part.parse().unwrap_or(0);
    }
    let [h, m, sec, f] = fields;
    if m >= 60 {
        return Err(TimeError::new(format!(
            "has timecode minutes {m}, which must be below 60"
        )));
    }
    if sec >= 60 {
        return Err(TimeError::new(format!(
            "has timecode seconds {sec}, which must be below 60"
        )));
    }
    let fps = nominal_fps(rate);
    if f >= fps {
        return Err(TimeError::new(format!(
            "has timecode frames {f}, which must be below {fps} at {rate} fps"
        )));
    }
    Ok(Time::Frames(((h * 60 + m) * 60 + sec) * fps + f))
}

/// `"2.5"` → (25, 10). At most [`MAX_DECIMALS`] decimals.
fn parse_decimal(s: &str) -> Result<(u128, u128), TimeError> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return Err(TimeError::new("does not start with a number"));
    }
    if frac.contains('.') {
        return Err(TimeError::new("has more than one decimal point"));
    }
    if frac.len() > MAX_DECIMALS as usize {
        return Err(TimeError::new(format!(
            "has more than {MAX_DECIMALS} decimal places"
        )));
    }
    let int_value = if int.is_empty() {
        0
    } else {
        parse_integer(int)?
    };
    let frac_value = if frac.is_empty() {
        0
    } else {
        parse_integer(frac)?
    };
    let den = 10u128.pow(frac.len() as u32);
    Ok((int_value * den + frac_value, den))
}

fn parse_integer(s: &str) -> Result<u128, TimeError> {
    if s.len() > 10 {
        return Err(TimeError::new("is too large"));
    }
    let n: u128 = s
        .parse()
        .map_err(|_| TimeError::new(format!("has `{s}`, which is not a number")))?;
    if n > MAX_TIME_NUMBER {
        return Err(TimeError::new("is too large"));
    }
    Ok(n)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn reduce(num: u128, den: u128) -> ExactSeconds {
    let g = gcd(num, den).max(1);
    ExactSeconds {
        num: num / g,
        den: den / g,
    }
}

/// A frame rate as written: a TOML integer, a TOML float (always rejected,
/// with a hint) or a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateInput<'a> {
    Integer(i64),
    Float(f64),
    Text(&'a str),
}

/// Reads a frame rate: `25`, `"25"`, `"25/1"`, `"30000/1001"`; 1 to 240 fps.
/// The result is reduced (`"50/2"` → 25/1).
///
/// # Errors
///
/// A [`TimeError`] whose message names the problem; decimals such as 29.97
/// are refused with the exact fraction to write instead. Pair it with
/// [`RATE_EXPECTED`].
pub fn parse_rate(input: RateInput<'_>) -> Result<Rate, TimeError> {
    let (num, den): (u64, u64) = match input {
        RateInput::Integer(n) => {
            if n < 1 {
                return Err(TimeError::new("is not a positive frame rate"));
            }
            (n as u64, 1)
        }
        RateInput::Float(f) => return Err(decimal_rate_error(f)),
        RateInput::Text(text) => {
            let t = text.trim();
            if let Some((n, d)) = t.split_once('/') {
                let n = parse_rate_part(n.trim())?;
                let d = parse_rate_part(d.trim())?;
                if d == 0 {
                    return Err(TimeError::new("has a zero denominator"));
                }
                (n, d)
            } else if t.contains('.') {
                match t.parse::<f64>() {
                    Ok(f) => return Err(decimal_rate_error(f)),
                    Err(_) => return Err(TimeError::new("is not a frame rate")),
                }
            } else {
                (parse_rate_part(t)?, 1)
            }
        }
    };
    if num == 0 {
        return Err(TimeError::new("is not a positive frame rate"));
    }
    if num < den || num > 240 * den {
        return Err(TimeError::new("is out of range"));
    }
    let g = gcd(u128::from(num), u128::from(den)) as u64;
    let (num, den) = (num / g, den / g);
    match (u32::try_from(num), u32::try_from(den)) {
        (Ok(num), Ok(den)) => Ok(Rate { num, den }),
        _ => Err(TimeError::new(
            "has a numerator or denominator that is too large",
        )),
    }
}

fn parse_rate_part(s: &str) -> Result<u64, TimeError> {
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TimeError::new(
            "is not a frame rate (an integer or a fraction of two integers)",
        ));
    }
    s.parse().map_err(|_| TimeError::new("is not a frame rate"))
}

/// The refusal for a decimal frame rate, with the exact fraction to write.
fn decimal_rate_error(f: f64) -> TimeError {
    if !f.is_finite() || f <= 0.0 {
        return TimeError::new("is not a positive frame rate");
    }
    let ntsc = (f * 1.001).round();
    let suggestion = if (f - f.round()).abs() < 1e-9 {
        format!("{}", f.round() as u64)
    } else if ntsc >= 1.0 && (ntsc * 1000.0 / 1001.0 - f).abs() < 0.0051 {
        format!("\"{}/1001\"", ntsc as u64 * 1000)
    } else {
        // e.g. 12.5 → "25/2": scale by a power of ten, then reduce.
        let mut den = 1u64;
        let mut num = f;
        while (num - num.round()).abs() > 1e-9 && den < 1_000_000 {
            num *= 10.0;
            den *= 10;
        }
        let num = num.round() as u64;
        let g = gcd(u128::from(num), u128::from(den)) as u64;
        format!("\"{}/{}\"", num / g, den / g)
    };
    TimeError::new(format!(
        "is a decimal frame rate, which is not exact; write {suggestion} instead"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAL: Rate = Rate { num: 25, den: 1 };
    const NTSC: Rate = Rate {
        num: 30000,
        den: 1001,
    };

    fn frames(s: &str, rate: Rate) -> u64 {
        Time::parse(s, rate).unwrap().to_frames(rate)
    }

    #[test]
    fn seconds_milliseconds_and_frames() {
        assert_eq!(frames("5s", PAL), 125);
        assert_eq!(frames("2.5s", PAL), 63); // 62.5 rounds up
        assert_eq!(frames("500ms", PAL), 13); // 12.5 rounds up
        assert_eq!(frames("40ms", PAL), 1);
        assert_eq!(frames("125f", PAL), 125);
        assert_eq!(frames(" 3 s ", PAL), 75);
        assert_eq!(frames(".5s", PAL), 13);
        assert_eq!(frames("0s", PAL), 0);
        assert_eq!(Time::from_frames(7).unwrap().to_frames(PAL), 7);
    }

    #[test]
    fn ntsc_rounds_to_nearest() {
        // 30 s × 30000/1001 = 899.1 → 899
        assert_eq!(frames("30s", NTSC), 899);
        // 1 s = 29.97 → 30
        assert_eq!(frames("1s", NTSC), 30);
        // 1001 s is exactly 30000 frames
        assert_eq!(frames("1001s", NTSC), 30000);
        // 0.5 s = 14.985 → 15
        assert_eq!(frames("0.5s", NTSC), 15);
    }

    #[test]
    fn timecode_is_non_drop_at_the_nominal_rate() {
        assert_eq!(frames("00:00:01:00", NTSC), 30);
        assert_eq!(frames("01:00:00:00", NTSC), 108_000);
        assert_eq!(frames("00:01:02:03", PAL), (62 * 25) + 3);
        assert!(Time::parse("00:00:00:30", NTSC).is_err());
        assert!(Time::parse("00:00:00:25", PAL).is_err());
        assert!(Time::parse("00:60:00:00", PAL).is_err());
        assert!(Time::parse("00:00:00", PAL).is_err());
        let df = Time::parse("00:00:01;00", NTSC).unwrap_err();
        assert!(df.message.contains("drop-frame"), "{df:?}");
    }

    #[test]
    fn bad_times_say_why() {
        let e = Time::parse("125", PAL).unwrap_err();
        assert!(e.message.contains("\"125f\""), "{e:?}");
        let e = Time::parse("5min", PAL).unwrap_err();
        assert!(e.message.contains("unknown unit `min`"), "{e:?}");
        assert!(Time::parse("-1s", PAL)
            .unwrap_err()
            .message
            .contains("negative"));
        assert!(Time::parse("1.5f", PAL).is_err());
        assert!(Time::parse("1.2.3s", PAL).is_err());
        assert!(Time::parse("s", PAL).is_err());
        assert!(Time::parse("", PAL).is_err());
        assert!(Time::parse("99999999999999s", PAL).is_err());
        assert!(Time::parse("1.0000000001s", PAL).is_err());
        assert!(Time::from_frames(-1).is_err());
    }

    #[test]
    fn exact_subtraction() {
        let out = Time::parse("7s", NTSC).unwrap().seconds(NTSC);
        let inp = Time::parse("2s", NTSC).unwrap().seconds(NTSC);
        let d = out.checked_sub(inp).unwrap();
        assert_eq!(d, ExactSeconds { num: 5, den: 1 });
        assert_eq!(d.to_frames(NTSC), 150); // 149.85 → 150
        assert!(inp.checked_sub(out).is_none());
        let f = Time::Frames(30).seconds(NTSC);
        assert_eq!(
            f,
            ExactSeconds {
                num: 1001,
                den: 1000
            }
        );
        assert!((f.as_f64() - 1.001).abs() < 1e-12);
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate(RateInput::Integer(25)).unwrap(), PAL);
        assert_eq!(parse_rate(RateInput::Text("25")).unwrap(), PAL);
        assert_eq!(parse_rate(RateInput::Text("25/1")).unwrap(), PAL);
        assert_eq!(parse_rate(RateInput::Text("50/2")).unwrap(), PAL);
        assert_eq!(parse_rate(RateInput::Text("30000/1001")).unwrap(), NTSC);
        assert_eq!(parse_rate(RateInput::Text("240")).unwrap().num, 240);
        assert!(parse_rate(RateInput::Text("241")).is_err());
        assert!(parse_rate(RateInput::Text("1/2")).is_err());
        assert!(parse_rate(RateInput::Text("0")).is_err());
        assert!(parse_rate(RateInput::Text("25/0")).is_err());
        assert!(parse_rate(RateInput::Text("abc")).is_err());
        assert!(parse_rate(RateInput::Integer(0)).is_err());
    }

    #[test]
    fn decimal_rates_get_a_hint() {
        let e = parse_rate(RateInput::Float(29.97)).unwrap_err();
        assert!(e.message.contains("\"30000/1001\""), "{e:?}");
        let e = parse_rate(RateInput::Text("23.976")).unwrap_err();
        assert!(e.message.contains("\"24000/1001\""), "{e:?}");
        let e = parse_rate(RateInput::Float(59.94)).unwrap_err();
        assert!(e.message.contains("\"60000/1001\""), "{e:?}");
        let e = parse_rate(RateInput::Float(25.0)).unwrap_err();
        assert!(e.message.contains("write 25 "), "{e:?}");
        let e = parse_rate(RateInput::Float(12.5)).unwrap_err();
        assert!(e.message.contains("\"25/2\""), "{e:?}");
    }
}
