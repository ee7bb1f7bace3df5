//! Write kiln step plugins in Rust.
//!
//! A plugin is a WebAssembly component (WASI preview 2) that kiln runs as one step of a build: a
//! buildspec command whose first word is the plugin's name, or a built-in action. Implement
//! [`Plugin`], name your type in [`plugin!`], and build with `cargo build --target wasm32-wasip2`:
//!
//! ```ignore
//! use kiln_sdk::{Context, Outcome, Plugin};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn run(args: Vec<String>, context: Context) -> Outcome {
//!         kiln_sdk::log::info(&format!("hello from {} in {}", args.join(" "), context.phase));
//!         Outcome::success()
//!     }
//! }
//!
//! kiln_sdk::plugin!(Hello);
//! ```
//!
//! Then `kiln build --plugin hello=target/wasm32-wasip2/release/hello.wasm` runs `hello world` lines of a
//! buildspec through it, and `kiln plugin run hello.wasm -- world` runs it once, as a test harness.
//!
//! What a plugin may touch is decided by kiln's policy for the step, not by the plugin: the directories
//! in [`Context::preopens`] through `std::fs`, the variables in [`Context::env`], and host programs
//! through [`exec`] when the policy allows it. The interface is the WIT package `kiln:plugin@0.1.0` in
//! `sdk/wit/`; this crate is its Rust face.

// The generated export macro names this crate by its path, also from inside it.
extern crate self as kiln_sdk;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "step",
        pub_export_macro: true,
        export_macro_name: "__export_step",
        default_bindings_module: "kiln_sdk::bindings",
    });
}

pub use bindings::kiln::plugin::exec::{Command, Exit};
pub use bindings::kiln::plugin::types::{Context, EnvVar, Outcome, Preopen};

/// The WIT package version this SDK speaks; kiln checks it when it loads a plugin.
pub const INTERFACE_VERSION: &str = "0.1.0";

/// A step plugin: kiln calls [`Plugin::run`] once per step, in a fresh instance.
pub trait Plugin {
    /// Runs the step. `args` are the command line's words after the plugin's name.
    fn run(args: Vec<String>, context: Context) -> Outcome;
}

/// Exports a [`Plugin`] implementation as the component's `run`.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __KilnPluginExport;

        impl $crate::bindings::Guest for __KilnPluginExport {
            fn run(args: ::std::vec::Vec<::std::string::String>, context: $crate::Context) -> $crate::Outcome {
                <$plugin as $crate::Plugin>::run(args, context)
            }
        }

        $crate::bindings::__export_step!(__KilnPluginExport with_types_in $crate::bindings);
    };
}

impl Outcome {
    /// The step succeeded and changed nothing in the session.
    pub fn success() -> Self {
        Self {
            status: 0,
            message: None,
            env: None,
            cwd: None,
        }
    }

    /// The step failed with `status` (non-zero) and a reason for the build log.
    pub fn failure(status: i32, message: impl Into<String>) -> Self {
        Self {
            status: if status == 0 { 1 } else { status },
            message: Some(message.into()),
            env: None,
            cwd: None,
        }
    }

    /// Whether the step succeeded.
    pub fn is_success(&self) -> bool {
        self.status == 0
    }
}

impl Context {
    /// The value of a variable of the step's environment.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Command {
    /// A command for `argv` with the step's environment and current directory.
    pub fn new(argv: impl IntoIterator<Item = impl Into<String>>, context: &Context) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            env: context.env.clone(),
            cwd: context.cwd.clone(),
            stdin: None,
            capture_stdout: false,
        }
    }
}

impl Exit {
    /// Whether the program exited with status 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Writing to the build log. Lines are masked like the rest of the log.
pub mod log {
    use crate::bindings::kiln::plugin::log::{Level, write};

    /// A line at info level.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// A warning.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// An error line.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }

    /// A line shown only with `--verbose`.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }
}

/// File modes, which WASI does not carry, for paths inside the step's preopened directories.
pub mod files {
    /// The permission bits of a file (`0o755`).
    pub fn mode(path: &str) -> Result<u32, String> {
        crate::bindings::kiln::plugin::files::mode(path)
    }

    /// Sets the permission bits of a file in a writable preopened directory.
    pub fn set_mode(path: &str, mode: u32) -> Result<(), String> {
        crate::bindings::kiln::plugin::files::set_mode(path, mode)
    }

    /// Copies a regular file to a new file with its permission bits, done by the host in one call
    /// (the kernel's copy): much cheaper than reading and writing it through WASI. The source must
    /// be in a preopened directory, the destination (which must not exist) in a writable one.
    pub fn copy(source: &str, destination: &str) -> Result<u64, String> {
        crate::bindings::kiln::plugin::files::copy(source, destination)
    }
}

/// Running host programs, when the step's policy allows it.
pub mod exec {
    pub use crate::bindings::kiln::plugin::exec::{Command, Exit};

    /// Runs `command` to its end; its output streams to the build log unless captured.
    pub fn run(command: &Command) -> Result<Exit, String> {
        crate::bindings::kiln::plugin::exec::run(command)
    }
}
