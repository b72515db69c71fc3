//! Bad input from the file system: unreadable manifests and media, a
//! symbolic link to a file outside the root, a manifest deleted while its
//! job is queued, a watch root the host cannot write, and files still being
//! copied in by `cp` and `rsync --inplace`. Each ends in a clear error or a
//! clean delivery; nothing is lost and the host keeps running.

use deliver_tests::*;
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// Bounds a hung test; tiny jobs take a second or two, but the tests of a
/// binary run in parallel on a shared 2-core machine.
const T: Duration = Duration::from_secs(120);

fn tiny(name: &str) -> String {
    pattern_manifest(name, 160, 90, "1s", "web/h264-720p")
}

/// [`tiny`] with its tone replaced by 1 s of `media` (a path relative to
/// incoming/).
fn with_media(name: &str, media: &str) -> String {
    let m = tiny(name).replace(
        "generator = \"sine\"\nfrequency = 1000.0\nlevel = -20.0",
        &format!("media = \"{media}\"\nduration = \"1s\""),
    );
    assert!(m.contains(media));
    m
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The job's error and every deliverable's, as one text.
fn errors(report: &Value) -> String {
    let mut text = report["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    for d in report["deliverables"].as_array().into_iter().flatten() {
        if let Some(e) = d["error"].as_str() {
            text.push('\n');
            text.push_str(e);
        }
    }
    text
}

fn input_error(report: &Value) -> &Value {
    assert_eq!(report["verdict"], "fail", "{report:#}");
    assert_eq!(report["error"]["kind"], "input", "{report:#}");
    &report["error"]["input"]
}

/// Where a job whose id starts with `stem-` sits in processing/, once claimed.
fn claimed_dir(root: &Path, stem: &str) -> Option<PathBuf> {
    entries(&root.join("processing"))
        .into_iter()
        .find(|n| n.starts_with(&format!("{stem}-")))
        .map(|n| root.join("processing").join(n))
}

/// Nothing encoded or finished yet: no output (final or `.partial`) in any
/// job folder, nothing in done/ or failed/.
fn assert_nothing_encoded(host: &Host, why: &str) {
    let root = &host.root;
    for job in entries(&root.join("processing")) {
        let files = entries(&root.join("processing").join(&job));
        assert!(
            !files.iter().any(|f| f.contains(".mp4")),
            "encoding started {why}: {job}: {files:?}\n{}",
            host.log()
        );
    }
    assert!(entries(&root.join("done")).is_empty(), "{why}");
    assert!(
        entries(&root.join("failed")).is_empty(),
        "{why}\n{}",
        host.log()
    );
}

/// A tiny job is delivered: the host is still working.
fn assert_delivers(host: &mut Host, stem: &str) {
    assert!(host.alive(), "{}", host.log());
    host.drop_file(&format!("{stem}.toml"), tiny(stem).as_bytes());
    let (folder, state, report) = host.wait_job(stem, T);
    assert_eq!(state, "done", "{report:#}\n{}", host.log());
    assert!(folder.join(format!("{stem}_web.mp4")).is_file());
}

/// 50 MB of 16-bit stereo PCM at 48 kHz (273 s of a 440 Hz tone).
fn big_wav(path: &Path) -> Vec<u8> {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=273",
        "-ac",
        "2",
        "-c:a",
        "pcm_s16le",
        path.to_str().unwrap(),
    ]);
    let bytes = fs::read(path).unwrap();
    assert!(bytes.len() > 50_000_000, "{}", bytes.len());
    bytes
}

/// A child process killed (if still running) and reaped when dropped, so
/// that a failed assertion leaves no copy running.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The host runs as `nobody`; the files it is denied belong to root with
/// mode 000. The manifest fails at reading, the medium at decoding; both
/// reports name the file and say "Permission denied".
#[test]
fn unreadable_manifest_and_media_fail_with_permission_denied_and_the_host_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // A temporary folder is 0700: the host's user must reach its plugins.
    chmod(tmp.path(), 0o755);
    let plugins = plugin_dir(tmp.path(), &[]);
    if let Some(why) = cannot_run_as(NOBODY, &plugins) {
        eprintln!("skipped: the host cannot run as an unprivileged user here: {why}");
        return;
    }
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("media")).unwrap();
    for dir in [&root, &root.join("media")] {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let secret = root.join("media/secret.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        secret.to_str().unwrap(),
    ]);
    chmod(&secret, 0o000);

    let mut host = Host::start_cmd(deliver_as(NOBODY, &plugins), &root, &[]);
    // Written and closed before it appears in incoming/.
    let staged = root.join(".unread.toml.tmp");
    fs::write(&staged, tiny("unread")).unwrap();
    chmod(&staged, 0o000);
    fs::rename(&staged, root.join("incoming/unread.toml")).unwrap();
    host.drop_file(
        "media.toml",
        with_media("media", "../media/secret.wav").as_bytes(),
    );

    let (folder, state, report) = host.wait_job("unread", T);
    assert_eq!(state, "failed");
    let e = input_error(&report);
    assert!(
        e["file"]
            .as_str()
            .unwrap()
            .ends_with("incoming/unread.toml"),
        "{e}"
    );
    assert!(
        e["message"].as_str().unwrap().contains("Permission denied"),
        "{e}"
    );
    assert!(
        folder.join("unread.toml").is_file(),
        "the manifest is kept with its report"
    );

    let (_, state, report) = host.wait_job("media", T);
    assert_eq!(state, "failed", "{report:#}");
    // Found when the manifest is checked: an input error at the line and
    // field that name the medium, not a render error later.
    let e = input_error(&report);
    assert_eq!(e["field"], "audio[0].clip[0].media", "{e}");
    assert!(e["line"].as_u64().is_some(), "{e}");
    let text = errors(&report);
    assert!(
        text.contains(&secret.display().to_string()) && text.contains("Permission denied"),
        "the error must name the medium and say why: {report:#}"
    );
    // Nothing was lost: the medium is where it was, as it was.
    assert_eq!(
        fs::metadata(&secret).unwrap().permissions().mode() & 0o777,
        0
    );

    assert_delivers(&mut host, "good");
}

/// A symlink manifest is claimed as a link (renamed, never followed) and
/// failed with the reason; the file it points to, outside the root, is
/// neither moved, nor changed, nor delivered.
#[test]
fn a_symlink_to_a_manifest_outside_the_root_is_quarantined_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    let outside = tmp.path().join("elsewhere/promo.toml");
    fs::create_dir_all(outside.parent().unwrap()).unwrap();
    // A good manifest: if the host followed the link, it would deliver it.
    let text = tiny("promo");
    fs::write(&outside, &text).unwrap();
    let mut host = Host::start(&root, &plugins, &[]);
    std::os::unix::fs::symlink(&outside, root.join("incoming/linked.toml")).unwrap();

    let (folder, state, report) = host.wait_job("linked", T);
    assert_eq!(state, "failed", "{report:#}");
    let e = input_error(&report);
    assert!(
        e["file"]
            .as_str()
            .unwrap()
            .ends_with("incoming/linked.toml"),
        "{e}"
    );
    let message = e["message"].as_str().unwrap();
    for part in [
        "symbolic link",
        &outside.display().to_string(),
        "outside",
        "would move the link, not the file",
    ] {
        assert!(message.contains(part), "no {part:?} in: {message}");
    }
    let moved = folder.join("linked.toml");
    assert!(fs::symlink_metadata(&moved).unwrap().is_symlink());
    assert_eq!(fs::read_link(&moved).unwrap(), outside);
    let mut files = entries(&folder);
    files.sort();
    assert_eq!(files, ["linked.toml", "report.html", "report.json"]);

    assert_eq!(fs::read_to_string(&outside).unwrap(), text);
    assert!(entries(&root.join("incoming")).is_empty());
    assert!(entries(&root.join("done")).is_empty());
    assert_delivers(&mut host, "good");
}

/// With one slot, a first job holds it (its medium is still open for
/// writing), a second is claimed and queued, and its manifest is deleted
/// from processing/<job>/: it fails cleanly naming the missing file, the
/// first completes, and the next is delivered.
#[test]
fn a_manifest_deleted_while_queued_fails_cleanly_and_the_others_run() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("media")).unwrap();
    let medium = root.join("media/hold.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:duration=2",
        medium.to_str().unwrap(),
    ]);
    // Complete, but held open for writing: a job that uses it waits.
    let writer = fs::OpenOptions::new().append(true).open(&medium).unwrap();

    let mut host = Host::start(&root, &plugins, &["--concurrency", "1"]);
    host.drop_file(
        "hold.toml",
        with_media("hold", "../media/hold.wav").as_bytes(),
    );
    wait_for(T, || {
        host.log().contains("waiting for media still arriving")
    });
    host.drop_file("second.toml", tiny("second").as_bytes());
    let mut claimed = None;
    wait_for(T, || {
        claimed = claimed_dir(&root, "second").map(|d| d.join("second.toml"));
        claimed.as_ref().is_some_and(|c| c.is_file())
    });
    let claimed = claimed.unwrap();
    let journal =
        deliver::journal::Journal::open_path(&root.join(".deliver/journal.sqlite")).unwrap();
    let state_of = |stem: &str| {
        journal
            .jobs(100)
            .unwrap()
            .into_iter()
            .find(|r| r.id.starts_with(&format!("{stem}-")))
            .map(|r| r.state.as_str())
    };
    assert_eq!(state_of("hold"), Some("running"));
    assert_eq!(state_of("second"), Some("queued"));

    fs::remove_file(&claimed).unwrap();
    drop(writer);

    let (folder, state, report) = host.wait_job("second", T);
    assert_eq!(state, "failed");
    let e = input_error(&report);
    assert!(
        e["file"]
            .as_str()
            .unwrap()
            .ends_with("incoming/second.toml"),
        "{e}"
    );
    let message = e["message"].as_str().unwrap();
    assert!(
        message.contains(&claimed.display().to_string()) && message.contains("is gone"),
        "the report must name the missing file: {message}"
    );
    assert!(folder.join("report.json").is_file());
    assert_eq!(state_of("second"), Some("failed"));

    let (_, state, report) = host.wait_job("hold", T);
    assert_eq!(state, "done", "{report:#}");
    assert_delivers(&mut host, "third");
}

/// Runs `deliver watch <root>` and expects it to exit by itself; returns
/// its exit status, its output (kept in `log`) and how long it ran.
fn watch_exits(
    plugins: &Path,
    root: &Path,
    log: &Path,
) -> (std::process::ExitStatus, String, Duration) {
    let out = fs::File::create(log).unwrap();
    let start = Instant::now();
    let mut child = deliver(plugins)
        .args(["watch", "--settle-ms", "300"])
        .arg(root)
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, fs::read_to_string(log).unwrap(), start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the host kept running on {}:\n{}",
                root.display(),
                fs::read_to_string(log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn make_layout(root: &Path) {
    for dir in ["incoming", "processing", "done", "failed", ".deliver"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
}

/// A root on a read-only file system (its folders exist, as on a share
/// made read-only later), and a root whose done/ alone is a read-only bind
/// mount: the host refuses to start and names the folder.
#[test]
fn a_watch_root_the_host_cannot_write_is_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let disk = match Mount::tmpfs(&tmp.path().join("ro"), "1m") {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot mount a tmpfs (the test needs root): {e}");
            return;
        }
    };
    let root = disk.0.join("root");
    make_layout(&root);
    disk.remount_ro(false);
    let (status, log, took) = watch_exits(&plugins, &root, &tmp.path().join("ro.log"));
    assert!(!status.success(), "{log}");
    // "At once": plugin loading and the probe, not a poll or a job.
    assert!(took < Duration::from_secs(10), "{took:?}");
    let state_dir = root.join(".deliver").display().to_string();
    assert!(
        log.contains(&format!("cannot use {state_dir} as a watch folder"))
            && log.contains("Read-only file system"),
        "{log}"
    );

    let root = tmp.path().join("root2");
    make_layout(&root);
    let done = root.join("done");
    let bind = Mount::bind(&done).unwrap();
    bind.remount_ro(true);
    let (status, log, _) = watch_exits(&plugins, &root, &tmp.path().join("root2.log"));
    assert!(!status.success(), "{log}");
    assert!(
        log.contains(&format!("cannot use {} as a watch folder", done.display())),
        "{log}"
    );
    drop(bind);
    drop(disk);
}

/// A 50 MB medium written by `cp` while its manifest is claimed: the job
/// waits for the copy to end, then succeeds. A plain `cp` of 50 MB ends
/// within one poll here, so `cp` reads from a pipe fed for about 3 s: the
/// file is still written by `cp` itself, as a copy from a slow share would be.
#[test]
fn a_medium_copied_in_by_cp_is_waited_for() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("media")).unwrap();
    let bytes = big_wav(&tmp.path().join("big.wav"));
    let fifo = tmp.path().join("feed");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());

    let mut host = Host::start(&root, &plugins, &[]);
    let dest = root.join("media/big.wav");
    let mut cp = Reaped(Command::new("cp").arg(&fifo).arg(&dest).spawn().unwrap());
    // Opening blocks until cp opens the pipe.
    let mut feed = fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let chunk = 1 << 20;
    feed.write_all(&bytes[..chunk]).unwrap();
    wait_for(T, || dest.is_file());
    host.drop_file("big.toml", with_media("big", "../media/big.wav").as_bytes());
    for piece in bytes[chunk..].chunks(chunk) {
        std::thread::sleep(Duration::from_millis(60));
        feed.write_all(piece).unwrap();
        assert_nothing_encoded(&host, "while cp was writing the medium");
    }
    drop(feed);
    assert!(cp.0.wait().unwrap().success());
    let copied = SystemTime::now();
    assert_eq!(fs::metadata(&dest).unwrap().len(), bytes.len() as u64);

    let (folder, state, report) = host.wait_job("big", T);
    assert_eq!(state, "done", "{report:#}");
    // The job was claimed during the copy and waited for it.
    assert!(
        host.log().contains("waiting for media still arriving"),
        "{}",
        host.log()
    );
    let out = folder.join("big_web.mp4");
    assert!(fs::metadata(&out).unwrap().modified().unwrap() >= copied);
    let probe = ffprobe(&out);
    assert_eq!(stream(&probe, "video")["nb_read_frames"], "25");
    assert_eq!(stream(&probe, "audio")["channels"], 2);
}

/// `rsync --inplace` writes straight into the final name: a manifest
/// (padded to 300 kB) arriving at 100 KiB/s is not claimed before rsync
/// ends, and its 50 MB medium, arriving the same way at 16 MiB/s, is not
/// encoded before it is whole.
#[test]
fn files_written_in_place_by_rsync_are_taken_only_when_complete() {
    let version = Command::new("rsync").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "rsync is missing: run scripts/setup.sh"
    );
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("media")).unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    big_wav(&src.join("big.wav"));
    let mut manifest = with_media("slow", "../media/big.wav");
    for _ in 0..4500 {
        manifest
            .push_str("# padding, so that the transfer outlasts several settle times #########\n");
    }
    assert!(manifest.len() > 300_000 && manifest.len() < 1 << 20);
    fs::write(src.join("slow.toml"), &manifest).unwrap();

    let mut host = Host::start(&root, &plugins, &[]);
    let rsync = |file: &str, rate: &str, to: &str| {
        Reaped(
            Command::new("rsync")
                .args(["--inplace", &format!("--bwlimit={rate}")])
                .arg(src.join(file))
                .arg(root.join(to))
                .spawn()
                .unwrap(),
        )
    };
    let mut media = rsync("big.wav", "16m", "media/");
    let mut man = rsync("slow.toml", "100", "incoming/");
    let started = Instant::now();
    let (mut media_done, mut man_done) = (false, false);
    let mut seen_partial = false;
    while !(media_done && man_done) {
        assert!(started.elapsed() < T, "rsync did not finish");
        if !man_done {
            let len = fs::metadata(root.join("incoming/slow.toml")).map_or(0, |m| m.len());
            seen_partial |= len > 0 && len < manifest.len() as u64;
            assert!(
                claimed_dir(&root, "slow").is_none(),
                "claimed while rsync was writing it ({len} of {} bytes)\n{}",
                manifest.len(),
                host.log()
            );
        }
        if !media_done {
            assert_nothing_encoded(&host, "while rsync was writing the medium");
        }
        if let Some(s) = media.0.try_wait().unwrap() {
            assert!(s.success());
            media_done = true;
        }
        if let Some(s) = man.0.try_wait().unwrap() {
            assert!(s.success());
            man_done = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let copied = SystemTime::now();
    assert!(
        seen_partial,
        "the manifest was never seen half-written: the transfer was too fast to test anything"
    );

    let (folder, state, report) = host.wait_job("slow", T);
    assert_eq!(state, "done", "{report:#}");
    let out = folder.join("slow_web.mp4");
    assert!(fs::metadata(&out).unwrap().modified().unwrap() >= copied);
    assert_eq!(stream(&ffprobe(&out), "video")["nb_read_frames"], "25");
}
