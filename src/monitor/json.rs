//! Splits a QMP input stream into JSON values, as QEMU's streaming parser
//! does: objects back to back with or without whitespace between them,
//! strings in double or single quotes (single-quoted strings are rewritten
//! to standard JSON before serde_json parses the value), a 0xFF byte
//! resets the parser. Hostile input is bounded: a value deeper than
//! [`MAX_DEPTH`] or longer than [`MAX_SIZE`] bytes is skipped to its end
//! (only brackets and quotes are tracked meanwhile, nothing is kept) and
//! reported as one error.

use serde_json::Value;

/// Deepest nesting of objects and arrays accepted (QEMU's limit too).
pub const MAX_DEPTH: usize = 64;
/// Longest value accepted, in bytes.
pub const MAX_SIZE: usize = 1 << 20;

/// What the splitter made of the input so far.
#[derive(Debug, PartialEq)]
pub enum Item {
    Value(Value),
    /// Input that is not a JSON value (the text for QEMU's `desc`).
    Error(String),
}

#[derive(Default)]
pub struct Splitter {
    /// The current value, normalized to standard JSON.
    buf: Vec<u8>,
    depth: usize,
    /// The quote of the string being read.
    quote: Option<u8>,
    /// A backslash was seen inside a string.
    escape: bool,
    /// Why the current value is being skipped.
    skip: Option<String>,
    /// Bytes outside any value that are not whitespace.
    junk: usize,
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter::default()
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.depth = 0;
        self.quote = None;
        self.escape = false;
        self.skip = None;
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.skip.is_some() {
            return;
        }
        if self.buf.len() + bytes.len() > MAX_SIZE {
            self.buf = Vec::new();
            self.skip = Some(format!("JSON value longer than {MAX_SIZE} bytes"));
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn junk_error(&mut self) -> Option<Item> {
        if self.junk == 0 {
            return None;
        }
        self.junk = 0;
        Some(Item::Error("JSON parse error, invalid token".into()))
    }

    /// The end of a top-level value.
    fn finish(&mut self) -> Item {
        let item = match self.skip.take() {
            Some(why) => Item::Error(why),
            None => match serde_json::from_slice::<Value>(&self.buf) {
                Ok(v) => Item::Value(v),
                Err(e) => Item::Error(format!("JSON parse error, {e}")),
            },
        };
        self.reset();
        item
    }

    /// Feeds bytes; returns every value (or error) they complete.
    pub fn push(&mut self, data: &[u8]) -> Vec<Item> {
        let mut out = Vec::new();
        for &b in data {
            if b == 0xff {
                // QEMU's resynchronisation byte.
                if let Some(e) = self.junk_error() {
                    out.push(e);
                }
                if self.depth > 0 || self.quote.is_some() {
                    out.push(Item::Error("JSON parse error, input reset by 0xFF".into()));
                }
                self.reset();
                continue;
            }
            if let Some(q) = self.quote {
                if self.escape {
                    self.escape = false;
                    if b == b'\'' {
                        // \' is not standard JSON; inside "..." a ' needs none.
                        self.keep(b"'");
                    } else {
                        self.keep(&[b'\\', b]);
                    }
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == q {
                    self.quote = None;
                    self.keep(b"\"");
                    if self.depth == 0 {
                        self.reset();
                        out.push(Item::Error("QMP input must be a JSON object".into()));
                    }
                } else if b == b'"' {
                    self.keep(b"\\\"");
                } else {
                    self.keep(&[b]);
                }
                continue;
            }
            match b {
                b'{' | b'[' => {
                    if self.depth == 0 {
                        if let Some(e) = self.junk_error() {
                            out.push(e);
                        }
                    }
                    self.depth += 1;
                    if self.depth > MAX_DEPTH && self.skip.is_none() {
                        self.buf = Vec::new();
                        self.skip = Some(format!("JSON nesting deeper than {MAX_DEPTH}"));
                    }
                    self.keep(&[b]);
                }
                b'}' | b']' if self.depth > 0 => {
                    self.keep(&[b]);
                    self.depth -= 1;
                    if self.depth == 0 {
                        out.push(self.finish());
                    }
                }
                b'"' | b'\'' => {
                    if self.depth == 0 {
                        if let Some(e) = self.junk_error() {
                            out.push(e);
                        }
                    }
                    self.quote = Some(b);
                    self.keep(b"\"");
                }
                b' ' | b'\t' | b'\r' | b'\n' if self.depth == 0 => {
                    if let Some(e) = self.junk_error() {
                        out.push(e);
                    }
                }
                _ if self.depth == 0 => self.junk += 1,
                _ => self.keep(&[b]),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(items: Vec<Item>) -> Vec<Value> {
        items
            .into_iter()
            .map(|i| match i {
                Item::Value(v) => v,
                Item::Error(e) => panic!("unexpected error {e}"),
            })
            .collect()
    }

    #[test]
    fn back_to_back_objects_and_single_quotes() {
        let mut s = Splitter::new();
        let v =
            values(s.push(br#"{"execute":"a"}{'execute': 'b', 'arguments': {'s': 'it\'s "x"'}}"#));
        assert_eq!(
            v,
            [
                json!({"execute": "a"}),
                json!({"execute": "b", "arguments": {"s": "it's \"x\""}})
            ]
        );
        // Split anywhere, even inside an escape.
        let text = br#"{"id": [1, {"k": "a\"b}"}], "execute": "q"}"#;
        let mut got = Vec::new();
        for b in text.iter() {
            got.extend(s.push(&[*b]));
        }
        assert_eq!(
            values(got),
            [json!({"id": [1, {"k": "a\"b}"}], "execute": "q"})]
        );
    }

    #[test]
    fn hostile_input_is_bounded_and_reported() {
        let mut s = Splitter::new();
        let deep = "[".repeat(100_000);
        assert!(s.push(deep.as_bytes()).is_empty());
        assert!(s.buf.len() <= MAX_SIZE);
        let end = "]".repeat(100_000);
        let r = s.push(end.as_bytes());
        assert!(matches!(&r[..], [Item::Error(e)] if e.contains("nesting")));
        // Junk, a bare string, a broken object, then a good one.
        let r = s.push(b"garbage 'str' {\"a\": } {\"execute\": \"x\"}");
        assert_eq!(r.len(), 4);
        assert!(matches!(&r[0], Item::Error(_)));
        assert!(matches!(&r[1], Item::Error(e) if e.contains("must be a JSON object")));
        assert!(matches!(&r[2], Item::Error(e) if e.contains("parse error")));
        assert_eq!(r[3], Item::Value(json!({"execute": "x"})));
        // A huge string, unterminated, then reset by 0xFF.
        let mut big = b"{\"a\": \"".to_vec();
        big.extend(std::iter::repeat_n(b'x', 3 << 20));
        assert!(s.push(&big).is_empty());
        assert!(s.buf.is_empty());
        let r = s.push(b"\xff{}");
        assert!(matches!(&r[0], Item::Error(_)));
        assert_eq!(r[1], Item::Value(json!({})));
        // Binary garbage never panics.
        let noise: Vec<u8> = (0..20000u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = s.push(&noise);
    }
}
