//! Crash recovery: the host is killed with SIGKILL at 20 random moments
//! while it works through a batch of manifests, and restarted each time.
//! At the end every manifest is in exactly one of done/ and failed/, every
//! delivered file decodes with the right frame count, no `*.partial` is in
//! done/, and the journal shows no job finished twice.

use deliver::journal::{Journal, State};
use deliver_tests::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

const KILLS: usize = 20;

/// A small deterministic generator (the seed is printed, so a failure can
/// be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn sigkill_at_random_moments_loses_nothing_and_does_nothing_twice() {
    let seed = std::env::var("DELIVER_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (DELIVER_TEST_SEED={seed} replays it)");
    let mut rng = Lcg(seed);
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("incoming")).unwrap();
    // The batch arrives while the host is being killed: two manifests
    // before each start (one of them broken once: it must end in failed/).
    let mut names = Vec::new();
    let drop_one = |names: &mut Vec<String>| {
        let name = format!("job{:02}", names.len());
        let text = if names.len() == 7 {
            "version = 1\n[canvas\n".to_owned()
        } else {
            pattern_manifest(&name, 160, 90, "1s", "web/h264-720p")
        };
        let tmp = root.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, root.join(format!("incoming/{name}.toml"))).unwrap();
        names.push(name);
    };
    for k in 0..KILLS {
        drop_one(&mut names);
        drop_one(&mut names);
        let mut host = Host::start(&root, &plugins, &["--concurrency", "2"]);
        // The host needs ~300 ms to settle a file and a few hundred more to
        // deliver one: kill anywhere from before a claim to after a publish.
        let ms = 50 + rng.next() % 1500;
        std::thread::sleep(Duration::from_millis(ms));
        assert!(host.alive(), "the host died on its own:\n{}", host.log());
        drop(host); // SIGKILL
        eprintln!(
            "kill {k:2} after {ms:4} ms: done {} failed {} of {}",
            entries(&root.join("done")).len(),
            entries(&root.join("failed")).len(),
            names.len()
        );
    }
    // The last run goes until the work is done.
    let host = Host::start(&root, &plugins, &["--concurrency", "2"]);
    let start = Instant::now();
    while entries(&root.join("done")).len() + entries(&root.join("failed")).len() < names.len() {
        assert!(
            start.elapsed() < Duration::from_secs(240),
            "not finished:\n{}",
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a wrongly re-run job the chance to show itself.
    std::thread::sleep(Duration::from_millis(1500));
    let log = host.log();
    drop(host);

    assert!(entries(&root.join("incoming")).is_empty(), "{log}");
    assert!(entries(&root.join("processing")).is_empty(), "{log}");
    let mut seen: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for state in ["done", "failed"] {
        for job in entries(&root.join(state)) {
            let stem = job.split('-').next().unwrap().to_owned();
            seen.entry(stem.clone()).or_default().push(state);
            let dir = root.join(state).join(&job);
            let files = entries(&dir);
            assert!(
                files.contains(&"report.json".to_owned()),
                "{job}: {files:?}"
            );
            if state == "done" {
                assert!(
                    !files.iter().any(|f| f.ends_with(".partial")),
                    "a partial file in done/{job}: {files:?}"
                );
                let mp4 = dir.join(format!("{stem}_web.mp4"));
                let probe = ffprobe(&mp4);
                assert_eq!(stream(&probe, "video")["nb_read_frames"], "25", "{job}");
            }
        }
    }
    for name in &names {
        let states = seen.get(name).cloned().unwrap_or_default();
        assert_eq!(states.len(), 1, "{name} ended in {states:?}\n{log}");
        let want = if name == "job07" { "failed" } else { "done" };
        assert_eq!(states[0], want, "{name}\n{log}");
    }
    let journal = Journal::open_path(&root.join(".deliver/journal.sqlite")).unwrap();
    let mut finished = journal.count_transitions(State::Finished).unwrap();
    finished.extend(journal.count_transitions(State::Done).unwrap());
    finished.extend(journal.count_transitions(State::Failed).unwrap());
    let mut per_job: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (job, n) in finished {
        per_job.entry(job).or_default().push(n);
    }
    assert_eq!(per_job.len(), names.len(), "{per_job:?}");
    for (job, counts) in &per_job {
        assert!(
            counts.iter().all(|&n| n == 1),
            "job {job} finished more than once: {counts:?}\n{:#?}",
            journal.history(job).unwrap()
        );
    }
    let rows = journal.jobs(1000).unwrap();
    assert_eq!(rows.len(), names.len());
    assert!(rows
        .iter()
        .all(|r| matches!(r.state, State::Done | State::Failed)));
}
