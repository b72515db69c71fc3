use super::*;
use std::io::Write;
use std::thread;

fn any(_: &Path) -> bool {
    true
}

/// Polls every 20 ms until something is reported or `deadline` passes.
fn poll_until(
    tracker: &mut StabilityTracker,
    dir: &Path,
    deadline: Duration,
) -> Option<(Instant, Vec<PathBuf>)> {
    let start = Instant::now();
    while start.elapsed() < deadline {
        let found = tracker.poll(dir, any).unwrap();
        if !found.is_empty() {
            return Some((Instant::now(), found));
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

#[test]
fn appending_writer_is_reported_only_after_it_stops_and_settles() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("reel.mov");
    fs::write(&path, b"x").unwrap();
    // The settle time is six write intervals, so a live writer always resets it.
    let settle = Duration::from_millis(300);
    let mut tracker = StabilityTracker::new(settle);

    let writer = {
        let path = path.clone();
        thread::spawn(move || {
            let start = Instant::now();
            let mut last_write = start;
            while start.elapsed() < Duration::from_millis(600) {
                last_write = Instant::now();
                // Open, append, close: only size and mtime betray this writer.
                let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(&[0u8; 4096]).unwrap();
                drop(f);
                thread::sleep(Duration::from_millis(50));
            }
            last_write
        })
    };
    // The deadline only bounds a hung test; 2 s leaves room for a loaded machine.
    let (reported_at, found) =
        poll_until(&mut tracker, tmp.path(), Duration::from_secs(3)).expect("file never reported");
    let last_write = writer.join().unwrap();
    assert_eq!(found, vec![path.clone()]);
    assert!(
        reported_at.duration_since(last_write) >= settle,
        "reported {:?} after the last write, settle is {settle:?}",
        reported_at.saturating_duration_since(last_write)
    );
    // Reported once, not again while unchanged.
    thread::sleep(settle);
    assert!(tracker.poll(tmp.path(), any).unwrap().is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn file_held_open_for_writing_is_not_reported_until_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("upload.mxf");
    let mut f = fs::File::create(&path).unwrap();
    f.write_all(b"essence").unwrap();
    f.flush().unwrap();
    assert!(is_open_for_writing(&path));

    let settle = Duration::from_millis(100);
    let mut tracker = StabilityTracker::new(settle);
    for _ in 0..5 {
        assert!(tracker.poll(tmp.path(), any).unwrap().is_empty());
        thread::sleep(settle);
    }

    // A reader does not block the file.
    let reader = fs::File::open(&path).unwrap();
    drop(f);
    assert!(!is_open_for_writing(&path));
    assert_eq!(tracker.poll(tmp.path(), any).unwrap(), vec![path.clone()]);
    drop(reader);
}

#[test]
fn skips_hidden_partial_and_non_regular_and_forgets_vanished_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for name in [".hidden", "a.partial", "b.tmp", "c.cancel", "skip.txt"] {
        fs::write(dir.join(name), b"x").unwrap();
    }
    fs::create_dir(dir.join("sub")).unwrap();
    fs::write(dir.join("job.toml"), b"x").unwrap();
    let mut tracker = StabilityTracker::new(Duration::ZERO);
    let toml_only = |p: &Path| p.extension().is_some_and(|e| e == "toml");
    assert_eq!(
        tracker.poll(dir, toml_only).unwrap(),
        vec![dir.join("job.toml")]
    );
    assert!(tracker.poll(dir, toml_only).unwrap().is_empty());

    // A changed file is reported again.
    fs::write(dir.join("job.toml"), b"xy").unwrap();
    assert_eq!(
        tracker.poll(dir, toml_only).unwrap(),
        vec![dir.join("job.toml")]
    );
    // A file that went away and came back unchanged is new again.
    fs::rename(dir.join("job.toml"), dir.join("job.toml.partial")).unwrap();
    assert!(tracker.poll(dir, toml_only).unwrap().is_empty());
    fs::rename(dir.join("job.toml.partial"), dir.join("job.toml")).unwrap();
    assert_eq!(
        tracker.poll(dir, toml_only).unwrap(),
        vec![dir.join("job.toml")]
    );
}

#[test]
fn open_creates_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(&tmp.path().join("drop")).unwrap();
    for dir in [
        root.incoming(),
        root.processing(),
        root.done(),
        root.failed(),
        root.state_dir(),
    ] {
        assert!(dir.is_dir(), "{}", dir.display());
        assert_eq!(dir.parent(), Some(root.root()));
    }
    // Opening again is harmless.
    WatchRoot::open(root.root()).unwrap();
}

#[test]
fn same_name_claimed_twice_gets_distinct_job_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let mut claimed = Vec::new();
    for body in ["first", "second"] {
        let file = root.incoming().join("promo.toml");
        fs::write(&file, body).unwrap();
        let id = JobId::new("promo");
        let path = root.claim(&file, &id).unwrap();
        assert_eq!(path, root.job_dir(&id).join("promo.toml"));
        assert!(!file.exists());
        claimed.push((id, path));
    }
    assert_ne!(claimed[0].0, claimed[1].0);
    assert_eq!(fs::read_to_string(&claimed[0].1).unwrap(), "first");
    assert_eq!(fs::read_to_string(&claimed[1].1).unwrap(), "second");
}

#[test]
fn claim_refuses_to_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let id = JobId::new("a");
    let file = root.incoming().join("a.toml");
    fs::write(&file, "1").unwrap();
    root.claim(&file, &id).unwrap();
    fs::write(&file, "2").unwrap();
    let err = root.claim(&file, &id).unwrap_err();
    assert!(matches!(err, WatchError::DestinationExists { .. }), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "2");
}

#[cfg(target_os = "linux")]
#[test]
fn claim_across_file_systems_is_refused() {
    let shm = Path::new("/dev/shm");
    let tmp = tempfile::tempdir().unwrap();
    if !shm.is_dir() || device_of(shm).unwrap() == device_of(tmp.path()).unwrap() {
        eprintln!("skipped: no second file system at /dev/shm");
        return;
    }
    let other = tempfile::tempdir_in(shm).unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let file = other.path().join("x.toml");
    fs::write(&file, "x").unwrap();
    let id = JobId::new("x");
    let err = root.claim(&file, &id).unwrap_err();
    assert!(matches!(err, WatchError::CrossDevice { .. }), "{err}");
    assert!(err.to_string().contains("different file systems"));
    assert!(file.exists());
    assert!(!root.job_dir(&id).exists());
}

#[test]
fn publish_and_quarantine_move_the_job_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let claim = |stem: &str| {
        let file = root.incoming().join(format!("{stem}.toml"));
        fs::write(&file, stem).unwrap();
        let id = JobId::new(stem);
        root.claim(&file, &id).unwrap();
        id
    };
    let (good, bad, clash) = (claim("good"), claim("bad"), claim("clash"));

    let done = root.publish(&good).unwrap();
    assert_eq!(done, root.done().join(good.as_str()));
    assert_eq!(fs::read_to_string(done.join("good.toml")).unwrap(), "good");
    assert!(!root.job_dir(&good).exists());

    let failed = root.quarantine(&bad).unwrap();
    assert_eq!(failed, root.failed().join(bad.as_str()));
    assert!(failed.join("bad.toml").is_file());
    assert!(!root.job_dir(&bad).exists());

    // Moving a job that is no longer in processing fails and names the path.
    let err = root.publish(&good).unwrap_err();
    assert!(err.to_string().contains(good.as_str()), "{err}");

    // An existing (even empty) destination is never replaced.
    fs::create_dir(root.done().join(clash.as_str())).unwrap();
    let err = root.publish(&clash).unwrap_err();
    assert!(matches!(err, WatchError::DestinationExists { .. }), "{err}");
    assert!(root.job_dir(&clash).join("clash.toml").is_file());
}

#[test]
fn partial_outputs_commit_by_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let final_path = tmp.path().join("master.mov");
    let partial = partial_path(&final_path);
    assert_eq!(partial, tmp.path().join("master.mov.partial"));
    fs::write(&partial, "frames").unwrap();
    assert_eq!(commit_partial(&partial).unwrap(), final_path);
    assert_eq!(fs::read_to_string(&final_path).unwrap(), "frames");
    assert!(!partial.exists());
    let err = commit_partial(&final_path).unwrap_err();
    assert!(matches!(err, WatchError::NotPartial { .. }), "{err}");
}

#[test]
fn job_id_shape() {
    let id = JobId::new("My Show v2.final");
    let parts: Vec<&str> = id.as_str().rsplitn(3, '-').collect();
    assert_eq!(parts.len(), 3, "{id}");
    let (hex, stamp, stem) = (parts[0], parts[1], parts[2]);
    assert_eq!(stem, "My_Show_v2_final");
    assert_eq!(stamp.len(), 15);
    assert_eq!(stamp.as_bytes()[8], b'T');
    assert_eq!(hex.len(), 4);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(JobId::new("../..").as_str().starts_with("job-"));
    assert_eq!(JobId::parse(id.as_str()).unwrap(), id);
    for bad in ["", ".x", "..", "a/b"] {
        assert!(JobId::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn utc_stamps_match_the_calendar() {
    // Expected values from Python's datetime.fromtimestamp(t, UTC).
    assert_eq!(utc_stamp(0), "19700101T000000");
    assert_eq!(utc_stamp(951_782_400), "20000229T000000");
    assert_eq!(utc_stamp(1_709_210_096), "20240229T123456");
    assert_eq!(utc_stamp(4_107_542_399), "21000228T235959");
}

#[cfg(unix)]
#[test]
fn symlinks_are_rejected_once_after_settling_and_never_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("incoming");
    fs::create_dir(&dir).unwrap();
    let outside = tmp.path().join("elsewhere.toml");
    fs::write(&outside, "title = 'x'").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("link.toml")).unwrap();
    std::os::unix::fs::symlink("nowhere.toml", dir.join("dangling.toml")).unwrap();
    // Not a manifest by name: not this tracker's business.
    std::os::unix::fs::symlink(&outside, dir.join("link.txt")).unwrap();
    let toml_only = |p: &Path| p.extension().is_some_and(|e| e == "toml");

    let settle = Duration::from_millis(150);
    let mut tracker = StabilityTracker::new(settle);
    assert!(tracker.poll(&dir, toml_only).unwrap().is_empty());
    // Not before the settle time: a link being set up is left alone as a
    // file being written would be.
    assert!(tracker.take_rejected().is_empty());
    thread::sleep(settle);
    assert!(tracker.poll(&dir, toml_only).unwrap().is_empty());
    let rejected = tracker.take_rejected();
    let names: Vec<_> = rejected.iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        names,
        vec![dir.join("dangling.toml"), dir.join("link.toml")]
    );

    let link = &rejected[1];
    let RejectReason::Symlink { target, resolved } = &link.reason;
    assert_eq!(target, &outside);
    assert_eq!(
        resolved.as_deref(),
        Some(fs::canonicalize(&outside).unwrap().as_path())
    );
    let root = fs::canonicalize(&dir).unwrap();
    assert!(link.leads_outside(&root));
    let text = link.to_string();
    assert!(
        text.contains("link.toml") && text.contains("elsewhere.toml"),
        "{text}"
    );
    assert!(text.contains("would move the link, not the file"), "{text}");

    let dangling = &rejected[0];
    assert!(!dangling.leads_outside(&root));
    assert!(dangling.to_string().contains("leads nowhere"), "{dangling}");

    // Each is rejected once; the target is untouched.
    thread::sleep(settle);
    assert!(tracker.poll(&dir, toml_only).unwrap().is_empty());
    assert!(tracker.take_rejected().is_empty());
    assert_eq!(fs::read_to_string(&outside).unwrap(), "title = 'x'");
}

#[test]
fn a_change_is_dated_by_its_time_stamp_between_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let settle = Duration::from_millis(300);
    let mut tracker = StabilityTracker::new(settle);
    assert!(tracker.poll(tmp.path(), any).unwrap().is_empty());
    assert_eq!(tracker.next_due(), None);
    let interval = Duration::from_millis(250);
    assert_eq!(tracker.next_poll(interval), interval);

    let written = Instant::now();
    fs::write(tmp.path().join("late.toml"), b"x").unwrap();
    // Seen a while after it was written: the wait counts from the write.
    thread::sleep(Duration::from_millis(150));
    assert!(tracker.poll(tmp.path(), any).unwrap().is_empty());
    let seen_at = Instant::now();
    let due = tracker.next_due().expect("a file is settling");
    assert!(
        due >= written + settle,
        "due {:?} after the write",
        due - written
    );
    // Counted from the first sight it would be due 150 ms later.
    assert!(
        due < seen_at + settle - Duration::from_millis(100),
        "due {:?} after the write",
        due - written
    );
    assert!(tracker.next_poll(interval) < interval);
    assert!(tracker.next_poll(interval) >= interval / 10);

    thread::sleep(due.saturating_duration_since(Instant::now()));
    assert_eq!(
        tracker.poll(tmp.path(), any).unwrap(),
        vec![tmp.path().join("late.toml")]
    );
    assert!(written.elapsed() >= settle);
    assert_eq!(tracker.next_due(), None);
}

#[test]
fn implausible_time_stamps_are_not_trusted() {
    let now = Instant::now();
    let floor = now - Duration::from_millis(250);
    let ago = |ms| SystemTime::now() - Duration::from_millis(ms);
    // Plausible: after the previous scan; dated a little after the stamp.
    let at = dated(now, Some(ago(100)), Some(floor));
    assert!(
        at > now - Duration::from_millis(100) && at < now,
        "{:?}",
        now - at
    );
    // Before the previous scan saw it absent or different, in the future, or
    // with no previous scan to bound it: dated when seen.
    assert_eq!(dated(now, Some(ago(10_000)), Some(floor)), now);
    assert_eq!(
        dated(
            now,
            Some(SystemTime::now() + Duration::from_secs(5)),
            Some(floor)
        ),
        now
    );
    assert_eq!(dated(now, Some(ago(100)), None), now);
    assert_eq!(dated(now, None, Some(floor)), now);
}

#[test]
fn sidecar_mode_never_polls_early() {
    let tmp = tempfile::tempdir().unwrap();
    let mut tracker = StabilityTracker::new(Duration::from_millis(300)).with_sidecars(true);
    tracker.poll(tmp.path(), any).unwrap();
    fs::write(tmp.path().join("a.toml"), b"x").unwrap();
    assert!(tracker.poll(tmp.path(), any).unwrap().is_empty());
    assert_eq!(tracker.next_due(), None);
}

/// Probe files never outlive `WatchRoot::open`.
fn assert_no_probe(root: &WatchRoot) {
    for dir in [
        root.incoming(),
        root.processing(),
        root.done(),
        root.failed(),
        root.state_dir(),
    ] {
        let left: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with(".deliver-probe"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
}

#[test]
fn open_leaves_no_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    assert_no_probe(&root);
}

#[cfg(unix)]
#[test]
fn open_refuses_a_folder_without_write_permission() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    fs::set_permissions(root.incoming(), fs::Permissions::from_mode(0o555)).unwrap();
    let privileged = fs::write(root.incoming().join("x"), b"").is_ok();
    if privileged {
        // Root (or CAP_DAC_OVERRIDE) writes through mode bits; the
        // read-only mount tests below cover this case there.
        eprintln!("skipped: this process writes through permission bits (running as root)");
        fs::remove_file(root.incoming().join("x")).unwrap();
        return;
    }
    let err = WatchRoot::open(tmp.path()).unwrap_err();
    fs::set_permissions(root.incoming(), fs::Permissions::from_mode(0o755)).unwrap();
    assert!(matches!(err, WatchError::NotWritable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&root.incoming().display().to_string()),
        "{text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
    assert_no_probe(&root);
}

/// A mount made by a test, lazily unmounted when dropped.
#[cfg(target_os = "linux")]
struct Mount(PathBuf);

#[cfg(target_os = "linux")]
impl Mount {
    /// Runs `mount args…`; `None` (with the reason printed) where mounting
    /// is not permitted.
    fn new(at: &Path, args: &[&str]) -> Option<Mount> {
        let out = std::process::Command::new("mount")
            .args(args)
            .output()
            .map_err(|e| eprintln!("skipped: cannot run mount: {e}"))
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: mount {args:?} is not permitted here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Mount(at.to_owned()))
    }

    fn remount_ro(&self, bind: bool) {
        let opts = if bind {
            "remount,bind,ro"
        } else {
            "remount,ro"
        };
        let out = std::process::Command::new("mount")
            .args(["-o", opts])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -o {opts} {}: {}",
            self.0.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[cfg(target_os = "linux")]
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[cfg(target_os = "linux")]
#[test]
fn open_refuses_a_read_only_root() {
    let tmp = tempfile::tempdir().unwrap();
    let at = tmp.path().join("ro");
    fs::create_dir(&at).unwrap();
    let path = at.to_str().unwrap();
    let Some(mount) = Mount::new(&at, &["-t", "tmpfs", "-o", "size=1m", "tmpfs", path]) else {
        return;
    };
    // The layout exists, as on a share that was made read-only later: only
    // the probe can tell.
    let root = WatchRoot::open(&at).unwrap();
    mount.remount_ro(false);
    let err = WatchRoot::open(&at).unwrap_err();
    assert!(matches!(err, WatchError::NotWritable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&root.state_dir().display().to_string()),
        "{text}"
    );
    assert!(text.contains("Read-only file system"), "{text}");
    drop(mount);
}

#[cfg(target_os = "linux")]
#[test]
fn open_names_the_one_state_folder_mounted_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = WatchRoot::open(tmp.path()).unwrap();
    let done = root.done().to_str().unwrap().to_owned();
    let Some(mount) = Mount::new(root.done(), &["--bind", &done, &done]) else {
        return;
    };
    mount.remount_ro(true);
    let err = WatchRoot::open(tmp.path()).unwrap_err();
    assert!(matches!(err, WatchError::NotWritable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{done} as a watch folder")),
        "{text}"
    );
    // A bind mount keeps the device number, so only the probe's rename
    // (EXDEV across mounts) finds it.
    assert!(text.contains("cross-device"), "{text}");
    // The probe that reached processing/ was taken back.
    assert_no_probe(&root);
    drop(mount);
    WatchRoot::open(tmp.path()).unwrap();
}
