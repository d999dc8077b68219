//! Finding where a key is in the config text, and which key a byte offset belongs to,
//! from toml's spanned document.

use crate::{Diagnostic, DiagnosticKind};
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Span information of one config text.
pub(crate) struct Locator<'a> {
    text: &'a str,
    doc: Option<Spanned<DeTable<'a>>>,
}

/// One step of a key path.
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Seg::Key(name));
        }
        while let Some(stripped) = rest.strip_prefix('[') {
            let Some(end) = stripped.find(']') else { break };
            if let Ok(i) = stripped[..end].parse() {
                out.push(Seg::Index(i));
            }
            rest = &stripped[end + 1..];
        }
    }
    out
}

/// A key is written bare in a path when it is a plain identifier, quoted otherwise.
fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        path.push_str(key);
    } else {
        path.push('"');
        for c in key.chars() {
            if c == '"' || c == '\\' {
                path.push('\\');
            }
            path.push(c);
        }
        path.push('"');
    }
}

fn contains(span: &Range<usize>, at: usize) -> bool {
    span.start <= at && at < span.end.max(span.start + 1)
}

impl<'a> Locator<'a> {
    /// Parses `text` for spans; a text that is not valid TOML yields a locator that can only
    /// turn offsets into lines.
    pub(crate) fn new(text: &'a str) -> Self {
        Self {
            text,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// Whether the text parsed as TOML.
    pub(crate) fn is_syntax_ok(&self) -> bool {
        self.doc.is_some()
    }

    /// 1-based line and column (in characters) of byte offset `at`.
    pub(crate) fn line_col(&self, at: usize) -> (usize, usize) {
        let mut at = at.min(self.text.len());
        while !self.text.is_char_boundary(at) {
            at -= 1;
        }
        let before = &self.text[..at];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }

    /// Byte span of the key at `path` (`listen[0].proto`): the key itself for a key/value,
    /// the table for an array element. When the path is not in the text (a default), the
    /// deepest part of it that is.
    pub(crate) fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let doc = self.doc.as_ref()?;
        let mut best: Option<Range<usize>> = None;
        let mut cur: &DeValue<'_> = &DeValue::Table(DeTable::new());
        let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
        for seg in split_path(path) {
            match seg {
                Seg::Key(k) => {
                    let t = match table {
                        Some(t) => t,
                        None => break,
                    };
                    let Some((key, val)) = t.get_key_value(k) else {
                        break;
                    };
                    best = Some(key.span());
                    cur = val.get_ref();
                }
                Seg::Index(i) => {
                    let DeValue::Array(arr) = cur else { break };
                    let Some(item) = arr.get(i) else { break };
                    let sp = item.span();
                    // An array-of-tables element's span starts at its `[[header]]`
                    // or at its first key; either names the right place.
                    if sp.start < self.text.len() {
                        best = Some(sp);
                    }
                    cur = item.get_ref();
                }
            }
            table = match cur {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    /// The key path of the deepest value or key containing the byte range `start..end`.
    pub(crate) fn path_at(&self, start: usize, _end: usize) -> String {
        let mut path = String::new();
        let Some(doc) = self.doc.as_ref() else {
            return path;
        };
        let mut table: &DeTable<'_> = doc.get_ref();
        // Bounded by the document's nesting depth.
        'outer: loop {
            for (k, v) in table.iter() {
                if contains(&k.span(), start) {
                    push_key(&mut path, k.get_ref());
                    return path;
                }
                if contains(&v.span(), start) || value_contains(v.get_ref(), start) {
                    push_key(&mut path, k.get_ref());
                    let mut val = v.get_ref();
                    loop {
                        match val {
                            DeValue::Table(t) => {
                                table = t;
                                continue 'outer;
                            }
                            DeValue::Array(arr) => {
                                let Some((i, item)) = arr.iter().enumerate().find(|(_, it)| {
                                    contains(&it.span(), start)
                                        || value_contains(it.get_ref(), start)
                                }) else {
                                    return path;
                                };
                                path.push_str(&format!("[{i}]"));
                                val = item.get_ref();
                            }
                            _ => return path,
                        }
                    }
                }
            }
            return path;
        }
    }

    /// A diagnostic for `key`, located where the key is in the text.
    pub(crate) fn diag(
        &self,
        file: &str,
        key: &str,
        kind: DiagnosticKind,
        message: String,
    ) -> Diagnostic {
        let (line, column) = match self.span_of(key) {
            Some(sp) => {
                let (l, c) = self.line_col(sp.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            key: key.to_string(),
            kind,
            message,
        }
    }
}

/// Whether any key or value inside `v` covers byte offset `at` (tables made of
/// `[header]` sections have no single span covering their keys).
fn value_contains(v: &DeValue<'_>, at: usize) -> bool {
    match v {
        DeValue::Table(t) => t.iter().any(|(k, v)| {
            contains(&k.span(), at) || contains(&v.span(), at) || value_contains(v.get_ref(), at)
        }),
        DeValue::Array(a) => a
            .iter()
            .any(|it| contains(&it.span(), at) || value_contains(it.get_ref(), at)),
        _ => false,
    }
}
