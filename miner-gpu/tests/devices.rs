//! Every device at once: the search threads share a job's space without overlap, stop on
//! a new job, pause on a block and resume where they were.

use consensus::hash::Hash256;
use miner_gpu::devices::{DeviceEvent, DeviceSet};
use miner_gpu::job::Job;
use miner_gpu::{MinerError, SearchBackend, SearchControl, Solution, Work};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A device that hashes nothing: it records each header it is given and "exhausts" it at
/// once; it reports a solution (nonce 7) for the first header whose merkle root's first
/// byte is in `winners` (each byte wins once, across all devices).
struct Recorder {
    name: String,
    seen: Seen,
    winners: Arc<Mutex<HashSet<u8>>>,
}

impl SearchBackend for Recorder {
    fn kind(&self) -> &'static str {
        "gpu"
    }
    fn describe(&self) -> String {
        format!("gpu {}", self.name)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn search_with(
        &mut self,
        work: &Work,
        _start: u32,
        _count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) -> Result<(), MinerError> {
        if ctl.is_cancelled() {
            return Ok(());
        }
        self.seen.lock().unwrap().push(work.header);
        ctl.add_hashes(1 << 32);
        if self.winners.lock().unwrap().remove(&work.header[36]) {
            on_found(Solution {
                nonce: 7,
                hash: work.hash(7),
            });
        }
        // Slow enough that a test can stop it, fast enough to walk many rolls.
        std::thread::sleep(Duration::from_micros(200));
        Ok(())
    }
}

fn job(en2_size: usize, mask: u32) -> Job {
    Job {
        id: "j".into(),
        height: Some(1),
        version: 0x2000_0000,
        prev_hash: [3; 32],
        bits: consensus::CompactTarget::EASIEST.0,
        time: 1_700_000_000,
        max_time: None,
        coinb1: b"c1".to_vec(),
        extranonce1: vec![1, 2],
        extranonce2_size: en2_size,
        coinb2: b"c2".to_vec(),
        branch: vec![Hash256([9; 32])],
        version_mask: mask,
        share_target: [0xff; 32],
        block_target: [0; 32],
    }
}

/// What each recorder saw, shared with the test.
type Seen = Arc<Mutex<Vec<[u8; 80]>>>;

fn recorders(n: usize, winners: &[u8]) -> (Vec<Box<dyn SearchBackend>>, Vec<Seen>) {
    let seen: Vec<_> = (0..n).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let winners = Arc::new(Mutex::new(winners.iter().copied().collect()));
    let backends = seen
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Box::new(Recorder {
                name: format!("fake{i}"),
                seen: s.clone(),
                winners: winners.clone(),
            }) as Box<dyn SearchBackend>
        })
        .collect();
    (backends, seen)
}

fn wait_until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn devices_search_disjoint_headers_until_the_space_is_used_up() {
    // One byte of extranonce2: 256 headers in all, shared by three devices.
    let (backends, seen) = recorders(3, &[]);
    let (set, _events) = DeviceSet::start(backends).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.info()[1].adapter, "fake1");
    set.set_job(Some(Arc::new(job(1, 0))));
    let total = || seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>();
    wait_until("256 headers", || total() >= 256);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(total(), 256, "nothing past the end of the space");
    let mut all = HashSet::new();
    for (d, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        assert!(s.len() >= 80, "device {d} did its share: {}", s.len());
        for h in s.iter() {
            assert!(all.insert(*h), "a header searched twice");
        }
    }
    assert_eq!(set.hashes().iter().sum::<u64>(), 256 << 32);
}

#[test]
fn version_rolling_multiplies_the_space_without_overlap() {
    let (backends, seen) = recorders(2, &[]);
    let (set, _events) = DeviceSet::start(backends).unwrap();
    // 1 byte of extranonce2 x 2 version bits = 1024 headers.
    set.set_job(Some(Arc::new(job(1, 0x0000_6000))));
    let total = || seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>();
    wait_until("1024 headers", || total() >= 1024);
    std::thread::sleep(Duration::from_millis(50));
    let all: Vec<[u8; 80]> = seen
        .iter()
        .flat_map(|s| s.lock().unwrap().clone())
        .collect();
    assert_eq!(all.len(), 1024);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 1024);
    let versions: HashSet<u32> = all
        .iter()
        .map(|h| u32::from_le_bytes(h[0..4].try_into().unwrap()))
        .collect();
    let want: HashSet<u32> = [0x2000_0000, 0x2000_2000, 0x2000_4000, 0x2000_6000].into();
    assert_eq!(versions, want);
}

#[test]
fn a_new_job_replaces_the_old_one_at_once() {
    let (backends, seen) = recorders(2, &[]);
    let (set, _events) = DeviceSet::start(backends).unwrap();
    set.set_job(Some(Arc::new(job(4, 0))));
    wait_until("some headers", || seen[0].lock().unwrap().len() > 5);
    let mut second = job(4, 0);
    second.prev_hash = [4; 32];
    set.set_job(Some(Arc::new(second)));
    let mark: Vec<usize> = seen.iter().map(|s| s.lock().unwrap().len()).collect();
    wait_until("headers of the new job", || {
        seen.iter()
            .zip(&mark)
            .all(|(s, m)| s.lock().unwrap().len() > m + 3)
    });
    for (s, m) in seen.iter().zip(&mark) {
        let s = s.lock().unwrap();
        // At most the search in flight when the job changed is on the old tip.
        assert!(s[m + 1..].iter().all(|h| h[4..36] == [4; 32]));
    }
    set.set_job(None);
    std::thread::sleep(Duration::from_millis(20));
    let stopped: usize = seen.iter().map(|s| s.lock().unwrap().len()).sum();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>(),
        stopped
    );
}

#[test]
fn a_block_pauses_the_job_and_resume_continues_where_it_was() {
    // A block target everything meets: the first solution is a block.
    let mut j = job(2, 0);
    j.block_target = [0xff; 32];
    j.share_target = [0xff; 32];
    let j = Arc::new(j);
    // Find a roll whose merkle root starts with a byte to call the winner.
    let winner = j.header(&j.roll(5, None).unwrap())[36];
    let (backends, seen) = recorders(2, &[winner]);
    let (set, mut events) = DeviceSet::start(backends).unwrap();
    set.set_job(Some(j.clone()));
    let found = match events.blocking_recv().expect("an event") {
        DeviceEvent::Found(f) => f,
        DeviceEvent::Failed { error, .. } => panic!("{error}"),
    };
    assert!(found.is_block());
    assert_eq!(found.job.header(&found.roll)[36], winner);
    assert!(found.job.verify(&found.roll, 7).is_some());
    wait_until("the pause", || set.is_paused());
    std::thread::sleep(Duration::from_millis(20));
    let before: Vec<Vec<[u8; 80]>> = seen.iter().map(|s| s.lock().unwrap().clone()).collect();
    std::thread::sleep(Duration::from_millis(50));
    let still: usize = seen.iter().map(|s| s.lock().unwrap().len()).sum();
    assert_eq!(still, before.iter().map(Vec::len).sum::<usize>(), "paused");
    set.resume();
    wait_until("more headers", || {
        seen.iter().map(|s| s.lock().unwrap().len()).sum::<usize>() > still + 10
    });
    set.set_job(None);
    // Resuming did not start the space over: no header was searched twice.
    let all: Vec<[u8; 80]> = seen
        .iter()
        .flat_map(|s| s.lock().unwrap().clone())
        .collect();
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), all.len());
}
