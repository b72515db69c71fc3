//! Shared helpers of the end-to-end tests: where the built binaries are, a
//! watch host run as a child process, and `ffprobe`/`ffmpeg` wrappers. The
//! tests use real things only: the `deliver` binary, the real ffmpeg plugin,
//! Debian's ffmpeg CLI as the independent judge.

pub mod chromium;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `target/<profile>`, found from the running test binary
/// (`target/<profile>/deps/<test>`), so that `CARGO_TARGET_DIR` is honoured.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_owned()
}

/// The `deliver` binary. The workspace must be built first
/// (`cargo build --release --workspace`, which the test script does).
pub fn deliver_bin() -> PathBuf {
    let p = target_dir().join("deliver");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build --release --workspace` before the tests",
        p.display()
    );
    p
}

/// A cdylib built in the workspace, by crate name (`deliver_plugin_ffmpeg`).
pub fn cdylib(name: &str) -> PathBuf {
    let p = target_dir().join(format!("lib{name}.so"));
    assert!(
        p.exists(),
        "{} is missing: build the workspace first",
        p.display()
    );
    p
}

/// A plugin directory holding the real ffmpeg plugin plus `extra` libraries
/// (copied under the given plugin file names).
pub fn plugin_dir(dir: &Path, extra: &[(&str, &str)]) -> PathBuf {
    let pd = dir.join("plugins");
    std::fs::create_dir_all(&pd).unwrap();
    std::fs::copy(
        cdylib("deliver_plugin_ffmpeg"),
        pd.join("libdeliver_plugin_ffmpeg.so"),
    )
    .unwrap();
    for (crate_name, as_name) in extra {
        std::fs::copy(cdylib(crate_name), pd.join(as_name)).unwrap();
    }
    pd
}

/// A plugin directory holding the ffmpeg plugin and the rav1e plugin
/// (AV1 encoding), under the names the workspace build gives them.
pub fn plugin_dir_with_rav1e(dir: &Path) -> PathBuf {
    plugin_dir(
        dir,
        &[("deliver_plugin_rav1e", "libdeliver_plugin_rav1e.so")],
    )
}

/// The text of a preset of the repository's library (`web/h264-720p`).
pub fn builtin_preset(id: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../presets")
        .join(format!("{id}.toml"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A presets directory under `dir` holding `files` (`("test/x.toml", text)`);
/// returns the directory to pass as `--presets`.
pub fn presets_dir(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let root = dir.join("presets");
    for (name, text) in files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    root
}

/// A `deliver` command with the test's plugin directory.
pub fn deliver(plugins: &Path) -> Command {
    let mut c = Command::new(deliver_bin());
    c.arg("--plugin-dir").arg(plugins);
    c.env("RUST_LOG", "info");
    // The tester's own preset directory stays out of the tests.
    c.env_remove("DELIVER_PRESETS");
    c.env("XDG_CONFIG_HOME", "/nonexistent/deliver-tests/config");
    c
}

/// A watch host running as a child process; killed on drop.
pub struct Host {
    child: Child,
    pub root: PathBuf,
    log: PathBuf,
}

impl Host {
    /// Starts `deliver watch <root>` with a short settle time.
    pub fn start(root: &Path, plugins: &Path, extra: &[&str]) -> Host {
        let log = root.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = deliver(plugins)
            .args(["watch", "--settle-ms", "300"])
            .args(extra)
            .arg(root)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting deliver watch");
        // The host creates the layout; wait for it so tests can drop files.
        wait_for(Duration::from_secs(20), || root.join("incoming").is_dir());
        Host {
            child,
            root: root.to_owned(),
            log,
        }
    }

    /// Starts `deliver watch --config <config>` (after `extra` arguments
    /// to `watch`) and waits until every root in `roots` has its layout;
    /// [`Host::root`] is the first of them.
    pub fn start_config(config: &Path, plugins: &Path, extra: &[&str], roots: &[&Path]) -> Host {
        let log = config.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = deliver(plugins)
            .arg("watch")
            .args(extra)
            .arg("--config")
            .arg(config)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting deliver watch --config");
        let mut host = Host {
            child,
            root: roots[0].to_owned(),
            log,
        };
        let start = Instant::now();
        while !roots.iter().all(|r| r.join("incoming").is_dir()) {
            assert!(host.alive(), "the host died:\n{}", host.log());
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the roots were not made within 20 s:\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }

    /// Drops a manifest into `<root>/incoming/` atomically, for a host of
    /// several roots.
    pub fn drop_file_in(&self, root: &Path, name: &str, bytes: &[u8]) {
        let tmp = root.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, root.join("incoming").join(name)).unwrap();
    }

    /// [`Host::wait_job`] in another root of the host.
    pub fn wait_job_in(
        &mut self,
        root: &Path,
        stem: &str,
        timeout: Duration,
    ) -> (PathBuf, &'static str, Value) {
        let start = Instant::now();
        loop {
            for state in ["done", "failed"] {
                if let Ok(rd) = std::fs::read_dir(root.join(state)) {
                    for e in rd.filter_map(Result::ok) {
                        let name = e.file_name().to_string_lossy().into_owned();
                        if name.starts_with(&format!("{stem}-")) {
                            let rp = e.path().join("report.json");
                            if let Ok(text) = std::fs::read_to_string(&rp) {
                                let v: Value = serde_json::from_str(&text).unwrap();
                                return (e.path(), state, v);
                            }
                        }
                    }
                }
            }
            assert!(self.alive(), "the host died:\n{}", self.log());
            assert!(
                start.elapsed() < timeout,
                "job {stem} did not finish within {timeout:?}; host log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the host process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The host's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Drops a manifest into incoming/ atomically (write elsewhere, rename in).
    pub fn drop_file(&self, name: &str, bytes: &[u8]) {
        let tmp = self.root.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.root.join("incoming").join(name)).unwrap();
    }

    /// Waits until a job whose id starts with `stem-` lands in done/ or
    /// failed/ with its report; returns (folder, "done" | "failed", report).
    pub fn wait_job(&mut self, stem: &str, timeout: Duration) -> (PathBuf, &'static str, Value) {
        let root = self.root.clone();
        self.wait_job_in(&root, stem, timeout)
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `f` until true or panics after `timeout`.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < timeout,
            "condition not met within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `ffprobe` of a file: streams with counted frames.
pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed (Debian package ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first stream of a type in an ffprobe result.
pub fn stream<'a>(probe: &'a Value, kind: &str) -> &'a Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} stream in {probe}"))
}

/// Integrated loudness (LUFS) and true peak (dBTP) of a file's first audio
/// stream, measured by FFmpeg's `ebur128=peak=true` filter.
pub fn ffmpeg_ebur128(path: &Path) -> (f64, f64) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:a:0",
            "-af",
            "ebur128=peak=true",
            "-f",
            "null",
            "-",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg ebur128 failed: {err}");
    // The summary block at the end: "Integrated loudness:\n    I: -23.0 LUFS"
    // and "True peak:\n    Peak: -1.2 dBFS".
    let value = |section: &str, key: &str| -> f64 {
        let tail = err
            .rsplit_once(section)
            .unwrap_or_else(|| panic!("no `{section}` in the ebur128 summary: {err}"))
            .1;
        let line = tail
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (
        value("Integrated loudness:", "I:"),
        value("True peak:", "Peak:"),
    )
}

/// Integrated loudness measured by FFmpeg's `ebur128` filter.
pub fn ffmpeg_integrated_lufs(path: &Path) -> f64 {
    ffmpeg_ebur128(path).0
}

/// Runs `deliver render <manifest> --out <out>` (after `extra` global
/// arguments) and asserts it succeeded.
pub fn render(plugins: &Path, extra: &[&std::ffi::OsStr], manifest: &Path, out_dir: &Path) {
    let out = deliver(plugins)
        .args(extra)
        .arg("render")
        .arg(manifest)
        .arg("--out")
        .arg(out_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render of {} failed:\n{}\n{}",
        manifest.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `ffmpeg` CLI and asserts success.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Luma PSNR between frame `fa` of `a` and frame `fb` of `b`, measured by
/// FFmpeg's `psnr` filter (its `y:` value).
pub fn ffmpeg_frame_psnr(a: &Path, fa: u32, b: &Path, fb: u32) -> f64 {
    let graph = format!(
        "[0:v]trim=start_frame={fa}:end_frame={},setpts=PTS-STARTPTS[a];\
         [1:v]trim=start_frame={fb}:end_frame={},setpts=PTS-STARTPTS[b];[a][b]psnr",
        fa + 1,
        fb + 1
    );
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(a)
        .arg("-i")
        .arg(b)
        .args(["-lavfi", &graph, "-f", "null", "-"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg psnr failed: {err}");
    let y = err
        .rsplit_once("PSNR y:")
        .unwrap_or_else(|| panic!("no psnr summary in: {err}"))
        .1
        .split_whitespace()
        .next()
        .unwrap();
    if y == "inf" {
        f64::INFINITY
    } else {
        y.parse().unwrap()
    }
}

/// Writes a file in `dir` and returns its path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// A composition of the moving pattern with a 1 kHz tone at -20 dBFS,
/// `width`×`height` at 25 fps for `duration`, delivered once as `web` with
/// `preset` at the canvas size.
pub fn pattern_manifest(
    name: &str,
    width: u32,
    height: u32,
    duration: &str,
    preset: &str,
) -> String {
    format!(
        r#"version = 1
name = "{name}"
[canvas]
width = {width}
height = {height}
frame_rate = "25"
duration = "{duration}"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[audio]]
[[audio.clip]]
generator = "sine"
frequency = 1000.0
level = -20.0
[[deliverable]]
preset = "{preset}"
name = "web"
overrides = {{ video = {{ width = {width}, height = {height} }} }}
"#
    )
}

/// [`pattern_manifest`] without a `[[deliverable]]`: a watch root's
/// default presets decide what it becomes.
pub fn pattern_composition(name: &str, width: u32, height: u32, duration: &str) -> String {
    let full = pattern_manifest(name, width, height, duration, "unused");
    let cut = full
        .find("[[deliverable]]")
        .expect("pattern_manifest has one");
    full[..cut].to_owned()
}

/// A built-in preset (`web/h264-720p`) made at the canvas size: its
/// `width` and `height` removed, so tiny test canvases stay tiny.
pub fn canvas_size_preset(id: &str) -> String {
    let text = builtin_preset(id);
    let out: String = text
        .lines()
        .filter(|l| !l.starts_with("width =") && !l.starts_with("height ="))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(out, text, "{id} sets no size");
    out
}

/// Runs `deliver status <root> --json` and returns its job rows.
pub fn status_json(plugins: &Path, root: &Path) -> Vec<Value> {
    let out = deliver(plugins)
        .arg("status")
        .arg(root)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deliver status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The names in a folder (empty if it cannot be read).
pub fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The unprivileged user (and group) the permission tests run the host as:
/// `nobody`/`nogroup` on Debian. The tests themselves run as root, for whom
/// permission bits do not apply.
pub const NOBODY: u32 = 65534;

/// A `deliver` command run as user and group `uid` with no supplementary
/// groups, through util-linux's `setpriv` (it execs, so the child's pid is
/// the host's).
pub fn deliver_as(uid: u32, plugins: &Path) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg(deliver_bin())
        .arg("--plugin-dir")
        .arg(plugins);
    c.env("RUST_LOG", "info");
    c
}

/// Why [`deliver_as`]`(uid, plugins)` cannot run here (no `setpriv`, not
/// permitted, the binary or the plugin out of that user's reach), or `None`
/// if it runs and loads the ffmpeg plugin.
pub fn cannot_run_as(uid: u32, plugins: &Path) -> Option<String> {
    let out = match deliver_as(uid, plugins).arg("plugins").output() {
        Ok(out) => out,
        Err(e) => return Some(format!("cannot run setpriv: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !stdout.contains("ffmpeg") {
        return Some(format!(
            "`deliver plugins` as uid {uid} did not list the ffmpeg plugin ({}): {}{}",
            out.status,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    None
}

impl Host {
    /// Starts a watch host from a prepared command ([`deliver`] or
    /// [`deliver_as`]): `watch --settle-ms 300 <extra> <root>`. Fails with
    /// the host's log if it exits before making the layout.
    pub fn start_cmd(mut cmd: Command, root: &Path, extra: &[&str]) -> Host {
        let log = root.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .args(["watch", "--settle-ms", "300"])
            .args(extra)
            .arg(root)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting deliver watch");
        let mut host = Host {
            child,
            root: root.to_owned(),
            log,
        };
        let start = Instant::now();
        while !root.join("incoming").is_dir() {
            assert!(host.alive(), "the host exited at start:\n{}", host.log());
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no incoming/ after 20 s:\n{}",
                host.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        host
    }
}

/// A mount made by a test (the test machines run tests as root), lazily
/// unmounted when dropped.
pub struct Mount(pub PathBuf);

impl Mount {
    /// `mount <args> <at>`; the error is mount's own words (e.g. not root).
    pub fn new(args: &[&str], at: &Path) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(args)
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if out.status.success() {
            Ok(Mount(at.to_owned()))
        } else {
            Err(format!(
                "mount {args:?} {}: {}",
                at.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// A fresh tmpfs of `size` (`"1m"`) at `at`, which is created.
    pub fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(at).unwrap();
        Mount::new(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], at)
    }

    /// `at` bind-mounted onto itself (same file system, a mount of its own).
    pub fn bind(at: &Path) -> Result<Mount, String> {
        Mount::new(&["--bind", at.to_str().expect("a UTF-8 path")], at)
    }

    /// Makes the mount read-only (`bind`: it is a bind mount).
    pub fn remount_ro(&self, bind: bool) {
        let opts = if bind {
            "remount,bind,ro"
        } else {
            "remount,ro"
        };
        Mount::new(&["-o", opts], &self.0)
            .map(std::mem::forget)
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// What `deliver plugins check` said.
pub struct CheckRun {
    /// The exit code; `None` if a signal ended the process.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CheckRun {
    /// The `--json` report (panics with the output if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("not a JSON report ({e}):\n{}\n{}", self.stdout, self.stderr)
        })
    }

    /// The steps of a `--json` report with this outcome ("PASS", "FAIL", "SKIP").
    pub fn steps(&self, outcome: &str) -> Vec<Value> {
        self.json()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["outcome"] == outcome)
            .cloned()
            .collect()
    }
}

/// Runs `deliver plugins check <library>` after `args` (`--json`,
/// `--frames N`).
pub fn plugins_check(library: &Path, args: &[&str]) -> CheckRun {
    let out = Command::new(deliver_bin())
        .args(["plugins", "check"])
        .args(args)
        .arg(library)
        .env("RUST_LOG", "warn")
        // A hung encoder (the panic fixture's `hang-test`) is killed after
        // this long in the crash probe's child rather than the default 300 s.
        .env("DELIVER_PLUGIN_TIMEOUT_S", "5")
        .stdin(Stdio::null())
        .output()
        .expect("running deliver plugins check");
    CheckRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
