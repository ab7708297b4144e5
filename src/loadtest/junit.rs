//! The gate's criteria as JUnit XML (`rtctl loadtest --junit FILE`), so CI systems that
//! show test reports (GitHub Actions reporters, GitLab's `artifacts:reports:junit`,
//! Jenkins) list each criterion as a test case: passed, or failed with actual vs target.
//!
//! Pure: a suite in, a string out. The element and attribute names are those of the
//! schema every consumer reads (`testsuites` › `testsuite` › `testcase` with
//! `failure`/`error`); times are in seconds.

use super::gate::Check;

/// One run's verdict, as a test suite.
pub struct Suite<'a> {
    /// The gate (`phase1`…), or `loadtest` without one: the suite and class name.
    pub name: &'a str,
    pub checks: &'a [Check],
    /// The run's length, the suite's `time`.
    pub seconds: f64,
}

/// The suite as a JUnit XML document: one test case per criterion.
pub fn render(suite: &Suite<'_>) -> String {
    let failures = suite.checks.iter().filter(|c| !c.pass).count();
    let mut cases = String::new();
    for check in suite.checks {
        cases.push_str(&testcase(suite.name, check));
    }
    document(
        suite.name,
        suite.checks.len(),
        failures,
        0,
        suite.seconds,
        &cases,
    )
}

/// A run that never produced a verdict (no node answered, a worker died, …) as one test
/// case in error, so CI shows why instead of an empty report.
pub fn render_error(name: &str, error: &str) -> String {
    let case = format!(
        "    <testcase classname=\"{n}\" name=\"run\" time=\"0\">\n      <error message=\"{m}\" type=\"run\">{m}</error>\n    </testcase>\n",
        n = escape(name),
        m = escape(error),
    );
    document(name, 1, 0, 1, 0.0, &case)
}

fn testcase(suite: &str, check: &Check) -> String {
    let head = format!(
        "    <testcase classname=\"{}\" name=\"{}\" time=\"0\">\n",
        escape(suite),
        escape(check.name)
    );
    let body = match check.pass {
        true => format!(
            "      <system-out>{} (target {})</system-out>\n",
            escape(&check.actual),
            escape(&check.target)
        ),
        false => format!(
            "      <failure message=\"{a} (target {t})\" type=\"criterion\">target: {t}\nactual: {a}</failure>\n",
            a = escape(&check.actual),
            t = escape(&check.target)
        ),
    };
    format!("{head}{body}    </testcase>\n")
}

fn document(
    name: &str,
    tests: usize,
    failures: usize,
    errors: usize,
    seconds: f64,
    cases: &str,
) -> String {
    let name = escape(name);
    let attrs = format!(
        "tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{seconds:.3}\""
    );
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"rtctl loadtest\" {attrs}>\n  <testsuite name=\"{name}\" {attrs}>\n{cases}  </testsuite>\n</testsuites>\n"
    )
}

/// Text and attribute values: the five characters XML reserves (targets read `< 20 ms`).
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &'static str, target: &str, actual: &str, pass: bool) -> Check {
        Check {
            name,
            target: target.into(),
            actual: actual.into(),
            pass,
        }
    }

    #[test]
    fn one_case_per_criterion_with_the_failure_saying_actual_and_target() {
        let checks = [
            check("clients held", ">= 999 of 1000", "1000 held", true),
            check("message p99", "< 20 ms", "378.11 ms", false),
        ];
        let xml = render(&Suite {
            name: "phase3",
            checks: &checks,
            seconds: 61.5,
        });
        let want = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="rtctl loadtest" tests="2" failures="1" errors="0" time="61.500">
  <testsuite name="phase3" tests="2" failures="1" errors="0" time="61.500">
    <testcase classname="phase3" name="clients held" time="0">
      <system-out>1000 held (target &gt;= 999 of 1000)</system-out>
    </testcase>
    <testcase classname="phase3" name="message p99" time="0">
      <failure message="378.11 ms (target &lt; 20 ms)" type="criterion">target: &lt; 20 ms
actual: 378.11 ms</failure>
    </testcase>
  </testsuite>
</testsuites>
"#;
        assert_eq!(xml, want);
    }

    #[test]
    fn a_run_without_a_verdict_is_one_case_in_error() {
        let xml = render_error("phase1", "no node answered at \"http://x\" & <y>");
        assert!(
            xml.contains("tests=\"1\" failures=\"0\" errors=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"no node answered at &quot;http://x&quot; &amp; &lt;y&gt;\""),
            "{xml}"
        );
    }

    #[test]
    fn control_characters_cannot_break_the_document() {
        assert_eq!(escape("a\u{1}b\n'c'"), "a b\n&apos;c&apos;");
    }
}
