//! Every device searching at once: one search thread per [`SearchBackend`] (each GPU
//! adapter, the CPU), all on the current job, over disjoint parts of its space.
//!
//! The job's roll numbers ([`crate::job`]) are dealt out round robin: device `d` of `n`
//! searches rolls `d, d + n, d + 2n, ...`, each a whole 2^32-nonce header, so no two
//! devices hash the same header and none waits for another. Each device has its own
//! [`SearchControl`] (its hash counter makes the per-device rate); a new job cancels all
//! of them at once.
//!
//! A solution that is also a block pauses the job: every further winner would be a second
//! block on the same parent, stale once the first is accepted. The work source then sets
//! the next job, or [`DeviceSet::resume`]s this one where each device left off (so
//! nothing already searched is searched, and submitted, twice).

use crate::job::{Found, Job};
use crate::{MinerError, SearchBackend, SearchControl, Solution};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// A device as status lines and JSON reports name it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceInfo {
    /// `"cpu"` or `"gpu"`.
    pub backend: String,
    /// The GPU adapter's name, or `cpu`.
    pub adapter: String,
    /// For status lines: `gpu <adapter>` or `cpu <kernel> x<threads>`.
    pub description: String,
}

impl DeviceInfo {
    pub fn of(backend: &dyn SearchBackend) -> DeviceInfo {
        let description = backend.describe();
        let adapter = match backend.kind() {
            "cpu" => "cpu".to_string(),
            _ => description
                .strip_prefix("gpu ")
                .unwrap_or(&description)
                .to_string(),
        };
        DeviceInfo {
            backend: backend.kind().to_string(),
            adapter,
            description,
        }
    }
}

/// What the search threads tell the work source.
#[derive(Debug)]
pub enum DeviceEvent {
    Found(Found),
    /// The device stopped for good (e.g. a GPU lost); the others go on.
    Failed {
        device: usize,
        error: MinerError,
    },
}

/// A job being searched, with where each device is in its space.
struct Active {
    job: Arc<Job>,
    /// The next roll number of each device.
    next: Vec<AtomicU64>,
}

struct Slot {
    generation: u64,
    active: Option<Arc<Active>>,
    paused: bool,
}

struct Shared {
    slot: Mutex<Slot>,
    cv: Condvar,
    controls: Vec<SearchControl>,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes a change and cancels every running search at once.
    fn bump(&self, slot: &mut Slot) {
        slot.generation += 1;
        for c in &self.controls {
            c.cancel();
        }
        self.cv.notify_all();
    }
}

/// The search threads, one per device. Dropping it stops and joins them.
pub struct DeviceSet {
    shared: Arc<Shared>,
    threads: Vec<std::thread::JoinHandle<()>>,
    info: Vec<DeviceInfo>,
    failed: Vec<bool>,
}

impl DeviceSet {
    /// Starts one idle search thread per backend; they search once a job is set.
    pub fn start(
        backends: Vec<Box<dyn SearchBackend>>,
    ) -> Result<(DeviceSet, UnboundedReceiver<DeviceEvent>), MinerError> {
        if backends.is_empty() {
            return Err(MinerError::Gpu("no device to search on".into()));
        }
        let n = backends.len();
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                generation: 0,
                active: None,
                paused: false,
            }),
            cv: Condvar::new(),
            controls: (0..n).map(|_| SearchControl::new()).collect(),
            stop: AtomicBool::new(false),
        });
        let info = backends
            .iter()
            .map(|b| DeviceInfo::of(b.as_ref()))
            .collect();
        let (tx, rx) = unbounded_channel();
        let mut set = DeviceSet {
            shared: shared.clone(),
            threads: Vec::with_capacity(n),
            info,
            failed: vec![false; n],
        };
        for (device, backend) in backends.into_iter().enumerate() {
            let (shared, tx) = (shared.clone(), tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("search-{device}"))
                .spawn(move || search_thread(shared, device, n, backend, tx))
                .map_err(|e| MinerError::Gpu(format!("spawn search thread: {e}")))?;
            set.threads.push(t);
        }
        Ok((set, rx))
    }

    pub fn info(&self) -> &[DeviceInfo] {
        &self.info
    }

    pub fn len(&self) -> usize {
        self.info.len()
    }

    pub fn is_empty(&self) -> bool {
        self.info.is_empty()
    }

    /// Hashes each device has tried so far.
    pub fn hashes(&self) -> Vec<u64> {
        self.shared.controls.iter().map(|c| c.hashes()).collect()
    }

    /// Marks a device as failed (after its [`DeviceEvent::Failed`]); returns how many
    /// are still searching.
    pub fn mark_failed(&mut self, device: usize) -> usize {
        if let Some(f) = self.failed.get_mut(device) {
            *f = true;
        }
        self.failed.iter().filter(|f| !**f).count()
    }

    /// Searches `job` from the start of its space (or stops all search with `None`).
    pub fn set_job(&self, job: Option<Arc<Job>>) {
        let n = self.len() as u64;
        let mut slot = self.shared.lock();
        slot.active = job.map(|job| {
            Arc::new(Active {
                job,
                next: (0..n).map(AtomicU64::new).collect(),
            })
        });
        slot.paused = false;
        self.shared.bump(&mut slot);
    }

    /// The job being searched (or paused).
    pub fn job(&self) -> Option<Arc<Job>> {
        self.shared.lock().active.as_ref().map(|a| a.job.clone())
    }

    /// Whether the current job is paused after a block.
    pub fn is_paused(&self) -> bool {
        self.shared.lock().paused
    }

    /// Continues a paused job where each device left off.
    pub fn resume(&self) {
        let mut slot = self.shared.lock();
        if slot.paused && slot.active.is_some() {
            slot.paused = false;
            self.shared.bump(&mut slot);
        }
    }
}

impl Drop for DeviceSet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        {
            let mut slot = self.shared.lock();
            slot.active = None;
            self.shared.bump(&mut slot);
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn search_thread(
    shared: Arc<Shared>,
    device: usize,
    devices: usize,
    mut backend: Box<dyn SearchBackend>,
    events: UnboundedSender<DeviceEvent>,
) {
    let ctl = &shared.controls[device];
    let mut seen = 0u64;
    loop {
        let (active, generation) = {
            let mut slot = shared.lock();
            loop {
                if shared.stop.load(Ordering::Acquire) {
                    return;
                }
                if slot.generation != seen {
                    seen = slot.generation;
                    if let (Some(a), false) = (slot.active.clone(), slot.paused) {
                        // Reset under the lock: a newer change's cancel comes after this.
                        ctl.reset_cancel();
                        break (a, seen);
                    }
                }
                slot = shared.cv.wait(slot).unwrap_or_else(|e| e.into_inner());
            }
        };
        let job = &active.job;
        let mut time = None;
        while !ctl.is_cancelled() {
            let r = active.next[device].fetch_add(devices as u64, Ordering::Relaxed);
            let Some(roll) = job.roll(r, time) else {
                break; // this device's share of the space is used up: wait for a job
            };
            time = Some(roll.time);
            let work = job.work(&roll);
            let on_found = |solution: Solution| {
                let found = Found {
                    job: job.clone(),
                    roll,
                    solution,
                    device,
                };
                let block = found.is_block();
                let _ = events.send(DeviceEvent::Found(found));
                if block {
                    pause(&shared, generation);
                }
            };
            if let Err(error) = backend.search_with(&work, 0, 1 << 32, ctl, &on_found) {
                let _ = events.send(DeviceEvent::Failed { device, error });
                return;
            }
        }
    }
}

/// Pauses the job of `generation` (not a newer one set meanwhile).
fn pause(shared: &Shared, generation: u64) {
    let mut slot = shared.lock();
    if slot.generation == generation && !slot.paused {
        slot.paused = true;
        shared.bump(&mut slot);
    }
}
