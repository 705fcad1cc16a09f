//! Strict JSON reader for ingest request bodies and stream records.
//!
//! Parses RFC 8259 JSON into a [`serde_json::Value`] equal to what `serde_json::from_slice`
//! gives, and refuses what serde_json would silently change or PostgreSQL `jsonb` would
//! refuse: duplicate keys, numbers that would not survive exactly, nesting deeper than a
//! limit, and NUL (`\u0000`) in strings or keys. Each refusal names the path of the value.
//!
//! Built on `jiter` (pydantic's pull parser): it hands over raw number text and one key at a
//! time with no recursion of its own, so this file keeps the nesting on a heap stack (100k
//! levels cannot overflow the call stack) and writes no tokenizer, at about serde_json's speed.
//!
//! A number is exact when serde_json keeps its value: integers in the `i64`/`u64` range, and
//! decimals or exponents where the f64 serde_json reads prints (as serde_json prints it) to the
//! same decimal value and reads back to the same f64. `0.1`, `1.10`, `1e2`, `-0.0` pass;
//! `18446744073709551617`, `0.30000000000000000001`, `12345678901234567.5`, `1e400` do not.
//! Without serde_json's `float_roundtrip` feature, serde_json misreads some long or far-scaled
//! decimals by one unit in the last place (`1.602176634e-19`), so those are refused too; that
//! feature (unlike `arbitrary_precision`) leaves `Value` as it is and makes them exact.

use std::fmt;
use std::mem;

use jiter::{Jiter, JiterError, JiterErrorType, JsonErrorType, LinePosition, Peek};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// The nesting limit of [`from_slice`] and [`from_str`]: arrays and objects inside each other.
///
/// Keep any custom limit under 128: serde_json itself refuses a document nested 128 levels deep,
/// so a deeper value could be stored but not read back with it.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// Longest key, in characters, quoted whole in an error's path; longer ones are cut with `…`.
const MAX_KEY_CHARS: usize = 64;
/// Longest path, in characters, quoted whole in an error; longer ones keep both ends.
const MAX_PATH_CHARS: usize = 400;
const PATH_HEAD_CHARS: usize = 120;

/// Why a document was refused.
///
/// The `Display` text is fit to show a client in a 400 response. For a per-field error body,
/// [`JsonError::path`] gives the field and `problem.to_string()` the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// Not JSON at all: a syntax error, invalid UTF-8, trailing characters, empty input.
    #[error("invalid JSON at line {line} column {column}: {message}")]
    Syntax {
        message: String,
        /// 1-based line of the offending byte.
        line: usize,
        /// 1-based byte column of the offending byte within its line.
        column: usize,
    },
    /// Well-formed JSON with a value this service will not take.
    #[error("{}: {problem}", path_or_top(.path))]
    Invalid {
        /// Where: `events[3].changes.amount`; empty for the top-level value itself.
        /// Keys in it are made printable and cut to 64 characters.
        path: String,
        problem: Problem,
    },
}

impl JsonError {
    /// The path of the refused value, or `None` for a syntax error.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Syntax { .. } => None,
            Self::Invalid { path, .. } => Some(path),
        }
    }
}

/// What is wrong with the value at an [`JsonError::Invalid`] path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("duplicate key (a key may appear only once in an object)")]
    DuplicateKey,
    #[error(
        "number cannot be stored exactly (outside the 64-bit integer range or beyond double \
         precision); send such values as strings"
    )]
    InexactNumber,
    #[error("nested deeper than {max_depth} levels of arrays and objects")]
    TooDeep { max_depth: usize },
    #[error("string contains a NUL character (\\u0000), which cannot be stored")]
    NulInString,
    #[error("key contains a NUL character (\\u0000), which cannot be stored")]
    NulInKey,
}

fn path_or_top(path: &str) -> &str {
    if path.is_empty() {
        "top-level value"
    } else {
        path
    }
}

/// Parses `bytes` strictly (see the module docs), with [`DEFAULT_MAX_DEPTH`].
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    from_slice_with_max_depth(bytes, DEFAULT_MAX_DEPTH)
}

/// Parses `text` strictly (see the module docs), with [`DEFAULT_MAX_DEPTH`].
pub fn from_str(text: &str) -> Result<Value, JsonError> {
    from_slice_with_max_depth(text.as_bytes(), DEFAULT_MAX_DEPTH)
}

/// Parses `bytes` strictly, allowing at most `max_depth` arrays and objects inside each other
/// (`0`: scalars only; `1`: `[1, 2]` but not `[[1]]`).
pub fn from_slice_with_max_depth(bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    parse(&mut Jiter::new(bytes), bytes, max_depth)
}

fn parse(jiter: &mut Jiter, bytes: &[u8], max_depth: usize) -> Result<Value, JsonError> {
    let syntax = |e: JiterError| syntax_error(bytes, e);
    // The containers still open, outermost first. Their nesting lives here, on the heap.
    let mut stack: Vec<Frame> = Vec::with_capacity(16);
    let mut peek = jiter.peek().map_err(syntax)?;
    loop {
        // Read the value that starts at `peek`; a non-empty array or object is opened and the
        // loop goes on with its first member.
        let mut value = match peek {
            Peek::Array | Peek::Object if stack.len() >= max_depth => {
                return Err(invalid(&stack, None, Problem::TooDeep { max_depth }));
            }
            Peek::Array => match jiter.known_array().map_err(syntax)? {
                Some(first) => {
                    stack.push(Frame::Array(Vec::new()));
                    peek = first;
                    continue;
                }
                None => Value::Array(Vec::new()),
            },
            Peek::Object => match jiter.known_object().map_err(syntax)? {
                Some(key) => {
                    stack.push(Frame::Object(Map::new(), String::new()));
                    accept_key(&mut stack, key)?;
                    peek = jiter.peek().map_err(syntax)?;
                    continue;
                }
                None => Value::Object(Map::new()),
            },
            Peek::String => {
                let s = jiter.known_str().map_err(syntax)?;
                if s.as_bytes().contains(&0) {
                    return Err(invalid(&stack, None, Problem::NulInString));
                }
                Value::String(s.to_owned())
            }
            Peek::Null => {
                jiter.known_null().map_err(syntax)?;
                Value::Null
            }
            Peek::True | Peek::False => Value::Bool(jiter.known_bool(peek).map_err(syntax)?),
            // Numbers, and anything else, which jiter refuses here with a syntax error.
            _ => match jiter.known_number_bytes(peek) {
                Ok(text) => match exact_number(text) {
                    Some(number) => Value::Number(number),
                    None => return Err(invalid(&stack, None, Problem::InexactNumber)),
                },
                // jiter's only "out of range": an integer part of over 4300 digits.
                Err(JiterError {
                    error_type: JiterErrorType::JsonError(JsonErrorType::NumberOutOfRange),
                    ..
                }) => {
                    return Err(invalid(&stack, None, Problem::InexactNumber));
                }
                Err(e) => return Err(syntax(e)),
            },
        };
        // Store the finished value in its container, closing every container it completes.
        loop {
            match stack.last_mut() {
                None => {
                    jiter.finish().map_err(syntax)?;
                    return Ok(value);
                }
                Some(Frame::Array(items)) => {
                    items.push(value);
                    if let Some(next) = jiter.array_step().map_err(syntax)? {
                        peek = next;
                        break;
                    }
                    let Some(Frame::Array(items)) = stack.pop() else {
                        unreachable!("the top frame is an array")
                    };
                    value = Value::Array(items);
                }
                Some(Frame::Object(map, key)) => {
                    // A duplicate key is refused here, once its value has been read.
                    match map.entry(mem::take(key)) {
                        Entry::Vacant(slot) => {
                            slot.insert(value);
                        }
                        Entry::Occupied(slot) => {
                            let key = slot.key().clone();
                            return Err(invalid(&stack, Some(&key), Problem::DuplicateKey));
                        }
                    }
                    if let Some(key) = jiter.next_key().map_err(syntax)? {
                        accept_key(&mut stack, key)?;
                        peek = jiter.peek().map_err(syntax)?;
                        break;
                    }
                    let Some(Frame::Object(map, _)) = stack.pop() else {
                        unreachable!("the top frame is an object")
                    };
                    value = Value::Object(map);
                }
            }
        }
    }
}

/// An open container: the members read so far, and for an object the key of the member being
/// read.
enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, String),
}

/// Makes `key` the pending key of the object on top of `stack`, unless it holds a NUL.
/// (Duplicates are caught when the member is stored, which costs no extra lookup.)
fn accept_key(stack: &mut [Frame], key: &str) -> Result<(), JsonError> {
    if key.as_bytes().contains(&0) {
        return Err(invalid(stack, Some(key), Problem::NulInKey));
    }
    if let Some(Frame::Object(_, pending)) = stack.last_mut() {
        *pending = key.to_owned();
    }
    Ok(())
}

/// The value of a number's text, or `None` when serde_json would not keep it exactly.
fn exact_number(text: &[u8]) -> Option<Number> {
    if text.iter().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        exact_float(text)
    } else {
        exact_integer(text)
    }
}

/// An integer (jiter has checked the grammar: an optional `-`, then digits without a leading 0)
/// as serde_json reads it, when it fits `u64` or `i64`.
fn exact_integer(text: &[u8]) -> Option<Number> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, text),
    };
    let mut magnitude: u64 = 0;
    for &digit in digits {
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if !negative {
        Some(Number::from(magnitude))
    } else if magnitude == 0 {
        // serde_json reads `-0` as the float -0.0 (and prints it back as `-0.0`).
        Number::from_f64(-0.0)
    } else {
        0i64.checked_sub_unsigned(magnitude).map(Number::from)
    }
}

/// A decimal or exponent number as serde_json reads it, when that f64 prints (as serde_json
/// prints it) to the same decimal value and reads back to the same f64, so the value survives
/// any number of serde_json round trips. Without serde_json's `float_roundtrip` feature its
/// reading is not always correctly rounded, hence the read back.
fn exact_float(text: &[u8]) -> Option<Number> {
    Number::from_f64(short_float(text).or_else(|| checked_float(text))?)
}

/// The full check of [`exact_float`], for any number text.
fn checked_float(text: &[u8]) -> Option<f64> {
    let decimal = Decimal::parse(text)?;
    let float: f64 = serde_json::from_slice(text).ok()?; // errs when out of range
    let mut buffer = [0u8; 32];
    let printed = print_f64(float, &mut buffer)?;
    if Decimal::parse(printed)? != decimal {
        return None;
    }
    let reread: f64 = serde_json::from_slice(printed).ok()?;
    (reread.to_bits() == float.to_bits()).then_some(float)
}

/// The fast path for everyday decimals (`19.99`, `52.52`, `2.5e-8`): at most 15 digits from the
/// first non-zero one, a power-of-ten scale within ±22, and a magnitude under 10^15. The digits
/// then fit an f64 exactly, so one correctly rounded multiply or divide by an exact power of ten
/// gives the f64, as serde_json computes it (with `float_roundtrip` or without); a decimal of at
/// most 15 significant digits is what that f64 prints back to; and under 10^15 the printed form
/// is one serde_json reads back exactly too. `None`: take the full check.
fn short_float(text: &[u8]) -> Option<f64> {
    const POW10: [f64; 23] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ];
    let (negative, mut bytes) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let mut significand: u64 = 0;
    let mut digits: i32 = 0;
    let mut fraction_digits: i32 = 0;
    let mut in_fraction = false;
    while let Some((&byte, rest)) = bytes.split_first() {
        match byte {
            b'0'..=b'9' => {
                significand = significand * 10 + u64::from(byte - b'0');
                if significand != 0 {
                    digits += 1;
                    if digits > 15 {
                        return None;
                    }
                }
                fraction_digits += i32::from(in_fraction);
                if fraction_digits > 400 {
                    return None; // only zeros so far, and no use reading them all here
                }
            }
            b'.' => in_fraction = true,
            _ => break, // `e` or `E`
        }
        bytes = rest;
    }
    let mut exponent: i32 = 0;
    if let Some((_, rest)) = bytes.split_first() {
        let (negative, digits) = match rest.split_first() {
            Some((b'-', digits)) => (true, digits),
            Some((b'+', digits)) => (false, digits),
            _ => (false, rest),
        };
        for &digit in digits {
            exponent = exponent * 10 + i32::from(digit - b'0');
            if exponent > 1000 {
                return None;
            }
        }
        if negative {
            exponent = -exponent;
        }
    }
    let scale = exponent - fraction_digits;
    if digits + scale > 15 {
        return None; // 10^15 or more: serde_json might misread the way it prints the value
    }
    let power = *POW10.get(scale.unsigned_abs() as usize)?;
    // Below 2^53 the conversion is exact.
    let mut float = significand as f64;
    if scale >= 0 {
        float *= power;
    } else {
        float /= power;
    }
    Some(if negative { -float } else { float })
}

/// `float` as serde_json writes it in a document.
fn print_f64(float: f64, buffer: &mut [u8; 32]) -> Option<&[u8]> {
    use serde_json::ser::{CompactFormatter, Formatter};
    let mut rest: &mut [u8] = buffer;
    CompactFormatter.write_f64(&mut rest, float).ok()?;
    let len = 32 - rest.len();
    Some(&buffer[..len])
}

/// The exact value of a JSON number's text: `±0.d₁d₂…dₙ × 10^exponent`, with `d₁ ≠ 0` and
/// `dₙ ≠ 0`, or no digits (and exponent 0) for zero. Two texts are equal numbers exactly when
/// their `Decimal`s are equal.
#[derive(Debug, PartialEq, Eq)]
struct Decimal {
    negative: bool,
    digits: [u8; 17],
    len: usize,
    exponent: i64,
}

impl Decimal {
    /// Reads valid JSON number text. `None` when it has more than 17 significant digits:
    /// serde_json never prints an f64 with more, so such a value cannot be exact.
    fn parse(text: &[u8]) -> Option<Self> {
        let mut decimal = Self {
            negative: false,
            digits: [0; 17],
            len: 0,
            exponent: 0,
        };
        let mut bytes = text;
        if let Some((b'-', rest)) = bytes.split_first() {
            decimal.negative = true;
            bytes = rest;
        }
        let mut integer_digits: i64 = 0;
        let mut in_fraction = false;
        let mut leading_zeros: i64 = 0;
        let mut pending_zeros = 0;
        let mut at = 0;
        while let Some(&byte) = bytes.get(at) {
            match byte {
                b'0' => {
                    if decimal.len == 0 {
                        leading_zeros += 1;
                    } else {
                        pending_zeros += 1;
                    }
                }
                b'1'..=b'9' => {
                    // Zeros between significant digits count; trailing ones do not.
                    decimal.len += pending_zeros;
                    pending_zeros = 0;
                    *decimal.digits.get_mut(decimal.len)? = byte - b'0';
                    decimal.len += 1;
                }
                b'.' => in_fraction = true,
                _ => break, // `e` or `E`
            }
            if byte.is_ascii_digit() && !in_fraction {
                integer_digits += 1;
            }
            at += 1;
        }
        if decimal.len == 0 {
            return Some(decimal);
        }
        let mut exponent: i64 = 0;
        if let Some(rest) = bytes.get(at + 1..) {
            let (negative, digits) = match rest.split_first() {
                Some((b'-', digits)) => (true, digits),
                Some((b'+', digits)) => (false, digits),
                _ => (false, rest),
            };
            for &digit in digits {
                // Saturate: far beyond any f64, and no overflow on a megabyte of digits.
                exponent = (exponent * 10 + i64::from(digit - b'0')).min(1 << 40);
            }
            if negative {
                exponent = -exponent;
            }
        }
        decimal.exponent = exponent + integer_digits - leading_zeros;
        Some(decimal)
    }
}

fn syntax_error(bytes: &[u8], error: JiterError) -> JsonError {
    let message = match error.error_type {
        JiterErrorType::JsonError(JsonErrorType::InvalidUnicodeCodePoint) => {
            "invalid UTF-8 in string".to_owned()
        }
        other => other.to_string(),
    };
    let LinePosition { line, column } = LinePosition::find(bytes, error.index);
    JsonError::Syntax {
        message,
        line,
        column,
    }
}

/// The error for the value at the position `stack` is reading, or with `key`, for that key of
/// the object on top of `stack`.
fn invalid(stack: &[Frame], key: Option<&str>, problem: Problem) -> JsonError {
    let (frames, key) = match key {
        Some(key) => (&stack[..stack.len().saturating_sub(1)], Some(key)),
        None => (stack, None),
    };
    let mut path = String::new();
    for frame in frames {
        match frame {
            Frame::Array(items) => push_index(&mut path, items.len()),
            Frame::Object(_, key) => push_key(&mut path, key),
        }
    }
    if let Some(key) = key {
        push_key(&mut path, key);
    }
    JsonError::Invalid {
        path: shorten(path),
        problem,
    }
}

fn push_index(path: &mut String, index: usize) {
    use fmt::Write;
    let _ = write!(path, "[{index}]");
}

/// Appends `.key` (or `key` at the start), printable and at most [`MAX_KEY_CHARS`] long.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    for (count, c) in key.chars().enumerate() {
        if count == MAX_KEY_CHARS {
            path.push('…');
            break;
        }
        path.push(if is_unprintable(c) { '?' } else { c });
    }
}

/// Control characters, and the invisible ones that reorder or hide text in a message.
fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Keeps a path under [`MAX_PATH_CHARS`]: its start and its end, joined by `…`.
fn shorten(path: String) -> String {
    let count = path.chars().count();
    if count <= MAX_PATH_CHARS {
        return path;
    }
    let tail = MAX_PATH_CHARS - PATH_HEAD_CHARS - 1;
    let mut short: String = path.chars().take(PATH_HEAD_CHARS).collect();
    short.push('…');
    short.extend(path.chars().skip(count - tail));
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value serde_json gives, which a valid document must give here too.
    fn serde(doc: &[u8]) -> Value {
        serde_json::from_slice(doc).expect("serde_json reads it")
    }

    /// Parses a document that must be accepted, and checks it gives exactly serde_json's value
    /// (the text comparison tells -0.0 from 0.0, which `Value`'s `==` does not).
    fn accepted(doc: &str) -> Value {
        let value = from_str(doc).unwrap_or_else(|e| panic!("{doc:?} refused: {e}"));
        let expected = serde(doc.as_bytes());
        assert_eq!(value, expected, "{doc:?}");
        assert_eq!(value.to_string(), expected.to_string(), "{doc:?}");
        value
    }

    /// The path and problem of a document that must be refused as invalid.
    fn refused(doc: &[u8], max_depth: usize) -> (String, Problem) {
        match from_slice_with_max_depth(doc, max_depth) {
            Err(JsonError::Invalid { path, problem }) => (path, problem),
            other => panic!("{:?}: expected an invalid value, got {other:?}", lossy(doc)),
        }
    }

    fn refused_str(doc: &str) -> (String, Problem) {
        refused(doc.as_bytes(), DEFAULT_MAX_DEPTH)
    }

    /// The error of a document that must be refused as a syntax error.
    fn syntax_refused(doc: &[u8]) -> JsonError {
        match from_slice(doc) {
            Err(e @ JsonError::Syntax { .. }) => e,
            other => panic!("{:?}: expected a syntax error, got {other:?}", lossy(doc)),
        }
    }

    fn lossy(doc: &[u8]) -> String {
        let text = String::from_utf8_lossy(doc);
        text.chars().take(200).collect()
    }

    fn nested(open: &str, close: &str, levels: usize, inner: &str) -> String {
        let mut doc = String::with_capacity((open.len() + close.len()) * levels + inner.len());
        for _ in 0..levels {
            doc.push_str(open);
        }
        doc.push_str(inner);
        for _ in 0..levels {
            doc.push_str(close);
        }
        doc
    }

    /// Runs `f` on a thread with a 256 KiB stack: any recursion per level of nesting would
    /// overflow it long before 100k levels.
    fn on_a_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(f)
            .expect("thread starts")
            .join()
            .expect("no stack overflow or panic")
    }

    /// Drops a value of any depth without recursion (`Value`'s own drop recurses).
    fn dismantle(value: Value) {
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            match value {
                Value::Array(items) => pending.extend(items),
                Value::Object(map) => pending.extend(map.into_iter().map(|(_, v)| v)),
                _ => {}
            }
        }
    }

    /// Whether this build's serde_json reads every float correctly rounded (its
    /// `float_roundtrip` feature); 1.602176634e-19 is one it misreads without it.
    fn serde_json_reads_floats_exactly() -> bool {
        serde_json::from_str::<f64>("1.602176634e-19").unwrap() == 1.602_176_634e-19
    }

    /// A small deterministic generator (xorshift64), so the randomized tests repeat exactly.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const EVENT: &str = r#"{
        "id": "evt_01J9ZK3M4N5P6Q7R8S9T0V1W2X",
        "tenant_id": "acme",
        "occurred_at": "2024-11-05T14:23:07.123Z",
        "actor_id": "user_123",
        "action": "billing_update",
        "resource_type": "invoice",
        "resource_id": "inv_999",
        "changes": {
            "status": {"before": "pending", "after": "paid"},
            "amount": {"before": 500, "after": 525.75},
            "items": [{"sku": "A-1", "qty": 2, "price": 19.99}, {"sku": "B-7", "qty": 1}],
            "paid_at": {"before": null, "after": "2024-11-05T14:23:05Z"},
            "flagged": false
        },
        "metadata": {"ip": "192.168.1.50", "geo": {"lat": 52.52, "lon": 13.405}, "tags": ["q4", "caf\u00e9"]}
    }"#;

    /// Valid documents, each of which must give exactly serde_json's value.
    const VALID: &[&str] = &[
        EVENT,
        "null",
        "true",
        "false",
        "0",
        "-0",
        "42",
        "-42",
        "\"\"",
        "\"text\"",
        "[]",
        "{}",
        "[[]]",
        "[{}]",
        "{\"a\":{}}",
        " \t\r\n[ 1 , 2 ,\t3 ]\r\n ",
        "[1,-1,0,-0,18446744073709551615,9223372036854775807,-9223372036854775808]",
        "[0.1,1.5,1e2,1E2,1e+2,1E-2,-0.0,0.0,1.10,0e0,-0e-5,100.000,0.000001]",
        "[19.99,525.75,52.52,13.405,-273.15,6.02214076e23,2.5e-8,1e-7,123456.789]",
        "[1e22,1e23,1e300,5e-324,1.7976931348623157e308,2.2250738585072014e-308]",
        "[0.30000000000000004,0.3333333333333333,3.141592653589793,2.718281828459045]",
        "[1.0000000000000000000000000000000000000000,0.10000000000000000000000000000]",
        "[9007199254740993,9007199254740992.0,2251799813685248.5,1e-5,1.5e-5]",
        r#""\" \\ \/ \b \f \n \r \t""#,
        r#""\u00e9 \u20ac \ud83d\ude00 \uFFFF \u001f""#,
        "\"é € 😀 日本語\"",
        r#""not a NUL: \\u0000""#,
        r#"{"a":1,"b":2,"A":3,"aa":4,"":5," ":6}"#,
        r#"{"caf\u00e9":1,"café2":2,"\ud83d\ude00":3}"#,
        r#"{"x":[{"k":1},{"k":2}],"y":{"k":{"k":{"k":null}}}}"#,
        r#"[{"a":[{"b":[{"c":[1,[2,[3]]]}]}]}]"#,
        r#"{"events":[{"action":"a"},{"action":"b"},{"action":"c"},{"action":"d"}]}"#,
    ];

    #[test]
    fn valid_documents_give_exactly_the_value_serde_json_gives() {
        for doc in VALID {
            accepted(doc);
        }
    }

    #[test]
    fn from_str_and_from_slice_agree() {
        for doc in VALID {
            assert_eq!(from_str(doc), from_slice(doc.as_bytes()));
        }
        assert_eq!(from_str("[1,"), from_slice(b"[1,"));
    }

    #[test]
    fn a_duplicate_key_is_refused_with_its_path() {
        assert_eq!(
            refused_str(r#"{"a":1,"b":2,"a":3}"#),
            ("a".into(), Problem::DuplicateKey)
        );
        assert_eq!(
            refused_str(r#"{"changes":{"status":{"before":"a","after":"b","after":"c"}}}"#),
            ("changes.status.after".into(), Problem::DuplicateKey)
        );
    }

    #[test]
    fn a_duplicate_key_in_a_nested_array_of_objects_is_refused_with_its_path() {
        let doc = r#"{"events":[{"action":"a"},{"action":"b"},{"action":"c"},
            {"action":"d","actor":"x","action":"e"}]}"#;
        assert_eq!(
            refused_str(doc),
            ("events[3].action".into(), Problem::DuplicateKey)
        );
        let doc = r#"[[{"k":[{"x":1}]}],[{"k":[{"x":1},{"y":2,"x":1,"x":1}]}]]"#;
        assert_eq!(
            refused_str(doc),
            ("[1][0].k[1].x".into(), Problem::DuplicateKey)
        );
    }

    #[test]
    fn keys_spelled_differently_but_equal_once_unescaped_are_duplicates() {
        assert_eq!(
            refused_str(r#"{"a":1,"\u0061":2}"#),
            ("a".into(), Problem::DuplicateKey)
        );
        assert_eq!(
            refused_str(r#"{"é":1,"\u00e9":2}"#),
            ("é".into(), Problem::DuplicateKey)
        );
    }

    #[test]
    fn the_same_key_in_sibling_or_nested_objects_is_not_a_duplicate() {
        accepted(r#"{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}],"c":{"a":1}}"#);
        accepted(r#"{"a":1,"A":2,"a ":3}"#);
    }

    #[test]
    fn integers_outside_the_64_bit_range_are_refused_with_their_path() {
        for number in [
            "18446744073709551616",
            "18446744073709551617",
            "-9223372036854775809",
            "-18446744073709551616",
            "100000000000000000000",
            "123456789012345678901234567890",
        ] {
            let doc = format!(r#"{{"changes":{{"amount":{number}}}}}"#);
            assert_eq!(
                refused_str(&doc),
                ("changes.amount".into(), Problem::InexactNumber),
                "{number}"
            );
        }
    }

    #[test]
    fn integers_at_the_edges_of_the_64_bit_range_are_kept() {
        let value = accepted("[18446744073709551615,9223372036854775807,-9223372036854775808]");
        assert_eq!(value[0].as_u64(), Some(u64::MAX));
        assert_eq!(value[1].as_i64(), Some(i64::MAX));
        assert_eq!(value[2].as_i64(), Some(i64::MIN));
        // As serde_json does, `-0` becomes the float -0.0.
        assert_eq!(accepted("-0").to_string(), "-0.0");
    }

    #[test]
    fn a_number_too_long_to_read_is_refused_as_inexact() {
        let doc = format!("[1,{}]", "9".repeat(5000));
        assert_eq!(
            refused(doc.as_bytes(), 8),
            ("[1]".into(), Problem::InexactNumber)
        );
        let doc = format!("[-{}.5]", "9".repeat(5000));
        assert_eq!(
            refused(doc.as_bytes(), 8),
            ("[0]".into(), Problem::InexactNumber)
        );
    }

    #[test]
    fn decimals_that_would_lose_digits_are_refused_with_their_path() {
        for number in [
            "0.30000000000000000001",
            "12345678901234567.5",
            "9007199254740993.0",
            "1.00000000000000000000001",
            "0.1000000000000000055511151231257827",
            "4.9406564584124654e-324",
            "123456789.123456789",
        ] {
            let doc = format!(r#"{{"events":[{{}},{{"changes":{{"amount":{number}}}}}]}}"#);
            assert_eq!(
                refused_str(&doc),
                ("events[1].changes.amount".into(), Problem::InexactNumber),
                "{number}"
            );
        }
    }

    #[test]
    fn numbers_beyond_the_f64_range_are_refused() {
        for number in [
            "1e400",
            "-1e400",
            "1e309",
            "1e-400",
            "-2e-400",
            "1e99999999999999999999999",
            "1e-99999999999999999999999",
        ] {
            assert_eq!(
                refused_str(&format!("{{\"x\":{number}}}")),
                ("x".into(), Problem::InexactNumber),
                "{number}"
            );
        }
    }

    #[test]
    fn zero_with_any_exponent_is_kept() {
        accepted("[0e99999999999999999999,-0e-99999999999999999999,0.000e5,0E0]");
    }

    #[test]
    fn decimals_whose_value_survives_are_kept_as_serde_json_prints_them() {
        for (number, printed) in [
            ("0.1", "0.1"),
            ("1.5", "1.5"),
            ("1e2", "100.0"),
            ("1E+2", "100.0"),
            ("-0.0", "-0.0"),
            ("1.10", "1.1"),
            ("100.000", "100.0"),
            ("0.5e-3", "0.0005"),
            ("525.75", "525.75"),
            ("1e20", "1e+20"),
            ("1.0000000000000000000000", "1.0"),
            ("5e-324", "5e-324"),
            ("1.7976931348623157e308", "1.7976931348623157e+308"),
        ] {
            assert_eq!(accepted(number).to_string(), printed, "{number}");
        }
    }

    #[test]
    fn a_decimal_serde_json_would_misread_is_refused_unless_it_reads_floats_exactly() {
        // Without serde_json's float_roundtrip feature it reads this 1 ulp off, so the value
        // would not survive; with it, the value is exact and kept.
        let doc = r#"{"charge":1.602176634e-19}"#;
        if serde_json_reads_floats_exactly() {
            accepted(doc);
        } else {
            assert_eq!(refused_str(doc), ("charge".into(), Problem::InexactNumber));
        }
    }

    #[test]
    fn the_fast_path_for_short_decimals_agrees_with_the_full_check() {
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        let mut taken = 0;
        for _ in 0..50_000 {
            let digits: String = (0..1 + rng.below(15))
                .map(|i| {
                    char::from(
                        b'0' + (if i == 0 {
                            1 + rng.below(9)
                        } else {
                            rng.below(10)
                        }) as u8,
                    )
                })
                .collect();
            let mut text = String::new();
            if rng.below(2) == 0 {
                text.push('-');
            }
            let point = rng.below(digits.len() + 2);
            if point == 0 || point >= digits.len() {
                text.push_str(&digits);
                if point > digits.len() {
                    text.push_str(".0");
                }
            } else {
                text.push_str(&digits[..point]);
                text.push('.');
                text.push_str(&digits[point..]);
            }
            if rng.below(3) > 0 {
                let sign = ["", "-", "+"][rng.below(3)];
                text.push_str(&format!("e{sign}{}", rng.below(40)));
            }
            if let Some(fast) = short_float(text.as_bytes()) {
                taken += 1;
                let full = checked_float(text.as_bytes());
                assert_eq!(full.map(f64::to_bits), Some(fast.to_bits()), "{text}");
                let expected: f64 = serde_json::from_str(&text).unwrap();
                assert_eq!(fast.to_bits(), expected.to_bits(), "{text}");
            }
        }
        assert!(taken > 10_000, "the fast path was taken {taken} times");
    }

    #[test]
    fn nesting_up_to_max_depth_is_kept_and_one_level_more_is_refused_with_its_path() {
        for max_depth in [1, 2, 5, 64] {
            let ok = nested("[", "]", max_depth, "1");
            assert_eq!(
                from_slice_with_max_depth(ok.as_bytes(), max_depth),
                Ok(serde(ok.as_bytes()))
            );
            let too_deep = nested("[", "]", max_depth + 1, "1");
            let (path, problem) = refused(too_deep.as_bytes(), max_depth);
            assert_eq!(problem, Problem::TooDeep { max_depth });
            assert_eq!(path, "[0]".repeat(max_depth));
        }
        let doc = r#"{"a":[1,{"b":{"c":{}}}]}"#;
        assert_eq!(
            refused(doc.as_bytes(), 3),
            ("a[1].b".into(), Problem::TooDeep { max_depth: 3 })
        );
        assert_eq!(
            refused(doc.as_bytes(), 4),
            ("a[1].b.c".into(), Problem::TooDeep { max_depth: 4 })
        );
        assert!(from_slice_with_max_depth(doc.as_bytes(), 5).is_ok());
    }

    #[test]
    fn max_depth_zero_allows_only_scalars() {
        assert_eq!(from_slice_with_max_depth(b"\"s\"", 0), Ok(Value::from("s")));
        assert_eq!(
            refused(b"[]", 0),
            (String::new(), Problem::TooDeep { max_depth: 0 })
        );
        assert_eq!(
            refused(b"{}", 0),
            (String::new(), Problem::TooDeep { max_depth: 0 })
        );
    }

    #[test]
    fn the_default_depth_limit_is_64_levels() {
        let ok = nested("{\"a\":", "}", DEFAULT_MAX_DEPTH, "1");
        accepted(&ok);
        let too_deep = nested("{\"a\":", "}", DEFAULT_MAX_DEPTH + 1, "1");
        let (path, problem) = refused_str(&too_deep);
        assert_eq!(problem, Problem::TooDeep { max_depth: 64 });
        assert_eq!(path, vec!["a"; 64].join("."));
    }

    #[test]
    fn a_hundred_thousand_nested_arrays_and_objects_are_refused_without_overflowing_the_stack() {
        on_a_small_stack(|| {
            for doc in [
                nested("[", "]", 100_000, ""),
                "[".repeat(100_000),
                nested("{\"k\":", "}", 100_000, "0"),
                "{\"k\":".repeat(100_000),
                nested("[{\"k\":", "}]", 50_000, "0"),
            ] {
                let (_, problem) = refused(doc.as_bytes(), DEFAULT_MAX_DEPTH);
                assert_eq!(problem, Problem::TooDeep { max_depth: 64 });
            }
        });
    }

    #[test]
    fn a_hundred_thousand_levels_are_read_without_recursion_when_the_limit_allows() {
        on_a_small_stack(|| {
            let doc = nested("[{\"k\":", "}]", 50_000, "[0.5]");
            let value = from_slice_with_max_depth(doc.as_bytes(), usize::MAX).unwrap();
            let mut depth = 0;
            let mut at = &value;
            loop {
                match at {
                    Value::Array(items) => at = &items[0],
                    Value::Object(map) => at = &map["k"],
                    _ => break,
                }
                depth += 1;
            }
            assert_eq!((depth, at), (100_001, &Value::from(0.5)));
            dismantle(value);
            // An unclosed one fails cleanly, dropping what it had built.
            let doc = "[{\"k\":[1,2,".repeat(50_000);
            assert!(matches!(
                from_slice_with_max_depth(doc.as_bytes(), usize::MAX),
                Err(JsonError::Syntax { .. })
            ));
        });
    }

    #[test]
    fn a_nul_in_a_string_is_refused_with_its_path() {
        assert_eq!(
            refused_str(r#"{"metadata":{"note":"a\u0000b"}}"#),
            ("metadata.note".into(), Problem::NulInString)
        );
        assert_eq!(
            refused_str(r#"["ok","\u0000"]"#),
            ("[1]".into(), Problem::NulInString)
        );
        assert_eq!(
            refused_str(r#""\u0000""#),
            (String::new(), Problem::NulInString)
        );
    }

    #[test]
    fn a_nul_in_a_key_is_refused_with_its_path() {
        assert_eq!(
            refused_str(r#"{"changes":{"st\u0000atus":1}}"#),
            ("changes.st?atus".into(), Problem::NulInKey)
        );
        assert_eq!(
            refused_str(r#"[{"\u0000":1}]"#),
            ("[0].?".into(), Problem::NulInKey)
        );
    }

    #[test]
    fn an_escaped_backslash_before_u0000_is_not_a_nul() {
        let value = accepted(r#"{"a\\u0000":"b\\u0000"}"#);
        assert_eq!(value["a\\u0000"], "b\\u0000");
    }

    #[test]
    fn a_raw_nul_or_other_control_byte_in_a_string_is_a_syntax_error() {
        syntax_refused(b"\"a\0b\"");
        syntax_refused(b"{\"a\0\":1}");
        syntax_refused(b"\"tab\there\"");
        syntax_refused(b"\"line\nbreak\"");
    }

    #[test]
    fn syntax_errors_are_refused_with_line_and_column_as_serde_json_refuses_them() {
        let invalid: &[&[u8]] = &[
            b"",
            b"   ",
            b"[1,2",
            b"[1,]",
            b"[,1]",
            b"{\"a\":1,}",
            b"{\"a\" 1}",
            b"{\"a\":}",
            b"{1:2}",
            b"{a:1}",
            b"{'a':1}",
            b"[1 2]",
            b"01",
            b"-",
            b"1.",
            b".5",
            b"+1",
            b"1e",
            b"1e+",
            b"0x10",
            b"NaN",
            b"Infinity",
            b"-Infinity",
            b"tru",
            b"nul",
            b"True",
            b"\"abc",
            b"\"\\x\"",
            b"\"\\u12\"",
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"[1]]",
            b"{}}",
            b"1 2",
            b"[] x",
            b"\"a\" \"b\"",
            b"\xef\xbb\xbf{}",
            b"\x0c{}",
            b"[1]\x00",
            b"// comment\n1",
            b"[1,/*c*/2]",
        ];
        for doc in invalid {
            assert!(
                serde_json::from_slice::<Value>(doc).is_err(),
                "{:?}",
                lossy(doc)
            );
            let JsonError::Syntax { message, line, .. } = syntax_refused(doc) else {
                unreachable!()
            };
            assert!(!message.is_empty() && line == 1, "{:?}", lossy(doc));
        }
    }

    #[test]
    fn a_syntax_error_names_its_line_and_column() {
        let error = syntax_refused(b"{\n  \"a\": 1\n  \"b\": 2\n}");
        assert_eq!(
            error,
            JsonError::Syntax {
                message: "expected `,` or `}`".into(),
                line: 3,
                column: 3
            }
        );
        assert_eq!(
            error.to_string(),
            "invalid JSON at line 3 column 3: expected `,` or `}`"
        );
    }

    #[test]
    fn trailing_characters_are_refused() {
        for doc in [&b"{} {}"[..], b"1 x", b"null,", b"[]\n]", b"\"a\"\"b\""] {
            let JsonError::Syntax { message, .. } = syntax_refused(doc) else {
                unreachable!()
            };
            assert_eq!(message, "trailing characters", "{:?}", lossy(doc));
        }
    }

    #[test]
    fn invalid_utf8_is_refused() {
        let invalid: &[&[u8]] = &[
            b"\"\xff\"",
            b"\"\xc3\"",
            b"\"\xc3(\"",
            b"\"\xc0\xaf\"",         // overlong '/'
            b"\"\xed\xa0\x80\"",     // a surrogate, encoded
            b"\"\xf4\x90\x80\x80\"", // beyond U+10FFFF
            b"{\"\xff\":1}",
            b"[1,\xff]",
            b"\xff",
        ];
        for doc in invalid {
            assert!(serde_json::from_slice::<Value>(doc).is_err());
            syntax_refused(doc);
        }
        let JsonError::Syntax { message, .. } = syntax_refused(b"[\"ok\",\"\xe2\x82\"]") else {
            unreachable!()
        };
        assert_eq!(message, "invalid UTF-8 in string");
    }

    #[test]
    fn paths_join_keys_with_dots_and_indexes_in_brackets() {
        let doc = r#"[{"a":[0,{"b":{"c":1e400}}]}]"#;
        assert_eq!(refused_str(doc).0, "[0].a[1].b.c");
        let doc = r#"{"a":[[0,[1,2,1e400]]]}"#;
        assert_eq!(refused_str(doc).0, "a[0][1][2]");
        assert_eq!(refused_str("[0,1,2,3,1e400]").0, "[4]");
    }

    #[test]
    fn control_and_invisible_characters_in_a_key_are_printed_as_question_marks() {
        let doc = r#"{"a\u0007b\nc\u202ed":{"x":1,"x":2}}"#;
        assert_eq!(refused_str(doc).0, "a?b?c?d.x");
    }

    #[test]
    fn a_long_key_is_cut_to_64_characters_in_the_path() {
        let key = "k".repeat(10_000);
        let doc = format!(r#"{{"{key}":1,"{key}":2}}"#);
        assert_eq!(refused_str(&doc).0, format!("{}…", "k".repeat(64)));
        let key = "é".repeat(100);
        let doc = format!(r#"{{"{key}":{{"x":1e400}}}}"#);
        assert_eq!(refused_str(&doc).0, format!("{}….x", "é".repeat(64)));
        let key = "k".repeat(64);
        let doc = format!(r#"{{"{key}":1e400}}"#);
        assert_eq!(refused_str(&doc).0, key);
    }

    #[test]
    fn a_path_through_many_long_keys_keeps_both_ends_and_stays_short() {
        let mut doc = String::new();
        for level in 0..100 {
            doc.push_str(&format!("{{\"{level:02}{}\":", "k".repeat(62)));
        }
        doc.push_str("1e400");
        doc.push_str(&"}".repeat(100));
        let (path, _) = refused(doc.as_bytes(), 1000);
        assert_eq!(path.chars().count(), MAX_PATH_CHARS);
        assert!(path.starts_with(&format!("00{}.01", "k".repeat(62))));
        assert!(path.ends_with(&format!(".98{}.99{}", "k".repeat(62), "k".repeat(62))));
        assert!(path.contains("k…"));
        let message = from_slice_with_max_depth(doc.as_bytes(), 1000)
            .unwrap_err()
            .to_string();
        assert!(message.len() < 700, "{} bytes", message.len());
    }

    #[test]
    fn error_messages_name_the_path_and_say_what_to_do() {
        let message = |doc: &str| from_str(doc).unwrap_err().to_string();
        assert_eq!(
            message(r#"{"events":[{"action":"a","action":"b"}]}"#),
            "events[0].action: duplicate key (a key may appear only once in an object)"
        );
        assert_eq!(
            message(r#"{"amount":18446744073709551617}"#),
            "amount: number cannot be stored exactly (outside the 64-bit integer range or \
             beyond double precision); send such values as strings"
        );
        assert_eq!(
            message("1e400"),
            "top-level value: number cannot be stored exactly (outside the 64-bit integer \
             range or beyond double precision); send such values as strings"
        );
        assert_eq!(
            message(&nested("[", "]", 65, "")),
            format!(
                "{}: nested deeper than 64 levels of arrays and objects",
                "[0]".repeat(64)
            )
        );
        assert_eq!(
            message(r#"{"note":"\u0000"}"#),
            "note: string contains a NUL character (\\u0000), which cannot be stored"
        );
        assert_eq!(
            message(r#"{"\u0000":1}"#),
            "?: key contains a NUL character (\\u0000), which cannot be stored"
        );
        assert_eq!(
            message("[1,]"),
            "invalid JSON at line 1 column 4: trailing comma"
        );
    }

    #[test]
    fn the_path_accessor_names_the_refused_field() {
        assert_eq!(
            from_str(r#"{"changes":{"amount":1e400}}"#)
                .unwrap_err()
                .path(),
            Some("changes.amount")
        );
        assert_eq!(from_str("1e400").unwrap_err().path(), Some(""));
        assert_eq!(from_str("[").unwrap_err().path(), None);
    }

    #[test]
    fn mutated_documents_are_accepted_only_as_serde_json_reads_them() {
        // Random edits of valid documents. Whatever is accepted must read exactly as serde_json
        // reads it; whatever serde_json refuses must be refused; a syntax error here must be
        // one for serde_json too.
        const BYTES: &[u8] = b"{}[],:\"\\0159.eE-+ tfnul\x00\x07\xff\xc3";
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let (mut accepted_count, mut invalid_count) = (0, 0);
        for _ in 0..20_000 {
            let mut doc = VALID[rng.below(VALID.len())].as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(doc.len() + 1);
                match rng.below(4) {
                    0 if at < doc.len() => doc[at] = BYTES[rng.below(BYTES.len())],
                    1 if at < doc.len() => {
                        doc.remove(at);
                    }
                    2 => doc.insert(at, BYTES[rng.below(BYTES.len())]),
                    _ => {
                        let from = rng.below(doc.len() + 1);
                        let len = rng.below(8).min(doc.len() - from);
                        let copy = doc[from..from + len].to_vec();
                        doc.splice(at..at, copy);
                    }
                }
            }
            let theirs = serde_json::from_slice::<Value>(&doc);
            match (from_slice(&doc), theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(ours, theirs, "{:?}", lossy(&doc));
                    assert_eq!(ours.to_string(), theirs.to_string(), "{:?}", lossy(&doc));
                    accepted_count += 1;
                }
                (Ok(_), Err(e)) => panic!("{:?} accepted, serde_json says {e}", lossy(&doc)),
                (Err(JsonError::Syntax { message, .. }), Ok(_)) => {
                    panic!(
                        "{:?} refused as {message}, serde_json reads it",
                        lossy(&doc)
                    )
                }
                (Err(JsonError::Invalid { .. }), _) => invalid_count += 1,
                (Err(JsonError::Syntax { .. }), Err(_)) => {}
            }
        }
        assert!(
            accepted_count > 1000 && invalid_count > 100,
            "{accepted_count} {invalid_count}"
        );
    }
}
