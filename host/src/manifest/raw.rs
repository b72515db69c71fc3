//! The manifest exactly as written: serde types that keep every value's span
//! (`toml::Spanned`) so that validation can point at it. Nothing here is
//! checked beyond TOML types and field names; `validate.rs` turns a
//! [`RawManifest`] into a [`super::model::Manifest`].
//!
//! Every field is optional at this stage so that a missing field is reported
//! by validation, with the table it belongs in and what it should hold,
//! rather than by serde's bare "missing field".

use serde::Deserialize;
use toml::Spanned;

/// A number-or-string field, read as written so that validation can explain
/// what is wrong with it (floats included: `frame_rate = 29.97` gets the
/// exact fraction to write instead).
#[derive(Debug, Clone, PartialEq)]
pub enum RawNumberOrText {
    Integer(i64),
    Float(f64),
    Text(String),
}

/// Deserializes a [`RawNumberOrText`] newtype whose type errors say `$expecting`.
macro_rules! number_or_text {
    ($(#[$doc:meta])* $name:ident, $expecting:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub struct $name(pub RawNumberOrText);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl serde::de::Visitor<'_> for Visitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        Ok($name(RawNumberOrText::Integer(v)))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        Ok($name(RawNumberOrText::Integer(
                            i64::try_from(v).unwrap_or(i64::MAX),
                        )))
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$name, E> {
                        Ok($name(RawNumberOrText::Float(v)))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name(RawNumberOrText::Text(v.to_owned())))
                    }
                }
                d.deserialize_any(Visitor)
            }
        }
    };
}

number_or_text!(
    /// A time: `"5s"`, `"500ms"`, `"125f"`, `"00:00:05:00"` or an integer
    /// number of frames (see `time.rs`).
    RawTimeValue,
    super::time::TIME_EXPECTED
);
number_or_text!(
    /// A frame rate: `25`, `"25"`, `"25/1"`, `"30000/1001"`.
    RawRate,
    super::time::RATE_EXPECTED
);

pub type RawTime = Spanned<RawTimeValue>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    pub version: Option<Spanned<i64>>,
    pub name: Option<Spanned<String>>,
    pub priority: Option<Spanned<i64>>,
    /// An OpenTimelineIO timeline that supplies the canvas and tracks.
    pub timeline: Option<Spanned<String>>,
    pub canvas: Option<Spanned<RawCanvas>>,
    #[serde(default)]
    pub video: Vec<Spanned<RawVideoTrack>>,
    #[serde(default)]
    pub audio: Vec<Spanned<RawAudioTrack>>,
    #[serde(default)]
    pub deliverable: Vec<Spanned<RawDeliverable>>,
}

impl RawManifest {
    /// True when the document holds no fields at all (e.g. only comments).
    pub fn is_empty(&self) -> bool {
        self.version.is_none()
            && self.name.is_none()
            && self.priority.is_none()
            && self.timeline.is_none()
            && self.canvas.is_none()
            && self.video.is_empty()
            && self.audio.is_empty()
            && self.deliverable.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanvas {
    pub width: Option<Spanned<i64>>,
    pub height: Option<Spanned<i64>>,
    pub frame_rate: Option<Spanned<RawRate>>,
    pub duration: Option<RawTime>,
    pub colour_space: Option<Spanned<String>>,
    pub background: Option<Spanned<String>>,
    pub sample_rate: Option<Spanned<i64>>,
    pub channels: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideoTrack {
    pub name: Option<Spanned<String>>,
    #[serde(default)]
    pub clip: Vec<Spanned<RawVideoClip>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVideoClip {
    pub generator: Option<Spanned<String>>,
    pub media: Option<Spanned<String>>,
    #[serde(alias = "colour")]
    pub color: Option<Spanned<String>>,
    pub start: Option<RawTime>,
    #[serde(rename = "in")]
    pub in_point: Option<RawTime>,
    pub duration: Option<RawTime>,
    pub out: Option<RawTime>,
    pub opacity: Option<Spanned<f64>>,
    pub position: Option<Spanned<Vec<f64>>>,
    pub scale: Option<Spanned<f64>>,
    pub transition_in: Option<Spanned<RawTransition>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransition {
    pub kind: Option<Spanned<String>>,
    pub duration: Option<RawTime>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudioTrack {
    pub name: Option<Spanned<String>>,
    pub gain_db: Option<Spanned<f64>>,
    #[serde(default)]
    pub clip: Vec<Spanned<RawAudioClip>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudioClip {
    pub generator: Option<Spanned<String>>,
    pub media: Option<Spanned<String>>,
    pub frequency: Option<Spanned<f64>>,
    pub level: Option<Spanned<f64>>,
    pub start: Option<RawTime>,
    #[serde(rename = "in")]
    pub in_point: Option<RawTime>,
    pub duration: Option<RawTime>,
    pub out: Option<RawTime>,
    pub gain_db: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliverable {
    pub preset: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub overrides: Option<Spanned<toml::Table>>,
}
