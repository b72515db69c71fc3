//! Resume: a 60 s deliverable is encoded in 5 s segments; the host is
//! killed (SIGKILL) once at least 3 segments are recorded in the journal,
//! and restarted. The recorded segments are copied into the new file, not
//! encoded again (the journal counts one encode per segment and keeps their
//! times, and the second host's log says which it reused), and the stitched
//! file has exactly 1,500 frames with consecutive timestamps.

use deliver::journal::Journal;
use deliver_tests::*;
use serde_json::Value;
use std::time::{Duration, Instant};

const SEGMENTS: u64 = 12;

#[test]
fn a_killed_host_resumes_from_its_recorded_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("incoming")).unwrap();
    let args = ["--segment-seconds", "5"];
    let host = Host::start(&root, &plugins, &args);
    host.drop_file(
        "long.toml",
        pattern_manifest("long", 640, 360, "60s", "web/h264-720p").as_bytes(),
    );
    let journal_path = root.join(".deliver/journal.sqlite");
    let job = {
        let start = Instant::now();
        loop {
            if let Some(j) = entries(&root.join("processing")).into_iter().next() {
                break j;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "never claimed:\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let journal = Journal::open_path(&journal_path).unwrap();
    let start = Instant::now();
    let before = loop {
        let rows = journal.segments(&job, None).unwrap();
        if rows.len() >= 3 {
            break rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "3 segments were never recorded:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(host); // SIGKILL
                // The next host starts a new log in the same file.
    let first_log = std::fs::read_to_string(root.with_extension("log")).unwrap();
    // What was recorded by the time the process died.
    let before = {
        let rows = journal.segments(&job, None).unwrap();
        assert!(rows.len() >= before.len());
        rows
    };
    let n = before.len() as u64;
    eprintln!("killed with {n} of {SEGMENTS} segments recorded");
    assert!(
        n < SEGMENTS,
        "the whole deliverable was encoded before the kill; the test proves nothing:\n{first_log}"
    );
    assert_eq!(
        before.iter().map(|r| r.idx).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>()
    );
    // Their spool files are where the journal says.
    for r in &before {
        assert!(
            root.join("processing").join(&job).join(&r.file).is_file(),
            "{r:?}"
        );
    }

    let mut host = Host::start(&root, &plugins, &args);
    let (dir, state, report) = host.wait_job("long", Duration::from_secs(300));
    let log = host.log();
    drop(host);
    assert_eq!(state, "done", "{report:#}\n{log}");
    assert_eq!(report["verdict"], "pass", "{report:#}");

    // The journal: every segment encoded once; the early ones untouched.
    let after = journal.segments(&job, None).unwrap();
    assert_eq!(after.len() as u64, SEGMENTS, "{after:#?}");
    for r in &after {
        assert_eq!(r.encodes, 1, "segment {} was encoded again: {r:?}", r.idx);
        assert_eq!(r.frames, 125);
    }
    for (a, b) in before.iter().zip(&after) {
        assert_eq!(a, b, "a recorded segment changed after the restart");
    }
    // `deliver status` shows them too.
    let out = deliver(&plugins)
        .args(["status", "--json", "--job", &job])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["segments"].as_array().map(Vec::len),
        Some(SEGMENTS as usize),
        "{status:#}"
    );
    // The log says which it reused, and encoded only the others.
    let want = format!("resuming: {n} of {SEGMENTS} segments were recorded before");
    assert!(log.contains(&want), "no `{want}` in the log:\n{log}");
    for k in 1..=SEGMENTS {
        let line = format!("segment {k}/{SEGMENTS} recorded");
        let count = log.matches(&line).count() + first_log.matches(&line).count();
        assert_eq!(count, 1, "`{line}` logged {count} times");
        assert_eq!(log.contains(&line), k > n, "{line}");
    }

    // The stitched file: exact frame count, a key frame at each segment
    // start, clean decode, and the report's timestamp check passed.
    let mp4 = dir.join("long_web.mp4");
    let probe = ffprobe(&mp4);
    assert_eq!(stream(&probe, "video")["nb_read_frames"], "1500");
    let checks = report["deliverables"][0]["checks"].as_array().unwrap();
    for id in [
        "video.frame_count",
        "video.timestamps",
        "video.bitstream_identity",
    ] {
        let c = checks.iter().find(|c| c["id"] == id).unwrap();
        assert_eq!(c["pass"], true, "{c}");
    }
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v",
            "-skip_frame",
            "nokey",
        ])
        .args(["-show_entries", "frame=pts_time", "-of", "json"])
        .arg(&mp4)
        .output()
        .unwrap();
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    let times: Vec<f64> = keys["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pts_time"].as_str().unwrap().parse().unwrap())
        .collect();
    for k in 0..SEGMENTS {
        let t = k as f64 * 5.0;
        assert!(
            times.iter().any(|x| (x - t).abs() < 1e-3),
            "no key frame at the start of segment {k} ({t} s): {times:?}"
        );
    }
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&mp4)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    // The spool is gone with the job.
    assert!(!dir.join(".segments").exists());
}
