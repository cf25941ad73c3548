//! Property tests on every parser of outside input in the exporter, through its public API.
//!
//! - Dates (`dates::parse`, `dates::parse_relative`) and the portal's start date never panic on
//!   any text, multi-byte included; a formatted time, in UTC or at any offset, parses back to
//!   itself; `+N`/`-N` offsets shift the anchor by exactly that much.
//! - Credit weights never panic in any encoding; the same weights written as JSON, YAML and
//!   TOML parse to equal `Weights`; `Weights::weight` is total and finite, and follows the
//!   documented rule (checked against a plain model of it).
//! - Keystone and Nova JSON: any mutation of the recorded answers (fields dropped, types
//!   changed, huge numbers, NaN-like strings, deep nesting) decodes or fails cleanly, and the
//!   pure conversions never panic on what decodes.
//! - The state file: any bytes on disk are resumed as a plausible accounting or set aside, and
//!   a resumed accounting can be refreshed, snapshotted and saved again.
//! - Dummy clouds, YAML and the original's TOML: any text, and any mutation of a valid file,
//!   builds a source or fails cleanly, and what builds can be snapshotted at any moment; a
//!   generated cloud comes back with its projects and allocations.
//! - The YAML config merged over default flags: never panics, errors are values.
//! - libvirt domain XML (feature `libvirt`): never panics.
//!
//! Failing inputs are kept in `properties.proptest-regressions` beside this file and replayed
//! first. `PROPTEST_CASES` overrides every property's number of cases.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{json, Value};

use site_exporter::dates;
use site_exporter::sources::openstack::{accounting, keystone, nova, state};
use site_exporter::sources::start_date;
use site_exporter::weights::{Resource, Weights};

/// `cases` per property unless `PROPTEST_CASES` says otherwise; chosen so that all of them
/// together run in well under two minutes on two cores in a debug build.
fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        ..Config::default()
    }
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap()
}

/// Text with what breaks naive parsers: digits and date punctuation, quotes, brackets,
/// control and multi-byte characters.
fn nasty_text() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "[0-9TZtz:+\\-. ]{0,32}",
        2 => "[0-9a-z:+\\-.,\"'\\[\\]{}=#\n\t €üé😀\u{0}\u{feff}]{0,40}",
        1 => any::<String>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Text mutations, for every text format.

/// One edit of a text: cut a range, insert a snippet, or repeat a range.
#[derive(Debug, Clone)]
enum Edit {
    Cut(prop::sample::Index, u8),
    Insert(prop::sample::Index, &'static str),
    Repeat(prop::sample::Index, u8),
    /// Inserts digits after a digit: numbers grow past every limit.
    Grow(prop::sample::Index, &'static str),
}

const SNIPPETS: &[&str] = &[
    "",
    "\n",
    " ",
    "\t",
    "-",
    "+",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "#",
    "=",
    "&",
    "<",
    ">",
    "/>",
    "</",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "<![CDATA[",
    "]]>",
    "<!--",
    "€",
    "😀",
    "\u{0}",
    "\u{feff}",
    "~",
    "null",
    "true",
    "0",
    "-1",
    "1e999",
    "NaN",
    ".nan",
    ".inf",
    "inf",
    "18446744073709551616",
    "9223372036854775807",
    "-9223372036854775808",
    "999999999999999999999999",
    "+300000000000y",
    "-300000000000y",
    "2024-05-01",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59Z",
    "0000-01-01",
    "*a",
    "&a ",
    "!!binary ",
    "!!float ",
    "<<: ",
    "? ",
    "| ",
    "> ",
    "---\n",
    "...\n",
    "%YAML 1.2\n",
    "[[x]]\n",
    "a.b = 1\n",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, n)| Edit::Cut(i, n)),
        (any::<prop::sample::Index>(), prop::sample::select(SNIPPETS))
            .prop_map(|(i, s)| Edit::Insert(i, s)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, n)| Edit::Repeat(i, n)),
        (
            any::<prop::sample::Index>(),
            prop::sample::select(
                &[
                    "0",
                    "000",
                    "0000000",
                    "00000000000000",
                    "9223372036854775807",
                    "8446744073709551615",
                    "e308"
                ][..]
            )
        )
            .prop_map(|(i, s)| Edit::Grow(i, s)),
    ]
}

/// The char boundary at or before byte `at`.
fn boundary(text: &str, at: usize) -> usize {
    (0..=at.min(text.len()))
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0)
}

fn apply_edits(text: &str, edits: &[Edit]) -> String {
    let mut t = text.to_owned();
    for e in edits {
        let pick = |i: &prop::sample::Index, t: &str| boundary(t, i.index(t.len() + 1));
        match e {
            Edit::Cut(i, n) => {
                let a = pick(i, &t);
                let b = boundary(&t, a + usize::from(*n) % 64);
                t.replace_range(a..b, "");
            }
            Edit::Insert(i, s) => {
                let a = pick(i, &t);
                t.insert_str(a, s);
            }
            Edit::Grow(i, s) => {
                let digits: Vec<usize> = t
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(at, _)| at + 1)
                    .collect();
                if !digits.is_empty() {
                    t.insert_str(digits[i.index(digits.len())], s);
                }
            }
            Edit::Repeat(i, n) => {
                let a = pick(i, &t);
                let b = boundary(&t, a + usize::from(*n) % 64);
                let copy = t[a..b].to_owned();
                t.insert_str(b, &copy);
            }
        }
    }
    t
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..6)
}

// ---------------------------------------------------------------------------------------------
// JSON mutations, for the recorded OpenStack answers.

/// One change to a JSON document, at the node a pre-order index selects.
#[derive(Debug, Clone)]
enum JsonEdit {
    /// Removes one member of an object or element of an array.
    Drop(prop::sample::Index, prop::sample::Index),
    /// Replaces the node.
    Replace(prop::sample::Index, Value),
    /// Wraps the node in `depth` arrays.
    Nest(prop::sample::Index, u8),
    /// Replaces one of the numbers.
    Number(prop::sample::Index, Value),
}

/// A raw token a JSON value cannot hold; written in place of this marker string.
const RAW: &str = "\u{1}raw:";

fn weird_value() -> impl Strategy<Value = Value> {
    let raw = prop::sample::select(
        &[
            "1e999",
            "-1e999",
            "18446744073709551616",
            "-9223372036854775809",
            "1.7976931348623157e309",
            "-0",
            "0.0000000000000000000000000000000000001",
            "123456789012345678901234567890",
        ][..],
    )
    .prop_map(|r| Value::String(format!("{RAW}{r}")));
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(0)),
        Just(json!(1e308)),
        Just(json!(-1e308)),
        Just(json!(0.5)),
        Just(json!(f64::MIN_POSITIVE)),
        prop::sample::select(
            &[
                "",
                "NaN",
                "nan",
                "inf",
                "-inf",
                "Infinity",
                "-1",
                "1e999",
                "0x10",
                "null",
                "true",
                "2026-11-22T14:45:42.000000",
                "2026-11-22T14:45:42",
                "2026-11-22",
                "9999-12-31T23:59:59",
                "0000-01-01T00:00:00",
                "1969-12-31T23:59:59Z",
                "2026-13-45T99:99:99",
                "€€€€-€€-€€",
                "http://h/x?marker=",
                "?&=&marker",
            ][..]
        )
        .prop_map(|s| Value::String(s.to_owned())),
        any::<String>().prop_map(Value::String),
        Just(json!({})),
        Just(json!([])),
        Just(json!([{}])),
        raw,
    ]
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let i = any::<prop::sample::Index>;
    prop_oneof![
        3 => (i(), i()).prop_map(|(a, b)| JsonEdit::Drop(a, b)),
        4 => (i(), weird_value()).prop_map(|(a, v)| JsonEdit::Replace(a, v)),
        1 => (i(), 1..200u8).prop_map(|(a, d)| JsonEdit::Nest(a, d)),
        4 => (i(), weird_value()).prop_map(|(a, v)| JsonEdit::Number(a, v)),
    ]
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(a) => a.iter().map(count).sum(),
        Value::Object(o) => o.values().map(count).sum(),
        _ => 0,
    }
}

/// The `n`-th node in pre-order.
fn node(v: &mut Value, n: usize) -> &mut Value {
    if n == 0 {
        return v;
    }
    let mut n = n - 1;
    let children: Vec<&mut Value> = match v {
        Value::Array(a) => a.iter_mut().collect(),
        Value::Object(o) => o.values_mut().collect(),
        _ => unreachable!("a leaf has no node {n}"),
    };
    for c in children {
        let size = count(c);
        if n < size {
            return node(c, n);
        }
        n -= size;
    }
    unreachable!("node index within the count")
}

fn apply_json_edits(doc: &Value, edits: &[JsonEdit]) -> String {
    let mut v = doc.clone();
    for e in edits {
        let total = count(&v);
        match e {
            JsonEdit::Drop(at, which) => match node(&mut v, at.index(total)) {
                Value::Object(o) if !o.is_empty() => {
                    let key = o.keys().nth(which.index(o.len())).cloned().unwrap();
                    o.remove(&key);
                }
                Value::Array(a) if !a.is_empty() => {
                    a.remove(which.index(a.len()));
                }
                _ => {}
            },
            JsonEdit::Replace(at, with) => *node(&mut v, at.index(total)) = with.clone(),
            JsonEdit::Number(at, with) => {
                let numbers: Vec<usize> = (0..total)
                    .filter(|&n| node(&mut v, n).is_number())
                    .collect();
                if !numbers.is_empty() {
                    *node(&mut v, numbers[at.index(numbers.len())]) = with.clone();
                }
            }
            JsonEdit::Nest(at, depth) => {
                let n = node(&mut v, at.index(total));
                for _ in 0..*depth {
                    *n = Value::Array(vec![n.take()]);
                }
            }
        }
    }
    let text = v.to_string();
    // Raw tokens: `"\u0001raw:1e999"` becomes `1e999`.
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(start) = rest.find("\"\\u0001raw:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "\"\\u0001raw:".len()..];
        let end = after.find('"').unwrap();
        out.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(json_edit(), 1..5)
}

const OPENSTACK_FIXTURES: &[&str] = &[
    "keystone_projects.json",
    "keystone_domains.json",
    "nova_flavors_detail_all_mv2.1.json",
    "nova_os-quota-sets_alpha-web_detail.json",
    "nova_os-simple-tenant-usage_detailed_mv2.40.json",
    "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page1.json",
    "nova_servers_detail_all_tenants_mv2.1.json",
    "nova_servers_detail_all_tenants_mv2.47.json",
];

fn openstack_fixture() -> impl Strategy<Value = (&'static str, Value)> {
    prop::sample::select(OPENSTACK_FIXTURES).prop_map(|name| {
        let text = fixture(&format!("openstack/{name}"));
        (name, serde_json::from_str(&text).unwrap())
    })
}

/// Decodes `text` as every OpenStack answer and runs every pure conversion on what decodes.
fn decode_openstack(text: &str) {
    let projects = serde_json::from_str::<keystone::ProjectsPage>(text).ok();
    let domains = serde_json::from_str::<keystone::DomainsPage>(text).ok();
    if projects.is_some() || domains.is_some() {
        let list = projects.map(|p| p.projects).unwrap_or_default();
        let domains = domains.map(|d| d.domains).unwrap_or_default();
        let filters = keystone::Filters {
            domains: domains.iter().take(1).map(|d| d.name.clone()).collect(),
            exclude_projects: list.iter().take(1).map(|p| p.id.clone()).collect(),
            ..Default::default()
        };
        let _ = keystone::projects(&list, &domains, &filters);
        let _ = keystone::projects(&list, &domains, &keystone::Filters::default());
    }
    if let Ok(page) = serde_json::from_str::<nova::UsagePage>(text) {
        let _ = nova::next_marker(&page.tenant_usages_links);
        for u in page.tenant_usages.iter().flat_map(|t| &t.server_usages) {
            let t = nova::server_totals(u);
            for x in [
                t.vcpu_seconds,
                t.memory_byte_seconds,
                t.disk_byte_seconds,
                t.instance_seconds,
            ] {
                assert!(x >= 0.0, "a negative total from {u:?}");
            }
            for at in [&u.started_at, &u.ended_at].into_iter().flatten() {
                let _ = nova::epoch_seconds(at);
            }
        }
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut acc = accounting::Accounting::new(start);
        let end = start + Duration::from_secs(86_400);
        if acc
            .apply_window(end, &nova::compact_usage(page.tenant_usages.clone()))
            .is_ok()
        {
            // What was applied can be saved and resumed: JSON has no infinity.
            assert_eq!(acc.implausible(end), None, "after {page:?}");
        } else {
            assert_eq!(
                acc,
                accounting::Accounting::new(start),
                "a refused window changed the accounting"
            );
        }
        let _ = acc.snapshot(
            &[],
            BTreeMap::new(),
            &Default::default(),
            Some(&Weights::default()),
        );
    }
    let flavors = serde_json::from_str::<nova::FlavorsPage>(text)
        .map(|f| nova::flavor_sizes(&f.flavors))
        .unwrap_or_default();
    if let Ok(page) = serde_json::from_str::<nova::ServersPage>(text) {
        let _ = nova::next_marker(&page.servers_links);
        let listed = nova::compact_servers(page.servers);
        let _ = nova::current_state(&listed, &flavors);
    }
    if let Ok(q) = serde_json::from_str::<nova::QuotaDetail>(text) {
        let _ = nova::quota(&q.quota_set);
    }
}

// ---------------------------------------------------------------------------------------------
// Weights.

/// Finite numbers, with the edges: zeros of both signs, tiny and huge magnitudes.
fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => (0u32..64).prop_map(f64::from),
        1 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
        1 => Just(f64::MAX),
        1 => Just(-0.0),
    ]
}

type SetSpec = (i64, Vec<(f64, f64)>, Vec<(f64, f64)>);

fn weight_sets() -> impl Strategy<Value = Vec<SetSpec>> {
    let steps = || prop::collection::vec((finite(), finite()), 0..5);
    let since = prop_oneof![3 => 0i64..4, 1 => any::<i64>()];
    prop::collection::vec((since, steps(), steps()), 0..5)
}

fn sets_json(sets: &[SetSpec]) -> Value {
    let steps = |s: &[(f64, f64)]| {
        s.iter()
            .map(|(v, w)| json!({"value": v, "weight": w}))
            .collect::<Vec<_>>()
    };
    Value::Array(
        sets.iter()
            .map(|(since, v, m)| {
                json!({"resource_set_timestamp": since, "vcpus": steps(v), "memory_mb": steps(m)})
            })
            .collect(),
    )
}

fn sets_toml(sets: &[SetSpec]) -> String {
    let steps = |s: &[(f64, f64)]| {
        toml::Value::Array(
            s.iter()
                .map(|(v, w)| {
                    let mut t = toml::Table::new();
                    t.insert("value".into(), toml::Value::Float(*v));
                    t.insert("weight".into(), toml::Value::Float(*w));
                    toml::Value::Table(t)
                })
                .collect(),
        )
    };
    let list = sets
        .iter()
        .map(|(since, v, m)| {
            let mut t = toml::Table::new();
            t.insert(
                "resource_set_timestamp".into(),
                toml::Value::Integer(*since),
            );
            t.insert("vcpus".into(), steps(v));
            t.insert("memory_mb".into(), steps(m));
            toml::Value::Table(t)
        })
        .collect();
    let mut root = toml::Table::new();
    root.insert("weights".into(), toml::Value::Array(list));
    toml::to_string(&root).unwrap()
}

fn any_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        finite(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<f64>(),
    ]
}

// ---------------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn dates_never_panic(text in nasty_text(), anchor in any::<u64>()) {
        let _ = dates::parse(&text);
        let anchor = UNIX_EPOCH + Duration::from_secs(anchor % 400_000_000_000);
        let _ = dates::parse_relative(&text, anchor);
        let _ = dates::parse_relative(&format!("+{text}"), anchor);
        let _ = dates::parse_relative(&format!("-{text}"), anchor);
        let _ = nova::epoch_seconds(&text);
        let body = json!([{ "start_date": text }]).to_string();
        prop_assert_eq!(start_date::parse(body.as_bytes()), dates::parse(&text));
    }

    #[test]
    fn start_date_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..64), e in edits()) {
        let _ = start_date::parse(&body);
        let _ = start_date::parse(apply_edits(r#"[{"start_date": "2024-05-01T00:00:00+02:00"}]"#, &e).as_bytes());
    }

    #[test]
    fn a_formatted_time_parses_back_to_itself(
        secs in 86_400u64..253_402_214_400,
        nanos in prop_oneof![Just(0u32), 0u32..1_000_000_000],
        offset_minutes in -1439i64..=1439,
        space in any::<bool>(),
    ) {
        let t = UNIX_EPOCH + Duration::new(secs, nanos);
        let utc = humantime::format_rfc3339_nanos(t).to_string();
        prop_assert_eq!(dates::parse(&utc), Ok(t));
        // Without a zone: UTC, with `T` or a space.
        let naive = utc.trim_end_matches('Z');
        let naive = if space { naive.replacen('T', " ", 1) } else { naive.to_owned() };
        prop_assert_eq!(dates::parse(&naive), Ok(t));
        // The same moment written at another offset.
        let shifted = UNIX_EPOCH + Duration::new(secs.checked_add_signed(offset_minutes * 60).unwrap(), nanos);
        let local = humantime::format_rfc3339_nanos(shifted).to_string();
        let sign = if offset_minutes < 0 { '-' } else { '+' };
        let m = offset_minutes.unsigned_abs();
        let zoned = format!("{}{sign}{:02}:{:02}", local.trim_end_matches('Z'), m / 60, m % 60);
        prop_assert_eq!(dates::parse(&zoned), Ok(t), "{}", zoned);
        // A date alone is its midnight.
        let day = secs - secs % 86_400;
        prop_assert_eq!(dates::parse(&utc[..10]), Ok(UNIX_EPOCH + Duration::from_secs(day)));
    }

    #[test]
    fn offsets_shift_the_anchor_exactly(
        anchor in 0u64..400_000_000_000,
        n in 0u64..100_000,
        unit in prop::sample::select(&[("s", 1u64), ("m", 60), ("h", 3600), ("d", 86_400)][..]),
        pad in prop::sample::select(&["", " ", "  "][..]),
    ) {
        let at = UNIX_EPOCH + Duration::from_secs(anchor);
        let shift = Duration::from_secs(n * unit.1);
        let later = dates::parse_relative(&format!("{pad}+{n}{}{pad}", unit.0), at);
        prop_assert_eq!(later, Ok(at + shift));
        let earlier = dates::parse_relative(&format!("-{n}{}", unit.0), at);
        match at.checked_sub(shift).filter(|t| *t >= UNIX_EPOCH) {
            Some(want) => prop_assert_eq!(earlier, Ok(want)),
            None => prop_assert!(earlier.unwrap_err().contains("before 1970")),
        }
        prop_assert_eq!(dates::parse_relative("now", at), Ok(at));
    }

    #[test]
    fn weights_text_never_panics(text in nasty_text(), e in edits(), sets in weight_sets()) {
        let _ = Weights::from_json(text.as_bytes());
        let _ = Weights::from_yaml(&text);
        let _ = Weights::from_toml(&text);
        let json = apply_edits(&sets_json(&sets).to_string(), &e);
        let _ = Weights::from_json(json.as_bytes());
        let _ = Weights::from_yaml(&json);
        let toml = apply_edits(&sets_toml(&sets), &e);
        let _ = Weights::from_toml(&toml);
    }

    #[test]
    fn weights_are_the_same_in_every_encoding(sets in weight_sets()) {
        let doc = sets_json(&sets);
        let from_json = Weights::from_json(doc.to_string().as_bytes())
            .map_err(|e| TestCaseError::fail(format!("{doc}: {e}")))?;
        let yaml_list = serde_yaml::to_string(&doc).unwrap();
        let yaml_map = serde_yaml::to_string(&json!({ "weights": doc })).unwrap();
        let toml = sets_toml(&sets);
        prop_assert_eq!(&Weights::from_yaml(&yaml_list).unwrap(), &from_json, "{}", yaml_list);
        prop_assert_eq!(&Weights::from_yaml(&yaml_map).unwrap(), &from_json, "{}", yaml_map);
        prop_assert_eq!(&Weights::from_toml(&toml).unwrap(), &from_json, "{}", toml);
        // The rule's invariants: sets sorted by unique timestamp, steps by unique value.
        let s = from_json.sets();
        prop_assert!(s.windows(2).all(|w| w[0].since < w[1].since));
        for set in s {
            for steps in [&set.vcpus, &set.memory] {
                prop_assert!(steps.windows(2).all(|w| w[0].value < w[1].value));
            }
        }
    }

    #[test]
    fn the_weight_rule_is_total(
        sets in weight_sets(),
        amount in any_f64(),
        started_at in any_f64(),
    ) {
        let w = Weights::from_json(sets_json(&sets).to_string().as_bytes()).unwrap();
        for r in [Resource::Vcpus, Resource::Memory] {
            let got = w.weight(r, amount, started_at);
            if amount.is_finite() && started_at.is_finite() {
                prop_assert!(got.is_finite(), "{r:?} {amount} {started_at}: {got}");
            }
        }
    }
}

/// The documented rule, written as plainly as possible.
fn model_weight(sets: &[SetSpec], resource: Resource, amount: f64, started_at: f64) -> f64 {
    // A later set with the same timestamp, and a later step with the same value, wins.
    let mut by_since: Vec<&SetSpec> = Vec::new();
    for s in sets {
        by_since.retain(|o| o.0 != s.0);
        by_since.push(s);
    }
    by_since.sort_by_key(|s| s.0);
    let Some(first) = by_since.first() else {
        return 1.0;
    };
    let set = by_since
        .iter()
        .rev()
        .find(|s| s.0 as f64 <= started_at)
        .unwrap_or(first);
    let list = match resource {
        Resource::Vcpus => &set.1,
        Resource::Memory => &set.2,
    };
    let mut steps: Vec<(f64, f64)> = Vec::new();
    for &(value, weight) in list {
        steps.retain(|(v, _)| *v != value);
        steps.push((value, weight));
    }
    steps.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    match steps.iter().find(|(v, _)| amount <= *v).or(steps.last()) {
        Some((_, w)) => *w,
        None => 1.0,
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn the_weight_rule_is_the_documented_one(
        sets in weight_sets(),
        amount in finite(),
        started_at in prop_oneof![finite(), (0i64..4).prop_map(|s| s as f64)],
    ) {
        let w = Weights::from_json(sets_json(&sets).to_string().as_bytes()).unwrap();
        for r in [Resource::Vcpus, Resource::Memory] {
            prop_assert_eq!(
                w.weight(r, amount, started_at),
                model_weight(&sets, r, amount, started_at),
                "{:?} {} {}", r, amount, started_at
            );
        }
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn openstack_answers_decode_or_fail_cleanly((_, doc) in openstack_fixture(), e in json_edits()) {
        decode_openstack(&apply_json_edits(&doc, &e));
    }

    #[test]
    fn openstack_text_mutations_decode_or_fail_cleanly((_, doc) in openstack_fixture(), e in edits()) {
        decode_openstack(&apply_edits(&serde_json::to_string_pretty(&doc).unwrap(), &e));
    }
}

fn server_usage() -> impl Strategy<Value = nova::ServerUsage> {
    let size = || prop_oneof![3 => 0u64..100_000, 1 => any::<u64>()];
    (0u8..4, any_f64(), size(), size(), size()).prop_map(
        |(id, hours, vcpus, memory_mb, local_gb)| nova::ServerUsage {
            instance_id: format!("s{id}"),
            hours,
            vcpus,
            memory_mb,
            local_gb,
            ..Default::default()
        },
    )
}

proptest! {
    #![proptest_config(config(500))]

    /// Windows of any numbers are applied whole and stay savable, or refused and change
    /// nothing.
    #[test]
    fn windows_are_applied_whole_and_stay_finite(
        windows in prop::collection::vec(prop::collection::vec((0u8..3, server_usage()), 0..6), 1..4),
    ) {
        let start = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut acc = accounting::Accounting::new(start);
        for (i, w) in windows.iter().enumerate() {
            let tenants: Vec<nova::TenantUsage> = w
                .iter()
                .map(|(p, u)| nova::TenantUsage { tenant_id: format!("p{p}"), server_usages: vec![u.clone()] })
                .collect();
            let before = acc.clone();
            let end = start + Duration::from_secs(3600 * (i as u64 + 1));
            match acc.apply_window(end, &nova::compact_usage(tenants)) {
                Ok(()) => prop_assert_eq!(acc.implausible(end), None),
                Err(_) => prop_assert_eq!(&acc, &before),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The state file.

const CLOUD: &str = "http://keystone.example/v3";

/// An accounting after one recorded window, as a state file.
fn saved_state(dir: &Path) -> String {
    let text = fixture("openstack/nova_os-simple-tenant-usage_detailed_mv2.40.json");
    let page: nova::UsagePage = serde_json::from_str(&text).unwrap();
    let mut acc = accounting::Accounting::new(UNIX_EPOCH + Duration::from_secs(1_763_683_200));
    acc.apply_window(
        UNIX_EPOCH + Duration::from_secs(1_763_769_600),
        &nova::compact_usage(page.tenant_usages.clone()),
    )
    .unwrap();
    // Written as the version-1 JSON, which the load migrates.
    let _ = dir;
    serde_json::to_string(&state::v1::StateFile {
        version: 1,
        cloud: CLOUD.into(),
        accounting: state::v1::AccountingV1::of(&acc),
        stopped: Default::default(),
    })
    .unwrap()
}

/// Loads `bytes` as a state file and checks what follows: resumed and usable, or set aside.
fn load_checked(bytes: &[u8]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, bytes).unwrap();
    match state::load(&path, CLOUD).unwrap() {
        state::Loaded::Missing => prop_assert!(false, "the file is there"),
        state::Loaded::SetAside { moved_to, reason } => {
            prop_assert!(!path.exists(), "set aside but still in place: {}", reason);
            prop_assert_eq!(std::fs::read(&moved_to).unwrap(), bytes);
        }
        state::Loaded::Resumed(mut acc, stopped) => {
            let now = SystemTime::now();
            prop_assert_eq!(acc.implausible(now), None);
            let start = acc.next_window_start();
            let projects: Vec<_> = acc
                .project_map()
                .into_keys()
                .map(|id| {
                    std::sync::Arc::new(site_exporter::snapshot::Project {
                        id: id.to_owned(),
                        name: id.to_owned(),
                        domain_id: "d".into(),
                        domain_name: "d".into(),
                        enabled: true,
                    })
                })
                .collect();
            let _ = acc.snapshot(
                &projects,
                BTreeMap::new(),
                &Default::default(),
                Some(&Weights::default()),
            );
            let _ = acc.snapshot(&projects, BTreeMap::new(), &Default::default(), None);
            let end = start.max(now) + Duration::from_secs(60);
            acc.apply_window(end, &[]).unwrap();
            // What a resumed accounting saves, the next start resumes.
            state::save(&path, CLOUD, &acc, &stopped).unwrap();
            let again = state::load(&path, CLOUD).unwrap();
            prop_assert_eq!(again, state::Loaded::Resumed(acc, stopped));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn any_state_file_is_resumed_or_set_aside(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        load_checked(&bytes)?;
    }

    #[test]
    fn state_files_with_any_times_are_resumed_or_set_aside(
        usage_start in prop_oneof![any::<u64>(), 0u64..4_000_000_000],
        window_end in prop_oneof![any::<u64>(), 0u64..4_000_000_000],
        hours in any_f64(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut doc: Value = serde_json::from_str(&saved_state(dir.path())).unwrap();
        doc["accounting"]["usage_start"] = json!(usage_start);
        doc["accounting"]["window_end"] = json!(window_end);
        if let Some(Value::Object(servers)) = doc["accounting"].get_mut("servers") {
            if let Some(first) = servers.values_mut().next() {
                first["hours"] = json!(hours);
            }
        }
        load_checked(doc.to_string().as_bytes())?;
    }

    #[test]
    fn mutated_state_files_are_resumed_or_set_aside(e in json_edits()) {
        let dir = tempfile::tempdir().unwrap();
        let doc: Value = serde_json::from_str(&saved_state(dir.path())).unwrap();
        load_checked(apply_json_edits(&doc, &e).as_bytes())?;
    }
}

/// The binary state of `saved_state`'s accounting after a second window: a snapshot and a
/// log with one entry.
fn binary_state(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let text = fixture("openstack/nova_os-simple-tenant-usage_detailed_mv2.40.json");
    let page: nova::UsagePage = serde_json::from_str(&text).unwrap();
    let path = dir.join("seed");
    let (_, mut store) = state::open(&path, CLOUD).unwrap();
    let mut acc = accounting::Accounting::new(UNIX_EPOCH + Duration::from_secs(1_763_683_200));
    acc.apply_window(
        UNIX_EPOCH + Duration::from_secs(1_763_769_600),
        &nova::compact_usage(page.tenant_usages.clone()),
    )
    .unwrap();
    store.save(&mut acc, &Default::default()).unwrap();
    acc.apply_window(
        UNIX_EPOCH + Duration::from_secs(1_763_773_200),
        &nova::compact_usage(page.tenant_usages.clone()),
    )
    .unwrap();
    store.save(&mut acc, &Default::default()).unwrap();
    (
        std::fs::read(&path).unwrap(),
        std::fs::read(state::log_path(&path)).unwrap(),
    )
}

proptest! {
    #![proptest_config(config(300))]

    /// Damage anywhere in the snapshot or the log (flipped bytes, a cut): the load resumes a
    /// plausible state or sets the files aside, and never panics.
    #[test]
    fn damaged_binary_states_are_resumed_or_set_aside(
        in_log in any::<bool>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (mut snapshot, mut log) = binary_state(dir.path());
        let target = if in_log { &mut log } else { &mut snapshot };
        for (at, x) in &flips {
            let i = at.index(target.len());
            target[i] ^= x;
        }
        if let Some(at) = cut {
            let n = at.index(target.len() + 1);
            target.truncate(n);
        }
        let path = dir.path().join("state");
        std::fs::write(&path, &snapshot).unwrap();
        std::fs::write(state::log_path(&path), &log).unwrap();
        match state::load(&path, CLOUD).unwrap() {
            state::Loaded::Missing => prop_assert!(false, "the file is there"),
            state::Loaded::SetAside { moved_to, .. } => {
                prop_assert_eq!(std::fs::read(&moved_to).unwrap(), snapshot);
            }
            state::Loaded::Resumed(acc, _) => {
                prop_assert_eq!(acc.implausible(SystemTime::now()), None);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dummy clouds.

use site_exporter::settings::Schedule;
use site_exporter::snapshot::{ProjectsSnapshot, SourceData};
use site_exporter::sources::dummy::{CloudSpec, DummyConfig, DummySource, BUILTIN};

/// Names a cloud file may have: the format by extension, or detected from the content.
const NAMES: &[&str] = &["cloud.yaml", "cloud.toml", "cloud.toml.10000"];

/// Builds a dummy source from `text` saved as `name`, then snapshots it at moments from the
/// epoch to the far future; the snapshot, when the file is valid.
fn dummy(text: &str, name: &str, guests: u64) -> Option<ProjectsSnapshot> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let config = DummyConfig {
        cloud: CloudSpec::File(path),
        guests: Some(guests),
        usage_start: None,
        usage_start_url: None,
        schedule: Schedule {
            interval: Duration::from_secs(60),
            timeout: Duration::from_secs(60),
        },
    };
    let anchor = SystemTime::now();
    let source = DummySource::new(&config, Default::default(), Default::default(), anchor).ok()?;
    let far = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    for at in [UNIX_EPOCH, anchor + Duration::from_secs(86_400 * 365), far] {
        let _ = source.snapshot(at);
    }
    match source.snapshot(anchor) {
        SourceData::Cloud { projects, .. } => Some(projects),
        other => panic!("a dummy source gave {other:?}"),
    }
}

/// A server of a generated cloud: vCPUs, MiB, and whether it lives at the anchor.
#[derive(Debug, Clone)]
struct GenServer {
    vcpus: u64,
    ram: u64,
    created_days_ago: u64,
    /// Seconds from the anchor; negative: deleted before it.
    deleted: Option<i64>,
}

fn gen_server() -> impl Strategy<Value = GenServer> {
    (
        0u64..64,
        0u64..1 << 20,
        1u64..1000,
        prop::option::of(prop_oneof![1i64..1_000_000, -86_399i64..0]),
    )
        .prop_map(|(vcpus, ram, created_days_ago, deleted)| GenServer {
            vcpus,
            ram,
            created_days_ago,
            deleted,
        })
}

/// Domains of projects of servers; names unique where the format needs it.
fn gen_cloud() -> impl Strategy<Value = Vec<Vec<Vec<GenServer>>>> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(gen_server(), 0..4), 0..4),
        1..4,
    )
}

fn live(s: &GenServer) -> bool {
    s.deleted.is_none_or(|d| d > 0)
}

fn cloud_yaml(cloud: &[Vec<Vec<GenServer>>]) -> String {
    let mut out = String::from("usage_start: -1000d\ndomains:\n");
    for (d, projects) in cloud.iter().enumerate() {
        out.push_str(&format!("  - name: d{d}\n    projects:\n"));
        for (p, servers) in projects.iter().enumerate() {
            out.push_str(&format!("      - name: p{p}\n        servers:\n"));
            for (i, s) in servers.iter().enumerate() {
                out.push_str(&format!(
                    "          - {{name: s{i}, vcpus: {}, ram_mb: {}, created: -{}d",
                    s.vcpus, s.ram, s.created_days_ago
                ));
                if let Some(d) = s.deleted {
                    out.push_str(&format!(
                        ", deleted: {}{}s",
                        if d < 0 { '-' } else { '+' },
                        d.unsigned_abs()
                    ));
                }
                out.push_str("}\n");
            }
            if servers.is_empty() {
                out.push_str("          []\n");
            }
        }
        if projects.is_empty() {
            out.push_str("      []\n");
        }
    }
    out
}

/// The same cloud in the original's TOML; it has no deletion, only live or never.
fn cloud_toml(cloud: &[Vec<Vec<GenServer>>]) -> String {
    let mut out = String::new();
    for (d, projects) in cloud.iter().enumerate() {
        out.push_str(&format!("[d{d}]\ndomain_id = \"d{d}-id\"\n"));
        for (p, servers) in projects.iter().enumerate() {
            out.push_str(&format!("[[d{d}.projects]]\nproject_name = \"p{p}\"\nproject_id = \"d{d}p{p}\"\nmachines = [\n"));
            for (i, s) in servers.iter().enumerate() {
                out.push_str(&format!(
                    "  {{ram = {}, cpus = {}, existence = {}, instance_id = \"d{d}p{p}s{i}\"}},\n",
                    s.ram / 1024 + 1,
                    s.vcpus + 1,
                    live(s)
                ));
            }
            out.push_str("]\n");
        }
    }
    out
}

fn by_name(snapshot: &ProjectsSnapshot) -> BTreeMap<(String, String), (u64, u64)> {
    snapshot
        .projects
        .iter()
        .map(|p| {
            let key = (p.project.domain_name.clone(), p.project.name.clone());
            (key, (p.allocation.vcpus, p.allocation.memory_bytes))
        })
        .collect()
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn dummy_text_never_panics(text in nasty_text(), name in prop::sample::select(NAMES)) {
        let _ = dummy(&text, name, 3);
    }

    #[test]
    fn mutated_dummy_files_build_or_fail_cleanly(
        file in prop::sample::select(&["builtin", "golden-cloud.yaml", "legacy-cloud.toml"][..]),
        e in edits(),
        name in prop::sample::select(NAMES),
    ) {
        let text = if file == "builtin" { BUILTIN.to_owned() } else { fixture(file) };
        let _ = dummy(&apply_edits(&text, &e), name, 3);
    }

    #[test]
    fn a_generated_cloud_comes_back(cloud in gen_cloud()) {
        const MIB: u64 = 1 << 20;
        let want: BTreeMap<(String, String), (u64, u64)> = cloud
            .iter()
            .enumerate()
            .flat_map(|(d, projects)| projects.iter().enumerate().map(move |(p, servers)| {
                let live = servers.iter().filter(|s| live(s));
                let alloc = live.fold((0, 0), |(v, m), s| (v + s.vcpus, m + s.ram * MIB));
                ((format!("d{d}"), format!("p{p}")), alloc)
            }))
            .collect();
        let yaml = cloud_yaml(&cloud);
        for name in ["cloud.yaml", "cloud"] {
            let got = dummy(&yaml, name, 1).ok_or_else(|| TestCaseError::fail(yaml.clone()))?;
            prop_assert_eq!(by_name(&got), want.clone(), "{}", yaml);
        }
        let want_toml: BTreeMap<(String, String), (u64, u64)> = cloud
            .iter()
            .enumerate()
            .flat_map(|(d, projects)| projects.iter().enumerate().map(move |(p, servers)| {
                let live = servers.iter().filter(|s| live(s));
                let alloc = live.fold((0, 0), |(v, m), s| (v + s.vcpus + 1, m + (s.ram / 1024 + 1) * 1024 * MIB));
                ((format!("d{d}"), format!("p{p}")), alloc)
            }))
            .collect();
        let toml = cloud_toml(&cloud);
        for name in ["cloud.toml", "cloud.toml.10000"] {
            let got = dummy(&toml, name, 1).ok_or_else(|| TestCaseError::fail(toml.clone()))?;
            prop_assert_eq!(by_name(&got), want_toml.clone(), "{}", toml);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The YAML config.

use site_exporter::cli::Cli;
use site_exporter::config::FileConfig;
use site_exporter::settings::MigrationEnv;

const CONFIG: &str = r#"web: {listen_address: "127.0.0.1:9184"}
log: {level: info, format: json}
legacy_metrics: true
legacy: {memory_unit: gib}
simple_vm: {project_id: abc, tag: project_name}
usage_start_url: http://portal.example/start
dummy: {interval: 30s, timeout: 10s, guests: 5, usage_start: -3d}
"#;

/// Parses `text` as a config file and merges it over default flags: a value or an error.
fn config_checked(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, text).unwrap();
    if let Ok(file) = FileConfig::read(&path) {
        let _ = site_exporter::Config::merge(&Cli::default(), file, &MigrationEnv::default());
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn any_config_text_is_a_config_or_an_error(text in nasty_text()) {
        config_checked(&text);
    }

    #[test]
    fn mutated_configs_are_a_config_or_an_error(e in edits()) {
        config_checked(&apply_edits(CONFIG, &e));
    }
}

// ---------------------------------------------------------------------------------------------
// libvirt domain XML.

#[cfg(feature = "libvirt")]
mod libvirt {
    use super::*;
    use site_exporter::sources::libvirt::metadata::parse_domain;

    const DOMAIN: &str = r#"<domain type='kvm'>
  <name>instance-0000002a</name>
  <uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid>
  <metadata>
    <nova:instance xmlns:nova="http://openstack.org/xmlns/libvirt/nova/1.1">
      <nova:name>web &amp; db</nova:name>
      <nova:flavor name="m1.large"><nova:vcpus>4</nova:vcpus></nova:flavor>
      <nova:owner>
        <nova:user uuid="u-1">alice</nova:user>
        <nova:project uuid="p-1">genomics</nova:project>
      </nova:owner>
    </nova:instance>
  </metadata>
  <devices>
    <disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><target dev='hdc'/></disk>
    <interface type='bridge'><target dev='tap0'/></interface>
  </devices>
</domain>"#;

    proptest! {
        #![proptest_config(config(1000))]

        #[test]
        fn domain_xml_never_panics(text in nasty_text(), e in edits()) {
            let _ = parse_domain(&text);
            let _ = parse_domain(&apply_edits(DOMAIN, &e));
        }
    }
}

#[test]
fn the_config_seed_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let file = FileConfig::read(&path).unwrap();
    site_exporter::Config::merge(&Cli::default(), file, &MigrationEnv::default()).unwrap();
}
