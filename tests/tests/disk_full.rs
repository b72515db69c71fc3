//! A disk that fills up during an encode: the job fails with a clear error
//! (the file system's own words), its truncated output is removed so the
//! space comes back, the manifest lands in failed/ with its report, and the
//! host goes on to deliver the next job on the same disk.
//!
//! The disk is a 700 KiB tmpfs mounted by the test (the test machines run
//! tests as root); it is unmounted when the test ends.

use deliver_tests::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Mount {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a small tmpfs for the disk-full test (it needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount(at.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_job_cleanly_and_the_host_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    // Near-lossless H.264 (CRF 1) of a moving pattern: far more than the disk holds.
    let huge = builtin_preset("web/h264-720p").replace("crf = 20", "crf = 1");
    let presets = presets_dir(tmp.path(), &[("test/huge.toml", &huge)]);
    let disk = Mount::tmpfs(&tmp.path().join("disk"), "700k");
    let root = disk.0.join("root");
    let mut host = Host::start(&root, &plugins, &["--presets", presets.to_str().unwrap()]);
    host.drop_file(
        "huge.toml",
        pattern_manifest("huge", 1280, 720, "10s", "test/huge").as_bytes(),
    );
    let (folder, state, report) = host.wait_job("huge", Duration::from_secs(120));
    assert_eq!(state, "failed", "{report:#}");
    let d = &report["deliverables"][0];
    let error = d["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("No space left on device"),
        "the error does not say the disk is full: {report:#}"
    );
    assert!(error.contains("incomplete output was removed"), "{error}");
    let files = entries(&folder);
    assert!(
        files.contains(&"huge.toml".to_owned()) && files.contains(&"report.json".to_owned()),
        "the manifest and its report must be kept: {files:?}"
    );
    assert!(
        !files.iter().any(|f| f.contains(".mp4")),
        "the truncated output is still there: {files:?}"
    );

    // The space came back: the next job on the same disk is delivered.
    assert!(host.alive());
    host.drop_file(
        "small.toml",
        pattern_manifest("small", 160, 90, "1s", "web/h264-720p").as_bytes(),
    );
    let (folder, state, report) = host.wait_job("small", Duration::from_secs(60));
    assert_eq!(state, "done", "{report:#}\n{}", host.log());
    assert!(folder.join("small_web.mp4").is_file());
    drop(host);
}
