//! The `tickcast` binary: parse flags, start logging, run the server until SIGINT or
//! SIGTERM, shut down gracefully. Everything else lives in the library.

use std::process::ExitCode;

use tickcast::cli::{self, Command};
use tickcast::Server;

fn main() -> ExitCode {
    let config = match cli::parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            println!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("tickcast {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tickcast: {e}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();

    let server = match Server::start(*config) {
        Ok(server) => server,
        Err(tickcast::Error::InvalidConfig(msg)) => {
            eprintln!("tickcast: {msg}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("tickcast: {e}");
            return ExitCode::FAILURE;
        }
    };
    wait_for_stop_signal();
    log::info!("stopping: closing every client with 1001");
    server.shutdown();
    ExitCode::SUCCESS
}

/// Blocks until SIGINT (Ctrl-C) or SIGTERM arrives.
#[cfg(unix)]
fn wait_for_stop_signal() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(mut signals) => {
            signals.forever().next();
        }
        Err(e) => {
            log::warn!("cannot handle SIGINT/SIGTERM ({e}); stop with kill -9");
            loop {
                std::thread::park();
            }
        }
    }
}

/// Without Unix signals, Ctrl-C ends the process at once (no graceful close).
#[cfg(not(unix))]
fn wait_for_stop_signal() {
    loop {
        std::thread::park();
    }
}
