//! PromQL series selectors: a parser, a canonical encoding, and the allow rule.
//!
//! Grammar (what Prometheus accepts in `match[]`): an optional metric name, then an optional
//! brace list of `label op "value"` matchers separated by commas (a trailing comma is allowed),
//! with `op` one of `=`, `!=`, `=~`, `!~` and the value a double- or single-quoted string with
//! Go escapes, or a back-quoted raw string. A metric name outside the braces is the matcher
//! `__name__="name"`. Anything else — ranges, offsets, functions, quoted label names — is an
//! error: what we cannot parse we do not forward.
//!
//! The allow rule: a requested selector is allowed when its set of matchers contains every
//! matcher of at least one allowed selector. Every series a selector picks must satisfy all of
//! its matchers, so extra matchers can only narrow it. Matchers are compared after unescaping,
//! so the same selector written differently is still recognised, and a different one (even an
//! equivalent regex) is refused.

use std::collections::BTreeSet;
use std::fmt;

/// A matcher's operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Eq,
    Ne,
    Re,
    Nre,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Re => "=~",
            Self::Nre => "!~",
        }
    }
}

/// One `label op "value"` matcher, value unescaped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Matcher {
    pub label: String,
    pub op: Op,
    pub value: String,
}

/// A parsed series selector: the set of its matchers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Selector {
    matchers: BTreeSet<Matcher>,
}

/// Why a selector does not parse; `at` is a byte offset into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid series selector at byte {at}: {problem}")]
pub struct ParseError {
    pub at: usize,
    pub problem: &'static str,
}

const NAME: &str = "__name__";

impl Selector {
    /// Parses a series selector.
    pub fn parse(input: &str) -> Result<Self, ParseError> {
        let mut p = Parser { s: input, pos: 0 };
        let mut matchers = BTreeSet::new();
        p.skip_ws();
        let mut has_name = false;
        if p.peek().is_some_and(is_metric_start) {
            let name = p.ident(true);
            matchers.insert(Matcher {
                label: NAME.into(),
                op: Op::Eq,
                value: name.into(),
            });
            has_name = true;
            p.skip_ws();
        }
        if p.peek() == Some('{') {
            p.bump();
            p.skip_ws();
            while p.peek() != Some('}') {
                let m = p.matcher()?;
                if has_name && m.label == NAME {
                    return Err(p.error("metric name given twice"));
                }
                matchers.insert(m);
                p.skip_ws();
                match p.peek() {
                    Some(',') => {
                        p.bump();
                        p.skip_ws();
                    }
                    Some('}') => {}
                    _ => return Err(p.error("expected ',' or '}'")),
                }
            }
            p.bump();
            p.skip_ws();
        } else if !has_name {
            return Err(p.error("expected a metric name or '{'"));
        }
        if p.pos != input.len() {
            return Err(p.error("unexpected text after the selector"));
        }
        if matchers.is_empty() {
            return Err(ParseError {
                at: 0,
                problem: "a selector needs at least one matcher",
            });
        }
        Ok(Self { matchers })
    }

    /// The matchers, sorted.
    pub fn matchers(&self) -> impl Iterator<Item = &Matcher> {
        self.matchers.iter()
    }

    /// Whether this selector is as narrow as `allowed` or narrower: it has every matcher of it.
    pub fn is_within(&self, allowed: &Selector) -> bool {
        allowed.matchers.is_subset(&self.matchers)
    }

    /// Whether some selector of `allowed` admits this one.
    pub fn is_allowed_by(&self, allowed: &[Selector]) -> bool {
        allowed.iter().any(|a| self.is_within(a))
    }
}

/// The canonical form: `{label op "value",...}`, matchers sorted, values escaped so that
/// Prometheus reads back exactly these matchers.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}\"", m.label, m.op.as_str())?;
            for c in m.value.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
                    c => write!(f, "{c}")?,
                }
            }
            f.write_str("\"")?;
        }
        f.write_str("}")
    }
}

fn is_metric_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.s[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, problem: &'static str) -> ParseError {
        ParseError {
            at: self.pos,
            problem,
        }
    }

    fn skip_ws(&mut self) {
        while self
            .peek()
            .is_some_and(|c| matches!(c, ' ' | '\t' | '\n' | '\r'))
        {
            self.bump();
        }
    }

    /// A metric name (colons allowed) or a label name; the first character is checked.
    fn ident(&mut self, metric: bool) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':'))
        {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    fn matcher(&mut self) -> Result<Matcher, ParseError> {
        if !self.peek().is_some_and(is_label_start) {
            return Err(self.error("expected a label name"));
        }
        let label = self.ident(false).to_string();
        self.skip_ws();
        let op = match (self.bump(), self.peek()) {
            (Some('='), Some('~')) => {
                self.bump();
                Op::Re
            }
            (Some('='), _) => Op::Eq,
            (Some('!'), Some('=')) => {
                self.bump();
                Op::Ne
            }
            (Some('!'), Some('~')) => {
                self.bump();
                Op::Nre
            }
            _ => return Err(self.error("expected one of = != =~ !~")),
        };
        self.skip_ws();
        let value = self.string()?;
        Ok(Matcher { label, op, value })
    }

    /// A quoted string with Go's escapes, or a raw back-quoted string.
    fn string(&mut self) -> Result<String, ParseError> {
        let quote = match self.bump() {
            Some(q @ ('"' | '\'' | '`')) => q,
            _ => return Err(self.error("expected a quoted string")),
        };
        let mut out = String::new();
        loop {
            let c = self
                .bump()
                .ok_or_else(|| self.error("unterminated string"))?;
            if c == quote {
                return Ok(out);
            }
            if quote == '`' {
                out.push(c);
                continue;
            }
            match c {
                '\n' => return Err(self.error("newline in a string")),
                '\\' => out.push(self.escape(quote)?),
                c => out.push(c),
            }
        }
    }

    fn escape(&mut self, quote: char) -> Result<char, ParseError> {
        let c = self
            .bump()
            .ok_or_else(|| self.error("unterminated escape"))?;
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(c) = simple {
            return Ok(c);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => (2, 8),
            _ => return Err(self.error("unknown escape sequence")),
        };
        let start = if radix == 8 { self.pos - 1 } else { self.pos };
        for _ in 0..digits {
            if !self.bump().is_some_and(|d| d.is_digit(radix)) {
                return Err(self.error("bad digits in an escape"));
            }
        }
        let code = u32::from_str_radix(&self.s[start..self.pos], radix)
            .map_err(|_| self.error("bad digits in an escape"))?;
        // \x and octal escapes are bytes in Go; only ASCII keeps them valid UTF-8 on their own.
        if matches!(c, 'x' | '0'..='7') && code > 0x7f {
            return Err(self.error("byte escape above 0x7f"));
        }
        char::from_u32(code).ok_or_else(|| self.error("escape is not a Unicode scalar value"))
    }
}

#[cfg(test)]
mod tests;
