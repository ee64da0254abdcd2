//! A tiny `--name value` command-line parser shared by the programs.

use crate::net::Endpoint;
use std::collections::HashMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The function that runs a sub-command (see [`Args::dispatch`]).
pub type Command = fn(&Args);

/// Parsed command line: an optional leading sub-command and `--name value` pairs.
#[derive(Debug, Default)]
pub struct Args {
    command: Option<String>,
    values: HashMap<String, String>,
    usage: &'static str,
}

impl Args {
    /// Parses the process arguments, exiting with `usage` on `--help` or a malformed line.
    pub fn from_env(usage: &'static str) -> Args {
        match Args::parse(std::env::args().skip(1), usage) {
            Ok(args) => args,
            Err(msg) => args_exit(usage, &msg),
        }
    }

    /// Parses `items` (program name excluded).
    ///
    /// # Errors
    /// Returns a message for a value without a name, a name without a value, or `--help`.
    pub fn parse<I: IntoIterator<Item = String>>(
        items: I,
        usage: &'static str,
    ) -> Result<Args, String> {
        let mut args = Args {
            usage,
            ..Args::default()
        };
        let mut it = items.into_iter().peekable();
        if let Some(first) = it.peek() {
            if !first.starts_with("--") {
                args.command = it.next();
            }
        }
        while let Some(item) = it.next() {
            if item == "--help" || item == "-h" {
                return Err(String::new());
            }
            let Some(name) = item.strip_prefix("--") else {
                return Err(format!("unexpected argument `{item}`"));
            };
            let value = it
                .next()
                .ok_or_else(|| format!("`--{name}` needs a value"))?;
            args.values.insert(name.to_string(), value);
        }
        Ok(args)
    }

    /// Parses the process arguments (as [`Args::from_env`]) and runs the function of the
    /// sub-command they start with, one of `commands` (name, function); exits with the usage
    /// when they name none of them.
    pub fn dispatch(usage: &'static str, commands: &[(&str, Command)]) {
        let args = Args::from_env(usage);
        match commands.iter().find(|c| Some(c.0) == args.command()) {
            Some((_, run)) => run(&args),
            None => {
                let names: Vec<String> = commands.iter().map(|c| format!("`{}`", c.0)).collect();
                args.fail(&format!(
                    "the first argument must be {}",
                    names.join(" or ")
                ))
            }
        }
    }

    /// The leading sub-command, if any.
    pub fn command(&self) -> Option<&str> {
        self.command.as_deref()
    }

    /// The value of `--name` parsed as `T`, or `default` when absent; exits on a bad value.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> T
    where
        T::Err: Display,
    {
        self.opt(name).unwrap_or(default)
    }

    /// The value of `--name` parsed as `T`, if present; exits on a bad value.
    pub fn opt<T: FromStr>(&self, name: &str) -> Option<T>
    where
        T::Err: Display,
    {
        let raw = self.values.get(name)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(e) => self.fail(&format!("bad value `{raw}` for --{name}: {e}")),
        }
    }

    /// `--name` as a duration in (possibly fractional) seconds.
    pub fn secs(&self, name: &str, default: f64) -> Duration {
        let secs: f64 = self.get(name, default);
        if !(0.0..=86_400.0).contains(&secs) {
            self.fail(&format!("--{name} must be between 0 and 86400 seconds"));
        }
        Duration::from_secs_f64(secs)
    }

    /// `--name` as a loopback socket address (required); exits when missing or not loopback.
    pub fn loopback(&self, name: &str) -> SocketAddr {
        let Some(addr) = self.opt::<SocketAddr>(name) else {
            self.fail(&format!("--{name} ADDR is required"));
        };
        if !addr.ip().is_loopback() {
            self.fail(&format!("--{name} must be a loopback address, got {addr}"));
        }
        addr
    }

    /// `--name` as a loopback TCP address or a Unix socket path (`unix:PATH`), required;
    /// exits when missing or neither.
    pub fn endpoint(&self, name: &str) -> Endpoint {
        match self.values.get(name) {
            Some(v) if v.starts_with("unix:") => self.get(name, Endpoint::Unix(PathBuf::new())),
            _ => Endpoint::Tcp(self.loopback(name)),
        }
    }

    /// Prints `msg` and the usage text, then exits with status 2.
    pub fn fail(&self, msg: &str) -> ! {
        args_exit(self.usage, msg)
    }
}

fn args_exit(usage: &str, msg: &str) -> ! {
    if !msg.is_empty() {
        eprintln!("error: {msg}");
    }
    eprintln!("{usage}");
    std::process::exit(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Args, String> {
        Args::parse(line.split_whitespace().map(String::from), "usage")
    }

    #[test]
    fn command_and_values() {
        let a = parse("echo --listen 127.0.0.1:9 --conns 3").unwrap();
        assert_eq!(a.command(), Some("echo"));
        assert_eq!(a.get("conns", 1u32), 3);
        assert_eq!(a.get("iters", 7u32), 7);
        assert_eq!(a.loopback("listen").port(), 9);
        assert_eq!(a.endpoint("listen"), Endpoint::Tcp(a.loopback("listen")));
        let u = parse("--connect unix:/tmp/x").unwrap();
        assert_eq!(
            u.endpoint("connect"),
            Endpoint::Unix(PathBuf::from("/tmp/x"))
        );
    }

    #[test]
    fn missing_value_and_stray_argument_are_errors() {
        assert_eq!(parse("--conns").unwrap_err(), "`--conns` needs a value");
        assert_eq!(
            parse("--conns 1 stray").unwrap_err(),
            "unexpected argument `stray`"
        );
        assert!(parse("--help").is_err());
    }
}
