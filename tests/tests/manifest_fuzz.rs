//! Property test of the manifest parser: mutated and random manifests never
//! panic it; each gives either a valid manifest or an error that names the
//! file (and, where the text locates it, a line within the file).

use deliver::manifest::{self, LoadContext};
use proptest::prelude::*;
use std::path::Path;

/// A valid manifest exercising most of the grammar.
const SEED: &str = r##"version = 1
name = "promo"
[canvas]
width = 1280
height = 720
frame_rate = "30000/1001"
duration = "00:00:05:00"
colour_space = "bt709"
sample_rate = 48000
channels = 2
[[video]]
[[video.clip]]
generator = "bars"
duration = "3s"
[[video.clip]]
generator = "pattern"
start = "2s"
duration = "90f"
opacity = 0.8
position = [0.1, 0.2]
scale = 0.5
transition_in = { kind = "dissolve", duration = "1s" }
[[video]]
[[video.clip]]
generator = "solid"
colour = "#203040"
start = "4s"
duration = "500ms"
[[audio]]
gain_db = -3.0
[[audio.clip]]
generator = "sine"
frequency = 1000.0
level = -20.0
duration = "5s"
[[deliverable]]
preset = "web/h264-1080p"
name = "web"
overrides = { video = { width = 640, height = 360 }, loudness = { target_lufs = -16.0 } }
"##;

fn ctx() -> LoadContext {
    LoadContext {
        media_roots: vec![std::env::temp_dir()],
        base_dir: Some(std::env::temp_dir()),
        max_bytes: 1 << 20,
        ..LoadContext::default()
    }
}

fn check(src: &[u8]) {
    let path = Path::new("/fuzz/manifest.toml");
    match manifest::parse(src, path, &ctx()) {
        Ok(m) => {
            // A valid manifest is coherent.
            assert!(m.canvas.width > 0 && m.canvas.height > 0);
            assert!(m.canvas.frames > 0);
            assert!(!m.deliverables.is_empty());
        }
        Err(e) => {
            let text = e.to_string();
            assert!(text.starts_with("/fuzz/manifest.toml"), "{text}");
            if let Some(line) = e.line {
                let lines = String::from_utf8_lossy(src).lines().count().max(1);
                assert!(
                    line >= 1 && line <= lines + 1,
                    "line {line} of {lines}: {text}"
                );
            }
        }
    }
}

#[test]
fn the_seed_is_valid() {
    let m = manifest::parse(SEED.as_bytes(), Path::new("/fuzz/manifest.toml"), &ctx())
        .expect("the seed manifest is valid");
    assert_eq!(m.canvas.frames, 150);
}

/// Replacement values that tend to break parsers and validators.
fn nasty() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("0".to_owned()),
        Just("-1".to_owned()),
        Just("1e309".to_owned()),
        Just("nan".to_owned()),
        Just("inf".to_owned()),
        Just("9223372036854775807".to_owned()),
        Just("\"\"".to_owned()),
        Just("\"0/0\"".to_owned()),
        Just("\"1/0\"".to_owned()),
        Just("\"99:99:99:99\"".to_owned()),
        Just("\"-5s\"".to_owned()),
        Just("\"1e400s\"".to_owned()),
        Just("[]".to_owned()),
        Just("{}".to_owned()),
        Just("true".to_owned()),
        Just("\"\\u0000\"".to_owned()),
        Just("\"../../../etc/passwd\"".to_owned()),
        "[a-z0-9\"./:#-]{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Random bytes.
    #[test]
    fn random_bytes_never_panic(src in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&src);
    }

    /// The seed with one value replaced by something nasty.
    #[test]
    fn mutated_values_never_panic(line in 0usize..48, value in nasty()) {
        let mut lines: Vec<String> = SEED.lines().map(str::to_owned).collect();
        let i = line % lines.len();
        if let Some((key, _)) = lines[i].split_once(" = ") {
            lines[i] = format!("{key} = {value}");
        }
        check(lines.join("\n").as_bytes());
    }

    /// The seed with a line deleted, duplicated or cut short.
    #[test]
    fn structural_mutations_never_panic(line in 0usize..48, op in 0u8..3, cut in 0usize..40) {
        let mut lines: Vec<String> = SEED.lines().map(str::to_owned).collect();
        let i = line % lines.len();
        match op {
            0 => { lines.remove(i); }
            1 => { let l = lines[i].clone(); lines.insert(i, l); }
            _ => { let l = &lines[i]; let c = cut.min(l.len()); let l = l.chars().take(c).collect(); lines[i] = l; }
        }
        check(lines.join("\n").as_bytes());
    }

    /// Random bytes spliced into the seed.
    #[test]
    fn spliced_bytes_never_panic(at in 0usize..1200, junk in proptest::collection::vec(any::<u8>(), 1..16)) {
        let mut src = SEED.as_bytes().to_vec();
        let at = at.min(src.len());
        src.splice(at..at, junk);
        check(&src);
    }
}
