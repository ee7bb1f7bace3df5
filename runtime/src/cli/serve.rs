//! `kiln serve`: the web page over pipelines, builds and deployments (see `kiln::serve`).

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use super::exit;
use super::options::GlobalArgs;

/// `kiln serve`.
#[derive(Args)]
#[command(after_help = "\
kiln serve prints one line on stdout, `kiln serve: http://ADDR/?token=TOKEN`: open that address to \
look and to answer approvals (the token is new at each start and sets a cookie; without it the \
pages are read-only). Anyone who can reach ADDR can read the pages: keep it on 127.0.0.1 unless \
the network is yours. Ctrl-C stops it.")]
pub struct ServeArgs {
    /// The address to listen on; port 0 picks a free one (the line printed says which).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "IP:PORT")]
    addr: SocketAddr,

    /// A deployment root whose deployments are shown (repeat for more) [default: the default
    /// root and every root deployed to with --root, remembered in the state dir]
    #[arg(long = "deployment-root", value_name = "DIR")]
    deployment_roots: Vec<PathBuf>,
}

/// Serves until stopped, and gives the exit code.
pub async fn run(global: &GlobalArgs, args: &ServeArgs) -> u8 {
    let state_dir = global.state_dir();
    let deployment_roots = if args.deployment_roots.is_empty() {
        let mut roots = vec![global.deploy_root()];
        roots.extend(kiln::deploy::roots::known(&state_dir));
        roots
    } else {
        args.deployment_roots.clone()
    };
    let listener = match tokio::net::TcpListener::bind(args.addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {}: {e}", args.addr);
            return exit::BAD_INPUT;
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: cannot read the address listened on: {e}");
            return exit::INTERNAL;
        }
    };
    let token = kiln::serve::new_token();
    {
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "kiln serve: http://{addr}/?token={token}");
        let _ = stdout.flush();
    }
    eprintln!("kiln serve: showing {} (Ctrl-C stops)", state_dir.display());
    let config = kiln::serve::Config {
        state_dir,
        deployment_roots,
        token,
    };
    // Stopping is kiln's own Ctrl-C handling (main.rs), which drops this future.
    match kiln::serve::serve(listener, config, std::future::pending()).await {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: kiln serve stopped: {e}");
            exit::INTERNAL
        }
    }
}
