//! The one kind of flag the small measuring tools (`sendcost`, `thread-floor`)
//! take: `--name N`.

/// The number after `name` on the command line, or `default` if it is absent
/// or not a number.
pub fn number(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
