//! The encoder options a preset may set (`[video.options]`), read in two
//! phases: the TOML table the host passes through is checked key by key
//! against [`KEYS`] (raw), then the values are checked against each other
//! and against the stream they are for (validated). A bad key or value never
//! reaches rav1e, whose own errors would not name the preset field.

use std::fmt;

/// Every key `[video.options]` accepts, in the order errors list them.
pub const KEYS: &[&str] = &[
    "speed",
    "quantizer",
    "min_quantizer",
    "tiles",
    "tile_cols",
    "tile_rows",
    "threads",
    "keyint",
    "min_keyint",
    "low_latency",
    "profile",
];

/// Profiles as presets write them, with the pixel formats each carries
/// (AV1 seq_profile 0 "Main": 4:2:0; 1 "High": 4:4:4).
pub const PROFILES: &[(&str, &[&str])] = &[
    ("main", &["yuv420p", "yuv420p10le"]),
    ("high", &["yuv444p", "yuv444p10le"]),
];

/// rav1e's speed presets: 0 is the slowest (best), 10 the fastest.
pub const SPEED: (i64, i64) = (0, 10);
/// rav1e's base quantizer index. 0 (lossless) is refused: rav1e does not
/// implement lossless coding, its own CLI refuses it too.
pub const QUANTIZER: (i64, i64) = (1, 255);
/// The smallest quantizer bitrate mode may use.
pub const MIN_QUANTIZER: (i64, i64) = (0, 255);
/// Total tiles: AV1 allows at most 64 columns × 64 rows.
pub const TILES: (i64, i64) = (0, 4096);
/// Tile columns or rows: a power of two, at most 64 (0 = rav1e's choice).
pub const TILE_SIDE: (i64, i64) = (0, 64);
/// Worker threads (0 = one per core).
pub const THREADS: (i64, i64) = (0, 256);
/// Frames between forced key frames; 0 = never forced. rav1e's own ceiling
/// (`i32::MAX / 3`) keeps its rate-control arithmetic in range.
pub const KEYINT: (i64, i64) = (0, i32::MAX as i64 / 3);

/// Why the options were refused. Each variant carries the key, the bad
/// value and what would be accepted, so the preset can be fixed from the
/// message alone.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("rav1e encoder options are not a valid TOML table: {0}")]
    NotATable(String),
    #[error("unknown rav1e encoder option `{key}` (= {value}); accepted keys: {}", KEYS.join(", "))]
    UnknownKey { key: String, value: String },
    #[error("rav1e encoder options: `{key}` = {value} is not accepted; it must be {expected}")]
    BadValue {
        key: &'static str,
        value: String,
        expected: String,
    },
    #[error(
        "rav1e encoder options: `{key}` = {value} is not accepted; it must be a power of two from 1 to 64, or 0 for rav1e's choice"
    )]
    NotPowerOfTwo { key: &'static str, value: i64 },
    #[error(
        "rav1e encoder options: `tiles` = {tiles} cannot be combined with `{other}`: `tiles` asks rav1e to choose columns and rows itself; set either `tiles` or `tile_cols`/`tile_rows`"
    )]
    TilesAndSides { tiles: i64, other: &'static str },
    #[error(
        "rav1e encoder options: `min_quantizer` = {min} is only used in bitrate mode; set the preset's video.bit_rate, or remove `min_quantizer`"
    )]
    MinQuantizerWithoutBitrate { min: i64 },
    #[error(
        "rav1e encoder options: `min_quantizer` = {min} is above `quantizer` = {max} (in bitrate mode `quantizer` is the highest quantizer allowed)"
    )]
    MinAboveMax { min: i64, max: i64 },
    #[error("rav1e encoder options: `min_keyint` = {min} is above `keyint` = {max}")]
    MinKeyintAboveKeyint { min: i64, max: i64 },
    #[error(
        "rav1e encoder options: `profile` = \"{profile}\" cannot carry {pix_fmt}; {}",
        profile_help(pix_fmt)
    )]
    ProfileMismatch { profile: String, pix_fmt: String },
    #[error("the video bit rate {0} bit/s is out of rav1e's range (1 to {max})", max = i32::MAX)]
    BitRate(i64),
}

fn profile_help(pix_fmt: &str) -> String {
    match PROFILES.iter().find(|(_, f)| f.contains(&pix_fmt)) {
        Some((p, _)) => format!("use profile \"{p}\""),
        None => format!(
            "profiles: {}",
            PROFILES
                .iter()
                .map(|(p, f)| format!("{p} ({})", f.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// How the quantizer is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateControl {
    /// A constant base quantizer (1–255, lower is better).
    Quantizer(u8),
    /// A target bit rate (bit/s), with the quantizer held within `min..=max`.
    Bitrate { bits_per_s: i32, min: u8, max: u8 },
}

/// Validated options, with rav1e's defaults where the preset is silent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub speed: u8,
    pub rate: RateControl,
    /// Total tiles (0 = use `tile_cols`/`tile_rows`).
    pub tiles: usize,
    pub tile_cols: usize,
    pub tile_rows: usize,
    /// `None`: the host's thread count (0 there = one per core).
    pub threads: Option<usize>,
    pub keyint: u64,
    pub min_keyint: u64,
    pub low_latency: bool,
    /// Lower-case profile name ("main").
    pub profile: &'static str,
}

/// rav1e's defaults (its CLI's): speed 6, quantizer 100, a key frame at
/// least every 240 frames and scene cuts no closer than 12 frames.
const DEFAULT_SPEED: u8 = 6;
const DEFAULT_QUANTIZER: u8 = 100;
const DEFAULT_KEYINT: u64 = 240;
const DEFAULT_MIN_KEYINT: u64 = 12;

impl fmt::Display for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "speed {}, ", self.speed)?;
        match self.rate {
            RateControl::Quantizer(q) => write!(f, "quantizer {q}")?,
            RateControl::Bitrate {
                bits_per_s,
                min,
                max,
            } => write!(f, "{bits_per_s} bit/s (quantizer {min}..={max})")?,
        }
        write!(
            f,
            ", keyint {}..={}, low_latency {}",
            self.min_keyint, self.keyint, self.low_latency
        )
    }
}

fn int(key: &'static str, v: &toml::Value, (min, max): (i64, i64)) -> Result<i64, OptionError> {
    match v.as_integer() {
        Some(i) if (min..=max).contains(&i) => Ok(i),
        _ => Err(OptionError::BadValue {
            key,
            value: v.to_string(),
            expected: format!("an integer from {min} to {max}"),
        }),
    }
}

fn tile_side(key: &'static str, v: &toml::Value) -> Result<usize, OptionError> {
    let n = int(key, v, TILE_SIDE)?;
    if n != 0 && (n as u64).count_ones() != 1 {
        return Err(OptionError::NotPowerOfTwo { key, value: n });
    }
    Ok(n as usize)
}

/// Parses and validates `text` (a TOML table) for a stream of `pix_fmt`
/// (FFmpeg's name) at `bit_rate` bit/s (0: quantizer mode).
///
/// # Errors
/// An [`OptionError`] naming the key, the value and what is accepted.
pub fn parse(text: &str, pix_fmt: &str, bit_rate: i64) -> Result<Options, OptionError> {
    let table: toml::Table = if text.trim().is_empty() {
        toml::Table::new()
    } else {
        text.parse()
            .map_err(|e: toml::de::Error| OptionError::NotATable(e.to_string()))?
    };
    // Raw: every key known, every value of its kind and in its range.
    let mut speed = None;
    let mut quantizer = None;
    let mut min_quantizer = None;
    let mut tiles = None;
    let mut tile_cols = None;
    let mut tile_rows = None;
    let mut threads = None;
    let mut keyint = None;
    let mut min_keyint = None;
    let mut low_latency = None;
    let mut profile = None;
    for (key, v) in &table {
        match key.as_str() {
            "speed" => speed = Some(int("speed", v, SPEED)?),
            "quantizer" => quantizer = Some(int("quantizer", v, QUANTIZER)?),
            "min_quantizer" => min_quantizer = Some(int("min_quantizer", v, MIN_QUANTIZER)?),
            "tiles" => tiles = Some(int("tiles", v, TILES)?),
            "tile_cols" => tile_cols = Some(tile_side("tile_cols", v)?),
            "tile_rows" => tile_rows = Some(tile_side("tile_rows", v)?),
            "threads" => threads = Some(int("threads", v, THREADS)? as usize),
            "keyint" => keyint = Some(int("keyint", v, KEYINT)?),
            "min_keyint" => min_keyint = Some(int("min_keyint", v, KEYINT)?),
            "low_latency" => {
                low_latency = Some(v.as_bool().ok_or_else(|| OptionError::BadValue {
                    key: "low_latency",
                    value: v.to_string(),
                    expected: "true or false".into(),
                })?)
            }
            "profile" => {
                let found = v
                    .as_str()
                    .and_then(|s| PROFILES.iter().find(|(p, _)| p.eq_ignore_ascii_case(s)));
                profile = Some(found.ok_or_else(|| OptionError::BadValue {
                    key: "profile",
                    value: v.to_string(),
                    expected: format!(
                        "one of {}",
                        PROFILES
                            .iter()
                            .map(|(p, _)| format!("\"{p}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })?)
            }
            _ => {
                return Err(OptionError::UnknownKey {
                    key: key.clone(),
                    value: v.to_string(),
                })
            }
        }
    }

    // Validated: the values against each other and the stream.
    if let Some(t) = tiles.filter(|t| *t > 0) {
        for (other, set) in [("tile_cols", tile_cols), ("tile_rows", tile_rows)] {
            if set.is_some_and(|n| n > 0) {
                return Err(OptionError::TilesAndSides { tiles: t, other });
            }
        }
    }
    let rate = if bit_rate > 0 {
        let bits_per_s = i32::try_from(bit_rate).map_err(|_| OptionError::BitRate(bit_rate))?;
        // As rav1e's CLI: with a target rate the quantizer is a ceiling,
        // unconstrained unless the preset sets one.
        let max = quantizer.unwrap_or(255);
        let min = min_quantizer.unwrap_or(0);
        if min > max {
            return Err(OptionError::MinAboveMax { min, max });
        }
        RateControl::Bitrate {
            bits_per_s,
            min: min as u8,
            max: max as u8,
        }
    } else if bit_rate < 0 {
        return Err(OptionError::BitRate(bit_rate));
    } else {
        if let Some(min) = min_quantizer {
            return Err(OptionError::MinQuantizerWithoutBitrate { min });
        }
        RateControl::Quantizer(quantizer.map_or(DEFAULT_QUANTIZER, |q| q as u8))
    };
    let keyint_v = keyint.map_or(DEFAULT_KEYINT, |k| k as u64);
    let min_keyint_v = match min_keyint {
        Some(m) => {
            // keyint 0 means "never forced", so any minimum fits under it.
            if keyint_v != 0 && m as u64 > keyint_v {
                return Err(OptionError::MinKeyintAboveKeyint {
                    min: m,
                    max: keyint_v as i64,
                });
            }
            m as u64
        }
        // rav1e's default minimum, but never above a shorter keyint.
        None if keyint_v != 0 => DEFAULT_MIN_KEYINT.min(keyint_v),
        None => DEFAULT_MIN_KEYINT,
    };
    let profile = match profile {
        Some((p, fmts)) => {
            if !fmts.contains(&pix_fmt) {
                return Err(OptionError::ProfileMismatch {
                    profile: (*p).to_owned(),
                    pix_fmt: pix_fmt.to_owned(),
                });
            }
            *p
        }
        None => PROFILES
            .iter()
            .find(|(_, f)| f.contains(&pix_fmt))
            .map_or("main", |(p, _)| *p),
    };
    Ok(Options {
        speed: speed.map_or(DEFAULT_SPEED, |s| s as u8),
        rate,
        tiles: tiles.unwrap_or(0) as usize,
        tile_cols: tile_cols.unwrap_or(0),
        tile_rows: tile_rows.unwrap_or(0),
        threads,
        keyint: keyint_v,
        min_keyint: min_keyint_v,
        low_latency: low_latency.unwrap_or(false),
        profile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Options {
        parse(text, "yuv420p", 0).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> String {
        parse(text, "yuv420p", 0).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_rav1e_s_own() {
        let o = ok("");
        assert_eq!(o.speed, 6);
        assert_eq!(o.rate, RateControl::Quantizer(100));
        assert_eq!((o.min_keyint, o.keyint), (12, 240));
        assert_eq!(o.profile, "main");
        assert_eq!(o.threads, None);
        assert!(!o.low_latency);
    }

    #[test]
    fn every_key_is_read() {
        let o = ok(
            "speed = 10\nquantizer = 80\ntile_cols = 2\ntile_rows = 4\nthreads = 3\n\
             keyint = 50\nmin_keyint = 5\nlow_latency = true\nprofile = \"main\"",
        );
        assert_eq!(o.speed, 10);
        assert_eq!(o.rate, RateControl::Quantizer(80));
        assert_eq!((o.tile_cols, o.tile_rows, o.tiles), (2, 4, 0));
        assert_eq!(o.threads, Some(3));
        assert_eq!((o.min_keyint, o.keyint), (5, 50));
        assert!(o.low_latency);
        assert_eq!(ok("tiles = 8").tiles, 8);
        // A short keyint pulls rav1e's default minimum down with it.
        assert_eq!(ok("keyint = 6").min_keyint, 6);
    }

    #[test]
    fn an_unknown_key_is_named_with_every_accepted_key() {
        let e = err("crf = 20");
        assert!(e.contains("`crf`"), "{e}");
        assert!(e.contains("(= 20)"), "{e}");
        for k in KEYS {
            assert!(e.contains(k), "{k} missing from: {e}");
        }
    }

    #[test]
    fn values_out_of_range_name_the_key_value_and_range() {
        let e = err("speed = 11");
        assert!(e.contains("`speed` = 11"), "{e}");
        assert!(e.contains("from 0 to 10"), "{e}");
        let e = err("quantizer = 0");
        assert!(e.contains("from 1 to 255"), "{e}");
        assert!(err("quantizer = 256").contains("`quantizer` = 256"));
        assert!(err("speed = \"fast\"").contains("an integer"));
        assert!(err("low_latency = 1").contains("true or false"));
        assert!(err("tile_cols = 3").contains("power of two"));
        assert!(err("tile_rows = 128").contains("from 0 to 64"));
        let e = err("profile = \"baseline\"");
        assert!(e.contains("\"main\", \"high\""), "{e}");
        assert!(err("not toml").contains("not a valid TOML table"));
    }

    #[test]
    fn combinations_are_checked() {
        assert!(err("tiles = 4\ntile_cols = 2").contains("cannot be combined with `tile_cols`"));
        assert!(err("min_quantizer = 10").contains("bitrate mode"));
        assert!(err("keyint = 10\nmin_keyint = 20").contains("above `keyint` = 10"));
        // keyint 0 never forces a key frame, so any minimum is fine.
        assert_eq!(ok("keyint = 0\nmin_keyint = 20").min_keyint, 20);
        let e = parse("profile = \"main\"", "yuv444p", 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot carry yuv444p"), "{e}");
        assert!(e.contains("use profile \"high\""), "{e}");
    }

    #[test]
    fn a_bit_rate_switches_to_bitrate_mode_with_the_quantizer_as_ceiling() {
        let o = parse(
            "min_quantizer = 20\nquantizer = 180",
            "yuv420p10le",
            2_000_000,
        )
        .unwrap();
        assert_eq!(
            o.rate,
            RateControl::Bitrate {
                bits_per_s: 2_000_000,
                min: 20,
                max: 180
            }
        );
        let o = parse("", "yuv420p", 1_000_000).unwrap();
        assert_eq!(
            o.rate,
            RateControl::Bitrate {
                bits_per_s: 1_000_000,
                min: 0,
                max: 255
            }
        );
        let e = parse("min_quantizer = 200\nquantizer = 100", "yuv420p", 1_000_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("above `quantizer` = 100"), "{e}");
        assert!(parse("", "yuv420p", 1 << 40)
            .unwrap_err()
            .to_string()
            .contains("out of rav1e's range"));
    }

    #[test]
    fn the_profile_follows_the_pixel_format() {
        assert_eq!(parse("", "yuv444p10le", 0).unwrap().profile, "high");
        assert_eq!(
            parse("profile = \"High\"", "yuv444p", 0).unwrap().profile,
            "high"
        );
    }
}
