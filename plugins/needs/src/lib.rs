//! The `needs` plugin: declares capabilities (`exec sh`, `network 127.0.0.1`, `env TOKEN`, `write
//! /var/empty/kiln-needs`), so kiln's tests can check
//! that a registry plugin gets what it declares and is granted, and nothing else. Not embedded.
//!
//! `needs env NAME` prints a variable, `needs exec PROGRAM ARGS…` runs a host program, `needs net
//! HOST:PORT` opens a TCP connection.

use kiln_sdk::{Command, Context, Outcome, Plugin, exec, log};

struct Needs;

impl Plugin for Needs {
    fn run(args: Vec<String>, context: Context) -> Outcome {
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        match words.as_slice() {
            ["env", name] => {
                log::info(&format!("{name}={}", context.var(name).unwrap_or("")));
                Outcome::success()
            }
            ["exec", argv @ ..] => {
                let mut command = Command::new(argv.iter().copied(), &context);
                command.capture_stdout = true;
                match exec::run(&command) {
                    Ok(exit) if exit.success() => {
                        log::info(&format!(
                            "stdout: {}",
                            String::from_utf8_lossy(&exit.stdout)
                        ));
                        Outcome::success()
                    }
                    Ok(exit) => Outcome::failure(exit.code.unwrap_or(1), format!("{exit:?}")),
                    Err(e) => Outcome::failure(1, e),
                }
            }
            ["net", addr] => match std::net::TcpStream::connect(addr) {
                Ok(_) => {
                    log::info(&format!("connected to {addr}"));
                    Outcome::success()
                }
                Err(e) => Outcome::failure(1, format!("cannot connect to {addr}: {e}")),
            },
            _ => Outcome::failure(2, format!("needs does not know `{}`", words.join(" "))),
        }
    }
}

// Every kind, multi-line with trailing commas, as authors write it.
kiln_sdk::plugin!(Needs, capabilities: {
    exec: ["sh"],
    network: ["127.0.0.1"],
    env: ["TOKEN"],
    write: ["/var/empty/kiln-needs"],
});
