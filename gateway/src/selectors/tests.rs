#![allow(clippy::unwrap_used)]

use super::*;

fn canon(s: &str) -> Result<String, ParseError> {
    Selector::parse(s).map(|s| s.to_string())
}

#[test]
fn parses_valid_forms_to_their_canonical_encoding() {
    struct Case {
        name: &'static str,
        input: &'static str,
        want: &'static str,
    }
    let cases = [
        Case {
            name: "the original whitelist",
            input: r#"{job="project_usages",__name__=~"project_.*_usage"}"#,
            want: r#"{__name__=~"project_.*_usage",job="project_usages"}"#,
        },
        Case {
            name: "metric name alone",
            input: "up",
            want: r#"{__name__="up"}"#,
        },
        Case {
            name: "metric name with colons",
            input: "project:libvirt_cpu:rate5m",
            want: r#"{__name__="project:libvirt_cpu:rate5m"}"#,
        },
        Case {
            name: "metric name and matchers",
            input: r#"project_vcpu_usage{domain_name!="x"}"#,
            want: r#"{__name__="project_vcpu_usage",domain_name!="x"}"#,
        },
        Case {
            name: "whitespace everywhere",
            input: " \t{ job = \"a\" ,\n b !~ 'c' } ",
            want: r#"{b!~"c",job="a"}"#,
        },
        Case {
            name: "trailing comma",
            input: r#"{a="1",}"#,
            want: r#"{a="1"}"#,
        },
        Case {
            name: "single quotes",
            input: r#"{a='it"s'}"#,
            want: r#"{a="it\"s"}"#,
        },
        Case {
            name: "raw string keeps backslashes",
            input: r#"{a=~`\d+\.`}"#,
            want: r#"{a=~"\\d+\\."}"#,
        },
        Case {
            name: "go escapes",
            input: r#"{a="\x41\101\u00e9\U0001F600\n\t\\\""}"#,
            want: "{a=\"AA\u{e9}\u{1F600}\\n\\t\\\\\\\"\"}",
        },
        Case {
            name: "duplicate matcher collapses",
            input: r#"{a="1",a="1"}"#,
            want: r#"{a="1"}"#,
        },
        Case {
            name: "same label twice, different values",
            input: r#"{a!="2",a="1"}"#,
            want: r#"{a="1",a!="2"}"#,
        },
        Case {
            name: "empty value",
            input: r#"{a=""}"#,
            want: r#"{a=""}"#,
        },
        Case {
            name: "control character re-escaped",
            input: "{a=\"\\a\"}",
            want: r#"{a="\u0007"}"#,
        },
    ];
    for case in cases {
        assert_eq!(canon(case.input).unwrap(), case.want, "case: {}", case.name);
        // The canonical form parses back to the same selector.
        assert_eq!(
            canon(case.want).unwrap(),
            case.want,
            "round trip: {}",
            case.name
        );
    }
}

#[test]
fn rejects_invalid_input() {
    let cases: &[(&str, &str)] = &[
        ("", "expected a metric name or '{'"),
        ("   ", "expected a metric name or '{'"),
        ("{}", "at least one matcher"),
        ("{a}", "expected one of"),
        ("{a=}", "expected a quoted string"),
        ("{a==\"b\"}", "expected a quoted string"),
        ("{a=\"b\"", "expected ',' or '}'"),
        ("{a=\"b}", "unterminated string"),
        ("{a=\"b\" c=\"d\"}", "expected ',' or '}'"),
        ("{a=\"b\"}}", "unexpected text"),
        ("up{__name__=\"x\"}", "metric name given twice"),
        ("up[5m]", "unexpected text"),
        ("rate(up[5m])", "unexpected text"),
        ("up offset 5m", "unexpected text"),
        ("{\"quoted\"=\"x\"}", "expected a label name"),
        ("{1a=\"x\"}", "expected a label name"),
        ("9up", "expected a metric name or '{'"),
        ("{a=\"\\q\"}", "unknown escape"),
        ("{a=\"\\x4\"}", "bad digits"),
        ("{a=\"\\xff\"}", "byte escape above 0x7f"),
        ("{a=\"\\uD800\"}", "not a Unicode scalar value"),
        ("{a=\"x\ny\"}", "newline in a string"),
        ("{a=\"x\"};{b=\"y\"}", "unexpected text"),
        ("{a=\"x\"},{b=\"y\"}", "unexpected text"),
        ("up or {a=\"b\"}", "unexpected text"),
    ];
    for (input, want) in cases {
        let err = Selector::parse(input).unwrap_err();
        assert!(
            err.problem.contains(want),
            "input {input:?}: got {err}, want {want:?}"
        );
    }
}

#[test]
fn allow_rule() {
    let allowed: Vec<Selector> = [
        r#"{job="project_usages",__name__=~"project_.*_usage"}"#,
        r#"{__name__=~"openstack_project_.+"}"#,
    ]
    .iter()
    .map(|s| Selector::parse(s).unwrap())
    .collect();
    struct Case {
        name: &'static str,
        request: &'static str,
        want: bool,
    }
    let cases = [
        Case {
            name: "exactly the original whitelist",
            request: r#"{job="project_usages",__name__=~"project_.*_usage"}"#,
            want: true,
        },
        Case {
            name: "same matchers, other order and quotes",
            request: r#"{ __name__ =~ 'project_.*_usage' , job = `project_usages` }"#,
            want: true,
        },
        Case {
            name: "narrower: an extra matcher",
            request: r#"{job="project_usages",__name__=~"project_.*_usage",project_name="x"}"#,
            want: true,
        },
        Case {
            name: "a name the regex covers is still refused: no reasoning about regexes",
            request: "openstack_project_vcpus",
            want: false,
        },
        Case {
            name: "second allowed selector, narrowed",
            request: r#"{__name__=~"openstack_project_.+",domain_name="elixir"}"#,
            want: true,
        },
        Case {
            name: "missing the job matcher",
            request: r#"{__name__=~"project_.*_usage"}"#,
            want: false,
        },
        Case {
            name: "catch-all",
            request: r#"{__name__=~".+"}"#,
            want: false,
        },
        Case {
            name: "an equivalent regex written differently",
            request: r#"{job="project_usages",__name__=~"project_.*_usage|"}"#,
            want: false,
        },
        Case {
            name: "another metric",
            request: "up",
            want: false,
        },
        Case {
            name: "negated matcher instead",
            request: r#"{job!="project_usages",__name__=~"project_.*_usage"}"#,
            want: false,
        },
        Case {
            name: "value differs by case",
            request: r#"{job="Project_usages",__name__=~"project_.*_usage"}"#,
            want: false,
        },
    ];
    for case in cases {
        let s = Selector::parse(case.request).unwrap();
        assert_eq!(s.is_allowed_by(&allowed), case.want, "case: {}", case.name);
    }
    assert!(
        !Selector::parse("up").unwrap().is_allowed_by(&[]),
        "nothing allowed without an allow-list"
    );
}
