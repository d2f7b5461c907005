//! `GET /v1/events` through the router (no sockets): the bytes every subscriber receives.
//! Each notification's frames are rendered once and shared by all streams, so two
//! subscribers must get byte-identical frames, in exactly the format the per-stream
//! rendering used to send.

use api::{app, AppState, NodeConfig};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use engine::params::ChainParams;
use engine::testkit::TestKey;
use engine::{Engine, EngineConfig};
use http_body_util::BodyExt;
use std::time::Duration;
use tower::ServiceExt;

fn state() -> AppState {
    let engine = Engine::in_memory(EngineConfig::new(ChainParams::dev())).unwrap();
    let config = NodeConfig {
        dev: true,
        ..NodeConfig::default()
    };
    AppState::new(engine, config, None)
}

async fn subscribe(s: &AppState, query: &str) -> Body {
    let req = Request::get(format!("/v1/events?{query}"))
        .body(Body::empty())
        .unwrap();
    let resp = app(s.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert_eq!(resp.headers()["cache-control"], "no-cache");
    resp.into_body()
}

/// Reads the stream until `frames` whole SSE frames (ending in a blank line) have arrived.
async fn read_frames(body: &mut Body, frames: usize) -> String {
    read_frames_within(body, frames, Duration::from_secs(5)).await
}

async fn read_frames_within(body: &mut Body, frames: usize, within: Duration) -> String {
    let mut text = String::new();
    while text.matches("\n\n").count() < frames {
        let frame = tokio::time::timeout(within, body.frame())
            .await
            .unwrap_or_else(|_| panic!("stream stalled; got so far: {text:?}"))
            .expect("stream ended")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
    text
}

/// The `id:` of the first frame.
fn first_id(text: &str) -> u64 {
    let line = text.lines().next().unwrap();
    line.strip_prefix("id: ").unwrap().parse().unwrap()
}

#[tokio::test]
async fn two_subscribers_receive_byte_identical_frames_in_the_wire_format() {
    let s = state();
    let alice = TestKey::new(1).address();
    let query = format!("topics=blocks,work,address:{alice}");
    let (mut one, mut two) = (subscribe(&s, &query).await, subscribe(&s, &query).await);

    let engine = s.engine.clone();
    let mined = tokio::task::spawn_blocking(move || engine.mine_block(alice, None))
        .await
        .unwrap()
        .unwrap();
    let (a, b) = (
        read_frames(&mut one, 3).await,
        read_frames(&mut two, 3).await,
    );
    assert_eq!(a, b, "both subscribers get the same bytes");

    let info = s.engine.address(&alice, 0).unwrap();
    let (seq, hash) = (first_id(&a), mined.hash());
    let expected = format!(
        "id: {seq}\nevent: block_connected\ndata: {{\"hash\":\"{hash}\",\"height\":1}}\n\n\
         id: {seq}\nevent: work\ndata: {{\"height\":2,\"prev_hash\":\"{hash}\",\"reason\":\"tip\"}}\n\n\
         id: {seq}\nevent: balance\ndata: {{\"address\":\"{alice}\",\"confirmed\":{},\"immature\":{},\"unconfirmed\":{}}}\n\n",
        info.confirmed, info.immature, info.unconfirmed
    );
    assert_eq!(a, expected);
}

#[tokio::test]
async fn a_late_subscriber_replays_the_same_bytes_a_live_one_got() {
    let s = state();
    let alice = TestKey::new(2).address();
    let mut live = subscribe(&s, "topics=blocks").await;
    let engine = s.engine.clone();
    tokio::task::spawn_blocking(move || {
        engine.mine_block(alice, None).unwrap();
        engine.mine_block(alice, None).unwrap();
    })
    .await
    .unwrap();
    let live_text = read_frames(&mut live, 2).await;

    // Replayed from the log (Last-Event-ID just before the first block): same frames, ids.
    let from = first_id(&live_text) - 1;
    let mut replay = subscribe(&s, &format!("topics=blocks&last_event_id={from}")).await;
    assert_eq!(read_frames(&mut replay, 2).await, live_text);
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_sends_a_keep_alive_comment_every_15_s() {
    let s = state();
    let mut feed = subscribe(&s, "topics=blocks").await;
    let long = Duration::from_secs(60);
    let t0 = tokio::time::Instant::now();
    assert_eq!(read_frames_within(&mut feed, 1, long).await, ":\n\n");
    assert_eq!(t0.elapsed().as_secs(), 15);

    // A frame restarts the quiet interval: the next comment comes 15 s after it.
    tokio::time::advance(Duration::from_secs(10)).await;
    let engine = s.engine.clone();
    let alice = TestKey::new(3).address();
    tokio::task::spawn_blocking(move || engine.mine_block(alice, None))
        .await
        .unwrap()
        .unwrap();
    let block = read_frames_within(&mut feed, 1, long).await;
    assert!(block.contains("event: block_connected"), "{block}");
    let t1 = tokio::time::Instant::now();
    assert_eq!(read_frames_within(&mut feed, 1, long).await, ":\n\n");
    assert_eq!(t1.elapsed().as_secs(), 15);
}
