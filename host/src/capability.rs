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

use crate::encode::{self, PlanError};
use crate::manifest::Manifest;
use crate::plugins::Registry;
use crate::preset::PresetLibrary;
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
}
