//! The `tickcast` binary: parse flags, start logging, run the server until SIGINT or
//! SIGTERM, shut down gracefully. Everything else lives in the library.

use std::process::ExitCode;

use tickcast::cli::{self, Command};
use tickcast::Server;

fn main() -> ExitCode {
    let (mut config, publish_stdin, token_file) = match cli::parse_args(std::env::args_os().skip(1))
    {
        Ok(Command::Run {
            config,
            publish_stdin,
            publish_token_file,
        }) => (config, publish_stdin, publish_token_file),
        Ok(Command::Help) => return print(&cli::help()),
        Ok(Command::Version) => return print(&format!("tickcast {}", env!("CARGO_PKG_VERSION"))),
        Err(e) => {
            eprintln!("tickcast: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = read_secrets(&mut config, token_file) {
        eprintln!("tickcast: {e}");
        return ExitCode::from(2);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    // Catch SIGINT/SIGTERM before the server announces itself: a script that
    // stops it as soon as it sees the URL must still get a graceful shutdown.
    let stop_signals = StopSignals::install();

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
    if publish_stdin {
        start_stdin_publisher(&server);
    }
    stop_signals.wait();
    log::info!("stopping: closing every client with 1001");
    server.shutdown();
    ExitCode::SUCCESS
}

/// Writes `text` and a newline to standard output. A reader that has gone
/// (`tickcast --help | head -1`) is not an error: the output just ends there, as
/// any Unix tool's does (`println!` would panic instead).
fn print(text: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tickcast: cannot write to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The publish token from `--publish-token-file`, or else the
/// `TICKCAST_PUBLISH_TOKEN` environment variable, unless `--publish-token` gave
/// one, and the Redis URL from `TICKCAST_REDIS` unless `--redis` gave one: ways
/// to keep secrets off the command line, where other users of the machine can
/// read them. Read here, in the binary: the library reads neither files
/// nor the environment of its own accord.
fn read_secrets(
    config: &mut tickcast::Config,
    file: Option<std::path::PathBuf>,
) -> Result<(), String> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "--publish-token-file {:?}: cannot read it: {e}",
                path.display().to_string()
            )
        })?;
        config.publish_token = Some(text.trim_end_matches(['\n', '\r']).to_string());
    } else if config.publish_token.is_none() {
        if let Ok(token) = std::env::var("TICKCAST_PUBLISH_TOKEN") {
            config.publish_token = Some(token);
        }
    }
    // The cluster's Redis URL may hold a password: it may come from the
    // environment too.
    if config.redis.is_none() {
        if let Ok(url) = std::env::var("TICKCAST_REDIS") {
            config.redis = Some(url);
        }
    }
    Ok(())
}

/// The longest line taken from standard input; longer lines are cut.
const MAX_LINE: usize = 64 << 10;

/// Broadcasts every line of standard input from a thread of its own (`stdin`).
/// End of input leaves the server running, as `tail -f … | tickcast --stdin` users
/// expect when the producer restarts.
fn start_stdin_publisher(server: &Server) {
    let publisher = server.publisher();
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin().lock();
            match tickcast::publish_lines(stdin, &publisher, MAX_LINE) {
                Ok(done) => log::info!(
                    "end of standard input after {} lines ({} had invalid UTF-8, replaced); \
                     still serving",
                    done.lines,
                    done.invalid_utf8
                ),
                Err(e) => log::warn!("reading standard input failed: {e}; still serving"),
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot read standard input: {e}");
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, caught so they stop the server gracefully.
#[cfg(unix)]
struct StopSignals(Option<signal_hook::iterator::Signals>);

#[cfg(unix)]
impl StopSignals {
    fn install() -> StopSignals {
        use signal_hook::consts::{SIGINT, SIGTERM};
        match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(signals) => StopSignals(Some(signals)),
            Err(e) => {
                log::warn!(
                    "cannot handle SIGINT/SIGTERM ({e}); they will stop the server abruptly"
                );
                StopSignals(None)
            }
        }
    }

    /// Blocks until one of the signals arrives.
    fn wait(self) {
        match self.0 {
            Some(mut signals) => {
                signals.forever().next();
            }
            None => loop {
                std::thread::park();
            },
        }
    }
}

/// Without Unix signals, Ctrl-C ends the process at once (no graceful close).
#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn install() -> StopSignals {
        StopSignals
    }

    fn wait(self) {
        loop {
            std::thread::park();
        }
    }
}
