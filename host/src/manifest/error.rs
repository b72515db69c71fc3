//! The one error type for bad input files (manifests and presets), and the
//! helpers that turn byte offsets into line/column and field paths.
//!
//! Every error says where (file, line, column), what (the field path and the
//! bad value) and what would have been accepted, so that a user can fix the
//! file from the message alone:
//!
//! ```text
//! incoming/a.toml:12:9: field `video[0].clip[1].opacity`: value 1.5 is out of range (expected a number from 0 to 1)
//! ```

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// A bad manifest or preset. `message` is written to read after the field:
/// it names the bad value itself (the `value` field carries the same text for
/// machines, e.g. the JSON report).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
pub struct InputError {
    /// The file the input came from (`builtin:…` for embedded presets).
    pub file: PathBuf,
    /// 1-based line, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column in characters.
    pub column: Option<usize>,
    /// Path of the field, e.g. `video[0].clip[1].opacity`.
    pub field: Option<String>,
    /// The bad value as written in the file (TOML syntax, strings quoted).
    pub value: Option<String>,
    pub message: String,
    /// What would have been accepted.
    pub expected: Option<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(expected) = &self.expected {
            write!(f, " (expected {expected})")?;
        }
        Ok(())
    }
}

impl InputError {
    /// An error about `file` with no position yet; add one with the builders.
    pub fn new(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            file: file.into(),
            line: None,
            column: None,
            field: None,
            value: None,
            message: message.into(),
            expected: None,
        }
    }

    /// The common case: `field` has the bad `value` (TOML text) at `span` of
    /// `src`; the message reads "value {value} {predicate}".
    pub fn bad_value(
        file: &Path,
        src: &str,
        span: Range<usize>,
        field: impl Into<String>,
        predicate: impl fmt::Display,
        expected: impl Into<String>,
    ) -> Self {
        let value = snippet(src, span.clone());
        Self::new(file, format!("value {value} {predicate}"))
            .at_byte(src, span.start)
            .field(field)
            .value(value)
            .expected(expected)
    }

    /// Sets the 1-based line and column.
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Sets line and column from a byte offset into `src`.
    pub fn at_byte(self, src: &str, byte: usize) -> Self {
        let (line, column) = line_col(src, byte);
        self.at(line, column)
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Re-targets the error at another file (e.g. a preset error reported
    /// against the manifest that asked for the preset).
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = file.into();
        self
    }
}

/// 1-based (line, column) of byte offset `byte` in `src`; the column counts
/// characters, as editors do. Offsets past the end point just after the last
/// character; an offset inside a multi-byte character counts that character.
pub fn line_col(src: &str, byte: usize) -> (usize, usize) {
    let mut byte = byte.min(src.len());
    while !src.is_char_boundary(byte) {
        byte -= 1;
    }
    let before = &src[..byte];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// The source text of `span`, on one line and at most 60 characters, for
/// quoting a bad value.
pub(crate) fn snippet(src: &str, span: Range<usize>) -> String {
    const MAX: usize = 60;
    let text = src.get(span).unwrap_or("").trim();
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if one_line.chars().count() > MAX {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

/// Appends a key to a field path, quoting keys that are not bare TOML keys.
pub(crate) fn join_key(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// The field path (e.g. `video[0].clip[1].opacity`) of the key or value whose
/// span is the smallest one containing `byte`; `None` when nothing there has
/// a name. Documents with syntax errors are parsed as far as they go, so a
/// syntax error inside a value still names its field.
pub(crate) fn path_at(src: &str, byte: usize) -> Option<String> {
    let (doc, _errors) = DeTable::parse_recoverable(src);
    let mut best: Option<(usize, String)> = None;
    walk_table(doc.get_ref(), "", byte, &mut best);
    best.map(|(_, path)| path)
}

/// For syntax errors: the path at `byte` only when it is found on the same
/// line (a recovering parser can attach text to the wrong key); failing that,
/// the key that starts the line, when the error comes after it.
fn syntax_path_at(src: &str, byte: usize) -> Option<String> {
    let byte = byte.min(src.len());
    let line_start = src[..byte].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[byte..].find('\n').map_or(src.len(), |i| byte + i);
    let (doc, _errors) = DeTable::parse_recoverable(src);
    let on_line = |at: usize| -> Option<String> {
        let mut best: Option<(usize, String)> = None;
        let mut spans = Vec::new();
        walk_table_spans(doc.get_ref(), "", at, &mut best, &mut spans);
        let path = best?.1;
        spans
            .iter()
            .any(|(span, p)| {
                *p == path && span.start >= line_start && span.start < line_end.max(line_start + 1)
            })
            .then_some(path)
    };
    if let Some(path) = on_line(byte) {
        return Some(path);
    }
    let first = line_end
        - src[line_start..line_end]
            .trim_start_matches([' ', '\t'])
            .len();
    if first < byte && !src[first..].starts_with('[') {
        return on_line(first);
    }
    None
}

/// Like [`walk_table`], also recording the spans of keys and scalar values
/// with their paths.
fn walk_table_spans(
    table: &DeTable<'_>,
    prefix: &str,
    byte: usize,
    best: &mut Option<(usize, String)>,
    spans: &mut Vec<(Range<usize>, String)>,
) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        consider(key.span(), &path, byte, best);
        spans.push((key.span(), path.clone()));
        walk_value_spans(value, &path, byte, best, spans);
    }
}

fn walk_value_spans(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    byte: usize,
    best: &mut Option<(usize, String)>,
    spans: &mut Vec<(Range<usize>, String)>,
) {
    consider(value.span(), path, byte, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table_spans(t, path, byte, best, spans),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value_spans(item, &format!("{path}[{i}]"), byte, best, spans);
            }
        }
        // Only keys and scalars: a recovering parser stretches the spans of
        // tables and arrays over the text it could not read.
        _ => spans.push((value.span(), path.to_owned())),
    }
}

/// The path of the last key written before `byte` (for duplicate keys,
/// whose second occurrence is not in the parsed document).
fn path_before(src: &str, byte: usize) -> Option<String> {
    let (doc, _errors) = DeTable::parse_recoverable(src);
    let mut spans = Vec::new();
    walk_table_spans(doc.get_ref(), "", usize::MAX, &mut None, &mut spans);
    spans
        .into_iter()
        .filter(|(span, _)| span.end <= byte)
        .max_by_key(|(span, _)| span.end)
        .map(|(_, path)| path)
}

fn consider(span: Range<usize>, path: &str, byte: usize, best: &mut Option<(usize, String)>) {
    let hit = span.contains(&byte) || (span.is_empty() && span.start == byte);
    if !hit || path.is_empty() {
        return;
    }
    let len = span.len();
    // `<=`: children are visited after their parents, so on a tie the deeper
    // (more precise) path wins.
    if best.as_ref().is_none_or(|(l, _)| len <= *l) {
        *best = Some((len, path.to_owned()));
    }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, byte: usize, best: &mut Option<(usize, String)>) {
    for (key, value) in table.iter() {
        let path = join_key(prefix, key.get_ref());
        consider(key.span(), &path, byte, best);
        walk_value(value, &path, byte, best);
    }
}

fn walk_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    byte: usize,
    best: &mut Option<(usize, String)>,
) {
    consider(value.span(), path, byte, best);
    match value.get_ref() {
        DeValue::Table(t) => walk_table(t, path, byte, best),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk_value(item, &format!("{path}[{i}]"), byte, best);
            }
        }
        _ => {}
    }
}

/// The span of the value (or, with `key`, of the key) at the table path
/// `keys` (tables only, no array indices), or `None` when it is not in `src`.
pub(crate) fn span_of_path(src: &str, keys: &[&str], key: bool) -> Option<Range<usize>> {
    let doc = DeTable::parse(src).ok()?;
    let (last, parents) = keys.split_last()?;
    let mut table = doc.get_ref();
    for key in parents {
        match table.get(*key)?.get_ref() {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    if key {
        table.get_key_value(*last).map(|(k, _)| k.span())
    } else {
        table.get(*last).map(|v| v.span())
    }
}

/// Turns a toml deserialization or syntax error into an [`InputError`] with a
/// field path and a plain-words message.
pub(crate) fn from_toml_error(file: &Path, src: &str, err: &toml::de::Error) -> InputError {
    let raw = err.message().trim();
    let mut e = InputError::new(file, raw);
    let span = err.span();
    let path = span.as_ref().and_then(|s| path_at(src, s.start));
    if let Some(span) = &span {
        e = e.at_byte(src, span.start);
    }
    if let Some(rest) = raw.strip_prefix("unknown field ") {
        // "unknown field `x`, expected one of `a`, `b`" / "…, expected `a`" /
        // "…, there are no fields"
        let (name, accepted) = match rest.split_once(", ") {
            Some((name, accepted)) => (name, accepted),
            None => (rest, ""),
        };
        e.message = format!("unknown field {name}");
        e.field = path.or_else(|| Some(name.trim_matches('`').to_owned()));
        e.expected = Some(if let Some(list) = accepted.strip_prefix("expected ") {
            if list.starts_with("one of ") {
                list.to_owned()
            } else {
                format!("only {list}")
            }
        } else {
            "no fields here".to_owned()
        });
        return e;
    }
    if let Some(rest) = raw.strip_prefix("missing field ") {
        let name = rest.trim_matches('`');
        e.field = Some(match &path {
            Some(p) => join_key(p, name),
            None => name.to_owned(),
        });
        e.message = format!("required field `{name}` is missing");
        return e;
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let (got, want) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            let value = span
                .as_ref()
                .map(|s| snippet(src, s.clone()))
                .unwrap_or_default();
            e.message = if prefix == "invalid type: " {
                format!("value {value} has the wrong type ({})", type_word(got))
            } else {
                format!("value {value} is not accepted")
            };
            e.field = path;
            e.value = Some(value);
            if !want.is_empty() {
                e.expected = Some(plain_expected(want));
            }
            return e;
        }
    }
    // Syntax errors and anything else: toml's message says what it wanted
    // ("unclosed array, expected `]`").
    let value = span
        .as_ref()
        .map(|s| snippet(src, s.clone()))
        .filter(|v| !v.is_empty());
    if raw == "duplicate key" {
        if let (Some(key), Some(span)) = (&value, &span) {
            // The path of the table it is in, from the entry written before it.
            let parent = path_before(src, span.start)
                .and_then(|p| p.rsplit_once('.').map(|(parent, _)| parent.to_owned()))
                .unwrap_or_default();
            e.message = format!("duplicate key `{key}`");
            e.field = Some(join_key(&parent, key));
            e.value = Some(key.clone());
            e.expected = Some("each key at most once per table".to_owned());
            return e;
        }
    }
    let what = match raw.split_once(", expected ") {
        Some((what, wanted)) => {
            e.expected = Some(wanted.to_owned());
            what
        }
        None => raw,
    };
    e.message = match &value {
        Some(v) => format!("syntax error at `{v}`: {what}"),
        None => format!("syntax error: {what}"),
    };
    e.field = span.as_ref().and_then(|s| syntax_path_at(src, s.start));
    e.value = value;
    e
}

/// "string \"x\"" → "a string"; "integer `3`" → "an integer".
fn type_word(got: &str) -> &'static str {
    let kind = got.split([' ', '`']).next().unwrap_or("");
    match kind {
        "string" => "a string",
        "integer" => "an integer",
        "floating" => "a float",
        "boolean" => "a boolean",
        "sequence" => "an array",
        "map" => "a table",
        _ => "another type",
    }
}

/// serde's Rust-flavoured expectations in TOML words.
fn plain_expected(want: &str) -> String {
    match want {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" | "struct" => "a table".to_owned(),
        "a boolean" => "true or false".to_owned(),
        s if s.starts_with("struct ") => "a table".to_owned(),
        s => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based_and_counts_characters() {
        let src = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 4), (1, 5));
        assert_eq!(line_col(src, 6), (2, 1));
        // 'é' is two bytes; the '=' at byte 10 is the 4th character.
        assert_eq!(line_col(src, 10), (2, 4));
        assert_eq!(line_col(src, 999), (3, 1));
        assert_eq!(line_col("", 0), (1, 1));
    }

    #[test]
    fn display_names_everything() {
        let e = InputError::new("incoming/a.toml", "value 1.5 is out of range")
            .at(12, 9)
            .field("video[0].clip[1].opacity")
            .value("1.5")
            .expected("a number from 0 to 1");
        assert_eq!(
            e.to_string(),
            "incoming/a.toml:12:9: field `video[0].clip[1].opacity`: value 1.5 is out of range \
             (expected a number from 0 to 1)"
        );
        assert_eq!(InputError::new("a", "bad").to_string(), "a: bad");
    }

    #[test]
    fn paths_of_offsets() {
        let src =
            "[[video]]\nname = 'x'\n[[video.clip]]\nopacity = 1\n[[video.clip]]\nopacity = 2\n\
                   [canvas]\nsize = { w = 1 }\n";
        let at = |needle: &str| path_at(src, src.find(needle).unwrap());
        assert_eq!(
            at("opacity = 2").as_deref(),
            Some("video[0].clip[1].opacity")
        );
        assert_eq!(at("2\n").as_deref(), Some("video[0].clip[1].opacity"));
        assert_eq!(at("w = 1").as_deref(), Some("canvas.size.w"));
        assert_eq!(at("'x'").as_deref(), Some("video[0].name"));
        assert_eq!(
            span_of_path(src, &["canvas", "size"], false).map(|s| &src[s]),
            Some("{ w = 1 }")
        );
        assert_eq!(
            span_of_path(src, &["canvas", "size"], true).map(|s| &src[s]),
            Some("size")
        );
        assert_eq!(span_of_path(src, &["canvas", "nope"], false), None);
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let long = "x".repeat(100);
        assert_eq!(snippet(&long, 0..100).chars().count(), 61);
        assert_eq!(snippet("\"a\nb\"", 0..5), "\"a b\"");
    }
}
