//! Python literal values: parsed from a rationale or from a trace repr, compared by Python
//! equality (`[1,2] == [1, 2]`, `3.0 == 3`, `True == 1`, `{1, 2} == {2, 1}`).
//!
//! The parser accepts what `ast.literal_eval` accepts for the value kinds a trace shows: ints
//! (any size, `_` separators, `0x`/`0o`/`0b`), floats (`inf`/`nan` as `repr` writes them),
//! strings and bytes (single, double and triple quotes, escapes, `r` prefix), `True`, `False`,
//! `None`, lists, tuples, sets (`set()` too), dicts, and a leading `-`/`+` on numbers. Anything
//! else (an object repr, a clipped `...` repr, an expression) is not a literal.

use std::cmp::Ordering;

/// A parsed Python literal.
#[derive(Debug, Clone)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int: sign and decimal digits without leading zeros (`0` is `(false, "0")`).
    Int(bool, String),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `bytes`.
    Bytes(Vec<u8>),
    /// A list.
    List(Vec<PyValue>),
    /// A tuple.
    Tuple(Vec<PyValue>),
    /// A set.
    Set(Vec<PyValue>),
    /// A dict, in written order.
    Dict(Vec<(PyValue, PyValue)>),
}

/// Deepest nesting accepted (deeper input is not a literal, never a stack overflow).
const MAX_DEPTH: usize = 64;
/// Longest integer literal accepted, in digits (CPython's own limit for `int(str)`).
const MAX_INT_DIGITS: usize = 4300;

impl PyValue {
    /// Parse a whole string as one literal (surrounding whitespace allowed).
    pub fn parse(text: &str) -> Option<PyValue> {
        let (v, used) = Self::parse_prefix(text)?;
        text[used..].trim().is_empty().then_some(v)
    }

    /// Parse a repr as the tracer records it: a literal, or the repr of a standard container
    /// that compares equal to one (`Counter({2: 2})`, `OrderedDict(...)`, `defaultdict(<class
    /// 'int'>, {...})`, `frozenset({1})`, `deque([1, 2])`).
    pub fn parse_repr(repr: &str) -> Option<PyValue> {
        if let Some(v) = Self::parse(repr) {
            return Some(v);
        }
        let t = repr.trim();
        let inner = t.strip_suffix(')')?;
        for (prefix, empty) in [
            ("Counter(", PyValue::Dict(Vec::new())),
            ("OrderedDict(", PyValue::Dict(Vec::new())),
            ("frozenset(", PyValue::Set(Vec::new())),
        ] {
            if let Some(arg) = inner.strip_prefix(prefix) {
                if arg.trim().is_empty() {
                    return Some(empty);
                }
                return Self::parse(arg);
            }
        }
        if let Some(arg) = inner.strip_prefix("defaultdict(") {
            // `defaultdict(<class 'int'>, {...})`: the dict after the factory's repr.
            let (_, d) = arg.split_once(">, ")?;
            return Self::parse(d);
        }
        None
    }

    /// Parse the longest literal at the start of `text` (leading whitespace skipped); returns
    /// it and the number of bytes consumed.
    pub fn parse_prefix(text: &str) -> Option<(PyValue, usize)> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        p.ws();
        let v = p.value(0)?;
        Some((v, p.i))
    }

    /// The numeric value as an `f64`, for int/float/bool comparisons.
    fn as_f64(&self) -> Option<f64> {
        match self {
            PyValue::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            PyValue::Int(neg, d) => d.parse::<f64>().ok().map(|x| if *neg { -x } else { x }),
            PyValue::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// An int or bool as (sign, digits).
    fn as_int(&self) -> Option<(bool, &str)> {
        match self {
            PyValue::Bool(true) => Some((false, "1")),
            PyValue::Bool(false) => Some((false, "0")),
            PyValue::Int(n, d) => Some((*n, d.as_str())),
            _ => None,
        }
    }

    /// Python's `==`.
    pub fn py_eq(&self, other: &PyValue) -> bool {
        use PyValue::*;
        match (self, other) {
            (None, None) => true,
            (Str(a), Str(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (List(a), List(b)) | (Tuple(a), Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.py_eq(y))
            }
            (Set(a), Set(b)) => same_members(a, b),
            (Dict(a), Dict(b)) => {
                a.len() == b.len()
                    && a.iter().all(|(k, v)| {
                        b.iter()
                            .find(|(k2, _)| k.py_eq(k2))
                            .is_some_and(|(_, v2)| v.py_eq(v2))
                    })
            }
            _ => match (self.as_int(), other.as_int()) {
                (Some(a), Some(b)) => a == b,
                _ => match (self.as_f64(), other.as_f64()) {
                    // Python compares int and float exactly; through f64 this is exact for
                    // every int below 2**53 and for every float.
                    (Some(a), Some(b)) => a.partial_cmp(&b) == Some(Ordering::Equal),
                    _ => false,
                },
            },
        }
    }

    /// A short name of the kind (`int`, `list`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            PyValue::None => "None",
            PyValue::Bool(_) => "bool",
            PyValue::Int(..) => "int",
            PyValue::Float(_) => "float",
            PyValue::Str(_) => "str",
            PyValue::Bytes(_) => "bytes",
            PyValue::List(_) => "list",
            PyValue::Tuple(_) => "tuple",
            PyValue::Set(_) => "set",
            PyValue::Dict(_) => "dict",
        }
    }
}

impl PartialEq for PyValue {
    fn eq(&self, other: &Self) -> bool {
        self.py_eq(other)
    }
}

fn same_members(a: &[PyValue], b: &[PyValue]) -> bool {
    let dedup = |v: &[PyValue]| -> Vec<PyValue> {
        let mut out: Vec<PyValue> = Vec::new();
        for x in v {
            if !out.iter().any(|y| y.py_eq(x)) {
                out.push(x.clone());
            }
        }
        out
    };
    let (a, b) = (dedup(a), dedup(b));
    a.len() == b.len() && a.iter().all(|x| b.iter().any(|y| x.py_eq(y)))
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self, w: &str) -> bool {
        let end = self.i + w.len();
        if self.s.len() >= end
            && &self.s[self.i..end] == w.as_bytes()
            && !self
                .s
                .get(end)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            self.i = end;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Option<PyValue> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'[' => {
                self.i += 1;
                let items = self.items(b']', depth)?;
                Some(PyValue::List(items.0))
            }
            b'(' => {
                self.i += 1;
                let (items, trailing_comma) = self.items(b')', depth)?;
                if items.len() == 1 && !trailing_comma {
                    // A parenthesised value, not a tuple.
                    return items.into_iter().next();
                }
                Some(PyValue::Tuple(items))
            }
            b'{' => {
                self.i += 1;
                self.brace(depth)
            }
            b'\'' | b'"' => self.string(false, false),
            b'-' | b'+' => {
                let neg = self.peek() == Some(b'-');
                self.i += 1;
                self.ws();
                match self.number()? {
                    PyValue::Int(n, d) => {
                        let neg = if neg { !n } else { n };
                        Some(PyValue::Int(neg && d != "0", d))
                    }
                    PyValue::Float(f) => Some(PyValue::Float(if neg { -f } else { f })),
                    _ => None,
                }
            }
            b'0'..=b'9' | b'.' => self.number(),
            c if c.is_ascii_alphabetic() => {
                if self.word("True") {
                    return Some(PyValue::Bool(true));
                }
                if self.word("False") {
                    return Some(PyValue::Bool(false));
                }
                if self.word("None") {
                    return Some(PyValue::None);
                }
                if self.word("inf") {
                    return Some(PyValue::Float(f64::INFINITY));
                }
                if self.word("nan") {
                    return Some(PyValue::Float(f64::NAN));
                }
                let start = self.i;
                if self.word("set") && self.eat(b'(') && self.eat(b')') {
                    return Some(PyValue::Set(Vec::new()));
                }
                self.i = start;
                // String prefixes: r, b, rb, br, u (any case).
                let mut j = self.i;
                let (mut raw, mut bytes) = (false, false);
                while j < self.s.len() && j - self.i < 2 {
                    match self.s[j].to_ascii_lowercase() {
                        b'r' => raw = true,
                        b'b' => bytes = true,
                        b'u' => {}
                        _ => break,
                    }
                    j += 1;
                }
                if j > self.i && matches!(self.s.get(j), Some(b'\'' | b'"')) {
                    self.i = j;
                    return self.string(raw, bytes);
                }
                None
            }
            _ => None,
        }
    }

    /// Comma-separated values up to `close`; returns them and whether a trailing comma was
    /// written.
    fn items(&mut self, close: u8, depth: usize) -> Option<(Vec<PyValue>, bool)> {
        let mut out = Vec::new();
        let mut trailing = false;
        loop {
            self.ws();
            if self.eat(close) {
                return Some((out, trailing));
            }
            out.push(self.value(depth + 1)?);
            self.ws();
            trailing = false;
            if self.eat(b',') {
                trailing = true;
                continue;
            }
            self.ws();
            if self.eat(close) {
                return Some((out, trailing));
            }
            return None;
        }
    }

    fn brace(&mut self, depth: usize) -> Option<PyValue> {
        self.ws();
        if self.eat(b'}') {
            return Some(PyValue::Dict(Vec::new()));
        }
        let first = self.value(depth + 1)?;
        self.ws();
        if self.eat(b':') {
            let mut pairs = Vec::new();
            self.ws();
            let v = self.value(depth + 1)?;
            pairs.push((first, v));
            loop {
                self.ws();
                if self.eat(b'}') {
                    return Some(PyValue::Dict(pairs));
                }
                if !self.eat(b',') {
                    return None;
                }
                self.ws();
                if self.eat(b'}') {
                    return Some(PyValue::Dict(pairs));
                }
                let k = self.value(depth + 1)?;
                self.ws();
                if !self.eat(b':') {
                    return None;
                }
                self.ws();
                let v = self.value(depth + 1)?;
                pairs.push((k, v));
            }
        }
        let mut items = vec![first];
        loop {
            self.ws();
            if self.eat(b'}') {
                return Some(PyValue::Set(items));
            }
            if !self.eat(b',') {
                return None;
            }
            self.ws();
            if self.eat(b'}') {
                return Some(PyValue::Set(items));
            }
            items.push(self.value(depth + 1)?);
        }
    }

    fn number(&mut self) -> Option<PyValue> {
        let start = self.i;
        let s = self.s;
        // Radix ints.
        if s.get(self.i) == Some(&b'0')
            && matches!(
                s.get(self.i + 1).map(u8::to_ascii_lowercase),
                Some(b'x' | b'o' | b'b')
            )
        {
            let radix = match s[self.i + 1].to_ascii_lowercase() {
                b'x' => 16,
                b'o' => 8,
                _ => 2,
            };
            let mut j = self.i + 2;
            let mut digits = String::new();
            while j < s.len() && (s[j].is_ascii_alphanumeric() || s[j] == b'_') {
                if s[j] != b'_' {
                    digits.push(s[j] as char);
                }
                j += 1;
            }
            let v = u128::from_str_radix(&digits, radix).ok()?;
            self.i = j;
            return Some(PyValue::Int(false, v.to_string()));
        }
        let mut j = self.i;
        let mut int_part = String::new();
        while j < s.len() && (s[j].is_ascii_digit() || (s[j] == b'_' && j > start)) {
            if s[j] != b'_' {
                int_part.push(s[j] as char);
            }
            j += 1;
        }
        let mut is_float = false;
        let mut float_text = int_part.clone();
        // A fraction: `.` followed by a digit (a bare `3.` is left alone: in prose it ends a
        // sentence, and `repr` never writes it).
        if j < s.len() && s[j] == b'.' {
            let next = s.get(j + 1).copied();
            if next.is_some_and(|c| c.is_ascii_digit()) {
                is_float = true;
                float_text.push('.');
                j += 1;
                while j < s.len() && (s[j].is_ascii_digit() || s[j] == b'_') {
                    if s[j] != b'_' {
                        float_text.push(s[j] as char);
                    }
                    j += 1;
                }
            }
        }
        if int_part.is_empty() && !is_float {
            return None;
        }
        // Exponent.
        if j < s.len() && (s[j] == b'e' || s[j] == b'E') {
            let mut k = j + 1;
            if k < s.len() && (s[k] == b'+' || s[k] == b'-') {
                k += 1;
            }
            if k < s.len() && s[k].is_ascii_digit() {
                let exp_start = j;
                while k < s.len() && s[k].is_ascii_digit() {
                    k += 1;
                }
                float_text.push_str(&self.text[exp_start..k]);
                is_float = true;
                j = k;
            }
        }
        // Not part of an identifier (`3abc`) or a complex number (`3j`).
        if s.get(j)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        {
            return None;
        }
        self.i = j;
        if is_float {
            let f: f64 = float_text.parse().ok()?;
            return Some(PyValue::Float(f));
        }
        let trimmed = int_part.trim_start_matches('0');
        let digits = if trimmed.is_empty() { "0" } else { trimmed };
        if digits.len() > MAX_INT_DIGITS {
            return None;
        }
        Some(PyValue::Int(false, digits.to_string()))
    }

    fn string(&mut self, raw: bool, bytes: bool) -> Option<PyValue> {
        let q = self.peek()?;
        let triple = self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            if c == q {
                if !triple {
                    self.i += 1;
                    break;
                }
                if self.s.get(self.i..self.i + 3) == Some(&[q, q, q][..]) {
                    self.i += 3;
                    break;
                }
                out.push(c);
                self.i += 1;
                continue;
            }
            if c == b'\n' && !triple {
                return None;
            }
            if c == b'\\' && !raw {
                self.i += 1;
                let e = self.peek()?;
                self.i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0' => out.push(0),
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'\\' | b'\'' | b'"' => out.push(e),
                    b'\n' => {}
                    b'x' | b'u' | b'U' => {
                        let n = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let hex = self.text.get(self.i..self.i + n)?;
                        let code = u32::from_str_radix(hex, 16).ok()?;
                        self.i += n;
                        if bytes {
                            out.push(u8::try_from(code).ok()?);
                        } else {
                            let ch = char::from_u32(code)?;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                    other => {
                        out.push(b'\\');
                        out.push(other);
                    }
                }
                continue;
            }
            out.push(c);
            self.i += 1;
        }
        if bytes {
            Some(PyValue::Bytes(out))
        } else {
            String::from_utf8(out).ok().map(PyValue::Str)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PyValue {
        PyValue::parse(s).unwrap_or_else(|| panic!("`{s}` should parse"))
    }

    #[test]
    fn equal_by_python_equality() {
        assert_eq!(p("[1,2]"), p("[1, 2]"));
        assert_eq!(p("3.0"), p("3"));
        assert_eq!(p("True"), p("1"));
        assert_eq!(p("{1, 2}"), p("{2, 1}"));
        assert_eq!(p("{'a': 1, 'b': [2]}"), p("{\"b\": [2.0], \"a\": 1}"));
        assert_eq!(p("(1,)"), p("( 1 , )"));
        assert_eq!(p("'a\\'b'"), p("\"a'b\""));
        assert_eq!(p("-0"), p("0"));
        assert_eq!(p("0x10"), p("16"));
        assert_eq!(p("1_000"), p("1000"));
        assert_eq!(p("1e3"), p("1000"));
        assert_eq!(p("set()"), p("set()"));
        assert_eq!(p("'\\u00e9'"), p("'é'"));
        assert_ne!(p("[1, 2]"), p("(1, 2)"));
        assert_ne!(p("'1'"), p("1"));
        assert_ne!(p("None"), p("0"));
        assert_ne!(p("nan"), p("nan"));
        assert_ne!(p("[1, 2]"), p("[2, 1]"));
        assert_ne!(p("{}"), p("set()"));
        assert_eq!(p("(3)"), p("3"));
    }

    #[test]
    fn huge_and_odd_numbers_do_not_crash() {
        let big = "9".repeat(4000);
        assert_eq!(p(&big), p(&big));
        assert_ne!(p(&big), p("9"));
        assert!(PyValue::parse(&"9".repeat(5000)).is_none());
        assert_eq!(p("1e999999"), p("inf"));
        assert!(PyValue::parse(&"[".repeat(10_000)).is_none());
        assert!(PyValue::parse("3j").is_none());
        assert!(PyValue::parse("<Node object at 0x7f>").is_none());
        assert!(PyValue::parse("[1, 2, ...]").is_none());
        assert!(PyValue::parse("'abc").is_none());
        assert!(PyValue::parse("Counter({1: 2})").is_none());
    }

    #[test]
    fn prefix_parse_stops_after_the_literal() {
        let (v, n) = PyValue::parse_prefix("[1, 2] after the loop").unwrap();
        assert_eq!(v, p("[1,2]"));
        assert_eq!(n, 6);
        let (v, n) = PyValue::parse_prefix("5.").unwrap();
        assert_eq!((v, n), (p("5"), 1));
        let (v, _) = PyValue::parse_prefix("3.5, then").unwrap();
        assert_eq!(v, p("3.5"));
    }
}
