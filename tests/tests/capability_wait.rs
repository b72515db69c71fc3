//! Capability-aware waiting: a host started without the ffmpeg plugin does
//! not fail jobs that need it; they wait, without holding a slot, with the
//! reason in `deliver status`. When the plugin library is copied into the
//! plugin directory, the host loads it and the jobs are delivered.

use deliver_tests::*;
use serde_json::Value;
use std::time::{Duration, Instant};

/// The job rows of `root` in state `waiting`, polled until there are `n`.
fn wait_for_waiting(plugins: &std::path::Path, host: &mut Host, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let rows: Vec<Value> = status_json(plugins, &host.root)
            .into_iter()
            .filter(|r| r["state"] == "waiting")
            .collect();
        if rows.len() >= n {
            return rows;
        }
        assert!(host.alive(), "the host died:\n{}", host.log());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{n} jobs did not reach `waiting`: {rows:#?}\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_job_waits_for_a_missing_plugin_and_runs_once_it_is_added() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    let root = tmp.path().join("root");
    // One slot: the second job can only reach `waiting` if the first gave
    // its slot back.
    let mut host = Host::start(&root, &plugins, &["--concurrency", "1"]);
    for name in ["first", "second"] {
        host.drop_file(
            &format!("{name}.toml"),
            pattern_manifest(name, 160, 90, "1s", "web/h264-720p").as_bytes(),
        );
    }
    let rows = wait_for_waiting(&plugins, &mut host, 2);
    for r in &rows {
        let detail = r["detail"].as_str().unwrap();
        assert_eq!(
            detail,
            "waiting: no loaded plugin offers video encoder `h264` (deliverable `web`, preset \
             web/h264-720p); loaded: none",
            "{r:#}"
        );
    }
    // The text listing shows it too.
    let out = deliver(&plugins).arg("status").arg(&root).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .filter(|l| l.contains(" waiting ") && l.contains("video encoder `h264`"))
            .count()
            == 2,
        "{text}"
    );
    // Nothing failed while it waited, and nothing left processing/.
    assert!(entries(&root.join("failed")).is_empty());
    assert_eq!(entries(&root.join("processing")).len(), 2);

    // The plugin arrives the way an installer should put it: written under
    // another name, then renamed in.
    let part = plugins.join(".libdeliver_plugin_ffmpeg.so.partial");
    std::fs::copy(cdylib("deliver_plugin_ffmpeg"), &part).unwrap();
    std::fs::rename(&part, plugins.join("libdeliver_plugin_ffmpeg.so")).unwrap();

    for name in ["first", "second"] {
        let (folder, state, report) = host.wait_job(name, Duration::from_secs(120));
        assert_eq!(state, "done", "{report:#}");
        let probe = ffprobe(&folder.join(format!("{name}_web.mp4")));
        assert_eq!(stream(&probe, "video")["nb_read_frames"], "25");
    }
    let log = host.log();
    assert!(log.contains("registry loaded again"), "{log}");
    // Each job's history: queued, running, waiting, queued again, running, …
    let journal =
        deliver::journal::Journal::open_path(&root.join(".deliver/journal.sqlite")).unwrap();
    for row in journal.jobs(10).unwrap() {
        let to: Vec<String> = journal
            .history(&row.id)
            .unwrap()
            .into_iter()
            .map(|t| t.to)
            .collect();
        assert_eq!(
            to,
            ["queued", "running", "waiting", "queued", "running", "finished", "done"],
            "{}",
            row.id
        );
    }
}
