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
//!         // The `log` crate's macros reach the build log (add `log = "0.4"` to your dependencies).
//!         log::info!("hello from {} in {}", args.join(" "), context.phase);
//!         Outcome::success().set("GREETED", "yes")
//!     }
//! }
//!
//! kiln_sdk::plugin!(Hello);
//! ```
//!
//! Then `kiln build --plugin hello=target/wasm32-wasip2/release/hello.wasm` runs `hello world` lines of a
//! buildspec through it, and `kiln plugin run hello.wasm -- world` runs it once, as a test harness.
//!
//! What kiln does around [`Plugin::run`]: the plugin's current directory is [`Context::cwd`] (so
//! relative paths work), the [`log`](https://docs.rs/log) crate's macros write to the build log
//! (prefixed with the plugin's name), and a panic becomes one line, `panicked at FILE:LINE:COL:
//! MESSAGE`, which kiln shows as the step's failure.
//!
//! The returned [`Outcome`] carries changes to the build's session: [`Outcome::set`] and
//! [`Outcome::unset`] change one variable each (everything else stays as it was), [`Outcome::cwd`]
//! moves the session to a directory, which must exist inside the step's preopened directories.
//!
//! What a plugin may touch is decided by kiln's policy for the step, not by the plugin: the directories
//! in [`Context::preopens`] through `std::fs`, the variables in [`Context::env`], and host programs
//! through [`exec`] when the policy allows it. A plugin shared through a registry gets only what it
//! declares in [`plugin!`] (`capabilities: { exec: [..], network: [..], env: [..], write: [..] }`) and
//! its user grants in `kiln.lock`.
//!
//! The interface is the WIT package `kiln:plugin@0.1.1` in `sdk/wit/` (world `plugin`); this crate is
//! its Rust face. `plugin!` also embeds custom sections in the component: `kiln:api-version` (the
//! interface version, which kiln checks before it runs anything), `kiln:capabilities`, and the crate's
//! `description`, `licenses`, `source`, `version`, `homepage` and `authors` from its Cargo.toml.

// The generated export macro names this crate by its path, also from inside it.
extern crate self as kiln_sdk;

#[doc(hidden)]
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "kiln_sdk::bindings",
    });
}

/// Runs a built plugin through kiln's sandbox from `cargo test` (on the host, not in the plugin).
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use bindings::kiln::plugin::exec::{Command, Exit};
pub use bindings::kiln::plugin::types::{
    Context, EnvChange, EnvVar, Preopen, StepOutcome as Outcome,
};

/// The WIT package version this SDK speaks; kiln checks it (the `kiln:api-version` section) when it
/// loads a plugin.
pub const INTERFACE_VERSION: &str = "0.1.1";

/// A step plugin: kiln calls [`Plugin::run`] once per step, in a fresh instance.
pub trait Plugin {
    /// Runs the step. `args` are the command line's words after the plugin's name.
    fn run(args: Vec<String>, context: Context) -> Outcome;
}

/// Exports a [`Plugin`] implementation as the component's `entry` interface, and embeds what kiln
/// reads before running it: the interface version, the capabilities the plugin needs, and its
/// crate's metadata.
///
/// ```ignore
/// kiln_sdk::plugin!(Checksum);
/// kiln_sdk::plugin!(Release, capabilities: {
///     exec: ["git"],
///     network: ["api.github.com"],
///     env: ["GITHUB_TOKEN"],
///     write: ["/var/cache/release"],
/// });
/// ```
///
/// Each kind of capability is optional, in this order. Programs are named as `exec` gets them (`git`,
/// or an absolute path); network entries are host names or addresses; `env` names the variables the
/// plugin may see (a registry plugin sees only those and a few basics such as `PATH` and `HOME`);
/// `write` names absolute directories outside the build's own that it writes.
#[macro_export]
macro_rules! plugin {
    ($plugin:ty $(,)?) => {
        $crate::plugin!($plugin, capabilities: {});
    };
    ($plugin:ty, capabilities: {
        $(exec: [$($exec:literal),* $(,)?] $(,)?)?
        $(network: [$($network:literal),* $(,)?] $(,)?)?
        $(env: [$($env:literal),* $(,)?] $(,)?)?
        $(write: [$($write:literal),* $(,)?] $(,)?)?
    } $(,)?) => {
        #[doc(hidden)]
        pub struct __KilnPluginExport;

        impl $crate::bindings::exports::kiln::plugin::entry::Guest for __KilnPluginExport {
            fn run(args: ::std::vec::Vec<::std::string::String>, context: $crate::Context) -> $crate::Outcome {
                $crate::__prepare(&context);
                <$plugin as $crate::Plugin>::run(args, context)
            }
        }

        $crate::bindings::__export_plugin!(__KilnPluginExport with_types_in $crate::bindings);

        // Custom sections of the core module, which the component keeps: `env!` expands here, in the
        // plugin's crate, so the metadata is the plugin's.
        const _: () = {
            $crate::__section!("kiln:api-version", "0.1.1");
            $crate::__section!(
                "kiln:capabilities",
                ::core::concat!(
                    $($("exec ", $exec, "
",)*)?
                    $($("network ", $network, "
",)*)?
                    $($("env ", $env, "
",)*)?
                    $($("write ", $write, "
",)*)?
                )
            );
            $crate::__section!("description", ::core::env!("CARGO_PKG_DESCRIPTION"));
            $crate::__section!("licenses", ::core::env!("CARGO_PKG_LICENSE"));
            $crate::__section!("source", ::core::env!("CARGO_PKG_REPOSITORY"));
            $crate::__section!("version", ::core::env!("CARGO_PKG_VERSION"));
            $crate::__section!("homepage", ::core::env!("CARGO_PKG_HOMEPAGE"));
            $crate::__section!("authors", ::core::env!("CARGO_PKG_AUTHORS"));
        };
    };
}

/// One custom section holding `text`, in the crate that expands it.
#[doc(hidden)]
#[macro_export]
macro_rules! __section {
    ($name:literal, $text:expr) => {
        const _: () = {
            const TEXT: &str = $text;
            #[unsafe(link_section = $name)]
            #[used]
            static SECTION: [u8; TEXT.len()] = $crate::__bytes(TEXT);
        };
    };
}

/// The bytes of `text` as an array, for a section's static.
#[doc(hidden)]
pub const fn __bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N && i < bytes.len() {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

/// What every step does before the plugin's own code: the current directory, the `log` facade, the
/// panic line.
#[doc(hidden)]
pub fn __prepare(context: &Context) {
    // A cwd outside the preopens cannot be entered: relative paths then fail as they would anyway.
    let _ = std::env::set_current_dir(&context.cwd);
    if ::log::set_logger(&HostLogger).is_ok() {
        ::log::set_max_level(::log::LevelFilter::Trace);
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "Box<dyn Any>".to_string());
            let line = match info.location() {
                Some(at) => format!(
                    "panicked at {}:{}:{}: {}",
                    at.file(),
                    at.line(),
                    at.column(),
                    message
                ),
                None => format!("panicked: {message}"),
            };
            // One line: kiln shows it as the step's failure.
            log::error(&line.replace(['\r', '\n'], " "));
        }));
    }
}

/// The `log` crate's records, to the build log (kiln shows `debug` and `trace` only when verbose).
struct HostLogger;

impl ::log::Log for HostLogger {
    fn enabled(&self, _: &::log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &::log::Record) {
        use crate::bindings::kiln::plugin::log::{Level, write};
        let level = match record.level() {
            ::log::Level::Error => Level::Error,
            ::log::Level::Warn => Level::Warn,
            ::log::Level::Info => Level::Info,
            ::log::Level::Debug | ::log::Level::Trace => Level::Debug,
        };
        write(level, &record.args().to_string());
    }

    fn flush(&self) {}
}

impl Outcome {
    /// The step succeeded and changed nothing in the session.
    pub fn success() -> Self {
        Self {
            status: 0,
            message: None,
            env: Vec::new(),
            cwd: None,
        }
    }

    /// The step failed with `status` (non-zero) and a reason for the build log.
    pub fn failure(status: i32, message: impl Into<String>) -> Self {
        Self {
            status: if status == 0 { 1 } else { status },
            message: Some(message.into()),
            env: Vec::new(),
            cwd: None,
        }
    }

    /// Sets a variable of the session for the commands after this step.
    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push(EnvChange::Set((name.into(), value.into())));
        self
    }

    /// Removes a variable from the session.
    pub fn unset(mut self, name: impl Into<String>) -> Self {
        self.env.push(EnvChange::Unset(name.into()));
        self
    }

    /// Moves the session to a directory (relative to [`Context::cwd`], or absolute). kiln fails the
    /// step when it is not an existing directory inside the step's preopened directories.
    pub fn cwd(mut self, path: impl Into<String>) -> Self {
        self.cwd = Some(path.into());
        self
    }

    /// The sentence the build log shows for this outcome (`Reason: …` when it failed).
    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
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
