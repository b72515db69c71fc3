//! Whether the loaded plugins can make a manifest's deliverables, before a
//! job starts: a job that needs a codec or container no loaded plugin
//! provides waits for one (the host rescans its plugin directories) instead
//! of failing.
//!
//! The rules are [`encode::plan`]'s own: each deliverable's preset is
//! resolved as the job would resolve it and planned against the registry;
//! a plan refused because no plugin offers something is what is missing.
//! Any other refusal (an unknown preset, audio at another rate than the
//! composition) is not a capability: the job runs and reports it.
//!
//! [`check_preset`] holds one preset to the same rules without a manifest,
//! field by field, for `deliver presets check` and the warnings at start.

use crate::encode::{self, PlanError};
use crate::manifest::{DeliverableRequest, InputError, Manifest};
use crate::plugins::{Choice, Registry};
use crate::preset::{Preset, PresetLibrary};
use deliver_plugin_api::abi::{cap, media};
use std::path::Path;

/// How [`encode::plan`] words a capability that no plugin offers
/// ("no loaded plugin offers video encoder `hevc`; available: …"). The
/// unit test below keeps this in step with `encode.rs`.
const NO_PLUGIN: &str = "no loaded plugin offers ";

/// One deliverable that no loaded plugin can make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The deliverable's name.
    pub deliverable: String,
    pub preset: String,
    /// What is missing, e.g. "video encoder `hevc`".
    pub what: String,
}

/// Whether a plan was refused for want of a plugin, and for what.
fn missing_capability(e: &PlanError) -> Option<String> {
    let rest = e.message.strip_prefix(NO_PLUGIN)?;
    let what = rest.split_once("; available:").map_or(rest, |(w, _)| w);
    Some(what.to_owned())
}

/// The deliverables of `m` that no plugin of `reg` can make, one entry per
/// deliverable (the first thing missing). Empty: the job can start.
pub fn missing(m: &Manifest, reg: &Registry, presets: &PresetLibrary) -> Vec<Missing> {
    m.deliverables
        .iter()
        .filter_map(|d| {
            let preset = presets.resolve_request(d, &m.path).ok()?;
            let id = preset.id.clone();
            let e = encode::plan(m, reg, &d.name, preset, Path::new("."), None).err()?;
            Some(Missing {
                deliverable: d.name.clone(),
                preset: id,
                what: missing_capability(&e)?,
            })
        })
        .collect()
}

/// What a preset asks that the loaded plugins do not offer, one error per
/// field, each naming the file and line that wrote the field (the preset or
/// one it extends) and what is offered instead: the video and audio
/// encoders (by codec, or the named `encoder`), the video profile and pixel
/// format (in what the chosen encoder declares, as [`encode::plan`] checks
/// them), a decoder for the video codec (the delivery is validated by
/// decoding it) and a muxer for the container. Empty: the plugins can make
/// it.
///
/// The ffmpeg plugin pairs profiles with pixel formats internally; that
/// pairing is not declared, so each is checked on its own here.
pub fn check_preset(p: &Preset, presets: &PresetLibrary, reg: &Registry) -> Vec<InputError> {
    check(p, presets, reg, None)
}

/// [`check_preset`] for a manifest's deliverable: its preset with its
/// overrides; a value set by the overrides is reported against the
/// manifest at the `[[deliverable]]` line.
///
/// # Errors
///
/// The preset does not resolve (as [`PresetLibrary::resolve_request`]); the
/// plugins' findings are the `Ok` value.
pub fn check_request(
    req: &DeliverableRequest,
    manifest: &Path,
    presets: &PresetLibrary,
    reg: &Registry,
) -> Result<Vec<InputError>, InputError> {
    let p = presets.resolve_request(req, manifest)?;
    Ok(check(&p, presets, reg, Some((req, manifest))))
}

fn check(
    p: &Preset,
    presets: &PresetLibrary,
    reg: &Registry,
    request: Option<(&DeliverableRequest, &Path)>,
) -> Vec<InputError> {
    let mut found = Vec::new();
    let mut report = |path: &[&str], value: &str, message: String, expected: String| {
        let mut e = InputError::new(&p.file, format!("value \"{value}\" {message}"))
            .field(path.join("."))
            .value(format!("\"{value}\""))
            .expected(expected);
        let in_overrides = request.filter(|(r, _)| lookup(&r.overrides, path));
        if let Some((req, manifest)) = in_overrides {
            e.file = manifest.to_path_buf();
            e.line = Some(req.line);
            e.field = Some(format!("overrides.{}", path.join(".")));
            e.message.push_str(&format!(
                " (in the overrides of deliverable \"{}\")",
                req.name
            ));
        } else if let Some((file, line, column)) = presets.locate(&p.id, path) {
            e.file = file;
            e = e.at(line, column);
        }
        found.push(e);
    };
    let v = &p.video;
    // The encoder the plan would take: the preset's hardware policy first.
    let video = match crate::encode::select_video(
        reg.candidates(cap::ENCODE, &v.codec, v.encoder.as_deref()),
        |c| &c.capability,
        &v.codec,
        v.hardware,
        &crate::encode::hardware_encoders(reg),
    ) {
        Ok((c, _)) => Some(c),
        Err(Some(why)) => {
            report(
                &["video", "hardware"],
                v.hardware.as_str(),
                why,
                "a policy this machine's encoders can meet".into(),
            );
            None
        }
        Err(None) => encoder(
            reg,
            &v.codec,
            v.encoder.as_deref(),
            media::VIDEO,
            "video",
            &mut report,
        ),
    };
    if let Some(c) = video {
        let cap = &c.capability;
        let who = format!("video encoder {} ({})", cap.implementation, c.plugin.name());
        if !cap.pix_fmts.is_empty() && !cap.pix_fmts.contains(&v.pix_fmt) {
            report(
                &["video", "pix_fmt"],
                &v.pix_fmt,
                format!("is not taken by the {who}"),
                format!("one of {}", cap.pix_fmts.join(", ")),
            );
        }
        if let Some(profile) = &v.profile {
            if !cap.profiles.is_empty() && !cap.profiles.contains(profile) {
                report(
                    &["video", "profile"],
                    profile,
                    format!("is not offered by the {who}"),
                    format!("one of {}", cap.profiles.join(", ")),
                );
            }
        }
    }
    if reg.find(cap::STREAM_DECODE, &v.codec, None).is_none() {
        report(
            &["video", "codec"],
            &v.codec,
            "has no decoder in the loaded plugins, and a delivery is validated by decoding it"
                .into(),
            offered(reg, cap::STREAM_DECODE, media::VIDEO, "video decoders"),
        );
    }
    if reg.find(cap::MUX, &p.container, None).is_none() {
        report(
            &["container"],
            &p.container,
            "is not a container any loaded plugin writes".into(),
            offered(reg, cap::MUX, media::ANY, "containers"),
        );
    }
    if let Some(a) = &p.audio {
        encoder(
            reg,
            &a.codec,
            a.encoder.as_deref(),
            media::AUDIO,
            "audio",
            &mut report,
        );
    }
    found
}

/// The encoder [`Registry::find`] would choose, or a report on the codec
/// (no plugin encodes it) or on the named encoder (none of that name does).
fn encoder(
    reg: &Registry,
    codec: &str,
    want: Option<&str>,
    kind: u32,
    what: &str,
    report: &mut impl FnMut(&[&str], &str, String, String),
) -> Option<Choice> {
    if let Some(c) = reg.find(cap::ENCODE, codec, want) {
        return Some(c);
    }
    match want {
        Some(w) if reg.find(cap::ENCODE, codec, None).is_some() => {
            let those = reg
                .plugins
                .iter()
                .flat_map(|l| l.capabilities.iter().map(move |c| (l, c)))
                .filter(|(_, c)| c.kind == cap::ENCODE && c.name == codec)
                .map(|(l, c)| format!("{} ({})", c.implementation, l.plugin.name()))
                .collect::<Vec<_>>();
            report(
                &[what, "encoder"],
                w,
                format!("is not a loaded plugin or implementation that encodes {codec}"),
                format!(
                    "one of {}, or no encoder (the best ranked)",
                    those.join(", ")
                ),
            );
        }
        _ => report(
            &[what, "codec"],
            codec,
            format!("is not a codec any loaded plugin encodes as {what}"),
            offered(reg, cap::ENCODE, kind, &format!("{what} encoders")),
        ),
    }
    None
}

/// "one of the video encoders: h264 (libx264 in ffmpeg), …" or "a loaded
/// plugin that offers one (none is loaded)".
fn offered(reg: &Registry, kind: u32, media: u32, what: &str) -> String {
    let v = reg.describe(|c| c.kind == kind && (c.media == 0 || c.media & media != 0));
    if v.is_empty() {
        format!("a loaded plugin that offers {what} (none does)")
    } else {
        format!("one of the {what}: {}", v.join(", "))
    }
}

fn lookup(table: &toml::Table, path: &[&str]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut t = table;
    for key in parents {
        match t.get(*key).and_then(toml::Value::as_table) {
            Some(next) => t = next,
            None => return false,
        }
    }
    t.contains_key(*last)
}

/// The loaded plugins, for messages: "ffmpeg 0.1.0, panic-test 0.1.0", or
/// "none".
pub fn loaded(reg: &Registry) -> String {
    if reg.plugins.is_empty() {
        return "none".to_owned();
    }
    reg.plugins
        .iter()
        .map(|l| format!("{} {}", l.plugin.name(), l.plugin.version()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status of a job that waits: "waiting: no loaded plugin offers video
/// encoder `hevc` (deliverable `web`, preset web/h265-1080p); loaded: …".
pub fn waiting_detail(missing: &[Missing], reg: &Registry) -> String {
    let each = missing
        .iter()
        .map(|m| {
            format!(
                "{NO_PLUGIN}{} (deliverable `{}`, preset {})",
                m.what, m.deliverable, m.preset
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("waiting: {each}; loaded: {}", loaded(reg))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{parse, LoadContext};

    fn manifest(deliverables: &str) -> Manifest {
        let src = format!(
            r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "1s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
{deliverables}"#
        );
        parse(
            src.as_bytes(),
            Path::new("incoming/a.toml"),
            &LoadContext::default(),
        )
        .unwrap()
    }

    #[test]
    fn with_no_plugins_every_deliverable_waits_for_its_video_encoder() {
        let m = manifest(
            "[[deliverable]]\npreset = \"web/h264-720p\"\n\
             [[deliverable]]\npreset = \"web/h264-1080p\"\nname = \"hd\"\n",
        );
        let reg = Registry::default();
        let missing = missing(&m, &reg, &PresetLibrary::builtin());
        let want = |deliverable: &str, preset: &str| Missing {
            deliverable: deliverable.into(),
            preset: preset.into(),
            what: "video encoder `h264`".into(),
        };
        assert_eq!(
            missing,
            [
                want("web_h264-720p", "web/h264-720p"),
                want("hd", "web/h264-1080p")
            ]
        );
        assert_eq!(
            waiting_detail(&missing[..1], &reg),
            "waiting: no loaded plugin offers video encoder `h264` (deliverable \
             `web_h264-720p`, preset web/h264-720p); loaded: none"
        );
    }

    #[test]
    fn an_unknown_preset_is_not_a_missing_capability() {
        let m = manifest("[[deliverable]]\npreset = \"web/nope\"\n");
        assert!(missing(&m, &Registry::default(), &PresetLibrary::builtin()).is_empty());
    }

    #[test]
    fn with_no_plugins_a_preset_is_refused_field_by_field_where_it_is_written() {
        let lib = PresetLibrary::builtin();
        // Inherited fields are found in the parent's file.
        let p = lib
            .resolve("web/h264-1080p-streaming", &toml::Table::new())
            .unwrap();
        let found = check_preset(&p, &lib, &Registry::default());
        let fields: Vec<_> = found
            .iter()
            .map(|e| (e.field.as_deref().unwrap(), e.line))
            .collect();
        assert_eq!(
            fields,
            [
                ("video.codec", Some(12)),
                ("video.codec", Some(12)),
                ("container", Some(4)),
                ("audio.codec", Some(31)),
            ]
        );
        assert!(found
            .iter()
            .all(|e| e.file == Path::new("builtin:web/h264-1080p.toml")));
        assert_eq!(
            found[0].to_string(),
            "builtin:web/h264-1080p.toml:12:9: field `video.codec`: value \"h264\" is not a \
             codec any loaded plugin encodes as video (expected a loaded plugin that offers \
             video encoders (none does))"
        );
    }
}
