//! Loading codec plugins and choosing among them by capability.
//!
//! A plugin is a shared library named `libdeliver_plugin_*.so` (or any `.so`
//! in a directory given explicitly) that exports
//! [`deliver_plugin_api::abi::ENTRY_SYMBOL`]. The host checks the ABI major
//! and the descriptor's size before it trusts anything else in it, and never
//! unloads a library: descriptors, capability strings and code must outlive
//! every handle.

use crate::isolate::Isolation;
use deliver_plugin_api::abi::{self, Str};
use deliver_plugin_api::host::{CapabilityInfo, PluginRef};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Why a plugin was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin {file}: cannot load the library: {reason}")]
    Load { file: PathBuf, reason: String },
    #[error("plugin {file}: no `{symbol}` symbol: {reason}")]
    NoEntry {
        file: PathBuf,
        symbol: &'static str,
        reason: String,
    },
    #[error("plugin {file}: its entry point returned no descriptor")]
    NullDescriptor { file: PathBuf },
    #[error(
        "plugin {file}: built for plugin ABI {plugin_major}.{plugin_minor}, but this host speaks ABI {host_major}.{host_minor}; rebuild the plugin against deliver-plugin-api {host_major}.x"
    )]
    AbiMismatch {
        file: PathBuf,
        plugin_major: u32,
        plugin_minor: u32,
        host_major: u32,
        host_minor: u32,
    },
    #[error("plugin {file}: descriptor is {got} bytes, expected at least {want}")]
    BadDescriptor { file: PathBuf, got: u32, want: u32 },
    #[error("cannot read plugin directory {dir}: {reason}")]
    Dir { dir: PathBuf, reason: String },
}

/// One loaded plugin.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub file: PathBuf,
    pub plugin: PluginRef,
    pub capabilities: Vec<CapabilityInfo>,
}

/// Every plugin that loaded, plus what was refused and why.
#[derive(Debug, Default)]
pub struct Registry {
    pub plugins: Vec<Loaded>,
    pub refused: Vec<PluginError>,
    /// Plugins whose encoders always run out of process, by plugin name
    /// (`*`: every plugin), from `DELIVER_ISOLATE` (comma-separated).
    pub isolated: Vec<String>,
}

/// A capability chosen for a job.
#[derive(Debug, Clone)]
pub struct Choice {
    pub plugin: PluginRef,
    pub capability: CapabilityInfo,
    /// The library the plugin was loaded from (an isolated encoder's child
    /// loads it again).
    pub file: PathBuf,
    /// Where its encoders run: the registry's setting for the plugin, made
    /// stricter by a preset's or a root's `isolation`.
    pub isolation: Isolation,
}

impl Choice {
    /// Opens this capability's encoder, in process or in a child process
    /// as [`Choice::isolation`] says.
    ///
    /// # Errors
    /// As [`crate::isolate::Encoder::open`].
    pub fn open_encoder(
        &self,
        set: &deliver_plugin_api::plugin::EncoderSettings,
    ) -> Result<
        (
            crate::isolate::Encoder,
            deliver_plugin_api::plugin::StreamInfo,
        ),
        deliver_plugin_api::host::CallError,
    > {
        crate::isolate::Encoder::open(self, set)
    }
}

unsafe extern "C" fn host_log(level: u32, target: Str, message: Str) {
    // SAFETY: the plugin passes strings valid for the call.
    let target = unsafe { target.to_str() }.unwrap_or("plugin");
    let message = unsafe { message.to_str() }.unwrap_or("<not UTF-8>");
    match level {
        1 => tracing::error!(plugin = target, "{message}"),
        2 => tracing::warn!(plugin = target, "{message}"),
        3 => tracing::info!(plugin = target, "{message}"),
        4 => tracing::debug!(plugin = target, "{message}"),
        _ => tracing::trace!(plugin = target, "{message}"),
    }
}

/// What the host passes to every plugin's entry point (the conformance
/// runner passes the same).
pub(crate) static HOST_API: abi::HostApi = abi::HostApi {
    abi_major: abi::ABI_MAJOR,
    abi_minor: abi::ABI_MINOR,
    struct_size: std::mem::size_of::<abi::HostApi>() as u32,
    log: Some(host_log),
    reserved: [0; 4],
};

/// Loads one library.
///
/// # Errors
/// Any [`PluginError`]: the message names the file and, for an ABI mismatch,
/// both versions.
pub fn load_file(file: &Path) -> Result<Loaded, PluginError> {
    // SAFETY: loading runs the library's initialisers; plugins are trusted
    // code by configuration (the plugin directory), and out-of-process
    // isolation is the answer for native codecs that crash.
    let lib = unsafe { libloading::Library::new(file) }.map_err(|e| PluginError::Load {
        file: file.to_owned(),
        reason: format!("{e:?}"),
    })?;
    // Never unloaded: the descriptor and every handle point into it.
    let lib: &'static libloading::Library = Box::leak(Box::new(lib));
    // SAFETY: the symbol's type is fixed by the ABI.
    let entry: libloading::Symbol<'static, abi::EntryFn> =
        unsafe { lib.get(abi::ENTRY_SYMBOL.as_bytes()) }.map_err(|e| PluginError::NoEntry {
            file: file.to_owned(),
            symbol: abi::ENTRY_SYMBOL,
            reason: format!("{e:?}"),
        })?;
    // SAFETY: calling the entry point is the documented protocol.
    let desc = unsafe { entry(&HOST_API) };
    // SAFETY: a non-null descriptor lives for the process, per the ABI.
    let desc: &'static abi::PluginDescriptor =
        unsafe { desc.as_ref() }.ok_or_else(|| PluginError::NullDescriptor {
            file: file.to_owned(),
        })?;
    // The major is read before anything else: a different major may lay the
    // rest of the descriptor out differently.
    if desc.abi_major != abi::ABI_MAJOR {
        return Err(PluginError::AbiMismatch {
            file: file.to_owned(),
            plugin_major: desc.abi_major,
            plugin_minor: desc.abi_minor,
            host_major: abi::ABI_MAJOR,
            host_minor: abi::ABI_MINOR,
        });
    }
    let want = std::mem::size_of::<abi::PluginDescriptor>() as u32;
    if desc.struct_size < want {
        return Err(PluginError::BadDescriptor {
            file: file.to_owned(),
            got: desc.struct_size,
            want,
        });
    }
    // SAFETY: checked above; lives for the process.
    let plugin = unsafe { PluginRef::new(desc) }.ok_or_else(|| PluginError::NullDescriptor {
        file: file.to_owned(),
    })?;
    let capabilities = plugin.capabilities();
    Ok(Loaded {
        file: file.to_owned(),
        plugin,
        capabilities,
    })
}

/// Where plugins are looked for when no directory is given: `DELIVER_PLUGIN_PATH`
/// (colon-separated), else the directory of the running executable and its
/// `plugins/` subdirectory (where `cargo build` and an install put them).
pub fn default_dirs() -> Vec<PathBuf> {
    if let Some(p) = std::env::var_os("DELIVER_PLUGIN_PATH") {
        return std::env::split_paths(&p).collect();
    }
    let mut dirs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(d) = exe.parent() {
            dirs.push(d.to_owned());
            dirs.push(d.join("plugins"));
            // Test and bench binaries live in target/<profile>/deps.
            if d.file_name().is_some_and(|n| n == "deps") {
                if let Some(p) = d.parent() {
                    dirs.push(p.to_owned());
                }
            }
        }
    }
    dirs
}

fn is_plugin_name(p: &Path) -> bool {
    let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.starts_with("libdeliver_plugin_") && name.ends_with(std::env::consts::DLL_SUFFIX)
}

impl Registry {
    /// The capabilities that pass `keep`, as messages name them:
    /// "h264 (libx264 in ffmpeg)", sorted, each once.
    pub fn describe(&self, keep: impl Fn(&CapabilityInfo) -> bool) -> Vec<String> {
        let mut v: Vec<String> = self
            .plugins
            .iter()
            .flat_map(|l| {
                l.capabilities.iter().filter(|c| keep(c)).map(move |c| {
                    format!("{} ({} in {})", c.name, c.implementation, l.plugin.name())
                })
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Loads every `libdeliver_plugin_*` library in `dirs` (missing
    /// directories are skipped). A plugin that is refused is kept in
    /// `refused` and logged; the others still load.
    pub fn load(dirs: &[PathBuf]) -> Registry {
        let mut reg = Registry {
            isolated: std::env::var("DELIVER_ISOLATE")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Registry::default()
        };
        let mut seen = std::collections::BTreeSet::new();
        for dir in dirs {
            let rd = match std::fs::read_dir(dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    reg.refused.push(PluginError::Dir {
                        dir: dir.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| is_plugin_name(p))
                .collect();
            files.sort();
            for f in files {
                let name = f.file_name().map(|n| n.to_owned());
                if !seen.insert(name) {
                    continue; // the first directory wins, like PATH
                }
                match load_file(&f) {
                    Ok(l) => {
                        tracing::info!(
                            file = %f.display(),
                            plugin = %l.plugin.name(),
                            version = %l.plugin.version(),
                            "plugin loaded"
                        );
                        reg.plugins.push(l);
                    }
                    Err(e) => {
                        tracing::error!("{e}");
                        reg.refused.push(e);
                    }
                }
            }
        }
        reg
    }

    /// The process-wide registry, loaded once from `dirs` (later calls return
    /// the first one: libraries are never unloaded or reloaded).
    pub fn global(dirs: &[PathBuf]) -> &'static Registry {
        static REG: OnceLock<Registry> = OnceLock::new();
        REG.get_or_init(|| Registry::load(dirs))
    }

    /// The best plugin for a capability: `name` is a codec or container,
    /// `want` an optional plugin name or implementation name that must match.
    pub fn find(&self, kind: u32, name: &str, want: Option<&str>) -> Option<Choice> {
        self.candidates(kind, name, want)
            .into_iter()
            .max_by_key(|c| (c.capability.name == name, c.capability.rank))
    }

    /// Every capability [`Registry::find`] chooses from, in load order.
    pub fn candidates(&self, kind: u32, name: &str, want: Option<&str>) -> Vec<Choice> {
        self.plugins
            .iter()
            .flat_map(|l| {
                let isolation = self.isolation_of(&l.plugin.name());
                l.capabilities.iter().map(move |c| Choice {
                    plugin: l.plugin,
                    capability: c.clone(),
                    file: l.file.clone(),
                    isolation,
                })
            })
            .filter(|c| {
                c.capability.kind == kind && (c.capability.name == name || c.capability.name == "*")
            })
            .filter(|c| {
                want.is_none_or(|w| c.capability.implementation == w || c.plugin.name() == w)
            })
            .collect()
    }

    /// Where the plugin named `name` runs its encoders by the host's
    /// setting (`DELIVER_ISOLATE`); a preset or root may still ask for
    /// `process`.
    pub fn isolation_of(&self, name: &str) -> Isolation {
        if self.isolated.iter().any(|i| i == "*" || i == name) {
            Isolation::Process
        } else {
            Isolation::InProcess
        }
    }

    /// What is available for a kind, for error messages.
    pub fn available(&self, kind: u32) -> Vec<String> {
        let mut v: Vec<String> = self
            .plugins
            .iter()
            .flat_map(|l| {
                l.capabilities
                    .iter()
                    .filter(move |c| c.kind == kind)
                    .map(move |c| {
                        format!("{} ({} in {})", c.name, c.implementation, l.plugin.name())
                    })
            })
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
