//! What the doctor found: one line per check (`ok`, `warn` or `FAIL`, with the fix for
//! each failure), a summary, and the exit code (0 only without a FAIL).

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub status: Status,
    /// A short name for what was checked (e.g. `turn`, `nat`), to find it in the output.
    pub topic: &'static str,
    pub what: String,
    /// What to change, for warnings and failures.
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(topic: &'static str, what: impl Into<String>) -> Check {
        Check {
            status: Status::Ok,
            topic,
            what: what.into(),
            fix: None,
        }
    }

    pub fn warn(topic: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            topic,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn fail(topic: &'static str, what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Fail,
            topic,
            what: what.into(),
            fix: Some(fix.into()),
        }
    }
}

#[derive(Default, Debug)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn extend(&mut self, checks: impl IntoIterator<Item = Check>) {
        self.checks.extend(checks);
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    pub fn passed(&self) -> bool {
        self.count(Status::Fail) == 0
    }

    /// The report as printed: one line per check, its fix indented below, a summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let label = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            let _ = writeln!(out, "{label}  {:<8} {}", c.topic, c.what);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "      {:<8} fix: {fix}", "");
            }
        }
        let (ok, warn, fail) = (
            self.count(Status::Ok),
            self.count(Status::Warn),
            self.count(Status::Fail),
        );
        let verdict = if fail == 0 {
            "no problem found"
        } else {
            "the server will not work for every client until the FAIL lines are fixed"
        };
        let _ = writeln!(
            out,
            "summary: {ok} ok, {warn} warning{}, {fail} FAIL: {verdict}",
            if warn == 1 { "" } else { "s" }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fail_fails_the_report_and_shows_its_fix() {
        let mut r = Report::default();
        r.push(Check::ok("config", "loaded"));
        r.push(Check::warn("auth", "rooms are open", "set auth.secret"));
        assert!(r.passed());
        r.push(Check::fail("turn", "refused", "fix the secret"));
        assert!(!r.passed());
        let text = r.render();
        assert!(text.contains("FAIL  turn     refused\n"), "{text}");
        assert!(text.contains("fix: fix the secret"), "{text}");
        assert!(text.contains("summary: 1 ok, 1 warning, 1 FAIL"), "{text}");
    }
}
