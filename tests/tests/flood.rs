//! Flood: 1,000 tiny manifests (1 s, 160×90) dropped at once are all
//! processed, none lost, none twice, and the host's peak RSS stays under
//! 300 MB.

use deliver::journal::{Journal, State};
use deliver_tests::*;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn count() -> usize {
    std::env::var("DELIVER_FLOOD")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000)
}

/// Peak resident set of a process (VmHWM), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

#[test]
fn a_thousand_manifests_at_once_all_processed_once_in_bounded_memory() {
    let n = count();
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    let staging = tmp.path().join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::create_dir_all(root.join("incoming")).unwrap();
    let mut names = BTreeSet::new();
    for i in 0..n {
        let name = format!("f{i:04}");
        std::fs::write(
            staging.join(format!("{name}.toml")),
            pattern_manifest(&name, 160, 90, "1s", "web/h264-720p"),
        )
        .unwrap();
        names.insert(name);
    }
    let mut host = Host::start(&root, &plugins, &["--concurrency", "2"]);
    // All at once: renamed in, one after another, as fast as the file system goes.
    for name in &names {
        std::fs::rename(
            staging.join(format!("{name}.toml")),
            root.join(format!("incoming/{name}.toml")),
        )
        .unwrap();
    }
    let start = Instant::now();
    loop {
        let finished = entries(&root.join("done")).len() + entries(&root.join("failed")).len();
        if finished >= n {
            break;
        }
        assert!(host.alive(), "the host died:\n{}", host.log());
        assert!(
            start.elapsed() < Duration::from_secs(1500),
            "{finished} of {n} finished in {:?}",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let took = start.elapsed();
    // The host moves a job's folder before it journals the move (the
    // folders are the truth; a crash between the two is repaired from them
    // at the next start), so on a loaded machine the last few journal
    // writes may still be on their way when done/ is full: wait for them
    // rather than kill the host under them.
    let journal_path = root.join(".deliver/journal.sqlite");
    let caught_up = Instant::now();
    loop {
        let journaled = Journal::open_path(&journal_path)
            .and_then(|j| j.count_transitions(State::Done))
            .map(|c| c.len())
            .unwrap_or(0);
        if journaled >= n || caught_up.elapsed() > Duration::from_secs(60) {
            break;
        }
        assert!(host.alive(), "the host died:\n{}", host.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let rss = peak_rss(host.pid());
    eprintln!(
        "{n} jobs in {took:.1?} ({:.1} jobs/s); host peak RSS {:.1} MB",
        n as f64 / took.as_secs_f64(),
        rss as f64 / 1e6
    );
    drop(host);

    assert!(entries(&root.join("failed")).is_empty(), "failed jobs");
    let done = entries(&root.join("done"));
    assert_eq!(done.len(), n);
    let stems: BTreeSet<String> = done
        .iter()
        .map(|d| d.split('-').next().unwrap().to_owned())
        .collect();
    assert_eq!(stems, names, "lost or doubled manifests");
    assert!(entries(&root.join("incoming")).is_empty());
    assert!(entries(&root.join("processing")).is_empty());
    let journal = Journal::open_path(&root.join(".deliver/journal.sqlite")).unwrap();
    let done_counts = journal.count_transitions(State::Done).unwrap();
    assert_eq!(done_counts.len(), n);
    assert!(
        done_counts.iter().all(|(_, c)| *c == 1),
        "a job finished twice"
    );
    let running = journal.count_transitions(State::Running).unwrap();
    assert!(running.iter().all(|(_, c)| *c == 1), "a job ran twice");
    assert!(
        rss < 300_000_000,
        "peak RSS {:.1} MB over the 300 MB limit",
        rss as f64 / 1e6
    );
}
