//! The versioned C ABI between the `deliver` host and its codec plugins.
//!
//! A plugin is a `cdylib` that exports one symbol, [`abi::ENTRY_SYMBOL`],
//! returning a [`abi::PluginDescriptor`]: ABI version, struct size, a
//! capability table and a vtable of decoder, encoder and muxer entry points.
//! Plugin authors implement the traits in [`plugin`] and export them:
//!
//! ```
//! use deliver_plugin_api::plugin::{CapabilitySpec, Plugin, Unsupported};
//!
//! struct Nothing;
//! impl Plugin for Nothing {
//!     const NAME: &'static str = "nothing";
//!     const VERSION: &'static str = "0.1.0";
//!     const DESCRIPTION: &'static str = "offers no capability";
//!     type FileDecoder = Unsupported;
//!     type StreamDecoder = Unsupported;
//!     type Encoder = Unsupported;
//!     type Muxer = Unsupported;
//!     fn capabilities() -> Vec<CapabilitySpec> {
//!         Vec::new()
//!     }
//! }
//! deliver_plugin_api::export_plugin!(Nothing);
//!
//! // The host calls the entry point once and checks the version.
//! let desc = unsafe { &*deliver_plugin_entry(std::ptr::null()) };
//! assert_eq!(desc.abi_major, deliver_plugin_api::abi::ABI_MAJOR);
//! ```
//!
//! The host side uses [`host::PluginRef`] and its owning handles.

pub mod abi;
pub mod host;
pub mod plugin;
