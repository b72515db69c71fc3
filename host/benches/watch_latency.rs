//! Watch-folder overheads, against the targets of issue 3:
//!
//! (a) **Drop-to-start latency** of the real `deliver watch` (settle 500 ms):
//!     20 tiny manifests are dropped one at a time, each written straight
//!     into `incoming/` and closed at a known instant; its job's start is
//!     the journal's `running` transition. Latency = start − last write −
//!     settle. Target: ≤ 200 ms. Drops are spread over the poll phase, so
//!     the spread shows what polling costs.
//! (b) **Journal overhead per job**, in process: 1,000 jobs claimed (all
//!     queued at once), then each taken through running → finished → done
//!     as the host does; again with those 1,000 already in the table. Target:
//!     ≤ 5 ms per job. The peer, in the same run on the same disk, is the
//!     folder work every job costs anyway (create, claim by rename, publish
//!     by rename), so the ratio says what the journal adds to it. The
//!     slow tail is SQLite's WAL auto-checkpoint (every ~1,000 pages, about
//!     every 40 jobs here), which runs in the committing call and syncs
//!     the database file.
//!
//! Run: `cargo build --release --workspace && cargo bench -p deliver --bench watch_latency`
//! (the host finds the ffmpeg plugin beside its binary).

use deliver::journal::{Journal, State};
use deliver::schedule::{RootPolicy, Schedule};
use deliver_watch::{JobId, WatchRoot};
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const SETTLE_MS: u64 = 500;
const DROPS: usize = 20;
const LATENCY_TARGET_MS: f64 = 200.0;
const JOBS: usize = 1000;
const JOURNAL_TARGET_MS: f64 = 5.0;

const MANIFEST: &str = r#"version = 1
name = "latency"
[canvas]
width = 160
height = 90
frame_rate = "25"
duration = "1s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[deliverable]]
preset = "web/h264-720p"
name = "web"
overrides = { video = { width = 160, height = 90 } }
"#;

/// (min, median, p95, p99, max) of `v`, nearest rank.
fn summary(v: &[f64]) -> [f64; 5] {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = |p: f64| s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1];
    [s[0], rank(0.5), rank(0.95), rank(0.99), s[s.len() - 1]]
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// When `stem`'s job reached `to` (from the journal), once it has.
fn transition_at(db: &rusqlite::Connection, stem: &str, to: &str) -> Option<SystemTime> {
    let at: String = db
        .query_row(
            "SELECT at FROM transitions WHERE job LIKE ?1 AND to_state = ?2 ORDER BY seq LIMIT 1",
            rusqlite::params![format!("{stem}-%"), to],
            |r| r.get(0),
        )
        .ok()?;
    Some(humantime::parse_rfc3339(&at).expect("journal times are RFC 3339"))
}

fn latency() {
    println!("(a) drop-to-start latency: deliver watch --settle-ms {SETTLE_MS}, {DROPS} drops");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let log = tmp.path().join("host.log");
    let out = fs::File::create(&log).unwrap();
    let _host = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_deliver"))
            .args(["watch", "--settle-ms", &SETTLE_MS.to_string()])
            .arg(&root)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn deliver watch"),
    );
    let journal = root.join(".deliver").join(deliver::journal::FILE);
    let start = Instant::now();
    while !journal.is_file() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the host did not start:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let db =
        rusqlite::Connection::open_with_flags(&journal, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();

    let mut lat = Vec::new();
    for i in 0..DROPS {
        // Spread the drops over the watcher's 250 ms poll phase.
        std::thread::sleep(Duration::from_millis(100 + (i as u64 * 53) % 250));
        let stem = format!("lat{i:02}");
        let mut f = fs::File::create(root.join("incoming").join(format!("{stem}.toml"))).unwrap();
        f.write_all(MANIFEST.as_bytes()).unwrap();
        drop(f);
        let written = SystemTime::now();
        let waited = Instant::now();
        let started = loop {
            if let Some(t) = transition_at(&db, &stem, "running") {
                break t;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "{stem} never started:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // Let the job finish, so that one job's encode does not delay the
        // next one's claim.
        while transition_at(&db, &stem, "done").is_none()
            && transition_at(&db, &stem, "failed").is_none()
        {
            assert!(
                waited.elapsed() < Duration::from_secs(120),
                "{stem} never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let ms = match started.duration_since(written) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        } - SETTLE_MS as f64;
        lat.push(ms);
    }
    let [min, median, p95, _, max] = summary(&lat);
    println!(
        "  start - last write - settle: min {min:.0} ms, median {median:.0} ms, p95 {p95:.0} ms, max {max:.0} ms"
    );
    println!(
        "  target <= {LATENCY_TARGET_MS:.0} ms: {} (p95), {} (max)",
        verdict(p95 <= LATENCY_TARGET_MS),
        verdict(max <= LATENCY_TARGET_MS)
    );
    let early = lat.iter().filter(|&&l| l < 0.0).count();
    if early > 0 {
        println!("  WARNING: {early} job(s) started before the settle time had passed");
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Per-job journal time for `JOBS` new jobs: all claimed first (the queue
/// holds them all), then each run to done.
fn journal_round(journal: &Journal, round: &str) -> Vec<f64> {
    let ids: Vec<JobId> = (0..JOBS)
        .map(|i| JobId::parse(&format!("bench{round}-{i:04}")).unwrap())
        .collect();
    let mut per_job = vec![0.0; JOBS];
    // The scheduler's queue, as the host keeps it: two roots, weights 2:1.
    let policy = |weight| RootPolicy {
        priority: 0,
        weight,
        concurrency: 1,
    };
    let mut sched = Schedule::new(&[policy(2.0), policy(1.0)], None);
    for (i, (id, t)) in ids.iter().zip(&mut per_job).enumerate() {
        let name = format!("{id}.toml");
        let start = Instant::now();
        sched.push(i % 2, 0, id.clone());
        journal
            .claimed(
                id,
                &Path::new("/r/incoming").join(&name),
                &Path::new("/r/processing").join(id.as_str()).join(&name),
                0,
            )
            .unwrap();
        *t += ms(start.elapsed());
    }
    let start = Instant::now();
    let open = journal.unfinished().unwrap().len();
    println!(
        "    unfinished() with {open} jobs queued (what recovery reads): {:.2} ms",
        ms(start.elapsed())
    );
    for t in per_job.iter_mut() {
        let start = Instant::now();
        let started = sched.pop().expect("a queued job");
        let id = &started.item;
        journal.transition(id, State::Running, None, None).unwrap();
        journal
            .transition(id, State::Finished, None, Some("pass"))
            .unwrap();
        journal.transition(id, State::Done, None, None).unwrap();
        sched.done(started.root);
        *t += ms(start.elapsed());
    }
    per_job
}

/// Per-job time of the folder work every job does anyway: the manifest
/// created in incoming/, claimed into processing/<job>/, published to done/.
fn folder_round(root: &WatchRoot, round: &str) -> Vec<f64> {
    (0..JOBS)
        .map(|i| {
            let id = JobId::parse(&format!("bench{round}-{i:04}")).unwrap();
            let start = Instant::now();
            let file = root.incoming().join(format!("{id}.toml"));
            fs::write(&file, MANIFEST).unwrap();
            root.claim(&file, &id).unwrap();
            root.publish(&id).unwrap();
            ms(start.elapsed())
        })
        .collect()
}

fn journal_overhead() {
    println!("(b) scheduler + journal overhead: {JOBS} jobs queued at once, each then run to done");
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let journal = Journal::open(&root).unwrap();
    for (round, label) in [
        ("a", "empty table"),
        ("b", "1,000 jobs already in the table"),
    ] {
        println!("  {label}:");
        let wall = Instant::now();
        let per_job = journal_round(&journal, round);
        let wall = ms(wall.elapsed());
        let folders = folder_round(&root, round);
        let [_, median, _, p99, max] = summary(&per_job);
        let mean = per_job.iter().sum::<f64>() / JOBS as f64;
        let [_, f_median, ..] = summary(&folders);
        let f_mean = folders.iter().sum::<f64>() / JOBS as f64;
        println!(
            "    scheduler + journal per job (queue push/pop/done, claimed + 3 transitions): mean {mean:.3} ms, median {median:.3} ms, p99 {p99:.3} ms, max {max:.3} ms ({wall:.0} ms for {JOBS})"
        );
        println!(
            "    peer, folder moves per job: mean {f_mean:.3} ms, median {f_median:.3} ms; ratio journal/folders = {:.2}",
            mean / f_mean
        );
        let over = per_job.iter().filter(|&&t| t > JOURNAL_TARGET_MS).count();
        println!(
            "    target <= {JOURNAL_TARGET_MS:.0} ms per job: {} (mean), {} (p99; {over} of {JOBS} jobs over)",
            verdict(mean <= JOURNAL_TARGET_MS),
            verdict(p99 <= JOURNAL_TARGET_MS)
        );
    }
}

fn main() {
    latency();
    journal_overhead();
}
