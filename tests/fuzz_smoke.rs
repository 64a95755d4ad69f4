//! A fuzz smoke for `cargo test`: every seed in `scripts/fuzz/corpus/<target>/`,
//! and a few thousand deterministic mutations of them, through the same property
//! checks as the fuzz targets (`scripts/fuzz/src/lib.rs`, compiled in here). CI
//! gets the properties without cargo-fuzz or libFuzzer; `scripts/fuzz/run.sh` is
//! the coverage-guided search that runs for minutes.
//!
//! A failure names the target and prints the input; save those bytes to a file
//! and replay it with `cargo fuzz run --fuzz-dir scripts/fuzz --sanitizer none
//! <target> <file>`.

#[path = "../scripts/fuzz/src/lib.rs"]
mod properties;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Mutated inputs made from each seed.
const MUTATIONS_PER_SEED: usize = 200;

/// Pieces that mean something to one parser or another, spliced in by the
/// mutator (libFuzzer finds these itself through comparisons; a blind mutator
/// needs a hint).
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b"\r",
    b"\0",
    b"/",
    b"..",
    b".",
    b":",
    b"=",
    b",",
    b"-",
    b"+",
    b"*",
    b"%",
    b"\\",
    b"--",
    b"?",
    b"0",
    b"65535",
    b"65536",
    b"18446744073709551615",
    b"0.0000000001",
    b"ms",
    b"s",
    b"m",
    b"KiB",
    b"G",
    b"websocket",
    b"Upgrade",
    b"Origin: ",
    b"Sec-WebSocket-Version: 8",
    b"https://",
    b"\xff",
    b"\xc3",
    b"\"",
    b" ",
    b"\x1b",
    "é".as_bytes(),
    "日本".as_bytes(),
    "🎉".as_bytes(),
    "\u{2028}".as_bytes(),
];

/// A xorshift64 generator: deterministic, so a failure repeats on every run.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// One to four edits of `seed`: flip a bit, insert a byte or a token, delete,
/// duplicate, truncate, or splice in a piece of another seed.
fn mutate(rng: &mut XorShift, seed: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(data.len() + 1);
        let end = (at + 1 + rng.below(8)).min(data.len());
        match rng.below(7) {
            0 if at < data.len() => data[at] ^= 1 << rng.below(8),
            1 => data.insert(at, rng.next() as u8),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                data.splice(at..at, token.iter().copied());
            }
            3 if at < end => {
                data.drain(at..end);
            }
            4 if at < end => {
                let piece = data[at..end].to_vec();
                data.splice(at..at, piece);
            }
            5 => data.truncate(at),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let to = from + rng.below(other.len() - from + 1);
                data.splice(at..at, other[from..to].iter().copied());
            }
        }
    }
    data
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fuzz")
}

/// The seeds of one target, sorted by file name so runs are repeatable.
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut seeds: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&path).unwrap())
        })
        .collect();
    seeds.sort();
    seeds
}

/// Runs one property; on failure, a line naming the target, where the input came
/// from, and the input itself (the panic message is printed above it).
fn check(
    target: &str,
    property: properties::Property,
    input: &[u8],
    origin: &str,
) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| property(input))).map_err(|_| {
        format!(
            "`{target}` failed on {origin}: {:?}",
            String::from_utf8_lossy(input)
        )
    })
}

/// Panics listing every failure, if there were any.
fn report(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "fuzz properties failed (first input per target):\n{}",
        failures.join("\n")
    );
}

/// Every fuzz target has a property here, a binary in `fuzz_targets/` and
/// seeds in `corpus/`, and nothing else is there.
#[test]
fn targets_properties_and_seeds_match() {
    let names = |dir: &str, suffix: &str| -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(fuzz_dir().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|name| name.strip_suffix(suffix).map(str::to_string))
            .collect();
        names.sort();
        names
    };
    let mut targets: Vec<String> = properties::TARGETS
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    targets.sort();
    assert_eq!(names("fuzz_targets", ".rs"), targets);
    assert_eq!(names("corpus", ""), targets);
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for target in &targets {
        assert!(
            manifest.contains(&format!("name = \"{target}\"")),
            "no [[bin]] for {target} in scripts/fuzz/Cargo.toml"
        );
        assert!(!seeds(target).is_empty(), "no seeds for {target}");
    }
}

/// The committed seeds (real requests, command lines, texts, and the inputs
/// that once found bugs) keep every property.
#[test]
fn seeds_keep_the_properties() {
    let mut failures = Vec::new();
    for (target, property) in properties::TARGETS {
        for (name, input) in seeds(target) {
            if let Err(failure) = check(target, *property, &input, &format!("seed {name}")) {
                failures.push(failure);
            }
        }
    }
    report(&failures);
}

/// Deterministic mutations of the seeds keep every property. Each target stops
/// at its first failure; the others go on, so one bug does not hide another.
#[test]
fn mutated_seeds_keep_the_properties() {
    let mut failures = Vec::new();
    let mut total = 0;
    for (index, (target, property)) in properties::TARGETS.iter().enumerate() {
        // One stream per target, so adding a seed to one leaves the others alone.
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1));
        let seeds: Vec<Vec<u8>> = seeds(target).into_iter().map(|(_, s)| s).collect();
        'target: for (n, seed) in seeds.iter().enumerate() {
            for m in 0..MUTATIONS_PER_SEED {
                let input = mutate(&mut rng, seed, &seeds);
                total += 1;
                let origin = format!("mutation {m} of seed #{n}");
                if let Err(failure) = check(target, *property, &input, &origin) {
                    failures.push(failure);
                    break 'target;
                }
            }
        }
    }
    report(&failures);
    assert!(total >= 4000, "only {total} mutations");
}
