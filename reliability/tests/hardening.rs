//! Issue 17 items 5 and 7 against the real binary: cross-site requests refused on every
//! state-changing route (the seeds' dev routes included), the page's security headers,
//! `--web-root` confinement, and a data directory that lost its ledger.

use bitplace_reliability::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A raw POST with extra header lines.
fn post_with(port: u16, path: &str, headers: &[&str], body: &[u8]) -> (u16, String) {
    let mut r = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    let (status, body) = raw_http(port, &bytes, T).expect("an HTTP answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn cross_site_requests_cannot_move_dev_funds_or_reset_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), fast_dev(&[])).await;
    let (st, _) = node.post("/api/reset_system", &serde_json::json!({})).await;
    assert_eq!(st, 200);
    let (_, wallets) = node.get("/api/get_wallets").await;
    let from = wallets["data"][0]["address"].as_str().unwrap().to_string();
    let to = wallets["data"][1]["address"].as_str().unwrap().to_string();
    let send = format!(r#"{{"from":"{from}","to":"{to}","amount":1}}"#);
    let before = node.fingerprint().await;
    let evil = "Origin: https://evil.example";
    let attempts: Vec<(&str, Vec<&str>, &[u8])> = vec![
        // What a cross-site form or no-cors fetch can send.
        (
            "/api/send",
            vec!["Content-Type: text/plain"],
            send.as_bytes(),
        ),
        (
            "/api/send",
            vec!["Content-Type: text/plain", evil],
            send.as_bytes(),
        ),
        (
            "/api/send",
            vec!["Content-Type: application/x-www-form-urlencoded", evil],
            b"a=b",
        ),
        (
            "/api/send",
            vec!["Content-Type: application/json", evil],
            send.as_bytes(),
        ),
        (
            "/api/send",
            vec![
                "Content-Type: application/json",
                "Sec-Fetch-Site: cross-site",
            ],
            send.as_bytes(),
        ),
        ("/api/reset_system", vec![evil], b""),
        ("/api/reset_system", vec!["Sec-Fetch-Site: same-site"], b""),
        ("/api/new_wallet", vec!["Origin: null"], b""),
        (
            "/api/mine_block",
            vec!["Content-Type: text/plain"],
            br#"{"address":"x"}"#,
        ),
        (
            "/v1/tx",
            vec!["Content-Type: text/plain"],
            br#"{"hex":"00"}"#,
        ),
        (
            "/transactions/new",
            vec!["Content-Type: text/plain", evil],
            br#"{"hex":"00"}"#,
        ),
        (
            "/v1/peers",
            vec!["Content-Type: application/json", evil],
            br#"{"url":"http://127.0.0.1:1"}"#,
        ),
    ];
    for (path, headers, body) in &attempts {
        let (status, text) = post_with(node.port, path, headers, body);
        assert!(
            (status == 403 && text.contains("cross_site"))
                || (status == 415 && text.contains("unsupported_media_type")),
            "{path} {headers:?}: {status} {text}"
        );
    }
    assert_eq!(
        node.fingerprint().await,
        before,
        "a cross-site request changed state"
    );
    // The node's own page (same origin) and non-browser clients still work.
    let own = format!("Origin: http://127.0.0.1:{}", node.port);
    let (status, text) = post_with(
        node.port,
        "/api/send",
        &[
            "Content-Type: application/json",
            &own,
            "Sec-Fetch-Site: same-origin",
        ],
        send.as_bytes(),
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = post_with(
        node.port,
        "/api/new_wallet",
        &["Sec-Fetch-Site: same-origin"],
        b"",
    );
    assert_eq!(status, 200, "{text}");
}

/// A raw GET with extra header lines.
fn get_with(port: u16, path: &str, headers: &[&str]) -> (u16, String) {
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        r.push_str(h);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    let (status, body) = raw_http(port, r.as_bytes(), T).expect("an HTTP answer");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Issue 17 item 5: the seeds' `GET /mine` and `GET /wallet/new` change state, so a link
/// or an `<img>` on another site must not trigger them; typed in the address bar (or
/// from curl) they still work.
#[tokio::test]
async fn cross_site_gets_cannot_mine_or_create_wallets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), fast_dev(&[])).await;
    let wallets = |v: &serde_json::Value| v["data"].as_array().map_or(0, Vec::len);
    let (_, w) = node.get("/api/get_wallets").await;
    let wallets_before = wallets(&w);
    let before = node.fingerprint().await;
    for path in ["/mine", "/wallet/new"] {
        for headers in [
            vec!["Sec-Fetch-Site: cross-site"],
            vec!["Sec-Fetch-Site: same-site"],
            vec!["Origin: https://evil.example"],
        ] {
            let (status, text) = get_with(node.port, path, &headers);
            assert_eq!(status, 403, "{path} {headers:?}: {text}");
            assert!(text.contains("cross_site"), "{text}");
        }
    }
    assert_eq!(node.fingerprint().await, before, "a cross-site GET mined");
    let (_, w) = node.get("/api/get_wallets").await;
    assert_eq!(
        wallets(&w),
        wallets_before,
        "a cross-site GET made a wallet"
    );
    // The address bar and non-browser clients.
    let (status, text) = get_with(node.port, "/mine", &["Sec-Fetch-Site: none"]);
    assert_eq!(status, 200, "{text}");
    let (status, text) = get_with(node.port, "/wallet/new", &[]);
    assert_eq!(status, 201, "{text}");
    assert_ne!(node.fingerprint().await, before);
}

#[tokio::test]
async fn the_page_forbids_framing_and_referrers() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[] as &[&str]).await;
    let r = node.http.get(node.url("/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let h = r.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[cfg(unix)]
#[tokio::test]
async fn web_root_serves_no_symlink_leaving_the_root_and_no_dotfile() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("site");
    std::fs::create_dir_all(root.join("assets")).unwrap();
    std::fs::write(root.join("index.html"), "<html>shell</html>").unwrap();
    std::fs::write(root.join("assets/app.js"), "console.log(1)").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::write(root.join(".git/config"), "[core]").unwrap();
    std::fs::write(tmp.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(tmp.path().join("secret.txt"), root.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(tmp.path(), root.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("assets/app.js"), root.join("inside.js")).unwrap();
    let data = tmp.path().join("data");
    let web_root = root.to_str().unwrap().to_string();
    let node = Node::start(&data, &["--web-root", &web_root]).await;
    let fetch = |path: &'static str| {
        let node = &node;
        async move {
            let r = node.http.get(node.url(path)).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        fetch("/assets/app.js").await,
        (200, "console.log(1)".into())
    );
    assert_eq!(
        fetch("/inside.js").await,
        (200, "console.log(1)".into()),
        "a link inside the root is fine"
    );
    for path in [
        "/.env",
        "/.git/config",
        "/leak.txt",
        "/up/secret.txt",
        "/assets/../.env",
    ] {
        let (status, body) = fetch(path).await;
        assert!(
            !body.contains("SECRET") && !body.contains("outside") && !body.contains("[core]"),
            "{path}: {body}"
        );
        assert_eq!(status, 404, "{path}: {body}");
    }
    // Client-side routes still get the app shell.
    assert_eq!(
        fetch("/some/route").await,
        (200, "<html>shell</html>".into())
    );
}

#[tokio::test]
async fn a_data_dir_whose_ledger_was_deleted_is_refused_unless_reinit() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Node::start(dir.path(), fast_dev(&[])).await;
    node.post("/api/new_wallet", &serde_json::json!({})).await;
    let miner = engine::testkit::TestKey::new(1).address().to_string();
    node.mine(&miner, 1).await;
    node.kill();
    assert!(dir.path().join("dev-wallets.json").exists());
    std::fs::remove_file(dir.path().join("ledger.redb")).unwrap();
    let out = node
        .start_expecting_exit(Duration::from_secs(30))
        .expect("the node must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--reinit") && err.contains("dev-wallets.json"),
        "{err}"
    );
    assert!(!dir.path().join("ledger.redb").exists(), "nothing created");
    // With --reinit it starts a new chain.
    node.args.push("--reinit".into());
    node.restart().await;
    assert_eq!(node.status().await["height"], 0);
}
