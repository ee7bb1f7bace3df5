//! The `probe` plugin: pokes at the sandbox's boundaries so kiln's tests can check them. Not embedded
//! in kiln; the tests load it with `--plugin`.
//!
//! `probe read PATH` prints a file, `probe write PATH TEXT` writes one, `probe spin` loops forever,
//! `probe alloc MIB` allocates and touches that much memory, `probe env NAME` prints a variable,
//! `probe exec PROGRAM ARGS…` runs a host program, `probe connect HOST:PORT` opens a TCP connection,
//! `probe args …` prints its arguments, `probe set K V` and `probe unset K` return those env changes,
//! `probe cd DIR` returns DIR as the session's directory, `probe panic MSG` panics, `probe net
//! HOST:PORT` resolves a name and connects, `probe log LEVEL MSG` writes through the `log` crate, `probe
//! pwd` prints the current directory.
//!
//! It declares no capabilities: a local test plugin.

use kiln_sdk::{Command, Context, Outcome, Plugin, exec, files, log};

struct Probe;

impl Plugin for Probe {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["read", path] => match std::fs::read_to_string(path) {
                Ok(text) => {
                    log::info(&format!("read {path}: {text}"));
                    Outcome::success()
                }
                Err(e) => Outcome::failure(1, format!("cannot read {path}: {e}")),
            },
            ["set", name, value] => Outcome::success().set(*name, *value),
            ["unset", name] => Outcome::success().unset(*name),
            ["cd", dir] => Outcome::success().cwd(*dir),
            ["panic", message] => panic!("{message}"),
            ["pwd"] => match std::env::current_dir() {
                Ok(dir) => {
                    log::info(&format!("pwd: {}", dir.display()));
                    Outcome::success()
                }
                Err(e) => Outcome::failure(1, format!("no current directory: {e}")),
            },
            ["log", level, message] => {
                match *level {
                    "debug" => ::log::debug!("{message}"),
                    "warn" => ::log::warn!("{message}"),
                    "error" => ::log::error!("{message}"),
                    _ => ::log::info!("{message}"),
                }
                Outcome::success()
            }
            ["net", addr] => {
                use std::net::ToSocketAddrs;
                let connected =
                    addr.to_socket_addrs()
                        .map_err(|e| e.to_string())
                        .and_then(|mut all| {
                            let first = all.next().ok_or_else(|| "no address".to_string())?;
                            std::net::TcpStream::connect(first).map_err(|e| e.to_string())
                        });
                match connected {
                    Ok(_) => {
                        log::info(&format!("connected to {addr}"));
                        Outcome::success()
                    }
                    Err(e) => Outcome::failure(1, format!("cannot connect to {addr}: {e}")),
                }
            }
            ["write", path, text] => match std::fs::write(path, text) {
                Ok(()) => Outcome::success(),
                Err(e) => Outcome::failure(1, format!("cannot write {path}: {e}")),
            },
            ["copy", from, to] => match files::copy(from, to) {
                Ok(n) => {
                    log::info(&format!("copied {n} bytes"));
                    Outcome::success()
                }
                Err(e) => Outcome::failure(1, e),
            },
            ["spin"] => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            ["alloc", mib] => {
                let mib: usize = mib.parse().unwrap_or(1);
                let mut blocks = Vec::new();
                for _ in 0..mib {
                    blocks.push(vec![1u8; 1 << 20]);
                }
                log::info(&format!("allocated {} MiB", blocks.len()));
                Outcome::success()
            }
            ["connect", addr] => match std::net::TcpStream::connect(addr) {
                Ok(_) => {
                    log::info(&format!("connected to {addr}"));
                    Outcome::success()
                }
                Err(e) => Outcome::failure(1, format!("cannot connect to {addr}: {e}")),
            },
            ["env", name] => {
                log::info(&format!("{name}={}", context.var(name).unwrap_or("")));
                Outcome::success()
            }
            ["exec", argv @ ..] => match exec::run(&Command::new(argv.iter().copied(), &context)) {
                Ok(exit) if exit.success() => Outcome::success(),
                Ok(exit) => Outcome::failure(exit.code.unwrap_or(1), format!("{exit:?}")),
                Err(e) => Outcome::failure(1, e),
            },
            ["args", rest @ ..] => {
                log::info(&format!("args: {}", rest.join("|")));
                Outcome::success()
            }
            _ => Outcome::failure(2, format!("probe does not know `{}`", words.join(" "))),
        }
    }
}

kiln_sdk::plugin!(Probe);
