//! Files are taken only when they are complete: a medium still being
//! written makes its job wait (and succeed once it is whole), and in
//! sidecar mode nothing is taken before the sender's `<name>.ready`.

use deliver_tests::*;
use std::io::Write;
use std::time::{Duration, Instant};

/// Media referenced by a manifest, written 256 KiB every 100 ms for 3 s
/// (with the file held open), then the rest: the job must not start
/// encoding before the writer is done, and must then succeed.
#[test]
fn a_job_waits_for_media_still_arriving() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("media")).unwrap();
    // 30 s of 24-bit stereo PCM: 8.6 MB, more than 3 s of writing.
    let full = tmp.path().join("tone.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=30",
        "-ac",
        "2",
        "-c:a",
        "pcm_s24le",
        full.to_str().unwrap(),
    ]);
    let bytes = std::fs::read(&full).unwrap();
    assert!(bytes.len() > 31 * 256 * 1024);
    let media = root.join("media/tone.wav");
    let mut out = std::fs::File::create(&media).unwrap();
    out.write_all(&bytes[..256 * 1024]).unwrap();

    let mut host = Host::start(&root, &plugins, &[]);
    let manifest = pattern_manifest("slow", 320, 180, "2s", "web/h264-720p").replace(
        "generator = \"sine\"\nfrequency = 1000.0\nlevel = -20.0",
        "media = \"../media/tone.wav\"\nduration = \"2s\"",
    );
    assert!(manifest.contains("tone.wav"));
    host.drop_file("slow.toml", manifest.as_bytes());

    let start = Instant::now();
    let mut written = 256 * 1024;
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(100));
        let end = (written + 256 * 1024).min(bytes.len());
        out.write_all(&bytes[written..end]).unwrap();
        written = end;
        // Nothing may be encoded while the medium is incomplete.
        for job in entries(&root.join("processing")) {
            let files = entries(&root.join("processing").join(&job));
            assert!(
                !files.iter().any(|f| f.ends_with(".partial")),
                "encoding started while the medium was being written: {files:?}\n{}",
                host.log()
            );
        }
        assert!(entries(&root.join("done")).is_empty());
        assert!(entries(&root.join("failed")).is_empty(), "{}", host.log());
    }
    out.write_all(&bytes[written..]).unwrap();
    drop(out);

    let (folder, state, report) = host.wait_job("slow", Duration::from_secs(120));
    assert_eq!(state, "done", "{report:#}");
    let log = host.log();
    assert!(log.contains("waiting for media still arriving"), "{log}");
    let probe = ffprobe(&folder.join("slow_web.mp4"));
    assert_eq!(stream(&probe, "video")["nb_read_frames"], "50");
    assert_eq!(stream(&probe, "audio")["channels"], 2);
}

/// Sidecar mode: a complete manifest waits for `<name>.ready`; the sidecar
/// is consumed when the manifest is claimed.
#[test]
fn sidecar_mode_takes_a_file_only_after_its_ready_file() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    let mut host = Host::start(&root, &plugins, &["--ready-sidecar"]);
    host.drop_file(
        "side.toml",
        pattern_manifest("side", 160, 90, "1s", "web/h264-720p").as_bytes(),
    );
    // Five settle times: a host without sidecar mode would have taken it.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(root.join("incoming/side.toml").is_file(), "{}", host.log());
    assert!(entries(&root.join("processing")).is_empty());

    std::fs::write(root.join("incoming/side.toml.ready"), b"").unwrap();
    let (_, state, report) = host.wait_job("side", Duration::from_secs(60));
    assert_eq!(state, "done", "{report:#}");
    assert!(
        !root.join("incoming/side.toml.ready").exists(),
        "the sidecar was not consumed"
    );
}
