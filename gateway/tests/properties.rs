//! Property tests on the outside input the gateway parses: selectors, `/federate` query strings
//! and HTTP/1 request heads.
//!
//! - Parsing never panics, whatever the input.
//! - A selector written in any of its encodings (quotes, escapes, order, whitespace, a metric
//!   name outside the braces, duplicates) parses to exactly the matchers it was written from;
//!   its canonical form parses back to the same matchers and is a fixed point.
//! - The allow decision is the same for every encoding, equals the subset rule on the
//!   matchers, and survives form encoding (percent-encoding, `+` for space, key spellings,
//!   parameter order) and raw bytes in an HTTP/1 request target as `curl -g` sends them.
//!
//! - The YAML config: any text, and any mutation of a valid file, is a config or an error
//!   value (`Config::parse`), never a panic.
//!
//! Failing inputs are kept in `properties.proptest-regressions` beside this file and replayed
//! first; the first seeds came from planted bugs (an unescaped `"` in the canonical form, `+`
//! decoded after `%2B`).
//! `PROPTEST_CASES` overrides the number of cases (default below).

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use federation_gateway::intake::{self, Scan};
use federation_gateway::query;
use federation_gateway::selectors::{Matcher, Op, Selector};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// Cases per property: thousands, in a few seconds on two cores in a debug build.
const CASES: u32 = 3000;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        ..Config::default()
    }
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![Just(Op::Eq), Just(Op::Ne), Just(Op::Re), Just(Op::Nre)]
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
        1 => Just("__name__".to_string()),
        1 => Just("job".to_string()),
    ]
}

/// Values with everything that needs care: quotes, backslashes, braces, separators, control
/// characters, form-encoding specials and multi-byte characters.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[a-z_.*+|:]{0,8}",
        2 => "[\"'`\\\\{}=,!~ #&+%;<>\\[\\]\n\t\r\u{0}-\u{1f}\u{7f}-\u{a0}é€😀\u{2028}\u{feff}a-c]{0,10}",
        1 => any::<String>(),
    ]
}

fn matcher() -> impl Strategy<Value = Matcher> {
    (label(), op(), value()).prop_map(|(label, op, value)| Matcher { label, op, value })
}

/// A non-empty set of matchers, as a list that may repeat one.
fn matchers() -> impl Strategy<Value = Vec<Matcher>> {
    prop::collection::vec(matcher(), 1..5)
}

/// Random choices the renderer consumes: the same matchers, written another way.
#[derive(Debug, Clone)]
struct Tape {
    bytes: Vec<u8>,
    at: usize,
}

impl Tape {
    fn next(&mut self) -> u8 {
        let b = self.bytes.get(self.at % self.bytes.len().max(1)).copied();
        self.at += 1;
        // Mix the position in so that a short tape still varies.
        b.unwrap_or(0)
            .wrapping_add((self.at / self.bytes.len().max(1)) as u8)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[usize::from(self.next()) % from.len()]
    }
}

fn tape() -> impl Strategy<Value = Tape> {
    prop::collection::vec(any::<u8>(), 1..64).prop_map(|bytes| Tape { bytes, at: 0 })
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Re => "=~",
        Op::Nre => "!~",
    }
}

fn ws(t: &mut Tape) -> &'static str {
    t.pick(&["", "", "", " ", "\t", "\n", "\r\n", "  "])
}

/// One value as a PromQL string: double, single or back quotes, each character raw or escaped
/// in one of Go's ways that is valid for it.
fn render_value(value: &str, t: &mut Tape) -> String {
    let mut quote = t.pick(&['"', '\'', '`']);
    if quote == '`' && value.contains('`') {
        quote = '"';
    }
    let mut out = String::from(quote);
    if quote == '`' {
        out.push_str(value);
        out.push('`');
        return out;
    }
    for c in value.chars() {
        let must_escape = c == quote || c == '\\' || c == '\n';
        let code = u32::from(c);
        let short = match c {
            '\u{7}' => Some("\\a"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{b}' => Some("\\v"),
            '\\' => Some("\\\\"),
            _ => None,
        };
        let upper = t.next() % 2 == 0;
        let hex = |digits: usize| {
            let s = format!("{code:0digits$x}");
            if upper {
                s.to_uppercase()
            } else {
                s
            }
        };
        match t.next() % 6 {
            0 if !must_escape => out.push(c),
            1 if short.is_some() => out.push_str(short.unwrap_or_default()),
            1 if c == quote => {
                out.push('\\');
                out.push(c);
            }
            2 if code <= 0x7f => out.push_str(&format!("\\x{}", hex(2))),
            3 if code <= 0x7f => out.push_str(&format!("\\{code:03o}")),
            4 if code <= 0xffff => out.push_str(&format!("\\u{}", hex(4))),
            _ => out.push_str(&format!("\\U{}", hex(8))),
        }
    }
    out.push(quote);
    out
}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// The matchers as a selector text, in an order, spacing and quoting the tape chooses.
fn render(ms: &[Matcher], t: &mut Tape) -> String {
    let mut ms: Vec<Matcher> = ms.to_vec();
    // Order: rotate and maybe reverse.
    let rotate = usize::from(t.next()) % ms.len();
    ms.rotate_left(rotate);
    if t.next() % 2 == 0 {
        ms.reverse();
    }
    // Maybe repeat one.
    if t.next() % 4 == 0 {
        let again = ms[usize::from(t.next()) % ms.len()].clone();
        ms.push(again);
    }
    let mut out = String::from(ws(t));
    // A lone `__name__="x"` may stand outside the braces.
    let names: Vec<usize> = (0..ms.len())
        .filter(|&i| ms[i].label == "__name__")
        .collect();
    let distinct_names: BTreeSet<&Matcher> = names.iter().map(|&i| &ms[i]).collect();
    if distinct_names.len() == 1
        && ms[names[0]].op == Op::Eq
        && is_metric_name(&ms[names[0]].value)
        && t.next() % 2 == 0
    {
        out.push_str(&ms[names[0]].value);
        ms.retain(|m| m.label != "__name__");
        out.push_str(ws(t));
        if ms.is_empty() && t.next() % 2 == 0 {
            return out;
        }
    }
    out.push('{');
    out.push_str(ws(t));
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            out.push(',');
            out.push_str(ws(t));
        }
        out.push_str(&m.label);
        out.push_str(ws(t));
        out.push_str(op_str(m.op));
        out.push_str(ws(t));
        out.push_str(&render_value(&m.value, t));
        out.push_str(ws(t));
    }
    if !ms.is_empty() && t.next() % 3 == 0 {
        out.push(',');
        out.push_str(ws(t));
    }
    out.push('}');
    out.push_str(ws(t));
    out
}

fn set(ms: &[Matcher]) -> BTreeSet<Matcher> {
    ms.iter().cloned().collect()
}

fn parsed_set(s: &Selector) -> BTreeSet<Matcher> {
    s.matchers().cloned().collect()
}

/// Form-encodes text for a query: `&`, `+`, `%` always (they mean something), `#` and
/// anything not printable ASCII when `http` is set (a request target), the rest by choice;
/// a space as `+` or `%20`.
fn form_encode(text: &str, http: bool, t: &mut Tape) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        let must = matches!(c, '&' | '+' | '%')
            || (http && (c == '#' || c.is_ascii_control() || (c.is_ascii() && c == ' ')));
        let high_raw_ok = !c.is_ascii() && !c.is_control();
        let choice = t.next() % 3;
        if c == ' ' && choice == 0 {
            out.push('+');
        } else if !must && choice != 2 && (c.is_ascii() || !http || high_raw_ok) {
            out.push(c);
        } else {
            for b in bytes {
                if t.next() % 2 == 0 {
                    out.push_str(&format!("%{b:02X}"));
                } else {
                    out.push_str(&format!("%{b:02x}"));
                }
            }
        }
    }
    out
}

/// A `/federate` query with each selector text form-encoded under a random key spelling.
fn query_of(texts: &[String], http: bool, t: &mut Tape) -> String {
    texts
        .iter()
        .map(|text| {
            let key = t.pick(&["match[]", "match%5B%5D", "match%5b%5d", "%6datch[%5D"]);
            format!("{key}={}", form_encode(text, http, t))
        })
        .collect::<Vec<_>>()
        .join("&")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn parsing_anything_never_panics(s in any::<String>(), b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = Selector::parse(&s);
        let _ = query::parse(Some(&s), 16);
        let _ = intake::scan(&b, 128);
        let _ = intake::scan(format!("GET /federate?{s} HTTP/1.1\r\n\r\n").as_bytes(), 16384);
    }

    #[test]
    fn parsing_near_selectors_never_panics(
        s in "[a-z_:{}=!~\"'`,\\\\ xuU0-9a-fA-F\n\t\u{e9}\u{1F600}]{0,40}",
    ) {
        if let Ok(sel) = Selector::parse(&s) {
            // Whatever parses has a canonical form that parses to the same matchers.
            let again = Selector::parse(&sel.to_string()).unwrap();
            prop_assert_eq!(parsed_set(&again), parsed_set(&sel));
        }
        let _ = query::parse(Some(&format!("match[]={s}")), 16);
    }

    #[test]
    fn every_encoding_parses_to_its_matchers_and_canonical_is_a_fixed_point(
        ms in matchers(),
        mut t in tape(),
    ) {
        let text = render(&ms, &mut t);
        let sel = Selector::parse(&text)
            .map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(parsed_set(&sel), set(&ms), "text {:?}", text);
        let canonical = sel.to_string();
        let again = Selector::parse(&canonical)
            .map_err(|e| TestCaseError::fail(format!("canonical {canonical:?}: {e}")))?;
        prop_assert_eq!(&again, &sel);
        prop_assert_eq!(again.to_string(), canonical);
    }

    #[test]
    fn the_allow_decision_is_the_same_for_every_encoding(
        ms in matchers(),
        allow in prop::collection::vec((prop::collection::vec(any::<prop::sample::Index>(), 1..4), matchers()), 1..4),
        mut t1 in tape(),
        mut t2 in tape(),
    ) {
        // Allowed selectors: some of the request's matchers (so some decisions are yes), plus
        // maybe others.
        let allowed: Vec<Vec<Matcher>> = allow
            .iter()
            .map(|(picks, extra)| {
                let mut a: Vec<Matcher> = picks.iter().map(|i| i.get(&ms).clone()).collect();
                if picks.len() == 3 {
                    a.extend(extra.iter().cloned());
                }
                a
            })
            .collect();
        let allowed_sel: Vec<Selector> = allowed
            .iter()
            .map(|a| Selector::parse(&render(a, &mut t1)).unwrap())
            .collect();
        let want = allowed.iter().any(|a| set(a).is_subset(&set(&ms)));
        let one = Selector::parse(&render(&ms, &mut t1)).unwrap();
        let two = Selector::parse(&render(&ms, &mut t2)).unwrap();
        prop_assert_eq!(&one, &two);
        prop_assert_eq!(one.is_allowed_by(&allowed_sel), want);
        prop_assert_eq!(two.is_allowed_by(&allowed_sel), want);
        let canonical = Selector::parse(&one.to_string()).unwrap();
        prop_assert_eq!(canonical.is_allowed_by(&allowed_sel), want);
    }

    #[test]
    fn queries_decode_the_same_in_every_form_encoding_and_order(
        sets in prop::collection::vec(matchers(), 1..4),
        mut t in tape(),
        rotate in any::<prop::sample::Index>(),
    ) {
        let texts: Vec<String> = sets.iter().map(|ms| render(ms, &mut t)).collect();
        let want: Vec<Selector> = texts.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let raw = query_of(&texts, false, &mut t);
        let got = query::parse(Some(&raw), 16)
            .map_err(|e| TestCaseError::fail(format!("{raw:?}: {e}")))?;
        prop_assert_eq!(&got, &want, "query {:?}", raw);
        // The forwarded form decodes to the same selectors.
        prop_assert_eq!(&query::parse(Some(&query::encode(&got)), 16).unwrap(), &want);
        // Another order: the same selectors in that order, so the same decision.
        let mut turned = texts.clone();
        turned.rotate_left(rotate.index(texts.len()));
        let raw = query_of(&turned, false, &mut t);
        let got: BTreeSet<String> =
            query::parse(Some(&raw), 16).unwrap().iter().map(|s| s.to_string()).collect();
        let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn raw_request_targets_reach_the_same_selectors(
        sets in prop::collection::vec(matchers(), 1..3),
        mut t in tape(),
    ) {
        let texts: Vec<String> = sets.iter().map(|ms| render(ms, &mut t)).collect();
        let want: Vec<Selector> = texts.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let target = format!("/federate?{}", query_of(&texts, true, &mut t));
        let head = format!("GET {target} HTTP/1.1\r\nHost: g\r\n\r\n");
        let Scan::Head { head: rewritten, len, body_follows } = intake::scan(head.as_bytes(), 1 << 20) else {
            return Err(TestCaseError::fail(format!("not a head: {head:?}")));
        };
        prop_assert_eq!(len, head.len());
        prop_assert!(!body_follows);
        let line = String::from_utf8(rewritten).unwrap();
        let sent = line.split(' ').nth(1).unwrap();
        let uri: http::Uri = sent
            .parse()
            .map_err(|e| TestCaseError::fail(format!("hyper would refuse {sent:?}: {e}")))?;
        prop_assert_eq!(uri.path(), "/federate");
        let got = query::parse(uri.query(), 16)
            .map_err(|e| TestCaseError::fail(format!("{sent:?}: {e}")))?;
        prop_assert_eq!(got, want);
    }
}

/// A valid config; its token file is written beside it.
const CONFIG: &str = r#"listen: 127.0.0.1:9443
internal_listen: 127.0.0.1:9444
upstream: {url: "http://127.0.0.1:9090", timeout: 60s}
limits: {max_match: 16, max_connections: 1024, header_read_timeout: 10s, max_uri_bytes: 8192, max_header_bytes: 16384}
clients:
  - name: portal
    token_file: token
    allow: ['{job="project_usages",__name__=~"project_.*_usage"}']
    rate_limit: {per_second: 2, burst: 10}
"#;

const SNIPPETS: &[&str] = &[
    "",
    "\n",
    " ",
    "-",
    ":",
    ": ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "#",
    ",",
    "0",
    "-1",
    ".5",
    "1e999",
    ".nan",
    ".inf",
    "-.inf",
    "000000000000000000000",
    "9223372036854775807",
    "€",
    "\u{0}",
    "~",
    "null",
    "*a",
    "&a ",
    "!!binary ",
    "<<: ",
    "s",
    "ms",
    "y",
    "[::1]",
    "%",
];

/// Cuts, inserts and number growth at positions the indices pick (on char boundaries).
fn mutate(text: &str, edits: &[(u8, prop::sample::Index, prop::sample::Index)]) -> String {
    let mut t = text.to_owned();
    for (kind, at, what) in edits {
        let mut a = at.index(t.len() + 1);
        while !t.is_char_boundary(a) {
            a -= 1;
        }
        match kind % 3 {
            0 => {
                let mut b = (a + what.index(16)).min(t.len());
                while !t.is_char_boundary(b) {
                    b -= 1;
                }
                t.replace_range(a..b, "");
            }
            1 => t.insert_str(a, SNIPPETS[what.index(SNIPPETS.len())]),
            _ => {
                let digits: Vec<usize> = t
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i + 1)
                    .collect();
                if !digits.is_empty() {
                    t.insert_str(digits[at.index(digits.len())], &"0".repeat(what.index(25)));
                }
            }
        }
    }
    t
}

fn parse_config(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token-of-the-portal\n").unwrap();
    let _ = federation_gateway::config::Config::parse(text, &dir.path().join("gateway.yaml"));
}

#[test]
fn the_config_seed_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token-of-the-portal\n").unwrap();
    federation_gateway::config::Config::parse(CONFIG, &dir.path().join("gateway.yaml")).unwrap();
}

proptest! {
    #![proptest_config(config_with(500))]

    #[test]
    fn any_config_text_is_a_config_or_an_error(text in any::<String>()) {
        parse_config(&text);
    }

    #[test]
    fn mutated_configs_are_a_config_or_an_error(
        edits in prop::collection::vec((any::<u8>(), any::<prop::sample::Index>(), any::<prop::sample::Index>()), 1..6),
    ) {
        parse_config(&mutate(CONFIG, &edits));
    }
}

/// Like [`config`], with a smaller default: every case writes a file.
fn config_with(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}
