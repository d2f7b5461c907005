//! A tiny fake node speaking just enough HTTP/1.1 for the wallet (std only, one thread
//! per connection). It records every request so tests can assert what was (not) sent.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

pub enum Reply {
    Json(u16, String),
    /// SSE: write these chunks (flushing each), then close the connection.
    Sse(Vec<String>),
    /// SSE: write `first`, keep the connection open until `go` is set (or 20 s pass, then
    /// write `late` instead of `then`), write `then`, close. Proves events are delivered
    /// while the stream is still open.
    SseGated {
        first: Vec<String>,
        go: Arc<std::sync::atomic::AtomicBool>,
        then: Vec<String>,
        late: Vec<String>,
    },
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

pub struct FakeNode {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Request>>>,
}

impl FakeNode {
    /// `handler(request, n)` where n counts earlier requests with the same path.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> FakeNode {
        FakeNode::start_on("127.0.0.1:0", handler)
    }

    /// Like [`FakeNode::start`], listening on `addr` (a node that comes up late on a port
    /// a client already tries).
    pub fn start_on(
        addr: &str,
        handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static,
    ) -> FakeNode {
        let listener = TcpListener::bind(addr).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<Request>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let reqs = requests.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let handler = handler.clone();
                let reqs = reqs.clone();
                thread::spawn(move || serve(stream, &*handler, &reqs));
            }
        });
        FakeNode { url, requests }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, reqs: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let path = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let req = Request {
            method,
            path,
            headers,
            body,
        };
        let n = {
            let mut r = reqs.lock().unwrap();
            let base = req.path.split('?').next().unwrap().to_string();
            let n = r
                .iter()
                .filter(|q| q.path.split('?').next().unwrap() == base)
                .count();
            r.push(req.clone());
            n
        };
        match handler(&req, n) {
            Reply::Json(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                if out.write_all(head.as_bytes()).is_err()
                    || out.write_all(body.as_bytes()).is_err()
                {
                    return;
                }
            }
            Reply::Sse(chunks) => {
                sse_head(&mut out);
                write_chunks(&mut out, chunks);
                return;
            }
            Reply::SseGated {
                first,
                go,
                then,
                late,
            } => {
                sse_head(&mut out);
                write_chunks(&mut out, first);
                let start = std::time::Instant::now();
                while !go.load(std::sync::atomic::Ordering::SeqCst) {
                    if start.elapsed() > std::time::Duration::from_secs(20) {
                        write_chunks(&mut out, late);
                        return;
                    }
                    thread::sleep(std::time::Duration::from_millis(10));
                }
                write_chunks(&mut out, then);
                return;
            }
        }
    }
}

fn sse_head(out: &mut TcpStream) {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    let _ = out.write_all(head.as_bytes());
}

fn write_chunks(out: &mut TcpStream, chunks: Vec<String>) {
    for c in chunks {
        if out
            .write_all(c.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn not_found() -> Reply {
    Reply::Json(
        404,
        r#"{"error":"not_found","message":"no such route"}"#.into(),
    )
}

/// The keystore passphrase test wallets are created and opened with.
pub const PASSPHRASE: &str = "test-passphrase";

/// Runs `bitplace-wallet --wallet W --node N --json ARGS`, asserts it succeeded and
/// returns its one JSON object.
pub fn wallet_json(wallet: &std::path::Path, node: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bitplace-wallet"))
        .env("BITPLACE_WALLET_PASSPHRASE", PASSPHRASE)
        .env_remove("BITPLACE_WALLET_BIP39_PASSPHRASE")
        .stdin(std::process::Stdio::null())
        .arg("--wallet")
        .arg(wallet)
        .args(["--node", node, "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
