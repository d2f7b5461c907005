//! A redb [`StorageBackend`] in memory that fails like a disk (issue 17 item 3: power
//! loss, not just SIGKILL). SIGKILL leaves the OS page cache intact, so a crash test on a
//! real file never loses an unsynced write; this disk keeps what was synced apart from
//! what was only written, fails the N-th write, sync, read or length change on request,
//! fills up, and on
//! "power loss" keeps the synced image plus whatever part of the unsynced writes a
//! [`Tear`] lets through.
//!
//! Clones are handles to the same disk, so a test keeps one to arm faults and read the
//! surviving image while the engine owns another (and reopens on a third).

use redb::StorageBackend;
use std::collections::HashSet;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// ENOSPC: what a full filesystem answers a write (Rust reads it as `StorageFull`).
const ENOSPC: i32 = 28;
/// EIO: what a failing device answers.
const EIO: i32 = 5;
/// The filesystem's allocation unit: a full disk still takes overwrites of blocks it
/// already holds, only a write needing a new block fails.
pub const BLOCK: u64 = 4096;

/// A failure to inject, counted from the moment it is armed (1 = the next one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The n-th write fails with EIO after half of it reached the page cache (a short
    /// write); later writes succeed.
    Write(u64),
    /// From the n-th write on the filesystem has no free block until
    /// [`FaultDisk::free_space`]: a write reaching a block never written before fails
    /// with ENOSPC after writing what comes before that block (a short write), while
    /// overwrites of blocks already held still succeed, as on a real full filesystem.
    DiskFull(u64),
    /// The n-th sync fails with EIO; the writes it should have made durable stay
    /// pending (a later sync or a lucky power loss may still keep them).
    Sync(u64),
    /// The n-th sync fails with EIO and the writes it should have made durable are
    /// dropped for good while reads still see them: Linux marks dirty pages clean after
    /// a writeback error ("fsyncgate"), so a later successful sync does not write them.
    SyncLosing(u64),
    /// The n-th read fails with EIO and fills nothing (a sector the drive could not read
    /// this time); later reads succeed.
    Read(u64),
    /// The n-th length change fails with EIO and changes nothing; later ones succeed.
    SetLen(u64),
}

/// Which of the writes made since the last sync reach the platter when the power goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// None of them.
    Nothing,
    /// The first n in order, the n-th cut in half (all of them whole when n ≥ their count).
    Prefix(usize),
    /// Each one kept whole, cut in half or lost, picked by the seed: the disk reorders
    /// writes between two syncs.
    Scattered(u64),
}

/// What the disk has seen since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskCounts {
    pub writes: u64,
    pub syncs: u64,
    pub reads: u64,
    /// Length changes.
    pub resizes: u64,
    /// Writes, syncs, reads and length changes that failed on purpose.
    pub injected: u64,
    /// Writes (and length changes) not yet synced.
    pub pending: usize,
}

#[derive(Clone, Debug)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default)]
struct Disk {
    /// What reads see: the OS page cache.
    live: Vec<u8>,
    /// What survives power loss.
    durable: Vec<u8>,
    /// Changes since the last sync, in order; `durable` plus these is `live`, unless a
    /// losing sync failure dropped some.
    pending: Vec<Pending>,
    counts: DiskCounts,
    /// Blocks ever written (allocated); never freed, not even by a shrink.
    allocated: HashSet<u64>,
    /// Absolute write / sync numbers that fail, and whether the failed sync loses.
    fail_write: Option<u64>,
    full_from: Option<u64>,
    fail_sync: Option<(u64, bool)>,
    fail_read: Option<u64>,
    fail_resize: Option<u64>,
}

impl Disk {
    /// Counts one more operation of a kind and answers whether it is the one armed.
    fn fails(count: &mut u64, armed: Option<u64>) -> bool {
        *count += 1;
        armed == Some(*count)
    }
}

/// The disk; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct FaultDisk(Arc<Mutex<Disk>>);

impl FaultDisk {
    /// An empty disk.
    pub fn new() -> FaultDisk {
        FaultDisk::default()
    }

    /// A disk holding `image`, all of it synced and allocated.
    pub fn with_image(image: Vec<u8>) -> FaultDisk {
        let d = Disk {
            allocated: (0..(image.len() as u64).div_ceil(BLOCK)).collect(),
            live: image.clone(),
            durable: image,
            ..Disk::default()
        };
        FaultDisk(Arc::new(Mutex::new(d)))
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        // A panicking test thread must not hide the disk from the rest of the test.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Arms `fault`, replacing any armed fault of the same kind.
    pub fn arm(&self, fault: Fault) {
        let mut d = self.disk();
        let (w, s) = (d.counts.writes, d.counts.syncs);
        let (r, z) = (d.counts.reads, d.counts.resizes);
        match fault {
            Fault::Write(n) => d.fail_write = Some(w + n),
            Fault::DiskFull(n) => d.full_from = Some(w + n),
            Fault::Sync(n) => d.fail_sync = Some((s + n, false)),
            Fault::SyncLosing(n) => d.fail_sync = Some((s + n, true)),
            Fault::Read(n) => d.fail_read = Some(r + n),
            Fault::SetLen(n) => d.fail_resize = Some(z + n),
        }
    }

    /// Space comes back: writes stop failing with ENOSPC.
    pub fn free_space(&self) {
        self.disk().full_from = None;
    }

    /// Clears every armed fault.
    pub fn disarm(&self) {
        let mut d = self.disk();
        (d.fail_write, d.full_from, d.fail_sync) = (None, None, None);
        (d.fail_read, d.fail_resize) = (None, None);
    }

    pub fn counts(&self) -> DiskCounts {
        let d = self.disk();
        DiskCounts {
            pending: d.pending.len(),
            ..d.counts
        }
    }

    /// What a reader sees now (the page cache).
    pub fn live_image(&self) -> Vec<u8> {
        self.disk().live.clone()
    }

    /// What is on the platter after the power goes now: the synced image plus the part
    /// of the pending writes `tear` lets through. The disk itself is left as it is.
    pub fn after_power_loss(&self, tear: Tear) -> Vec<u8> {
        let d = self.disk();
        let mut img = d.durable.clone();
        for (i, p) in d.pending.iter().enumerate() {
            let keep = match tear {
                Tear::Nothing => Keep::Lost,
                Tear::Prefix(k) if i + 1 < k => Keep::Whole,
                Tear::Prefix(k) if i + 1 == k => Keep::Half,
                Tear::Prefix(_) => Keep::Lost,
                Tear::Scattered(seed) => scattered(seed, i as u64),
            };
            apply(&mut img, p, keep);
        }
        img
    }

    /// Counts a write and decides whether it fails: how many of its `len` bytes at
    /// `offset` get in first, and the error.
    fn write_fault(d: &mut Disk, offset: u64, len: usize) -> Option<(usize, io::Error)> {
        d.counts.writes += 1;
        let n = d.counts.writes;
        if d.fail_write == Some(n) {
            return Some((len / 2, io::Error::from_raw_os_error(EIO)));
        }
        if d.full_from.is_none_or(|from| n < from) {
            return None;
        }
        let end = offset + len as u64;
        let new_block = (offset / BLOCK..end.div_ceil(BLOCK)).find(|b| !d.allocated.contains(b));
        new_block.map(|b| {
            let written = (b * BLOCK).saturating_sub(offset) as usize;
            (written, io::Error::from_raw_os_error(ENOSPC))
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    Whole,
    Half,
    Lost,
}

/// A fixed choice per (seed, write): splitmix64, so every run of a seed tears alike.
fn scattered(seed: u64, i: u64) -> Keep {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    match (z ^ (z >> 31)) % 3 {
        0 => Keep::Whole,
        1 => Keep::Half,
        _ => Keep::Lost,
    }
}

fn apply(img: &mut Vec<u8>, p: &Pending, keep: Keep) {
    match (p, keep) {
        (_, Keep::Lost) => {}
        // A length change is metadata: all or nothing.
        (Pending::SetLen(len), _) => img.resize(*len as usize, 0),
        (Pending::Write(off, data), keep) => {
            let n = if keep == Keep::Half {
                data.len() / 2
            } else {
                data.len()
            };
            put(img, *off, &data[..n]);
        }
    }
}

fn put(img: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + data.len());
    if img.len() < end {
        img.resize(end, 0);
    }
    img[start..end].copy_from_slice(data);
}

impl StorageBackend for FaultDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.disk().live.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let mut guard = self.disk();
        let d = &mut *guard;
        if Disk::fails(&mut d.counts.reads, d.fail_read) {
            d.counts.injected += 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        let start = offset as usize;
        let src = d
            .live
            .get(start..start + out.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut guard = self.disk();
        let d = &mut *guard;
        if Disk::fails(&mut d.counts.resizes, d.fail_resize) {
            d.counts.injected += 1;
            return Err(io::Error::from_raw_os_error(EIO));
        }
        d.live.resize(len as usize, 0);
        d.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let mut d = self.disk();
        d.counts.syncs += 1;
        if let Some((at, losing)) = d.fail_sync {
            if at == d.counts.syncs {
                d.counts.injected += 1;
                if losing {
                    d.pending.clear();
                }
                return Err(io::Error::from_raw_os_error(EIO));
            }
        }
        let pending = std::mem::take(&mut d.pending);
        for p in &pending {
            apply(&mut d.durable, p, Keep::Whole);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut d = self.disk();
        let (data, failure) = match FaultDisk::write_fault(&mut d, offset, data.len()) {
            None => (data, None),
            Some((written, e)) => {
                d.counts.injected += 1;
                (&data[..written], Some(e))
            }
        };
        if !data.is_empty() {
            put(&mut d.live, offset, data);
            let blocks = offset / BLOCK..(offset + data.len() as u64).div_ceil(BLOCK);
            d.allocated.extend(blocks);
            d.pending.push(Pending::Write(offset, data.to_vec()));
        }
        failure.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_synced_writes_survive_power_loss_unless_the_tear_lets_them() {
        let d = FaultDisk::new();
        d.write(0, b"aaaa").unwrap();
        d.sync_data().unwrap();
        d.write(0, b"bbbb").unwrap();
        d.write(4, b"cccc").unwrap();
        assert_eq!(d.live_image(), b"bbbbcccc");
        assert_eq!(d.after_power_loss(Tear::Nothing), b"aaaa");
        assert_eq!(d.after_power_loss(Tear::Prefix(1)), b"bbaa");
        assert_eq!(d.after_power_loss(Tear::Prefix(2)), b"bbbbcc");
        assert_eq!(d.after_power_loss(Tear::Prefix(9)), b"bbbbcccc");
        assert_eq!(d.counts().pending, 2);
    }

    #[test]
    fn the_nth_write_fails_half_applied() {
        let d = FaultDisk::new();
        d.arm(Fault::Write(2));
        d.write(0, b"aa").unwrap();
        let e = d.write(2, b"bbbb").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        assert_eq!(d.live_image(), b"aabb");
        d.write(6, b"c").unwrap();
        assert_eq!(d.counts().injected, 1);
    }

    #[test]
    fn a_full_disk_takes_overwrites_refuses_new_blocks_and_recovers_when_freed() {
        let b = BLOCK as usize;
        let d = FaultDisk::with_image(vec![1; b]);
        d.arm(Fault::DiskFull(1));
        d.write(0, b"over").unwrap();
        for _ in 0..2 {
            let e = d.write(BLOCK - 2, b"xxxx").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::StorageFull);
            assert_eq!(e.raw_os_error(), Some(ENOSPC));
        }
        assert_eq!(
            d.live_image().len(),
            b,
            "only the part in the held block got in"
        );
        assert_eq!(&d.live_image()[b - 2..], b"xx");
        d.free_space();
        d.write(BLOCK - 2, b"yyyy").unwrap();
        assert_eq!(d.live_image().len(), b + 2);
        assert_eq!(d.counts().injected, 2);
    }

    #[test]
    fn the_nth_read_or_length_change_fails_once_and_changes_nothing() {
        let d = FaultDisk::with_image(b"abcd".to_vec());
        let mut out = [0u8; 2];
        d.arm(Fault::Read(2));
        d.read(0, &mut out).unwrap();
        let e = d.read(2, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(EIO));
        assert_eq!(out, *b"ab", "a failed read fills nothing");
        d.read(2, &mut out).unwrap();
        assert_eq!(out, *b"cd");
        d.arm(Fault::SetLen(1));
        assert_eq!(d.set_len(8).unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(d.live_image(), b"abcd");
        assert_eq!(d.counts().pending, 0);
        d.set_len(2).unwrap();
        assert_eq!(d.live_image(), b"ab");
        assert_eq!((d.counts().reads, d.counts().resizes), (3, 2));
        assert_eq!(d.counts().injected, 2);
    }

    #[test]
    fn a_losing_sync_failure_drops_its_writes_from_the_platter_but_not_from_reads() {
        let d = FaultDisk::new();
        d.arm(Fault::SyncLosing(1));
        d.write(0, b"aa").unwrap();
        d.sync_data().unwrap_err();
        d.write(2, b"bb").unwrap();
        d.sync_data().unwrap();
        assert_eq!(d.live_image(), b"aabb");
        assert_eq!(d.after_power_loss(Tear::Nothing), b"\0\0bb");
        d.arm(Fault::Sync(1));
        d.write(0, b"cc").unwrap();
        d.sync_data().unwrap_err();
        d.sync_data().unwrap();
        assert_eq!(
            d.after_power_loss(Tear::Nothing),
            b"ccbb",
            "a kept failure syncs later"
        );
    }
}
