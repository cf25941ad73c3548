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

/// One piece of a classic translation: a range of the input copied unchanged (whole sample
/// lines with their newlines), or text written anew (HELP and TYPE lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Copy(std::ops::Range<usize>),
    New(String),
}

/// Translates a whole OpenMetrics exposition, or a fragment of one, to classic text.
pub fn from_openmetrics(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for segment in segments(input) {
        match segment {
            Segment::Copy(range) => out.push_str(&input[range]),
            Segment::New(text) => out.push_str(&text),
        }
    }
    out
}

/// The classic translation as pieces: concatenated, they are [`from_openmetrics`]. Runs of
/// sample lines are ranges of `input`, so a caller holding `input` as `Bytes` can serve the
/// translation without copying the samples (only the family headers are new text).
pub fn segments(input: &str) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut header = String::new();
    // The run of sample lines being collected, as a byte range of `input`.
    let mut run: Option<std::ops::Range<usize>> = None;
    // HELP precedes TYPE in OpenMetrics, but classic needs the sample name that TYPE implies,
    // so a HELP line is held until its TYPE arrives.
    let mut pending_help: Option<(&str, &str)> = None;
    let mut start = 0;
    while start < input.len() {
        let end = input[start..]
            .find('\n')
            .map_or(input.len(), |i| start + i + 1);
        let line = input[start..end].trim_end_matches('\n');
        let line = line.strip_suffix('\r').unwrap_or(line);
        let is_sample = !line.is_empty() && !line.starts_with('#');
        if is_sample && line.len() + 1 == end - start {
            // A sample line ending in a bare newline is copied as it is.
            match &mut run {
                Some(r) if r.end == start => r.end = end,
                _ => {
                    flush_run(&mut out, &mut header, run.take());
                    run = Some(start..end);
                }
            }
        } else {
            flush_run(&mut out, &mut header, run.take());
            if is_sample {
                // The last line without its newline, or one ending in `\r\n`.
                header.push_str(line);
                header.push('\n');
            } else {
                header_line(&mut header, line, &mut pending_help);
            }
        }
        start = end;
    }
    flush_run(&mut out, &mut header, run);
    flush_help(&mut header, pending_help, None);
    if !header.is_empty() {
        out.push(Segment::New(header));
    }
    out
}

/// Ends a run of copied samples: the new text before it, then the run.
fn flush_run(out: &mut Vec<Segment>, header: &mut String, run: Option<std::ops::Range<usize>>) {
    let Some(run) = run else { return };
    if !header.is_empty() {
        out.push(Segment::New(std::mem::take(header)));
    }
    out.push(Segment::Copy(run));
}

/// Translates one `#` line (or skips an empty one) into `out`.
fn header_line<'a>(out: &mut String, line: &'a str, pending_help: &mut Option<(&'a str, &'a str)>) {
    if let Some(rest) = line.strip_prefix("# HELP ") {
        flush_help(out, pending_help.take(), None);
        let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
        *pending_help = Some((name, text));
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
        flush_help(out, help, Some(suffix));
        out.push_str("# TYPE ");
        out.push_str(name);
        out.push_str(suffix);
        out.push(' ');
        out.push_str(classic_kind);
        out.push('\n');
    }
    // `# UNIT`, `# EOF` (no classic counterpart) and empty lines are dropped.
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
                name: "HELP held past samples, last line without newline, CRLF line",
                input: "# HELP a A\na 1\r\n# TYPE a gauge\na 2\n\na 3",
                want: "a 1\n# HELP a A\n# TYPE a gauge\na 2\na 3\n",
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

    #[test]
    fn sample_lines_are_ranges_of_the_input() {
        let input = "# HELP a A\n# TYPE a counter\na_total 1\na_total{x=\"y\"} 2\n# HELP b B\n# TYPE b gauge\nb 3\n# EOF\n";
        let segments = segments(input);
        let copied: Vec<&str> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Copy(r) => Some(&input[r.clone()]),
                Segment::New(_) => None,
            })
            .collect();
        assert_eq!(copied, ["a_total 1\na_total{x=\"y\"} 2\n", "b 3\n"]);
        assert_eq!(segments.len(), 4, "{segments:?}");
    }

    proptest::proptest! {
        /// Whatever the input, the pieces are in bounds, copied ranges hold whole sample lines,
        /// and every sample line of the input is in the output exactly once, in order.
        #[test]
        fn segments_copy_whole_sample_lines(lines in proptest::collection::vec(
            "(# (HELP|TYPE|UNIT) [a-z_]{1,4} [a-z \\\\\"]{0,6}|[a-z_]{1,4}(\\{l=\"[a-z\r]{0,3}\"\\})? [0-9]{1,3}|# EOF|)",
            0..12,
        ), crlf in proptest::bool::ANY, last_newline in proptest::bool::ANY) {
            let mut input = lines.join(if crlf { "\r\n" } else { "\n" });
            if last_newline && !input.is_empty() {
                input.push('\n');
            }
            let mut samples_out = Vec::new();
            for segment in segments(&input) {
                if let Segment::Copy(r) = segment {
                    let text = input.get(r.clone()).expect("range in bounds, on char boundaries");
                    proptest::prop_assert!(text.ends_with('\n') && !text.contains("\r\n"));
                    samples_out.extend(text.lines().map(str::to_owned));
                }
            }
            let out = from_openmetrics(&input);
            let samples_in: Vec<&str> = input.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
            let samples_translated: Vec<&str> = out.lines().filter(|l| !l.starts_with('#')).collect();
            proptest::prop_assert_eq!(&samples_translated, &samples_in);
            proptest::prop_assert!(samples_out.len() <= samples_in.len());
        }
    }
}
