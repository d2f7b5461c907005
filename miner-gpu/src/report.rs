//! What the work clients (HTTP node, Stratum pool) tell their caller, for the status
//! line or `--json` logs, and the per-device hash rates they carry.

use crate::devices::{DeviceInfo, DeviceSet};
use serde::Serialize;
use std::time::Instant;

/// Counters reported in status lines and returned at the end.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Submissions the server accepted (blocks over HTTP, shares over Stratum).
    pub accepted: u64,
    pub rejected: u64,
    /// Refused because the job was no longer current, or found for a job the server had
    /// already replaced (`clean_jobs`) and so never sent.
    pub stale: u64,
    /// Accepted submissions whose hash met the block target.
    pub blocks: u64,
    /// Height of the job being mined (0 when the server does not say).
    pub height: u64,
    pub hashes: u64,
    /// The share difficulty in force (Stratum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<f64>,
}

/// One device's rate in a status report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceRate {
    pub backend: String,
    pub adapter: String,
    pub hashes_per_second: f64,
}

/// A report of the work client.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Status {
        /// Every device, `+`-separated (one device: its description).
        backend: String,
        /// All devices together.
        hashes_per_second: f64,
        devices: Vec<DeviceRate>,
        #[serde(flatten)]
        stats: Stats,
    },
    /// Connected to a pool and subscribed.
    Subscribed {
        extranonce1: String,
        extranonce2_size: usize,
        /// BIP 310 version bits the pool lets us roll (hex; absent: none).
        #[serde(skip_serializing_if = "Option::is_none")]
        version_mask: Option<String>,
    },
    Difficulty {
        difficulty: f64,
    },
    Job {
        job_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        height: Option<u64>,
        reason: String,
    },
    Submitted {
        job_id: String,
        nonce: u32,
        hash: String,
        outcome: String,
        /// Whether the hash met the block target.
        block: bool,
    },
    Disconnected {
        error: String,
        retry_in_ms: u64,
    },
    DeviceFailed {
        device: usize,
        adapter: String,
        error: String,
    },
}

/// Turns the devices' hash counters into rates between two status reports.
#[derive(Debug)]
pub struct RateMeter {
    last: Vec<u64>,
    at: Instant,
}

impl RateMeter {
    pub fn new(devices: &DeviceSet) -> RateMeter {
        RateMeter {
            last: devices.hashes(),
            at: Instant::now(),
        }
    }

    /// The status report for now: per-device and total rates since the last call.
    pub fn status(&mut self, devices: &DeviceSet, stats: &Stats) -> Report {
        let now = devices.hashes();
        let dt = self.at.elapsed().as_secs_f64().max(1e-9);
        let rates: Vec<DeviceRate> = devices
            .info()
            .iter()
            .zip(now.iter().zip(&self.last))
            .map(
                |(
                    DeviceInfo {
                        backend, adapter, ..
                    },
                    (n, l),
                )| DeviceRate {
                    backend: backend.clone(),
                    adapter: adapter.clone(),
                    hashes_per_second: n.saturating_sub(*l) as f64 / dt,
                },
            )
            .collect();
        self.last = now;
        self.at = Instant::now();
        let mut stats = stats.clone();
        stats.hashes = self.last.iter().sum();
        Report::Status {
            backend: devices
                .info()
                .iter()
                .map(|d| d.description.as_str())
                .collect::<Vec<_>>()
                .join(" + "),
            hashes_per_second: rates.iter().map(|r| r.hashes_per_second).sum(),
            devices: rates,
            stats,
        }
    }
}
