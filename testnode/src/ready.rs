//! The node's ready line: `bitplace-node ready listen=ADDR stratum=ADDR|off ...` (text) or
//! the same fields in a JSON record (`--log-format json`), logged under [`TARGET`] once
//! every listener is bound.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use crate::{log_tail, StartError};

/// The tracing target of the ready line (`bitplace-node`'s `ready` module path).
pub(crate) const TARGET: &str = "bitplace_node::ready";
const MESSAGE: &str = "bitplace-node ready";

/// Where a started node listens, as its ready line says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    pub api: SocketAddr,
    pub stratum: Option<SocketAddr>,
}

impl Bound {
    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }
}

pub(crate) enum Outcome {
    Ready(Bound),
    Exited(ExitStatus),
}

/// Polls `log` past `offset` until a ready line shows up or `child` exits.
pub(crate) fn wait(
    child: &mut Child,
    log: &Path,
    offset: u64,
    within: Duration,
) -> Result<Outcome, StartError> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(bound) = find_ready(&read_from(log, offset)) {
            return Ok(Outcome::Ready(bound));
        }
        if let Ok(Some(status)) = child.try_wait() {
            // It may have printed the line just before exiting.
            return Ok(match find_ready(&read_from(log, offset)) {
                Some(bound) => Outcome::Ready(bound),
                None => Outcome::Exited(status),
            });
        }
        if Instant::now() >= deadline {
            return Err(StartError::Timeout {
                within,
                log: log_tail(log),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The ready line's addresses if `log` shows one past `offset` (a non-blocking check, for
/// callers that wait in their own way, e.g. on an async runtime).
pub fn ready_in(log: &Path, offset: u64) -> Option<Bound> {
    find_ready(&read_from(log, offset))
}

/// What a node wrote to `log` past `offset` (one run's output when the log is appended).
pub fn read_from(log: &Path, offset: u64) -> String {
    let bytes = std::fs::read(log).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// The addresses from the first complete ready line in `text`.
fn find_ready(text: &str) -> Option<Bound> {
    // Only whole lines: the writer may be half-way through the last one.
    let complete = &text[..text.rfind('\n')? + 1];
    complete
        .lines()
        .filter(|l| l.contains(MESSAGE))
        .find_map(|l| {
            Some(Bound {
                api: field(l, "listen")?.parse().ok()?,
                stratum: field(l, "stratum").and_then(|s| s.parse().ok()),
            })
        })
}

/// A field's value in a text (`name=value`) or JSON (`"name":"value"`) log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let text = format!(" {name}=");
    if let Some(at) = line.find(&text) {
        let rest = &line[at + text.len()..];
        return rest.split_whitespace().next();
    }
    let json = format!("\"{name}\":\"");
    let at = line.find(&json)?;
    let rest = &line[at + json.len()..];
    rest.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_text_ready_line() {
        let log = "2026-12-03T10:00:00Z  INFO bitplace_node: opening ledger\n\
                   2026-12-03T10:00:01Z  INFO bitplace_node::ready: bitplace-node ready \
                   listen=127.0.0.1:40001 stratum=127.0.0.1:40002 network=dev height=0 dev=true\n";
        assert_eq!(
            find_ready(log),
            Some(Bound {
                api: "127.0.0.1:40001".parse().unwrap(),
                stratum: Some("127.0.0.1:40002".parse().unwrap()),
            })
        );
    }

    #[test]
    fn reads_the_json_ready_line_without_stratum() {
        let log = r#"{"level":"INFO","fields":{"message":"bitplace-node ready","listen":"127.0.0.1:5","stratum":"off"},"target":"bitplace_node::ready"}"#;
        let bound = find_ready(&format!("{log}\n")).unwrap();
        assert_eq!(bound.api, "127.0.0.1:5".parse().unwrap());
        assert_eq!(bound.stratum, None);
    }

    #[test]
    fn a_half_written_line_is_not_read() {
        let log = "INFO bitplace_node::ready: bitplace-node ready listen=127.0.0.1:4000";
        assert_eq!(find_ready(log), None, "the port may still be being written");
        assert_eq!(find_ready(""), None);
    }

    #[test]
    fn fast_chain_args_name_the_easiest_target() {
        assert_eq!(
            crate::fast_chain_args(),
            ["--difficulty", "207fffff", "--retarget-interval", "0"]
        );
    }
}
