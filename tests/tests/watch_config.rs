//! `deliver watch --config`: one host serving two roots, each with its own
//! default presets; a manifest's priority orders its root's queue; a bad
//! configuration or an unusable root stops the host at once, saying where.

use deliver::journal::{Journal, State};
use deliver_tests::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Two test presets at the canvas size: `test/a` (CRF 20) and `test/b`
/// (CRF 23), so that each root's default is visible in its output's name.
fn presets(dir: &Path) -> std::path::PathBuf {
    let a = canvas_size_preset("web/h264-720p");
    let b = a.replace("crf = 20", "crf = 23");
    assert_ne!(a, b);
    presets_dir(dir, &[("test/a.toml", &a), ("test/b.toml", &b)])
}

/// The time of a job's first `running` transition.
fn started_at(journal: &Journal, stem: &str) -> String {
    let row = journal
        .jobs(100)
        .unwrap()
        .into_iter()
        .find(|r| r.id.starts_with(&format!("{stem}-")))
        .unwrap_or_else(|| panic!("no job {stem}"));
    journal
        .history(&row.id)
        .unwrap()
        .into_iter()
        .find(|t| t.to == "running")
        .map(|t| t.at)
        .unwrap_or_else(|| panic!("{stem} never ran"))
}

/// Polls `root`'s journal until `f` holds for its rows.
fn wait_journal(host: &mut Host, root: &Path, f: impl Fn(&[deliver::journal::JobRow]) -> bool) {
    let start = Instant::now();
    loop {
        if let Ok(j) = Journal::open_path(&root.join(".deliver/journal.sqlite")) {
            if f(&j.jobs(100).unwrap()) {
                return;
            }
        }
        assert!(host.alive(), "the host died:\n{}", host.log());
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the journal of {} never got there:\n{}",
            root.display(),
            host.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_roots_deliver_their_default_presets_and_priorities_order_a_queue() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let presets = presets(tmp.path());
    let config = write(
        tmp.path(),
        "watch.toml",
        r#"[defaults]
settle_ms = 300
media_wait_s = 120

[[root]]
path = "promos"
presets = ["test/a"]
priority = 10
media_roots = ["footage"]

[[root]]
path = "trailers"
presets = ["test/b"]
weight = 2
"#,
    );
    let footage = tmp.path().join("footage");
    std::fs::create_dir(&footage).unwrap();
    let promos = tmp.path().join("promos");
    let trailers = tmp.path().join("trailers");
    let presets_arg = presets.to_str().unwrap().to_owned();
    let mut host = Host::start_config(
        &config,
        &plugins,
        &["--presets", &presets_arg],
        &[&promos, &trailers],
    );

    // Each root's manifest names no deliverable: each gets its root's preset.
    host.drop_file_in(
        &trailers,
        "trailer.toml",
        pattern_composition("trailer", 160, 90, "1s").as_bytes(),
    );

    // Promos runs one job at a time. A first job holds the slot while its
    // clip is still being written (open for writing), so that the next two
    // queue behind it and their priorities decide which goes first.
    let clip = footage.join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=0x808080:size=160x90:rate=25",
        "-t",
        "1",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(&clip)
        .unwrap();
    let blocker = pattern_composition("blocker", 160, 90, "1s").replace(
        "generator = \"pattern\"",
        &format!("media = \"{}\"\nduration = \"1s\"", clip.display()),
    );
    host.drop_file_in(&promos, "blocker.toml", blocker.as_bytes());
    wait_journal(&mut host, &promos, |rows| {
        rows.iter().any(|r| r.state == State::Running)
    });
    let with_priority = |name: &str, p: u8| {
        pattern_composition(name, 160, 90, "1s")
            .replace("version = 1", &format!("version = 1\npriority = {p}"))
    };
    // Dropped first and first by name: without priorities it would go first.
    host.drop_file_in(&promos, "early.toml", with_priority("early", 10).as_bytes());
    host.drop_file_in(
        &promos,
        "urgent.toml",
        with_priority("urgent", 90).as_bytes(),
    );
    wait_journal(&mut host, &promos, |rows| {
        rows.iter().filter(|r| r.state == State::Queued).count() == 2
    });
    drop(writer);

    let t = Duration::from_secs(120);
    let (folder, state, report) = host.wait_job_in(&trailers, "trailer", t);
    assert_eq!(state, "done", "{report:#}");
    assert_eq!(report["deliverables"][0]["preset"], "test/b", "{report:#}");
    let probe = ffprobe(&folder.join("trailer_b.mp4"));
    assert_eq!(stream(&probe, "video")["nb_read_frames"], "25");
    assert_eq!(stream(&probe, "video")["width"], 160);

    for name in ["blocker", "urgent", "early"] {
        let (folder, state, report) = host.wait_job_in(&promos, name, t);
        assert_eq!(state, "done", "{name}: {report:#}");
        assert_eq!(report["deliverables"][0]["preset"], "test/a", "{report:#}");
        let probe = ffprobe(&folder.join(format!("{name}_a.mp4")));
        assert_eq!(stream(&probe, "video")["nb_read_frames"], "25", "{name}");
    }
    let journal = Journal::open_path(&promos.join(".deliver/journal.sqlite")).unwrap();
    let priorities: Vec<(String, i64)> = journal
        .jobs(10)
        .unwrap()
        .into_iter()
        .map(|r| (r.name, r.priority))
        .collect();
    assert!(
        priorities.contains(&("urgent.toml".into(), 90)),
        "{priorities:?}"
    );
    assert!(
        priorities.contains(&("early.toml".into(), 10)),
        "{priorities:?}"
    );
    // Dropped second, started first.
    let (urgent, early) = (
        started_at(&journal, "urgent"),
        started_at(&journal, "early"),
    );
    assert!(urgent < early, "urgent started {urgent}, early {early}");
    // Each root keeps its own journal.
    let trailer_rows = Journal::open_path(&trailers.join(".deliver/journal.sqlite"))
        .unwrap()
        .jobs(10)
        .unwrap();
    assert_eq!(trailer_rows.len(), 1);

    // `deliver status --config` lists both roots.
    let out = deliver(&plugins)
        .args(["--presets", &presets_arg, "status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!("promos ({})", promos.display())),
        "{text}"
    );
    assert!(text.contains("trailers ("), "{text}");
}

/// Runs `deliver watch --config <config>`, which must exit with an error
/// within 20 s (it would otherwise watch forever); returns its stderr.
fn refused(plugins: &Path, config: &Path) -> String {
    let mut child = deliver(plugins)
        .arg("watch")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("deliver watch kept running with {}", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "{err}");
    err
}

#[test]
fn a_bad_configuration_or_an_unusable_root_stops_the_host_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let good = "[[root]]\npath = \"a\"\npresets = [\"web/h264-720p\"]\n\n[[root]]\npath = \"b\"\n";

    let cases = [
        (
            good.replace("path = \"b\"", "path = \"b\"\nweight = 0"),
            "7:10: field `root[1].weight`: value 0 is out of range",
        ),
        (
            good.replace("h264-720p", "h266-1080p"),
            "3:12: field `root[0].presets[0]`: value \"web/h266-1080p\" is not a loaded preset \
             (root \"a\")",
        ),
        (
            good.replace("presets", "preset"),
            "3:1: field `root[0].preset`: unknown field `preset`",
        ),
        (
            good.replace("path = \"b\"", "path = \"a\""),
            "6:8: field `root[1].path`: value \"a\" is the folder of root[0] too",
        ),
        // A root that is a regular file cannot be a folder.
        (
            good.replace("path = \"b\"", "path = \"file.txt\""),
            "6:8: field `root[1].path`: value \"file.txt\" is not a folder",
        ),
    ];
    write(tmp.path(), "file.txt", "not a folder");
    for (i, (text, want)) in cases.iter().enumerate() {
        let config = write(tmp.path(), &format!("bad{i}.toml"), text);
        let err = refused(&plugins, &config);
        let want = format!("{}:{want}", config.display());
        assert!(err.contains(&want), "want {want}\n in {err}");
    }
    // Nothing was created for a configuration that was refused.
    assert!(!tmp.path().join("a").exists());

    // A root the host cannot create (as root, permissions do not stop
    // anything; /proc refuses every new folder): refused when the roots are
    // opened, before any is watched, naming the root, its place and why.
    let proc_root = format!("/proc/deliver-test-{}", std::process::id());
    let config = write(
        tmp.path(),
        "proc.toml",
        &good.replace("path = \"b\"", &format!("path = \"{proc_root}\"")),
    );
    let err = refused(&plugins, &config);
    let want = format!(
        "{}:6:8: field `root[1].path`: cannot use the watch root {proc_root}: ",
        config.display()
    );
    assert!(err.contains(&want), "want {want}\n in {err}");
    assert!(err.contains("cannot create directory"), "{err}");

    // The positional root and --config are one or the other.
    let out = Command::new(deliver_bin())
        .args(["watch", "somewhere", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}
