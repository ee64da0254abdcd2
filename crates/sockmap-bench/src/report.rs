//! One-line JSON reports, written by hand (flat objects of numbers, strings and number arrays).

use std::fmt::Write;

/// A flat JSON object built field by field and printed as one line.
#[derive(Debug)]
pub struct Report {
    body: String,
}

impl Report {
    /// Starts a report whose `prog` field names the program.
    pub fn new(prog: &str) -> Report {
        let mut r = Report {
            body: String::from("{"),
        };
        r.str("prog", prog);
        r
    }

    fn key(&mut self, name: &str) {
        if self.body.len() > 1 {
            self.body.push(',');
        }
        let _ = write!(self.body, "\"{name}\":");
    }

    /// Adds an integer field.
    pub fn int(&mut self, name: &str, v: u64) -> &mut Self {
        self.key(name);
        let _ = write!(self.body, "{v}");
        self
    }

    /// Adds a number field rounded to `digits` decimals (non-finite values become `null`).
    pub fn num(&mut self, name: &str, v: f64, digits: usize) -> &mut Self {
        self.key(name);
        if v.is_finite() {
            let _ = write!(self.body, "{v:.digits$}");
        } else {
            self.body.push_str("null");
        }
        self
    }

    /// Adds a string field (quotes and backslashes escaped, control characters dropped).
    pub fn str(&mut self, name: &str, v: &str) -> &mut Self {
        self.key(name);
        self.body.push('"');
        for c in v.chars().filter(|c| !c.is_control()) {
            if c == '"' || c == '\\' {
                self.body.push('\\');
            }
            self.body.push(c);
        }
        self.body.push('"');
        self
    }

    /// Adds an array of integers.
    pub fn ints(&mut self, name: &str, vs: &[u64]) -> &mut Self {
        self.key(name);
        self.body.push('[');
        for (i, v) in vs.iter().enumerate() {
            if i > 0 {
                self.body.push(',');
            }
            let _ = write!(self.body, "{v}");
        }
        self.body.push(']');
        self
    }

    /// Adds `cpu_secs`: user plus system CPU time of this process so far (all threads).
    pub fn cpu(&mut self) -> &mut Self {
        self.num("cpu_secs", process_cpu_secs(), 3)
    }

    /// The finished JSON line (without newline).
    pub fn line(&self) -> String {
        format!("{}}}", self.body)
    }

    /// Prints the line on stdout.
    pub fn print(&self) {
        println!("{}", self.line());
    }
}

/// User plus system CPU seconds used by this process (all threads), 0 if unavailable.
pub fn process_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage for the kernel to fill in.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_json() {
        let mut r = Report::new("sink");
        r.int("frames", 3)
            .num("rate", 1.5, 2)
            .num("bad", f64::NAN, 1)
            .str("note", "a\"b\\c\n")
            .ints("per_conn", &[1, 2]);
        assert_eq!(
            r.line(),
            r#"{"prog":"sink","frames":3,"rate":1.50,"bad":null,"note":"a\"b\\c","per_conn":[1,2]}"#
        );
    }
}
