//! Cancel: a `<manifest>.cancel` file dropped beside the manifest, or
//! `deliver cancel <root> <job>`, stops a running job within a second; it
//! lands in `failed/` with reason `cancelled`, its partial outputs removed,
//! and the host goes on with the other jobs.

use deliver_tests::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn manifest(name: &str, duration: &str) -> Vec<u8> {
    pattern_manifest(name, 640, 360, duration, "web/h264-720p").into_bytes()
}

/// The job folder of `stem` under `state`, if there is one.
fn job_folder(root: &Path, state: &str, stem: &str) -> Option<PathBuf> {
    std::fs::read_dir(root.join(state))
        .ok()?
        .filter_map(Result::ok)
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{stem}-"))
        })
        .map(|e| e.path())
}

/// Waits until `stem` runs and has written encoded output.
fn wait_running(host: &mut Host, stem: &str) -> PathBuf {
    let start = Instant::now();
    loop {
        if let Some(dir) = job_folder(&host.root, "processing", stem) {
            let encoding = std::fs::read_dir(&dir)
                .unwrap()
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(".partial"));
            if encoding {
                return dir;
            }
        }
        assert!(host.alive(), "host died:\n{}", host.log());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{stem} never started encoding:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `stem`'s report in failed/; returns it and the time it took.
fn wait_cancelled(
    host: &mut Host,
    stem: &str,
    since: Instant,
) -> (PathBuf, serde_json::Value, Duration) {
    loop {
        if let Some(dir) = job_folder(&host.root, "failed", stem) {
            if let Ok(text) = std::fs::read_to_string(dir.join("report.json")) {
                let took = since.elapsed();
                return (dir, serde_json::from_str(&text).unwrap(), took);
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(30),
            "{stem} was not cancelled:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_cancelled(dir: &Path, report: &serde_json::Value, took: Duration) {
    eprintln!("cancelled in {took:?}");
    assert_eq!(report["verdict"], "fail");
    assert_eq!(report["error"]["kind"], "cancelled", "{report:#}");
    assert!(
        took <= Duration::from_secs(1),
        "the job took {took:?} to stop after the request"
    );
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".mp4"))
        .collect();
    assert!(left.is_empty(), "partial outputs left behind: {left:?}");
}

#[test]
fn cancel_stops_a_running_job_within_a_second_and_the_host_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    let mut host = Host::start(&root, &plugins, &["--concurrency", "2"]);
    // Ten minutes each: neither could finish during the test.
    host.drop_file("long1.toml", &manifest("long1", "600s"));
    host.drop_file("long2.toml", &manifest("long2", "600s"));
    host.drop_file("short.toml", &manifest("short", "2s"));

    // 1. A `.cancel` file beside the manifest.
    wait_running(&mut host, "long1");
    std::fs::write(root.join("incoming/long1.toml.cancel"), b"").unwrap();
    let since = Instant::now();
    let (dir, report, took) = wait_cancelled(&mut host, "long1", since);
    assert_cancelled(&dir, &report, took);
    assert!(
        !root.join("incoming/long1.toml.cancel").exists(),
        "the request was not consumed"
    );

    // 2. `deliver cancel <root> <job id>` (long2 took long1's slot).
    let running = wait_running(&mut host, "long2");
    let id = running.file_name().unwrap().to_str().unwrap().to_owned();
    let out = deliver(&plugins)
        .arg("cancel")
        .arg(&root)
        .arg(&id)
        .output()
        .unwrap();
    let since = Instant::now();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (dir, report, took) = wait_cancelled(&mut host, "long2", since);
    assert_cancelled(&dir, &report, took);

    // The other job was not disturbed.
    let (folder, state, report) = host.wait_job("short", Duration::from_secs(120));
    assert_eq!(state, "done", "{report:#}");
    assert!(folder.join("short_web.mp4").is_file());
    assert!(host.alive());

    // Cancelling what does not exist is a clear error.
    let out = deliver(&plugins)
        .arg("cancel")
        .arg(&root)
        .arg("nothing-here")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no job `nothing-here`"), "{err}");
}
