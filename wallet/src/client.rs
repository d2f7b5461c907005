//! A blocking client of the node's HTTP API (docs/API.md), and its server-sent events.
//!
//! Plain `http://` only (the node serves HTTP; TLS is not compiled in).

use consensus::encoding::Encode;
use consensus::{Address, Hash256, Transaction};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error("bad node URL `{url}`: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot reach the node at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the node refused the request ({status}, {code}): {message}")]
    Rejected {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from the node at {url}: {reason}")]
    Protocol { url: String, reason: String },
}

impl NodeError {
    /// Whether retrying cannot help: a bad URL, or a refusal the node answered with a 4xx
    /// (anything else — unreachable, 5xx, a garbled answer — may pass once the node is up).
    pub fn is_permanent(&self) -> bool {
        match self {
            NodeError::BadUrl { .. } => true,
            // 408 and 429 say "later", not "never".
            NodeError::Rejected { status, .. } => {
                (400..500).contains(status) && !matches!(status, 408 | 429)
            }
            NodeError::Unreachable { .. } | NodeError::Protocol { .. } => false,
        }
    }
}

/// `GET /v1/addresses/{addr}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressInfo {
    pub address: Address,
    pub confirmed: u64,
    pub unconfirmed: i64,
    pub immature: u64,
    #[serde(default)]
    pub utxos: Vec<UtxoView>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UtxoView {
    pub txid: Hash256,
    pub vout: u32,
    pub amount: u64,
    /// None while the output is in the mempool.
    pub height: Option<u64>,
    #[serde(default)]
    pub coinbase: bool,
    #[serde(default = "yes")]
    pub mature: bool,
}

fn yes() -> bool {
    true
}

impl UtxoView {
    /// Whether the wallet may spend it now: anything but an immature coinbase
    /// (unconfirmed outputs from the mempool included).
    pub fn spendable(&self) -> bool {
        !self.coinbase || self.mature
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub txid: Hash256,
    pub height: Option<u64>,
    pub delta: i64,
}

/// `GET /v1/tx/{txid}`: the fields the wallet's history reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxView {
    pub txid: Hash256,
    pub coinbase: bool,
    pub inputs: Vec<TxInputView>,
    pub outputs: Vec<TxOutputView>,
    /// Inputs minus outputs; None for a coinbase or when unknown.
    pub fee: Option<u64>,
    pub size: u64,
    pub height: Option<u64>,
    pub confirmations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxInputView {
    pub address: Address,
    /// None when unknown (side-branch blocks).
    pub amount: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutputView {
    pub address: Address,
    pub amount: u64,
}

/// One row of `GET /v1/blocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockSummary {
    pub hash: Hash256,
    pub height: u64,
    pub time: u64,
}

/// The `balance` event (topic `address:<addr>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceEvent {
    pub address: Address,
    pub confirmed: u64,
    pub unconfirmed: i64,
    pub immature: u64,
}

/// One server-sent event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

/// Incremental parser of the `text/event-stream` format (WHATWG HTML § 9.2).
#[derive(Debug, Default)]
pub struct SseParser {
    id: Option<String>,
    event: String,
    data: Vec<String>,
    has_data: bool,
    /// The last `retry:` value in milliseconds.
    pub retry_ms: Option<u64>,
}

impl SseParser {
    /// Feeds one line (without its line ending); returns an event at a blank line.
    pub fn line(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            return Some(SseEvent {
                id: self.id.clone(),
                event: if event.is_empty() {
                    "message".into()
                } else {
                    event
                },
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                self.data.push(value.to_string());
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        None
    }
}

/// The node's error body.
#[derive(Deserialize)]
struct ApiError {
    error: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct SubmitBody<'a> {
    hex: &'a str,
}

#[derive(Deserialize)]
struct SubmitReply {
    txid: Hash256,
}

/// How [`NodeClient::follow_events`] reconnects after the stream drops.
#[derive(Clone, Copy, Debug)]
pub struct Reconnect {
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(15),
        }
    }
}

pub struct NodeClient {
    base: String,
    http: reqwest::blocking::Client,
    stream: reqwest::blocking::Client,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeClient({})", self.base)
    }
}

impl NodeClient {
    pub fn new(base_url: &str) -> Result<NodeClient, NodeError> {
        let bad = |reason: &str| NodeError::BadUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let url = reqwest::Url::parse(base_url).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("only http:// node URLs are supported"));
        }
        if url.host_str().is_none() {
            return Err(bad("no host"));
        }
        let build = |timeout: Option<Duration>| {
            reqwest::blocking::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(timeout)
                .user_agent(concat!("bitplace-wallet/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| bad(&e.to_string()))
        };
        Ok(NodeClient {
            base: base_url.trim_end_matches('/').to_string(),
            http: build(Some(Duration::from_secs(30)))?,
            // The event stream stays open indefinitely.
            stream: build(None)?,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn transport(&self, url: &str, e: reqwest::Error) -> NodeError {
        if e.is_connect() || e.is_timeout() || e.is_request() {
            NodeError::Unreachable {
                url: self.base.clone(),
                reason: root_cause(&e),
            }
        } else {
            NodeError::Protocol {
                url: url.to_string(),
                reason: root_cause(&e),
            }
        }
    }

    fn check(
        &self,
        url: &str,
        resp: reqwest::blocking::Response,
    ) -> Result<reqwest::blocking::Response, NodeError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().unwrap_or_default();
        match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => Err(NodeError::Rejected {
                status: status.as_u16(),
                code: e.error,
                message: e.message,
            }),
            Err(_) => Err(NodeError::Protocol {
                url: url.to_string(),
                reason: format!(
                    "HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                ),
            }),
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        resp: reqwest::blocking::Response,
    ) -> Result<T, NodeError> {
        let resp = self.check(url, resp)?;
        let bytes = resp.bytes().map_err(|e| self.transport(url, e))?;
        serde_json::from_slice(&bytes).map_err(|e| NodeError::Protocol {
            url: url.to_string(),
            reason: format!("bad JSON: {e}"),
        })
    }

    /// `GET path`, its JSON answer parsed; also the URL asked, for the caller's errors.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<(String, T), NodeError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .send()
            .map_err(|e| self.transport(&url, e))?;
        let value = self.json(&url, resp)?;
        Ok((url, value))
    }

    /// `GET /v1/addresses/{addr}`: balances, spendable outputs (mempool included), history.
    pub fn address(&self, address: &Address) -> Result<AddressInfo, NodeError> {
        let (url, info): (_, AddressInfo) = self.get_json(&format!("/v1/addresses/{address}"))?;
        if info.address != *address {
            return Err(NodeError::Protocol {
                url,
                reason: format!("asked for {address}, got {}", info.address),
            });
        }
        Ok(info)
    }

    /// `GET /v1/tx/{txid}`: the transaction with its inputs' addresses and amounts, fee and
    /// confirmations.
    pub fn tx(&self, txid: &Hash256) -> Result<TxView, NodeError> {
        let (url, view): (_, TxView) = self.get_json(&format!("/v1/tx/{txid}"))?;
        if view.txid != *txid {
            return Err(NodeError::Protocol {
                url,
                reason: format!("asked for {txid}, got {}", view.txid),
            });
        }
        Ok(view)
    }

    /// The main-chain block at `height` (`GET /v1/blocks?from=H&limit=1`).
    pub fn block_at(&self, height: u64) -> Result<BlockSummary, NodeError> {
        let (url, blocks): (_, Vec<BlockSummary>) =
            self.get_json(&format!("/v1/blocks?from={height}&limit=1"))?;
        blocks
            .into_iter()
            .find(|b| b.height == height)
            .ok_or_else(|| NodeError::Protocol {
                url,
                reason: format!("no block at height {height}"),
            })
    }

    /// `POST /v1/tx`: returns the txid once the node has stored the transaction durably.
    pub fn submit(&self, tx: &Transaction) -> Result<Hash256, NodeError> {
        let url = self.url("/v1/tx");
        let hex = hex::encode(tx.encode());
        let resp = self
            .http
            .post(&url)
            .json(&SubmitBody { hex: &hex })
            .send()
            .map_err(|e| self.transport(&url, e))?;
        let reply: SubmitReply = self.json(&url, resp)?;
        if reply.txid != tx.txid() {
            return Err(NodeError::Protocol {
                url,
                reason: format!("node answered txid {}, expected {}", reply.txid, tx.txid()),
            });
        }
        Ok(reply.txid)
    }

    /// Opens `GET /v1/events?topics=...` (optionally resuming after `last_event_id`).
    pub fn events(
        &self,
        topics: &[String],
        last_event_id: Option<&str>,
    ) -> Result<EventStream, NodeError> {
        let url = self.url("/v1/events");
        let full = reqwest::Url::parse_with_params(&url, &[("topics", topics.join(","))]).map_err(
            |e| NodeError::BadUrl {
                url: url.clone(),
                reason: e.to_string(),
            },
        )?;
        let mut req = self
            .stream
            .get(full)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().map_err(|e| self.transport(&url, e))?;
        let resp = self.check(&url, resp)?;
        let is_sse = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            return Err(NodeError::Protocol {
                url,
                reason: "the answer is not text/event-stream".into(),
            });
        }
        Ok(EventStream {
            url,
            reader: BufReader::new(resp),
            parser: SseParser::default(),
        })
    }

    /// Follows the event stream for `topics`, calling `handle` on each event until it
    /// returns `Break`. The first connection must succeed (else the error is returned);
    /// afterwards a dropped stream is reopened with `Last-Event-ID` (so nothing is
    /// missed) after a growing delay, and `on_disconnect` is told; a reconnection the node
    /// refuses for good (a 4xx other than 408/429) ends it with that error. This is push,
    /// not polling: nothing is asked for until the server sends it.
    pub fn follow_events(
        &self,
        topics: &[String],
        last_event_id: Option<String>,
        policy: Reconnect,
        handle: impl FnMut(&SseEvent) -> ControlFlow<()>,
        on_disconnect: impl FnMut(&NodeError, Duration),
    ) -> Result<(), NodeError> {
        let first = self.events(topics, last_event_id.as_deref())?;
        self.follow(
            topics,
            last_event_id,
            Some(first),
            policy,
            || Ok(()),
            handle,
            on_disconnect,
        )
    }

    /// Like [`NodeClient::follow_events`], but a node that cannot be reached yet is waited
    /// for too: every failure to connect — the first one included — is told to
    /// `on_disconnect` and retried after the growing delay (as the miner waits for its node).
    /// Only a refusal the node answers with a 4xx (a wrong URL or topic, which no retry
    /// fixes) ends it with the error. `on_open` runs each time a stream is open, before any
    /// of its events are handled (e.g. to print the current state: whatever changes after
    /// it arrives as events, so nothing is missed); an error from it counts as a dropped
    /// stream.
    pub fn wait_and_follow_events(
        &self,
        topics: &[String],
        policy: Reconnect,
        on_open: impl FnMut() -> Result<(), NodeError>,
        handle: impl FnMut(&SseEvent) -> ControlFlow<()>,
        on_disconnect: impl FnMut(&NodeError, Duration),
    ) -> Result<(), NodeError> {
        self.follow(topics, None, None, policy, on_open, handle, on_disconnect)
    }

    #[allow(clippy::too_many_arguments)]
    fn follow(
        &self,
        topics: &[String],
        mut last_event_id: Option<String>,
        mut stream: Option<EventStream>,
        policy: Reconnect,
        mut on_open: impl FnMut() -> Result<(), NodeError>,
        mut handle: impl FnMut(&SseEvent) -> ControlFlow<()>,
        mut on_disconnect: impl FnMut(&NodeError, Duration),
    ) -> Result<(), NodeError> {
        let mut delay = policy.initial_delay;
        loop {
            let err = match stream.take() {
                Some(mut s) => {
                    if let Err(e) = on_open() {
                        on_disconnect(&e, delay);
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(policy.max_delay);
                        continue;
                    }
                    let mut got_any = false;
                    let err = loop {
                        match s.next() {
                            Some(Ok(ev)) => {
                                got_any = true;
                                if ev.id.is_some() {
                                    last_event_id = ev.id.clone();
                                }
                                if handle(&ev).is_break() {
                                    return Ok(());
                                }
                            }
                            Some(Err(e)) => break e,
                            None => {
                                break NodeError::Protocol {
                                    url: s.url.clone(),
                                    reason: "the event stream ended".into(),
                                }
                            }
                        }
                    };
                    if got_any {
                        delay = policy.initial_delay;
                    }
                    if let Some(ms) = s.parser.retry_ms {
                        delay = Duration::from_millis(ms);
                    }
                    err
                }
                None => match self.events(topics, last_event_id.as_deref()) {
                    Ok(s) => {
                        stream = Some(s);
                        continue;
                    }
                    Err(e) if e.is_permanent() => return Err(e),
                    Err(e) => e,
                },
            };
            on_disconnect(&err, delay);
            std::thread::sleep(delay);
            delay = (delay * 2).min(policy.max_delay);
        }
    }
}

/// An open event stream; iterate it for events. Ends when the server closes it.
pub struct EventStream {
    url: String,
    reader: BufReader<reqwest::blocking::Response>,
    parser: SseParser,
}

impl Iterator for EventStream {
    type Item = Result<SseEvent, NodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = String::new();
        loop {
            line.clear();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {
                    let l = line.strip_suffix('\n').unwrap_or(&line);
                    if let Some(ev) = self.parser.line(l) {
                        return Some(Ok(ev));
                    }
                }
                Err(e) => {
                    return Some(Err(NodeError::Unreachable {
                        url: self.url.clone(),
                        reason: e.to_string(),
                    }))
                }
            }
        }
    }
}

/// The innermost error message, e.g. "Connection refused (os error 111)".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Vec<SseEvent> {
        let mut p = SseParser::default();
        text.split('\n').filter_map(|l| p.line(l)).collect()
    }

    #[test]
    fn sse_parser_follows_the_spec() {
        let evs = parse_all(
            ": keep-alive\n\nid: 7\nevent: balance\ndata: {\"a\":1}\n\n\
             data:first\ndata: second\r\n\r\nid: 9\nevent: x\n\nretry: 1500\nevent: y\ndata\n\n",
        );
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    id: Some("7".into()),
                    event: "balance".into(),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    id: Some("7".into()),
                    event: "message".into(),
                    data: "first\nsecond".into()
                },
                SseEvent {
                    id: Some("9".into()),
                    event: "y".into(),
                    data: "".into()
                },
            ]
        );
    }

    #[test]
    fn utxo_view_parses_api_shape_and_spendability() {
        let u: UtxoView = serde_json::from_str(&format!(
            r#"{{"txid":"{}","vout":1,"amount":5,"height":null,"coinbase":false,"mature":true}}"#,
            "ab".repeat(32)
        ))
        .unwrap();
        assert!(u.spendable() && u.height.is_none());
        let cb = UtxoView {
            coinbase: true,
            mature: false,
            ..u
        };
        assert!(!cb.spendable());
    }

    #[test]
    fn bad_urls_are_refused() {
        assert!(matches!(
            NodeClient::new("nope"),
            Err(NodeError::BadUrl { .. })
        ));
        assert!(matches!(
            NodeClient::new("https://example.com"),
            Err(NodeError::BadUrl { .. })
        ));
        assert_eq!(
            NodeClient::new("http://127.0.0.1:8080/")
                .unwrap()
                .base_url(),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn unreachable_node_is_a_clear_error() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = NodeClient::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = c.address(&Address([1; 20])).unwrap_err();
        assert!(matches!(err, NodeError::Unreachable { .. }), "{err:?}");
        assert!(err
            .to_string()
            .starts_with("cannot reach the node at http://127.0.0.1:"));
    }
}
