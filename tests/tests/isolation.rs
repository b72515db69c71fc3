//! Out-of-process encoders (`isolation = "process"`): a native codec that
//! segfaults fails its own job with the signal named in the report, while
//! the host lives on and runs the next job; an isolated encoder makes
//! exactly the packets the same encoder makes in the host's process; and
//! what the isolation costs, measured against the same encode in process.

use deliver::isolate::{Encoder, Isolated, Isolation, Transport};
use deliver::plugins::{Choice, Registry};
use deliver_plugin_api::abi::{self, cap, media, pix};
use deliver_plugin_api::host::PacketBuf;
use deliver_plugin_api::plugin::{EncoderSettings, VideoView};
use deliver_tests::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn manifest(preset: &str) -> String {
    format!(
        r#"version = 1
[canvas]
width = 320
height = 240
frame_rate = "25"
duration = "2s"
colour_space = "bt709"
[[video]]
[[video.clip]]
generator = "pattern"
[[deliverable]]
preset = "{preset}"
name = "out"
overrides = {{ video = {{ width = 320, height = 240 }} }}
"#
    )
}

/// The child that `err` names (`… pid N)`) is not the host and is gone (no
/// zombie left under the host), and the host is alive.
fn child_was_reaped(err: &str, host: &mut Host) {
    let pid: u32 = err
        .split("pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {err}"));
    assert_ne!(pid, host.pid());
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "child {pid} still exists"
    );
    assert!(host.alive(), "the host died with its isolated encoder");
}

#[test]
fn a_segfaulting_isolated_encoder_fails_its_job_and_the_host_runs_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_panic", "libdeliver_plugin_panic.so")],
    );
    let base = builtin_preset("web/h264-720p");
    let segv = base.replace(
        "[video]",
        "[video]\nencoder = \"segfault-test\"\nisolation = \"process\"",
    );
    assert_ne!(segv, base);
    let isolated = base
        .replace("[video]", "[video]\nisolation = \"process\"")
        .replace("[audio]", "[audio]\nisolation = \"process\"");
    let presets = presets_dir(
        tmp.path(),
        &[("test/segv.toml", &segv), ("test/isolated.toml", &isolated)],
    );
    let root = tmp.path().join("root");
    let presets_arg = presets.to_str().unwrap().to_owned();
    let mut host = Host::start(&root, &plugins, &["--presets", &presets_arg]);

    host.drop_file("crash.toml", manifest("test/segv").as_bytes());
    let (dir, state, r) = host.wait_job("crash", Duration::from_secs(60));
    assert_eq!(state, "failed", "{r:#}");
    assert!(dir.starts_with(root.join("failed")));
    let d = &r["deliverables"][0];
    assert_eq!(d["verdict"], "fail");
    let err = d["error"].as_str().unwrap();
    assert!(err.contains("encoder segfault-test"), "{err}");
    assert!(err.contains("libdeliver_plugin_panic.so"), "{err}");
    assert!(err.contains("out of process, pid "), "{err}");
    assert!(err.contains("died with signal 11 (SIGSEGV)"), "{err}");
    // The fixture crashes on the fifth frame it is sent.
    assert!(err.contains("while encoding frame 5 (pts 4)"), "{err}");
    // The child was reaped: no zombie left behind under the host.
    child_was_reaped(err, &mut host);
    // Nor its frame memory: the name is unlinked as soon as both mapped it.
    let prefix = format!("deliver-frames-{}-", host.pid());
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(&prefix))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");

    // The next job, with the real encoders isolated too, is delivered.
    host.drop_file("next.toml", manifest("test/isolated").as_bytes());
    let (dir, state, r) = host.wait_job("next", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert!(host.alive());
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "mp4"))
        .expect("an mp4 in done/");
    let probe = ffprobe(&file);
    let v = stream(&probe, "video");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(v["nb_read_frames"], "50", "{v:#}");
    assert_eq!(stream(&probe, "audio")["codec_name"], "aac");

    // And one in process, as before.
    host.drop_file("plain.toml", manifest("web/h264-720p").as_bytes());
    let (_, state, r) = host.wait_job("plain", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert!(host.alive());
}

#[test]
fn a_hung_isolated_encoder_is_killed_by_the_watchdog_and_the_host_runs_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_panic", "libdeliver_plugin_panic.so")],
    );
    let base = builtin_preset("web/h264-720p");
    let hang = base.replace(
        "[video]",
        "[video]\nencoder = \"hang-test\"\nisolation = \"process\"",
    );
    assert_ne!(hang, base);
    let presets = presets_dir(tmp.path(), &[("test/hang.toml", &hang)]);
    let root = tmp.path().join("root");
    let presets_arg = presets.to_str().unwrap().to_owned();
    let mut cmd = deliver(&plugins);
    cmd.env("DELIVER_PLUGIN_TIMEOUT_S", "3");
    let mut host = Host::start_cmd(cmd, &root, &["--presets", &presets_arg]);

    let t0 = Instant::now();
    host.drop_file("hang.toml", manifest("test/hang").as_bytes());
    let (dir, state, r) = host.wait_job("hang", Duration::from_secs(60));
    assert_eq!(state, "failed", "{r:#}");
    assert!(dir.starts_with(root.join("failed")));
    let err = r["deliverables"][0]["error"].as_str().unwrap();
    assert!(err.contains("encoder hang-test"), "{err}");
    assert!(
        err.contains("gave no answer for 3 s (DELIVER_PLUGIN_TIMEOUT_S) and was killed as hung"),
        "{err}"
    );
    assert!(err.contains("while encoding frame 3"), "{err}");
    // Killed after its 3 s, not left for the default 300.
    assert!(t0.elapsed() < Duration::from_secs(45), "{:?}", t0.elapsed());
    child_was_reaped(err, &mut host);

    host.drop_file("plain.toml", manifest("web/h264-720p").as_bytes());
    let (_, state, r) = host.wait_job("plain", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert!(host.alive());
}

/// A 1080p yuv422p10 picture that changes every frame (so that no encoder
/// gets an easy ride from repeated pictures).
fn picture(n: u32) -> [Vec<u8>; 3] {
    let (w, h) = (1920usize, 1080usize);
    let mut y = Vec::with_capacity(w * h * 2);
    for r in 0..h {
        for c in 0..w {
            let v = 64 + ((c + r + 7 * n as usize) % 876) as u16;
            y.extend_from_slice(&v.to_le_bytes());
        }
    }
    let chroma = |shift: usize| {
        let mut p = Vec::with_capacity(w / 2 * h * 2);
        for r in 0..h {
            for c in 0..w / 2 {
                let v = 64 + ((c * 3 + r + shift + n as usize) % 896) as u16;
                p.extend_from_slice(&v.to_le_bytes());
            }
        }
        p
    };
    [y, chroma(0), chroma(300)]
}

fn settings(codec: &str, implementation: &str, options: &str) -> EncoderSettings {
    EncoderSettings {
        media: media::VIDEO,
        codec: codec.into(),
        implementation: implementation.into(),
        width: 1920,
        height: 1080,
        pix_fmt: pix::YUV422P10,
        frame_rate: abi::Rational::new(25, 1),
        time_base: abi::Rational::new(1, 25),
        color: abi::ColorTags::BT709_LIMITED,
        global_header: true,
        options: options.into(),
        ..Default::default()
    }
}

/// Opens `choice`'s encoder: as the pipeline does (its isolation, the
/// default transport), or isolated over the `transport` given.
fn open(choice: &Choice, set: &EncoderSettings, transport: Option<Transport>) -> Encoder {
    let enc = match transport {
        None => Encoder::open(choice, set).unwrap().0,
        Some(t) => Encoder::Isolated(Box::new(
            Isolated::open(
                &choice.plugin.name(),
                &choice.file,
                &choice.capability.implementation,
                set,
                t,
            )
            .unwrap()
            .0,
        )),
    };
    assert_eq!(
        enc.pid().is_some(),
        transport.is_some() || choice.isolation == Isolation::Process
    );
    enc
}

/// Encodes `frames` through `choice` and returns the packets and the wall
/// time of the whole session (open to last packet).
fn encode(
    choice: &Choice,
    transport: Option<Transport>,
    set: &EncoderSettings,
    pictures: &[[Vec<u8>; 3]],
    frames: u32,
) -> (Vec<PacketBuf>, Duration) {
    let start = Instant::now();
    let mut enc = open(choice, set, transport);
    let mut out = Vec::new();
    let mut drain = |enc: &mut Encoder| -> bool {
        loop {
            match enc.receive().unwrap() {
                Ok(p) => out.push(p),
                Err(st) => return st == abi::status::EOF,
            }
        }
    };
    for n in 0..frames {
        let p = &pictures[n as usize % pictures.len()];
        let view = VideoView {
            width: 1920,
            height: 1080,
            pix_fmt: pix::YUV422P10,
            planes: [
                (&p[0], 1920 * 2),
                (&p[1], 960 * 2),
                (&p[2], 960 * 2),
                (&[], 0),
            ],
            n_planes: 3,
            pts: n as i64,
            time_base: set.time_base,
            color: set.color,
            key: false,
        };
        enc.send_video(Some(&view)).unwrap();
        drain(&mut enc);
    }
    enc.send_video(None).unwrap();
    while !drain(&mut enc) {}
    drop(enc);
    (out, start.elapsed())
}

fn choose(reg: &Registry, codec: &str, want: &str, isolation: Isolation) -> Choice {
    let mut c = reg
        .find(cap::ENCODE, codec, Some(want))
        .unwrap_or_else(|| panic!("no {codec} encoder `{want}`"));
    c.isolation = isolation;
    c
}

/// ProRes 422 HQ of a 1080p 10-bit picture: the isolated encoder makes
/// the very same packets, over shared memory and over the pipe; and what
/// isolation costs is measured against the same encode in process
/// (printed; held only to "less than the encode itself", since the
/// machine is shared). A do-nothing encoder measures the frame transport
/// alone.
#[test]
fn an_isolated_encoder_makes_the_same_packets_and_its_cost_is_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_panic", "libdeliver_plugin_panic.so")],
    );
    let reg = Registry::load(&[plugins]);
    let pictures: Vec<[Vec<u8>; 3]> = (0..10).map(picture).collect();
    let frames = 75; // three seconds at 25 fps
    let prores = settings("prores", "prores_ks", "profile = \"hq\"");
    let shm = Some(Transport::SharedMemory);
    let pipe = Some(Transport::Pipe);

    let c = choose(&reg, "prores", "prores_ks", Isolation::InProcess);
    // Warm every path once (page cache, the child's first load).
    for t in [None, shm, pipe] {
        encode(&c, t, &prores, &pictures, 2);
    }
    let (a, t_in) = encode(&c, None, &prores, &pictures, frames);
    let (b, t_shm) = encode(&c, shm, &prores, &pictures, frames);
    let (d, t_pipe) = encode(&c, pipe, &prores, &pictures, frames);
    assert_eq!(a.len(), frames as usize);
    for (name, other) in [("shared memory", &b), ("the pipe", &d)] {
        assert_eq!(other.len(), a.len(), "{name}");
        for (k, (x, y)) in a.iter().zip(other).enumerate() {
            assert_eq!(
                x, y,
                "packet {k} differs between in process and isolated over {name}"
            );
        }
    }

    // The transport alone: `never-ends` takes frames and does nothing.
    let null = settings("h264", "never-ends", "");
    let n = choose(&reg, "h264", "never-ends", Isolation::InProcess);
    let transport = |t: Option<Transport>| {
        let begin = Instant::now();
        let mut enc = open(&n, &null, t);
        let start = Instant::now();
        let opened = start - begin;
        for k in 0..frames {
            let p = &pictures[k as usize % pictures.len()];
            let view = VideoView {
                width: 1920,
                height: 1080,
                pix_fmt: pix::YUV422P10,
                planes: [
                    (&p[0], 1920 * 2),
                    (&p[1], 960 * 2),
                    (&p[2], 960 * 2),
                    (&[], 0),
                ],
                n_planes: 3,
                pts: k as i64,
                time_base: null.time_base,
                color: null.color,
                key: false,
            };
            enc.send_video(Some(&view)).unwrap();
            assert_eq!(enc.receive().unwrap(), Err(abi::status::NEED_MORE));
        }
        let took = start.elapsed();
        drop(enc);
        (opened, took)
    };
    let ((_, n_in), (o_shm, n_shm), (_, n_pipe)) =
        (transport(None), transport(shm), transport(pipe));

    let per = |d: Duration| d.as_secs_f64() * 1000.0 / frames as f64;
    let frame_mb = (1920 * 1080 * 2 * 2) as f64 / 1e6;
    eprintln!(
        "isolation, {frames} frames of 1080p yuv422p10 ({frame_mb:.1} MB each), ms per frame:\n  \
         prores_ks hq: in process {:.1}, isolated over shared memory {:.1} (ratio {:.3}), \
         over the pipe {:.1} (ratio {:.3})\n  \
         transport alone (no-op encoder): in process {:.3}, shared memory {:.3}, pipe {:.3}\n  \
         session start (child start, library load, open): {:.1} ms",
        per(t_in),
        per(t_shm),
        t_shm.as_secs_f64() / t_in.as_secs_f64(),
        per(t_pipe),
        t_pipe.as_secs_f64() / t_in.as_secs_f64(),
        per(n_in),
        per(n_shm),
        per(n_pipe),
        o_shm.as_secs_f64() * 1000.0,
    );
    // Handing a frame to the child must cost less than encoding it, or
    // isolation would more than double an encode's time.
    assert!(
        per(n_shm) < per(t_in),
        "transport {:.2} ms/frame vs encode {:.2} ms/frame",
        per(n_shm),
        per(t_in)
    );
}

/// A plugin's own errors cross the process boundary unchanged: bad codec
/// options are refused at open with the plugin's message, not as a crash.
#[test]
fn plugin_errors_cross_the_process_boundary_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(tmp.path(), &[]);
    let reg = Registry::load(&[plugins]);
    let set = settings("prores", "prores_ks", "no_such_option = 1");
    let inproc = choose(&reg, "prores", "prores_ks", Isolation::InProcess);
    let isolated = choose(&reg, "prores", "prores_ks", Isolation::Process);
    let a = Encoder::open(&inproc, &set)
        .err()
        .expect("refused in process");
    let b = Encoder::open(&isolated, &set)
        .err()
        .expect("refused isolated");
    assert_eq!(a.to_string(), b.to_string());
    assert!(a.to_string().contains("no_such_option"), "{a}");
}

/// `isolation = "process"` on a watch root isolates every encoder of its
/// jobs, whatever the preset says; `DELIVER_ISOLATE` does it for a whole
/// plugin, and `deliver plugins` says so.
#[test]
fn a_root_or_a_plugin_can_be_isolated_without_touching_presets() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = plugin_dir(
        tmp.path(),
        &[("deliver_fixture_plugin_panic", "libdeliver_plugin_panic.so")],
    );
    // No `isolation` in the preset: in process, this encoder would take
    // the host down with it.
    let segv =
        builtin_preset("web/h264-720p").replace("[video]", "[video]\nencoder = \"segfault-test\"");
    let presets = presets_dir(tmp.path(), &[("test/segv.toml", &segv)]);
    let presets_arg = presets.to_str().unwrap().to_owned();

    let config = write(
        tmp.path(),
        "watch.toml",
        r#"[defaults]
settle_ms = 300

[[root]]
path = "vendor"
isolation = "process"

[[root]]
path = "house"
"#,
    );
    let (vendor, house) = (tmp.path().join("vendor"), tmp.path().join("house"));
    let mut host = Host::start_config(
        &config,
        &plugins,
        &["--presets", &presets_arg],
        &[&vendor, &house],
    );
    host.drop_file_in(&vendor, "crash.toml", manifest("test/segv").as_bytes());
    let (_, state, r) = host.wait_job_in(&vendor, "crash", Duration::from_secs(60));
    assert_eq!(state, "failed", "{r:#}");
    let err = r["deliverables"][0]["error"].as_str().unwrap();
    assert!(err.contains("died with signal 11 (SIGSEGV)"), "{err}");
    assert!(host.alive(), "{}", host.log());
    host.drop_file_in(&house, "fine.toml", manifest("web/h264-720p").as_bytes());
    let (_, state, r) = host.wait_job_in(&house, "fine", Duration::from_secs(120));
    assert_eq!(state, "done", "{r:#}");
    assert!(host.alive());
    drop(host);

    // The same preset, isolated for the whole plugin by the host's setting.
    let out = deliver(&plugins)
        .env("DELIVER_ISOLATE", "panic-test")
        .arg("plugins")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let fixture = text
        .split("\n\n")
        .find(|b| b.starts_with("panic-test"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(fixture.contains("encoders run out of process"), "{text}");
    let ffmpeg = text
        .split("\n\n")
        .find(|b| b.starts_with("ffmpeg"))
        .unwrap();
    assert!(!ffmpeg.contains("out of process"), "{text}");

    let root = tmp.path().join("single");
    let mut host = Host::start_cmd(
        {
            let mut c = deliver(&plugins);
            c.env("DELIVER_ISOLATE", "panic-test");
            c
        },
        &root,
        &["--presets", &presets_arg],
    );
    host.drop_file("crash.toml", manifest("test/segv").as_bytes());
    let (_, state, r) = host.wait_job("crash", Duration::from_secs(60));
    assert_eq!(state, "failed", "{r:#}");
    let err = r["deliverables"][0]["error"].as_str().unwrap();
    assert!(err.contains("died with signal 11 (SIGSEGV)"), "{err}");
    assert!(host.alive(), "{}", host.log());
}
