//! Whether a text is one well-formed JSON value (RFC 8259), so that a published
//! JSON body can go out as JSON, not as a string. No threads, no I/O.
//!
//! A checker, not a parser: tickcast never needs the values, only to know that
//! putting the text inside its own JSON message keeps that message valid. So it is
//! a small recursive descent over the bytes, with a depth limit, because a
//! connection thread has a small stack and `[[[[…` must not overflow it.

/// Deeper nesting than this is refused (as not JSON tickcast will pass on).
const MAX_DEPTH: usize = 64;

/// Whether `text` is exactly one JSON value, with optional whitespace around it.
pub(crate) fn is_json(text: &str) -> bool {
    let mut checker = Checker {
        bytes: text.as_bytes(),
        at: 0,
    };
    checker.whitespace();
    if !checker.value(0) {
        return false;
    }
    checker.whitespace();
    checker.at == checker.bytes.len()
}

/// Where the checker is in the text.
struct Checker<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Checker<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    /// Consumes `byte` if it is next.
    fn eat(&mut self, byte: u8) -> bool {
        let next = self.peek() == Some(byte);
        if next {
            self.at += 1;
        }
        next
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> bool {
        match self.peek() {
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.bytes[self.at..].starts_with(word);
        if found {
            self.at += word.len();
        }
        found
    }

    fn object(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1; // {
        self.whitespace();
        if self.eat(b'}') {
            return true;
        }
        loop {
            self.whitespace();
            if self.peek() != Some(b'"') || !self.string() {
                return false;
            }
            self.whitespace();
            if !self.eat(b':') {
                return false;
            }
            self.whitespace();
            if !self.value(depth) {
                return false;
            }
            self.whitespace();
            if self.eat(b'}') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    fn array(&mut self, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return false;
        }
        self.at += 1; // [
        self.whitespace();
        if self.eat(b']') {
            return true;
        }
        loop {
            self.whitespace();
            if !self.value(depth) {
                return false;
            }
            self.whitespace();
            if self.eat(b']') {
                return true;
            }
            if !self.eat(b',') {
                return false;
            }
        }
    }

    /// Four hex digits, as a number.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        let text = std::str::from_utf8(digits).ok()?;
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(text, 16).ok()
    }

    fn string(&mut self) -> bool {
        self.at += 1; // "
        loop {
            match self.peek() {
                None => return false,
                Some(b'"') => {
                    self.at += 1;
                    return true;
                }
                Some(b'\\') => {
                    self.at += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.at += 1;
                        }
                        Some(b'u') => {
                            self.at += 1;
                            // A UTF-16 surrogate must come in a pair, high then
                            // low: the grammar allows a lone one, but parsers
                            // disagree on it (JavaScript keeps it, serde_json
                            // refuses it), so such a body goes out as a string.
                            match self.hex4() {
                                Some(0xd800..=0xdbff) => {
                                    let low = self.eat(b'\\') && self.eat(b'u');
                                    if !low || !matches!(self.hex4(), Some(0xdc00..=0xdfff)) {
                                        return false;
                                    }
                                }
                                Some(0xdc00..=0xdfff) | None => return false,
                                Some(_) => {}
                            }
                        }
                        _ => return false,
                    }
                }
                // Control characters must be escaped inside a string.
                Some(0x00..=0x1f) => return false,
                Some(_) => self.at += 1,
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        self.at - start
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        // No leading zeros: `0`, or a digit 1-9 and more digits.
        if self.eat(b'0') {
            if self.peek().is_some_and(|b| b.is_ascii_digit()) {
                return false;
            }
        } else if self.digits() == 0 {
            return false;
        }
        if self.eat(b'.') && self.digits() == 0 {
            return false;
        }
        if self.eat(b'e') || self.eat(b'E') {
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_values_are_recognised() {
        for good in [
            "0",
            "-12.5e+3",
            "true",
            "null",
            r#""a \"quoted\" \u00e9 string""#,
            r#" {"price": 42, "tags": ["a", "b"], "nested": {"x": [1, {"y": null}]}} "#,
            "[]",
            "{}",
            "[1,2,3]",
            r#""\ud83c\udf89 is a pair""#,
            r#""\uffff\u0000""#,
        ] {
            assert!(is_json(good), "{good}");
        }
    }

    #[test]
    fn everything_else_is_not() {
        for bad in [
            "",
            "hello",
            "01",
            "1.",
            "-",
            "1e",
            "[1,]",
            "{\"a\":1,}",
            "{a:1}",
            "'single'",
            "\"unterminated",
            "\"bad \\x escape\"",
            "\"tab\tinside\"",
            "[1] [2]",
            "nul",
            "{\"a\" 1}",
            "NaN",
            // Found by the `publish` and `subscription` fuzz targets: a lone
            // surrogate, which serde_json refuses and JavaScript keeps.
            r#""\ud90d""#,
            r#""\udf89\ud83c""#,
            r#""\ud83c,u0""#,
            r#""\ud83c\u00e9""#,
            r#""\u12""#,
        ] {
            assert!(!is_json(bad), "{bad:?}");
        }
    }

    /// Deep nesting is refused instead of overflowing a small stack.
    #[test]
    fn deep_nesting_is_refused() {
        let deep = "[".repeat(100_000);
        assert!(!is_json(&deep));
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(is_json(&ok));
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(!is_json(&too_deep));
    }
}
