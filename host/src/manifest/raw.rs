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
    /// "mono", "stereo" or "5.1": another way to say `channels`.
    pub layout: Option<Spanned<String>>,
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
    pub still: Option<Spanned<String>>,
    /// A solid's or a title's colour (a string), or the colour operations
    /// (a table); `colour` is the same field spelled the British way, so a
    /// clip may carry one of each (`color = "#fff"`, `[video.clip.colour]`).
    pub color: Option<Spanned<RawColourField>>,
    pub colour: Option<Spanned<RawColourField>>,
    pub text: Option<Spanned<String>>,
    pub font: Option<Spanned<String>>,
    pub size: Option<Spanned<f64>>,
    pub at: Option<Spanned<Vec<f64>>>,
    pub start: Option<RawTime>,
    #[serde(rename = "in")]
    pub in_point: Option<RawTime>,
    pub duration: Option<RawTime>,
    pub out: Option<RawTime>,
    pub speed: Option<Spanned<f64>>,
    pub opacity: Option<Spanned<RawParam>>,
    pub position: Option<Spanned<RawParam>>,
    pub scale: Option<Spanned<RawParam>>,
    pub rotation: Option<Spanned<RawParam>>,
    pub crop: Option<Spanned<RawParam>>,
    pub fit: Option<Spanned<String>>,
    pub blend: Option<Spanned<String>>,
    pub transition_in: Option<Spanned<RawTransition>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransition {
    pub kind: Option<Spanned<String>>,
    pub duration: Option<RawTime>,
    /// Dip only.
    #[serde(alias = "colour")]
    pub color: Option<Spanned<String>>,
    /// Wipe only.
    pub angle: Option<Spanned<f64>>,
    /// Wipe only.
    pub softness: Option<Spanned<f64>>,
}

/// `color` / `colour` on a video clip: a colour string or a table of colour
/// operations.
#[derive(Debug)]
pub enum RawColourField {
    Text(String),
    Grade(RawGrade),
}

impl<'de> Deserialize<'de> for RawColourField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawColourField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a colour \"#rrggbb\" or a table of colour operations { exposure, lift, \
                     gamma, gain, saturation, lut }",
                )
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawColourField, E> {
                Ok(RawColourField::Text(v.to_owned()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<RawColourField, A::Error> {
                RawGrade::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(RawColourField::Grade)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Colour operations as written (`[video.clip.colour]`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrade {
    pub exposure: Option<Spanned<f64>>,
    pub lift: Option<Spanned<Vec<f64>>>,
    pub gamma: Option<Spanned<Vec<f64>>>,
    pub gain: Option<Spanned<Vec<f64>>>,
    pub saturation: Option<Spanned<f64>>,
    pub lut: Option<Spanned<String>>,
}

/// A clip property as written: a number (`opacity = 0.5`), a list of
/// numbers (`position = [10, 20]`), or a list of keyframes
/// (`opacity = [{ at = "0s", value = 0.0 }, …]`). Validation checks which
/// shape the field takes.
#[derive(Debug)]
pub enum RawParam {
    Number(f64),
    List(Vec<Spanned<RawParamItem>>),
}

/// One element of a [`RawParam`] list.
#[derive(Debug)]
pub enum RawParamItem {
    Number(f64),
    Key(RawKey),
}

/// One keyframe as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub at: Option<RawTime>,
    pub value: Option<Spanned<RawKeyValue>>,
    pub interp: Option<Spanned<String>>,
}

/// A keyframe's value: a number, or a list for position and crop.
#[derive(Debug)]
pub enum RawKeyValue {
    Number(f64),
    List(Vec<f64>),
}

/// Visits numbers (integers widened to f64), lists and tables, the shapes
/// the types above take; each says what it expects through `$expecting`.
macro_rules! number_visitor {
    ($ty:ty, $expecting:expr, $number:expr, { $($extra:tt)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> serde::de::Visitor<'de> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$ty, E> {
                        Ok($number(v as f64))
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$ty, E> {
                        Ok($number(v as f64))
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$ty, E> {
                        Ok($number(v))
                    }
                    $($extra)*
                }
                d.deserialize_any(Visitor)
            }
        }
    };
}

number_visitor!(
    RawParam,
    "a number, a list of numbers, or a list of keyframes \
    [{ at = \"0s\", value = … }, …]",
    RawParam::Number,
    {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<RawParam, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element()? {
                items.push(item);
            }
            Ok(RawParam::List(items))
        }
    }
);

number_visitor!(
    RawParamItem,
    "a number or a keyframe { at = \"1s\", value = … }",
    RawParamItem::Number,
    {
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawParamItem, A::Error> {
            RawKey::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                .map(RawParamItem::Key)
        }
    }
);

number_visitor!(
    RawKeyValue,
    "a number, or a list of numbers for position and crop",
    RawKeyValue::Number,
    {
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<RawKeyValue, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<f64>()? {
                items.push(item);
            }
            Ok(RawKeyValue::List(items))
        }
    }
);

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
    pub fade_in: Option<RawTime>,
    pub fade_out: Option<RawTime>,
    pub pan: Option<Spanned<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeliverable {
    pub preset: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub overrides: Option<Spanned<toml::Table>>,
}
