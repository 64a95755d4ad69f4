//! The guided tour's links stay true: every `file:line` link in `docs/TOUR.md`
//! still points at the line it was written for.
//!
//! Line numbers rot as soon as someone adds a line above them, so the tour never
//! gives one alone. Each place it points to carries an *anchor*, a comment on its
//! own line just above the line meant:
//!
//! ```text
//! // tour: tick-send
//! if frames_tx.send(Broadcast::new(Some("tick"), tick)).is_err() {
//! ```
//!
//! and the tour links to the line below the anchor, naming it:
//!
//! ```text
//! [src/ticker.rs:51](../src/ticker.rs#L51) (tour: tick-send)
//! ```
//!
//! [`tour_links_match_their_anchors`] reads both and fails, naming each bad link,
//! if a linked file does not exist; if a line link names no anchor, or points
//! outside `src/`, or its text is not `path:line` for the line it links to; if the
//! named anchor is missing, in another file, or not just above the linked line
//! (the message says where it is now); if an anchor in `src/` is never linked, or
//! two anchors share a name; or if the tour mentions `src/….rs:N` outside a
//! checked link. The tests below it show each of those failures on a small
//! made-up tour.
//!
//! No server: this only reads files.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The tour, relative to the crate root.
const TOUR: &str = "docs/TOUR.md";

/// What marks an anchor comment in the source.
const ANCHOR: &str = "// tour:";

/// Where an anchor is: its file (relative to the crate root, with `/`) and the line
/// it marks, which is the line after the comment (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Place {
    file: String,
    line: usize,
}

/// Every anchor in the source, by name, and the problems found reading them.
#[derive(Debug, Default)]
struct Anchors {
    by_name: BTreeMap<String, Place>,
    problems: Vec<String>,
}

impl Anchors {
    /// Adds the anchors of one file, given as its text.
    fn read(&mut self, file: &str, text: &str) {
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines.iter().enumerate() {
            let Some(name) = line.trim().strip_prefix(ANCHOR) else {
                continue;
            };
            let name = name.trim();
            let at = format!("{file}:{}", index + 1);
            if !is_anchor_name(name) {
                self.problems.push(format!(
                    "{at}: `{}` is not an anchor: write `{ANCHOR} name` (a-z, 0-9, -), alone on its line",
                    line.trim()
                ));
                continue;
            }
            let meant = lines.get(index + 1).map_or("", |l| l.trim());
            if meant.is_empty() || meant.starts_with(ANCHOR) {
                self.problems.push(format!(
                    "{at}: anchor `{name}` must sit just above the line it marks, not above {}",
                    if meant.is_empty() {
                        "a blank line or the end of the file"
                    } else {
                        "another anchor"
                    }
                ));
            }
            let place = Place {
                file: file.to_string(),
                line: index + 2,
            };
            if let Some(first) = self.by_name.get(name) {
                self.problems.push(format!(
                    "{at}: anchor `{name}` is also above {}:{}; anchor names must be unique",
                    first.file, first.line
                ));
                continue;
            }
            self.by_name.insert(name.to_string(), place);
        }
    }
}

fn is_anchor_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One Markdown link `[text](href)` in the tour, and the anchor name written
/// after it, if any.
#[derive(Debug)]
struct Link<'a> {
    /// The line of the tour it is on (1-based), for messages.
    tour_line: usize,
    text: &'a str,
    href: &'a str,
    anchor: Option<&'a str>,
}

impl Link<'_> {
    /// The link as written, for messages.
    fn shown(&self) -> String {
        let anchor = self
            .anchor
            .map_or(String::new(), |name| format!(" (tour: {name})"));
        format!(
            "{TOUR}:{}: [{}]({}){anchor}",
            self.tour_line, self.text, self.href
        )
    }
}

/// Finds the links of one line of the tour, and the problems that are not about
/// any one link: an anchor name that follows no link, a `file.rs:N` reference
/// outside a link's text. Code spans (`` `…` ``) hold no links: they show what to
/// type.
fn links_of_line<'a>(tour_line: usize, line: &'a str, problems: &mut Vec<String>) -> Vec<Link<'a>> {
    let mut links = Vec::new();
    // Running text, outside links and code spans: an anchor name here follows no
    // link.
    let mut outside = String::new();
    // Running text and code spans: a line number here is checked by nobody.
    let mut unlinked = String::new();
    let mut rest = line;
    while let Some(c) = rest.chars().next() {
        if c == '`' {
            let end = rest[1..].find('`').map_or(rest.len(), |at| at + 2);
            unlinked.push_str(&rest[..end]);
            unlinked.push(' ');
            rest = &rest[end..];
            continue;
        }
        if c == '[' {
            if let Some((text, href, after)) = split_link(rest) {
                let (anchor, after) = match after.strip_prefix(" (tour:") {
                    Some(named) => match named.find(')') {
                        Some(end) => (Some(named[..end].trim()), &named[end + 1..]),
                        None => (None, after),
                    },
                    None => (None, after),
                };
                links.push(Link {
                    tour_line,
                    text,
                    href,
                    anchor,
                });
                outside.push(' ');
                unlinked.push(' ');
                rest = after;
                continue;
            }
        }
        outside.push(c);
        unlinked.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if outside.contains("(tour:") {
        problems.push(format!(
            "{TOUR}:{tour_line}: `(tour: …)` must follow a link directly: [src/x.rs:N](../src/x.rs#LN) (tour: name)"
        ));
    }
    for reference in bare_line_references(&unlinked) {
        problems.push(format!(
            "{TOUR}:{tour_line}: `{reference}` is a line reference no test checks: \
             make it a link with an anchor, [{reference}](../{}) (tour: name)",
            reference.replacen(':', "#L", 1)
        ));
    }
    links
}

/// `[text](href)` at the start of `s`: the text, the target, and what follows.
fn split_link(s: &str) -> Option<(&str, &str, &str)> {
    let close = s.find("](")?;
    let text = &s[1..close];
    let target = &s[close + 2..];
    let end = target.find(')')?;
    let href = &target[..end];
    if text.contains('[') || href.is_empty() || href.contains(char::is_whitespace) {
        return None;
    }
    Some((text, href, &target[end + 1..]))
}

/// `something.rs:123` in running text.
fn bare_line_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find(".rs:") {
        let end_of_name = from + at + 3;
        let digits: String = text[end_of_name + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if !digits.is_empty() {
            let start = text[..end_of_name]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || "_-./".contains(c)))
                .map_or(0, |i| i + 1);
            found.push(format!("{}:{digits}", &text[start..end_of_name]));
        }
        from = end_of_name + 1;
    }
    found
}

/// Checks the tour against the anchors. `exists` says whether a path relative to
/// the crate root exists. Returns every problem found; none means the tour is true.
fn check(tour: &str, anchors: &Anchors, exists: impl Fn(&str) -> bool) -> Vec<String> {
    let mut problems = anchors.problems.clone();
    // For each anchor, the first link that named it with a line it points to.
    let mut linked: BTreeMap<&str, (usize, String)> = BTreeMap::new();
    let mut in_code = false;
    for (index, line) in tour.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        for link in links_of_line(index + 1, line, &mut problems) {
            let Some(relative) = link.href.strip_prefix("../") else {
                // Web links and links within the tour are not ours to check.
                if link.anchor.is_some() {
                    problems.push(format!(
                        "{}: an anchor name on a link that is not to a file",
                        link.shown()
                    ));
                }
                continue;
            };
            let (path, fragment) = match relative.split_once('#') {
                Some((path, fragment)) => (path, Some(fragment)),
                None => (relative, None),
            };
            if !exists(path) {
                problems.push(format!("{}: {path} does not exist", link.shown()));
                continue;
            }
            let line_number = match fragment.map(|f| f.strip_prefix('L').map(str::parse::<usize>)) {
                None => {
                    if link.anchor.is_some() {
                        problems.push(format!(
                            "{}: an anchor name on a link without a line (#LN)",
                            link.shown()
                        ));
                    }
                    continue;
                }
                Some(Some(Ok(n))) if n > 0 => n,
                Some(_) => {
                    problems.push(format!(
                        "{}: a link into a file may only end in #LN (one line)",
                        link.shown()
                    ));
                    continue;
                }
            };
            let Some(name) = link.anchor else {
                problems.push(format!(
                    "{}: a line link without an anchor name: add ` (tour: name)` after it, \
                     and `{ANCHOR} name` just above line {line_number} of {path}",
                    link.shown()
                ));
                continue;
            };
            if !path.starts_with("src/") {
                problems.push(format!(
                    "{}: anchors live in src/ only; link to a line of src/, or to the whole file",
                    link.shown()
                ));
                continue;
            }
            let expected_text = format!("{path}:{line_number}");
            if link.text != expected_text {
                problems.push(format!(
                    "{}: its text should be `{expected_text}`, the line it links to",
                    link.shown()
                ));
            }
            let Some(place) = anchors.by_name.get(name) else {
                problems.push(format!(
                    "{}: no anchor `{ANCHOR} {name}` in src/",
                    link.shown()
                ));
                continue;
            };
            if place.file != path {
                problems.push(format!(
                    "{}: anchor `{name}` is in {}, not in {path}",
                    link.shown(),
                    place.file
                ));
            } else if place.line != line_number {
                problems.push(format!(
                    "{}: anchor `{name}` is now just above line {} (the link says {line_number}): \
                     the link should be [{path}:{}](../{path}#L{}) (tour: {name})",
                    link.shown(),
                    place.line,
                    place.line,
                    place.line
                ));
            }
            match linked.get(name) {
                Some((first_line, first)) if *first_line != line_number => {
                    problems.push(format!(
                        "{}: anchor `{name}` is linked with two line numbers; the other link is {first}",
                        link.shown()
                    ));
                }
                Some(_) => {}
                None => {
                    linked.insert(name, (line_number, link.shown()));
                }
            }
        }
    }
    if in_code {
        problems.push(format!("{TOUR}: a code block (```) is never closed"));
    }
    for (name, place) in &anchors.by_name {
        if !linked.contains_key(name.as_str()) {
            problems.push(format!(
                "{}:{}: anchor `{name}` is never linked from {TOUR}: link it, or remove it",
                place.file,
                place.line - 1
            ));
        }
    }
    problems
}

/// The crate root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, relative to the crate root, sorted.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn relative(path: &Path) -> String {
    let relative = path.strip_prefix(root()).expect("under the crate root");
    relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Every `file:line` link in docs/TOUR.md names an anchor that sits just above that
/// line, and every anchor in src/ is linked.
#[test]
fn tour_links_match_their_anchors() {
    let root = root();
    let tour =
        fs::read_to_string(root.join(TOUR)).unwrap_or_else(|e| panic!("cannot read {TOUR}: {e}"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut anchors = Anchors::default();
    for file in &files {
        let text = fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        anchors.read(&relative(file), &text);
    }
    assert!(
        anchors.by_name.len() >= 10,
        "only {} anchors found in src/: is the anchor comment still `{ANCHOR} name`?",
        anchors.by_name.len()
    );
    let problems = check(&tour, &anchors, |path| root.join(path).exists());
    assert!(
        problems.is_empty(),
        "{} problem(s) with the tour's links (see tests/tour.rs for the rules):\n- {}",
        problems.len(),
        problems.join("\n- ")
    );
}

/// The anchors of a made-up `src/a.rs`: `one` marks line 3, `two` line 6.
fn made_up_anchors() -> Anchors {
    let mut anchors = Anchors::default();
    anchors.read(
        "src/a.rs",
        "fn a() {\n    // tour: one\n    first();\n\n    // tour: two\n    second();\n}\n",
    );
    assert!(anchors.problems.is_empty(), "{:?}", anchors.problems);
    anchors
}

/// Runs [`check`] on a made-up tour in which only `src/a.rs` and `src/b.rs` exist.
fn problems_with(tour: &str) -> Vec<String> {
    check(tour, &made_up_anchors(), |path| {
        path == "src/a.rs" || path == "src/b.rs"
    })
}

const GOOD_LINKS: &str = "[src/a.rs:3](../src/a.rs#L3) (tour: one) and \
                          [src/a.rs:6](../src/a.rs#L6) (tour: two).";

/// The made-up tour the other tests spoil passes as it is.
#[test]
fn true_links_pass() {
    assert_eq!(problems_with(GOOD_LINKS), Vec::<String>::new());
}

/// A problem list with exactly one entry, which contains `expected`.
fn assert_one_problem(problems: &[String], expected: &str) {
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].contains(expected), "{problems:#?}");
}

/// A line link with no `(tour: name)` after it fails.
#[test]
fn a_line_link_without_an_anchor_name_fails() {
    let tour = format!("{GOOD_LINKS} See [src/a.rs:3](../src/a.rs#L3).");
    assert_one_problem(&problems_with(&tour), "without an anchor name");
}

/// An anchor moved (a line added above the marked line) fails, and the message
/// gives the link as it should now be.
#[test]
fn a_link_one_line_off_fails() {
    let tour = GOOD_LINKS.replace("a.rs:6](../src/a.rs#L6)", "a.rs:7](../src/a.rs#L7)");
    assert_one_problem(
        &problems_with(&tour),
        "now just above line 6 (the link says 7): the link should be [src/a.rs:6](../src/a.rs#L6)",
    );
}

/// A link to a file that does not exist fails.
#[test]
fn a_missing_file_fails() {
    let tour = format!("{GOOD_LINKS} [src/gone.rs:3](../src/gone.rs#L3) (tour: one)");
    assert_one_problem(&problems_with(&tour), "src/gone.rs does not exist");
}

/// An anchor in the source that the tour never links fails.
#[test]
fn an_unlinked_anchor_fails() {
    assert_one_problem(
        &problems_with("[src/a.rs:3](../src/a.rs#L3) (tour: one)"),
        "anchor `two` is never linked",
    );
}

/// The same anchor linked with two line numbers fails (once for the wrong line,
/// once for the disagreement).
#[test]
fn one_anchor_linked_with_two_lines_fails() {
    let tour = format!("{GOOD_LINKS} Again: [src/a.rs:4](../src/a.rs#L4) (tour: one).");
    let problems = problems_with(&tour);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[1].contains("linked with two line numbers"),
        "{problems:#?}"
    );
}

/// An anchor named in the wrong file, or a name no anchor has, fails.
#[test]
fn a_wrong_or_unknown_anchor_name_fails() {
    let tour = format!("{GOOD_LINKS} [src/b.rs:3](../src/b.rs#L3) (tour: one)");
    assert_one_problem(
        &problems_with(&tour),
        "anchor `one` is in src/a.rs, not in src/b.rs",
    );
    let tour = format!("{GOOD_LINKS} [src/a.rs:3](../src/a.rs#L3) (tour: three)");
    assert_one_problem(&problems_with(&tour), "no anchor `// tour: three` in src/");
}

/// A link whose text names another line than it links to fails.
#[test]
fn link_text_must_match_the_target() {
    let tour = GOOD_LINKS.replace("[src/a.rs:3]", "[src/a.rs:30]");
    assert_one_problem(&problems_with(&tour), "its text should be `src/a.rs:3`");
}

/// A `file.rs:N` reference outside a link (in a code span too), or an anchor name
/// after no link, fails; code blocks (quoted output) are left alone, and a code
/// span holds no link.
#[test]
fn unchecked_line_references_fail() {
    let tour = format!("{GOOD_LINKS} Look at src/a.rs:3 too.");
    assert_one_problem(
        &problems_with(&tour),
        "`src/a.rs:3` is a line reference no test checks",
    );
    let tour = format!("{GOOD_LINKS} Look (tour: one).");
    assert_one_problem(&problems_with(&tour), "must follow a link directly");
    let tour = format!("{GOOD_LINKS}\n```text\npanicked at src/a.rs:3:5\n```\n");
    assert_eq!(problems_with(&tour), Vec::<String>::new());
    let tour = format!("{GOOD_LINKS} Type `src/a.rs:3`.");
    assert_one_problem(&problems_with(&tour), "`src/a.rs:3` is a line reference");
    let tour = format!("{GOOD_LINKS} Write `[src/x.rs:N](../src/x.rs#LN) (tour: name)`.");
    assert_eq!(problems_with(&tour), Vec::<String>::new());
}

/// Badly written anchors in the source fail: a duplicate name, a bad name, an
/// anchor above a blank line.
#[test]
fn bad_anchors_in_the_source_fail() {
    let mut anchors = made_up_anchors();
    anchors.read(
        "src/b.rs",
        "// tour: one\nx();\n// tour: Bad Name\ny();\n// tour: z\n\n",
    );
    let problems = check(GOOD_LINKS, &anchors, |_| true);
    let expected = [
        "src/b.rs:1: anchor `one` is also above src/a.rs:3",
        "src/b.rs:3: `// tour: Bad Name` is not an anchor",
        "src/b.rs:5: anchor `z` must sit just above the line it marks",
        "anchor `z` is never linked",
    ];
    assert_eq!(problems.len(), expected.len(), "{problems:#?}");
    for (problem, expected) in problems.iter().zip(expected) {
        assert!(problem.contains(expected), "{problem:?} lacks {expected:?}");
    }
}
