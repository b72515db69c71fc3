//! Option tables: the TOML the host passes through is parsed once, checked
//! against a declared schema (raw → validated), and only then turned into the
//! AVOption settings FFmpeg understands. A bad key or value never reaches
//! libav*, whose own errors would not name the preset field.

use std::fmt::Write as _;

/// What values a key accepts.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// A number (integers are accepted too) in `min..=max`.
    Float { min: f64, max: f64 },
    /// An integer in `min..=max`.
    Int { min: i64, max: i64 },
    /// One of these strings (numbers are accepted in their written form, so
    /// that `level = 4.1` works as well as `level = "4.1"`).
    Choice(&'static [&'static str]),
    /// One of these names, each set as a different AVOption value (for
    /// options FFmpeg takes only as numbers, such as MPEG-2's generic
    /// `profile`: "422" → 0).
    Map(&'static [(&'static str, &'static str)]),
    /// Any string.
    Text,
    /// Four printable ASCII characters (a QuickTime/ISO fourcc, a vendor id).
    FourCc,
    /// `true` or `false`.
    Bool,
}

/// Where a validated value goes.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// An AVOption of the codec/format context or its private class, set to
    /// the value as written.
    Av(&'static str),
    /// A boolean that sets AVOptions to fixed values for `true`, and others
    /// (possibly none) for `false`. Several settings, because one intent may
    /// need two of FFmpeg's (MPEG-2 closed GOPs also need scene-change
    /// detection off).
    Switch {
        on: &'static [(&'static str, &'static str)],
        off: &'static [(&'static str, &'static str)],
    },
}

/// One accepted key.
#[derive(Debug, Clone, Copy)]
pub struct OptionSpec {
    pub key: &'static str,
    pub kind: Kind,
    pub target: Target,
}

impl OptionSpec {
    pub const fn new(key: &'static str, kind: Kind, target: Target) -> Self {
        OptionSpec { key, kind, target }
    }
}

fn accepted_keys(specs: &[OptionSpec]) -> String {
    if specs.is_empty() {
        "none".to_owned()
    } else {
        specs.iter().map(|s| s.key).collect::<Vec<_>>().join(", ")
    }
}

fn describe(kind: Kind) -> String {
    match kind {
        Kind::Float { min, max } => format!("a number from {min} to {max}"),
        Kind::Int { min, max } => format!("an integer from {min} to {max}"),
        Kind::Choice(c) => format!("one of {}", c.join(", ")),
        Kind::Map(m) => format!(
            "one of {}",
            m.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
        ),
        Kind::Text => "a string".to_owned(),
        Kind::FourCc => "four printable ASCII characters (e.g. \"hvc1\")".to_owned(),
        Kind::Bool => "true or false".to_owned(),
    }
}

/// Checks one value against its kind; returns the text FFmpeg gets.
fn check(kind: Kind, v: &toml::Value) -> Option<String> {
    use toml::Value;
    match (kind, v) {
        (Kind::Float { min, max }, Value::Float(f)) if (min..=max).contains(f) => {
            Some(f.to_string())
        }
        (Kind::Float { min, max }, Value::Integer(i)) if (min..=max).contains(&(*i as f64)) => {
            Some(i.to_string())
        }
        (Kind::Int { min, max }, Value::Integer(i)) if (min..=max).contains(i) => {
            Some(i.to_string())
        }
        (Kind::Choice(c), Value::String(s)) if c.contains(&s.as_str()) => Some(s.clone()),
        (Kind::Choice(c), Value::Float(_) | Value::Integer(_)) => {
            let s = v.to_string();
            c.contains(&s.as_str()).then_some(s)
        }
        (Kind::Map(m), Value::String(s)) => {
            m.iter().find(|(k, _)| k == s).map(|(_, v)| (*v).to_owned())
        }
        (Kind::Map(m), Value::Float(_) | Value::Integer(_)) => {
            let s = v.to_string();
            m.iter()
                .find(|(k, _)| *k == s)
                .map(|(_, v)| (*v).to_owned())
        }
        (Kind::Text, Value::String(s)) => Some(s.clone()),
        (Kind::FourCc, Value::String(s))
            if s.len() == 4 && s.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            Some(s.clone())
        }
        (Kind::Bool, Value::Boolean(b)) => Some(b.to_string()),
        _ => None,
    }
}

/// AVOption settings in the order they were declared, with repeated names
/// (two switches both setting `flags`) merged.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AvSettings(pub Vec<(String, String)>, Written);

/// The validated values by the keys the preset wrote them under, as written
/// (`profile = "422"`, not the `0` FFmpeg is given).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Written(Vec<(String, String)>);

impl AvSettings {
    /// The value a preset key was given, as written (after validation).
    pub fn written(&self, key: &str) -> Option<&str> {
        (self.1)
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`; flag-style values ("+cgop") add to an earlier setting of
    /// the same name, and `x264-params`-style lists are joined with ':'.
    pub fn set(&mut self, name: &str, value: &str) {
        if let Some((_, old)) = self.0.iter_mut().find(|(n, _)| n == name) {
            if value.starts_with('+') || value.starts_with('-') {
                old.push_str(value);
            } else if name.ends_with("-params") || name.ends_with("opts") {
                let _ = write!(old, ":{value}");
            } else {
                *old = value.to_owned();
            }
        } else {
            self.0.push((name.to_owned(), value.to_owned()));
        }
    }

    /// Removes a setting, returning its value (a setting the caller applies
    /// itself rather than handing to FFmpeg's dictionary).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(i).1)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// As an FFmpeg dictionary.
    pub fn to_dictionary(&self) -> ffmpeg_next::Dictionary<'static> {
        let mut d = ffmpeg_next::Dictionary::new();
        for (k, v) in &self.0 {
            d.set(k, v);
        }
        d
    }
}

/// Parses `text` as a TOML table and validates it against `specs`. `owner`
/// names what the options are for ("libx264 encoder options").
///
/// # Errors
/// Text that is not a TOML table; an unknown key (naming it, its value and
/// the accepted keys); a bad value (naming the key, the value and what is
/// accepted).
pub fn parse(text: &str, specs: &[OptionSpec], owner: &str) -> Result<AvSettings, String> {
    let table: toml::Table = if text.trim().is_empty() {
        toml::Table::new()
    } else {
        text.parse()
            .map_err(|e| format!("{owner} are not a valid TOML table: {e}"))?
    };
    let mut out = AvSettings::default();
    for (key, value) in &table {
        let spec = specs.iter().find(|s| s.key == key).ok_or_else(|| {
            format!(
                "unknown {owner} key `{key}` (= {value}); accepted keys: {}",
                accepted_keys(specs)
            )
        })?;
        let text = check(spec.kind, value).ok_or_else(|| {
            format!(
                "{owner}: `{key}` = {value} is not accepted; it must be {}",
                describe(spec.kind)
            )
        })?;
        let as_written = match value {
            toml::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        (out.1).0.push((key.clone(), as_written));
        match spec.target {
            Target::Av(name) => out.set(name, &text),
            Target::Switch { on, off } => {
                let chosen = if value.as_bool() == Some(true) {
                    on
                } else {
                    off
                };
                for (name, v) in chosen {
                    out.set(name, v);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[OptionSpec] = &[
        OptionSpec::new(
            "crf",
            Kind::Float {
                min: 0.0,
                max: 51.0,
            },
            Target::Av("crf"),
        ),
        OptionSpec::new("level", Kind::Choice(&["4", "4.1"]), Target::Av("level")),
        OptionSpec::new(
            "closed_gop",
            Kind::Bool,
            Target::Switch {
                on: &[("flags", "+cgop"), ("sc_threshold", "1000000000")],
                off: &[("x264opts", "open-gop=1")],
            },
        ),
        OptionSpec::new("x", Kind::Text, Target::Av("x264opts")),
        OptionSpec::new(
            "profile",
            Kind::Map(&[("422", "0"), ("main", "4")]),
            Target::Av("profile"),
        ),
        OptionSpec::new("tag", Kind::FourCc, Target::Av("tag")),
    ];

    #[test]
    fn accepts_valid_values() {
        let s = parse(
            "crf = 18\nlevel = 4.1\nclosed_gop = false\nx = \"a=1\"",
            SPECS,
            "o",
        )
        .unwrap();
        assert_eq!(s.get("crf"), Some("18"));
        assert_eq!(s.get("level"), Some("4.1"));
        assert_eq!(s.get("x264opts"), Some("open-gop=1:a=1"));
    }

    #[test]
    fn names_unknown_key_value_and_accepted_keys() {
        let e = parse("crf = 18\nspeed = 3", SPECS, "test options").unwrap_err();
        assert!(e.contains("`speed`") && e.contains("3"), "{e}");
        assert!(e.contains("crf, level, closed_gop, x, profile, tag"), "{e}");
    }

    #[test]
    fn names_bad_value_and_range() {
        let e = parse("crf = 60.5", SPECS, "o").unwrap_err();
        assert!(
            e.contains("`crf` = 60.5") && e.contains("from 0 to 51"),
            "{e}"
        );
        let e = parse("level = \"9\"", SPECS, "o").unwrap_err();
        assert!(e.contains("one of 4, 4.1"), "{e}");
    }

    #[test]
    fn switches_set_every_setting_of_their_side() {
        let s = parse("closed_gop = true", SPECS, "o").unwrap();
        assert_eq!(s.get("flags"), Some("+cgop"));
        assert_eq!(s.get("sc_threshold"), Some("1000000000"));
        assert_eq!(s.get("x264opts"), None);
        let s = parse("closed_gop = false", SPECS, "o").unwrap();
        assert_eq!(s.0, vec![("x264opts".to_owned(), "open-gop=1".to_owned())]);
    }

    #[test]
    fn maps_give_ffmpeg_its_value_and_keep_the_written_one() {
        let s = parse("profile = \"422\"", SPECS, "o").unwrap();
        assert_eq!(s.get("profile"), Some("0"));
        assert_eq!(s.written("profile"), Some("422"));
        // Written as a number, it is the same name.
        assert_eq!(
            parse("profile = 422", SPECS, "o").unwrap().get("profile"),
            Some("0")
        );
        let e = parse("profile = \"high\"", SPECS, "o").unwrap_err();
        assert!(e.contains("one of 422, main"), "{e}");
    }

    #[test]
    fn fourccs_are_four_printable_characters() {
        assert_eq!(
            parse("tag = \"hvc1\"", SPECS, "o").unwrap().get("tag"),
            Some("hvc1")
        );
        for bad in ["\"hvc\"", "\"hvc1x\"", "\"hv\\u0001c\"", "1"] {
            let e = parse(&format!("tag = {bad}"), SPECS, "o").unwrap_err();
            assert!(e.contains("four printable ASCII characters"), "{e}");
        }
    }

    #[test]
    fn flags_merge() {
        let mut s = AvSettings::default();
        s.set("movflags", "+faststart");
        s.set("movflags", "+frag_keyframe");
        assert_eq!(s.get("movflags"), Some("+faststart+frag_keyframe"));
    }
}
