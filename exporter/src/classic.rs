//! OpenMetrics text -> the classic Prometheus text format 0.0.4.
//!
//! `prometheus-client` writes only OpenMetrics; clients that do not ask for it (curl, older
//! scrapers, `promtool check metrics`) get this translation of the same bytes. The differences
//! that matter, per family:
//! - a counter family `x` has samples `x_total`: classic names the family `x_total` in HELP and
//!   TYPE;
//! - an info family `x` has samples `x_info`: classic has no info type, so it becomes the gauge
//!   `x_info`;
//! - `# UNIT` lines and the `# EOF` marker do not exist in classic and are dropped;
//! - HELP escapes only backslash and newline in classic (OpenMetrics also escapes `"`).
//!
//! Sample lines are copied unchanged: label and value syntax is the same in both formats for
//! what our renderer writes (no exemplars, no timestamps, no `_created`).

/// Translates a whole OpenMetrics exposition, or a fragment of one, to classic text.
pub fn from_openmetrics(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    // HELP precedes TYPE in OpenMetrics, but classic needs the sample name that TYPE implies,
    // so a HELP line is held until its TYPE arrives.
    let mut pending_help: Option<(&str, &str)> = None;
    for line in input.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            flush_help(&mut out, pending_help.take(), None);
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            pending_help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (suffix, classic_kind) = match kind {
                "counter" => ("_total", "counter"),
                "info" => ("_info", "gauge"),
                "gauge" => ("", "gauge"),
                "histogram" => ("", "histogram"),
                "summary" => ("", "summary"),
                _ => ("", "untyped"),
            };
            let help = pending_help.take().filter(|(n, _)| *n == name);
            flush_help(&mut out, help, Some(suffix));
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str(suffix);
            out.push(' ');
            out.push_str(classic_kind);
            out.push('\n');
        } else if line.starts_with('#') {
            // `# UNIT` and `# EOF` have no classic counterpart.
            continue;
        } else if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    flush_help(&mut out, pending_help, None);
    out
}

fn flush_help(out: &mut String, help: Option<(&str, &str)>, suffix: Option<&str>) {
    let Some((name, text)) = help else { return };
    out.push_str("# HELP ");
    out.push_str(name);
    out.push_str(suffix.unwrap_or(""));
    out.push(' ');
    // OpenMetrics `\"` becomes a plain quote; `\\` and `\n` mean the same in both formats.
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'"') {
            continue;
        }
        out.push(c);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        input: &'static str,
        want: &'static str,
    }

    #[test]
    fn translates_each_family_kind() {
        let cases = [
            Case {
                name: "counter gets _total in HELP and TYPE, UNIT dropped",
                input: "# HELP a_seconds Time spent\n# TYPE a_seconds counter\n# UNIT a_seconds seconds\na_seconds_total{x=\"1\"} 2.5\n# EOF\n",
                want: "# HELP a_seconds_total Time spent\n# TYPE a_seconds_total counter\na_seconds_total{x=\"1\"} 2.5\n",
            },
            Case {
                name: "info becomes a gauge named _info",
                input: "# HELP b Names\n# TYPE b info\nb_info{n=\"x\"} 1\n",
                want: "# HELP b_info Names\n# TYPE b_info gauge\nb_info{n=\"x\"} 1\n",
            },
            Case {
                name: "gauge and histogram pass through",
                input: "# HELP g G\n# TYPE g gauge\ng 1\n# HELP h H\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n",
                want: "# HELP g G\n# TYPE g gauge\ng 1\n# HELP h H\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n",
            },
            Case {
                name: "unknown type is untyped",
                input: "# HELP u U\n# TYPE u unknown\nu 3\n",
                want: "# HELP u U\n# TYPE u untyped\nu 3\n",
            },
            Case {
                name: "escaped quote in HELP is unescaped, backslash kept",
                input: "# HELP q say \\\"hi\\\" \\\\ now\n# TYPE q gauge\nq 0\n",
                want: "# HELP q say \"hi\" \\\\ now\n# TYPE q gauge\nq 0\n",
            },
            Case {
                name: "label values keep their escapes",
                input: "# HELP l L\n# TYPE l gauge\nl{v=\"a\\\"b\\\\c\\nd\"} 1\n",
                want: "# HELP l L\n# TYPE l gauge\nl{v=\"a\\\"b\\\\c\\nd\"} 1\n",
            },
            Case {
                name: "empty input and bare EOF",
                input: "# EOF\n",
                want: "",
            },
        ];
        for case in cases {
            assert_eq!(
                from_openmetrics(case.input),
                case.want,
                "case: {}",
                case.name
            );
        }
    }
}
