//! Command-line parsing for the `tickcast` binary: words in, a [`Config`] out.
//!
//! Hand-written on purpose: a dozen flags do not need a framework, and every
//! error names the flag and says what would be accepted. The library never reads
//! `std::env::args` itself; the binary passes them in.

use std::ffi::OsString;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use crate::Config;

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run a server with this configuration.
    Run {
        /// The server's settings.
        config: Box<Config>,
        /// `--stdin`: broadcast every line of standard input.
        publish_stdin: bool,
        /// `--publish-token-file`: the binary reads the publish token from this file
        /// (the library reads no files of its own).
        publish_token_file: Option<PathBuf>,
    },
    /// Print [`help`] and exit.
    Help,
    /// Print the version and exit.
    Version,
}

/// A command-line mistake, with a message meant for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The `--help` text, with every default.
pub fn help() -> String {
    let d = Config::default();
    format!(
        "tickcast {version} — pushes the server's clock to every connected WebSocket client

USAGE:
    tickcast [OPTIONS]

OPTIONS:
    --ws-addr ADDR                  WebSocket listener, path /echo [default: {ws}]
    --http-addr ADDR|off            page, /config.json, /healthz, /metrics [default: {http}]
    --interval DURATION|off         time between ticks, e.g. 250ms, 1s, 2m [default: 1s]
    --public DIR                    serve the page from DIR instead of the built-in copy
    --max-clients N                 most clients (WebSocket and SSE) at once; beyond: 503
                                    [default: what this machine can hold, see the log]
    --max-message-size BYTES        largest client message; larger closes with 1009 [default: 1MiB]
    --max-backlog BYTES             unsent bytes per client before it is cut off [default: 2MiB]
    --heartbeat DURATION|off        ping clients this often; cut off silent ones [default: 30s]
    --allowed-origin ORIGIN         only browsers from ORIGIN (e.g. https://example.com) may
                                    connect; repeatable [default: every origin]
    --handshake-timeout DURATION    time to send the whole handshake request [default: 10s]
    --max-header-size BYTES         largest handshake request head; larger gets 431 [default: 8KiB]
    --max-http-connections N        most HTTP connections at once (SSE streams count as
                                    clients); beyond, the oldest idle one is closed [default: {http_conns}]
    --http-request-timeout DURATION time for an HTTP request head to arrive [default: {http_request}s]
    --http-idle-timeout DURATION    idle time before a kept-alive HTTP connection is
                                    closed [default: {http_idle}s]
    --stdin                         broadcast every line of standard input as {{\"type\":\"line\",…}}
    --publish on|off                POST /publish on the HTTP port [default: on]
    --publish-token TOKEN           publishers must send Authorization: Bearer TOKEN
                                    [default: none: only this machine (loopback) may publish]
    --publish-token-file PATH       read TOKEN from PATH (or set TICKCAST_PUBLISH_TOKEN),
                                    so that it is not on the command line
    --history N                     published events kept for clients that resume
                                    (?since=, Last-Event-ID); 0 keeps none [default: 1000]
    --history-bytes BYTES           most bytes of text the history holds
                                    [default: half of --max-backlog]
    --redis URL                     join the cluster of every node on this Redis, e.g.
                                    redis://127.0.0.1:6379, or redis://:PASSWORD@HOST (or set
                                    TICKCAST_REDIS); needs --features redis [default: off]
    --redis-key PREFIX              prefix of the cluster's Redis keys [default: tickcast]
    --flash-policy-addr ADDR        legacy Flash socket policy server, e.g. 0.0.0.0:843 [default: off]
    --flash-policy-allow DOMAIN:PORTS
                                    a policy rule, e.g. *.example.com:80,443; repeatable
                                    [default: *:<the WebSocket port>]
    -h, --help                      print this help
    -V, --version                   print the version

ADDR is HOST:PORT (port 0 picks a free port). DURATION is a number and a unit: ms,
s, m (or min), h. BYTES is a number with an optional unit: KiB, MiB, GiB (or K, M, G)
are powers of 1024; kB, MB, GB powers of 1000. Logging: RUST_LOG=error|warn|info|debug
[default: info]. SIGINT or SIGTERM closes every client with 1001 and exits.
Live stream in a terminal: curl -N http://127.0.0.1:8080/events",
        version = env!("CARGO_PKG_VERSION"),
        ws = d.ws_addr,
        http = d.http_addr.map_or("off".to_string(), |a| a.to_string()),
        http_conns = d.max_http_connections,
        http_request = d.http_request_timeout.as_secs(),
        http_idle = d.http_idle_timeout.as_secs(),
    )
}

/// Parses the arguments after the program name.
///
/// Accepts `--flag value` and `--flag=value`.
///
/// # Errors
///
/// A [`UsageError`] naming the flag for an unknown flag, a missing value, or a
/// value that does not parse.
pub fn parse_args<I>(args: I) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    parse_args_resolving(args, resolve)
}

/// [`parse_args`] with the host-name lookup for `ADDR` values passed in, so the
/// fuzz targets can parse without touching the system resolver (see `fuzzing`).
pub(crate) fn parse_args_resolving<I>(
    args: I,
    resolve: fn(&str) -> Option<SocketAddr>,
) -> Result<Command, UsageError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut config = Config::default();
    let mut publish_stdin = false;
    let mut publish_token_file = None;
    let mut args = args.into_iter().map(Into::into);
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| UsageError(format!("argument {a:?} is not valid UTF-8")))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        let mut value = || -> Result<String, UsageError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| UsageError(format!("{flag} needs a value (see --help)"))),
            }
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--ws-addr" => config.ws_addr = parse_addr(&flag, &value()?, resolve)?,
            "--http-addr" => {
                let v = value()?;
                config.http_addr = if v == "off" {
                    None
                } else {
                    Some(parse_addr(&flag, &v, resolve)?)
                };
            }
            "--interval" => {
                let v = value()?;
                config.interval = if v == "off" {
                    None
                } else {
                    Some(parse_duration(&v).map_err(|e| flag_error(&flag, &v, &e))?)
                };
            }
            "--public" => config.public_dir = Some(PathBuf::from(value()?)),
            "--heartbeat" => {
                let v = value()?;
                config.heartbeat = if v == "off" {
                    None
                } else {
                    Some(parse_duration(&v).map_err(|e| flag_error(&flag, &v, &e))?)
                };
            }
            "--allowed-origin" => config.allowed_origins.push(value()?),
            "--stdin" | "--publish-stdin" => publish_stdin = true,
            "--publish" => {
                let v = value()?;
                config.publish = match v.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => return Err(flag_error(&flag, &v, "expected on or off")),
                };
            }
            "--publish-token" => config.publish_token = Some(value()?),
            "--publish-token-file" => publish_token_file = Some(PathBuf::from(value()?)),
            "--flash-policy-addr" => {
                config.flash_policy_addr = Some(parse_addr(&flag, &value()?, resolve)?);
            }
            "--flash-policy-allow" => {
                let v = value()?;
                crate::flash_policy::parse_allow(&v).map_err(|e| flag_error(&flag, &v, &e))?;
                config.flash_policy_allow.push(v);
            }
            "--handshake-timeout" => {
                let v = value()?;
                config.handshake_timeout =
                    parse_duration(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--max-header-size" => {
                let v = value()?;
                config.max_handshake_size =
                    parse_size(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--max-clients" => config.max_clients = Some(parse_count(&flag, &value()?)?),
            "--max-http-connections" => {
                config.max_http_connections = parse_count(&flag, &value()?)?;
            }
            "--http-request-timeout" => {
                let v = value()?;
                config.http_request_timeout =
                    parse_duration(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--http-idle-timeout" => {
                let v = value()?;
                config.http_idle_timeout =
                    parse_duration(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--max-message-size" => {
                let v = value()?;
                config.max_message_size = parse_size(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--max-backlog" => {
                let v = value()?;
                config.max_backlog = parse_size(&v).map_err(|e| flag_error(&flag, &v, &e))?;
            }
            "--history" => {
                let v = value()?;
                config.history = v.parse().map_err(|_| {
                    flag_error(&flag, &v, "expected a count, e.g. 1000 (0 keeps none)")
                })?;
            }
            "--redis" => config.redis = Some(value()?),
            "--redis-key" => config.redis_key = value()?,
            "--history-bytes" => {
                let v = value()?;
                config.history_bytes = Some(parse_size(&v).map_err(|e| flag_error(&flag, &v, &e))?);
            }
            // Escaped: the message must stay one line, with no raw control bytes.
            other if other.starts_with('-') => {
                return Err(UsageError(format!(
                    "unknown flag {} (see --help for the list)",
                    other.escape_debug()
                )))
            }
            other => {
                return Err(UsageError(format!(
                    "unexpected argument {other:?}; tickcast takes only flags (see --help)"
                )))
            }
        }
    }
    Ok(Command::Run {
        config: Box::new(config),
        publish_stdin,
        publish_token_file,
    })
}

/// Names such as `localhost:8080` resolve through the system resolver.
fn resolve(value: &str) -> Option<SocketAddr> {
    value.to_socket_addrs().ok().and_then(|mut a| a.next())
}

/// A whole number above 0, e.g. for `--max-clients`.
fn parse_count(flag: &str, value: &str) -> Result<usize, UsageError> {
    value
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| flag_error(flag, value, "expected a whole number above 0"))
}

fn flag_error(flag: &str, value: &str, why: &str) -> UsageError {
    UsageError(format!("{flag}: invalid value {value:?}: {why}"))
}

fn parse_addr(
    flag: &str,
    value: &str,
    resolve: fn(&str) -> Option<SocketAddr>,
) -> Result<SocketAddr, UsageError> {
    if let Ok(addr) = value.parse() {
        return Ok(addr);
    }
    resolve(value).ok_or_else(|| {
        flag_error(
            flag,
            value,
            "expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:40132",
        )
    })
}

/// Parses a duration such as `250ms`, `1s`, `1.5s`, `2m` or `1h`.
///
/// # Errors
///
/// A message saying what is accepted, for a missing unit, a bad number or zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    const ACCEPTED: &str =
        "expected a number and a unit (ms, s, m or min, h), e.g. 250ms, 1.5s, 2m or 1h";
    const RANGE: &str = "must be more than 0 and at most a day";
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| ACCEPTED.to_string())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| ACCEPTED.to_string())?;
    let seconds_per_unit = match unit {
        "ms" => 0.001,
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => return Err(ACCEPTED.to_string()),
    };
    let seconds = number * seconds_per_unit;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0) {
        return Err(RANGE.to_string());
    }
    // Below half a nanosecond, a positive number still rounds to zero.
    let duration = Duration::from_secs_f64(seconds);
    if duration.is_zero() {
        return Err(RANGE.to_string());
    }
    Ok(duration)
}

/// Parses a byte count such as `65536`, `64KiB`, `1MiB` or `1M` (powers of 1024),
/// or `1MB` (a million: SI units keep their meaning).
///
/// # Errors
///
/// A message saying what is accepted, for a bad number, an unknown unit, zero or
/// an overflow.
pub fn parse_size(text: &str) -> Result<usize, String> {
    const ACCEPTED: &str = "expected a number of bytes with an optional unit: B; KiB, MiB, GiB \
                            (or K, M, G: powers of 1024); kB, MB, GB (powers of 1000); \
                            e.g. 65536, 64KiB or 1MB";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().map_err(|_| ACCEPTED.to_string())?;
    let multiplier: usize = match unit {
        "" | "B" => 1,
        "K" | "KiB" | "k" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        // SI units mean what they say: a megabyte is a million bytes.
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(ACCEPTED.to_string()),
    };
    let bytes = number
        .checked_mul(multiplier)
        .ok_or_else(|| "too large".to_string())?;
    if bytes == 0 {
        return Err("must be more than 0".to_string());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Config {
        match parse_args(args.iter().copied()) {
            Ok(Command::Run { config, .. }) => *config,
            other => panic!("{other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        parse_args(args.iter().copied()).unwrap_err().0
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "", "1", "s", "0s", "-1s", "25h", "1d", "1e9s", "..s", "99999m",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    /// Found by the `cli` fuzz property: a positive number too small for a
    /// nanosecond was accepted as a zero duration.
    #[test]
    fn durations_that_round_to_zero_are_refused() {
        assert!(parse_duration("0.0000000001s").is_err());
        assert!(parse_duration("0.0000001ms").is_err());
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("64kB"), Ok(64_000));
        for bad in ["", "0", "1TB", "KiB", "-1", "1mb", "99999999999999999999G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_fill_the_config() {
        let c = config(&[
            "--ws-addr",
            "127.0.0.1:0",
            "--http-addr=off",
            "--interval",
            "250ms",
            "--max-clients",
            "5",
            "--max-backlog=4MiB",
            "--max-http-connections",
            "7",
            "--http-request-timeout=2s",
            "--http-idle-timeout",
            "500ms",
        ]);
        assert_eq!(c.ws_addr.port(), 0);
        assert_eq!(c.http_addr, None);
        assert_eq!(c.interval, Some(Duration::from_millis(250)));
        assert_eq!(c.max_clients, Some(5));
        assert_eq!(c.max_backlog, 4 << 20);
        assert_eq!(c.max_http_connections, 7);
        assert_eq!(c.http_request_timeout, Duration::from_secs(2));
        assert_eq!(c.http_idle_timeout, Duration::from_millis(500));
        let c = config(&[
            "--heartbeat=off",
            "--allowed-origin",
            "https://a.example",
            "--allowed-origin=http://b.example:8080",
            "--handshake-timeout",
            "2s",
            "--max-header-size",
            "16KiB",
            "--history=0",
            "--history-bytes",
            "64KiB",
        ]);
        assert_eq!(c.history, 0);
        assert_eq!(c.history_bytes, Some(64 << 10));
        assert_eq!(c.heartbeat, None);
        assert_eq!(
            c.allowed_origins,
            ["https://a.example", "http://b.example:8080"]
        );
        assert_eq!(c.handshake_timeout, Duration::from_secs(2));
        assert_eq!(c.max_handshake_size, 16 << 10);
    }

    #[test]
    fn errors_name_the_flag() {
        assert!(error(&["--bogus"]).contains("--bogus"));
        assert!(error(&["--interval", "soon"]).contains("--interval"));
        assert!(error(&["--interval"]).contains("needs a value"));
        assert!(error(&["--max-clients", "0"]).contains("--max-clients"));
        assert!(error(&["--history", "-1"]).contains("--history"));
        assert!(error(&["--ws-addr", "nowhere"]).contains("--ws-addr"));
        assert!(error(&["stray"]).contains("stray"));
    }

    /// Found by the `cli` fuzz target: an unknown flag was echoed raw, so a newline
    /// or a terminal escape in it broke the one-line error.
    #[test]
    fn unknown_flags_are_escaped_into_one_line() {
        let err = error(&["--bo\ngus\u{1b}[31m"]);
        assert!(!err.chars().any(char::is_control), "{err:?}");
        assert!(err.contains(r"--bo\ngus\u{1b}[31m"), "{err}");
        assert!(error(&["--bogus"]).contains("unknown flag --bogus "));
    }

    #[test]
    fn help_shows_defaults() {
        let help = help();
        assert!(help.contains("127.0.0.1:40132"));
        assert!(help.contains("[default: 1s]"));
    }
}
