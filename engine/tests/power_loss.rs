//! Power loss, not just SIGKILL (issue 17, item 3): a redb `StorageBackend` that keeps
//! what was synced apart from what was only written, fails the N-th sync, and on "power
//! loss" keeps the synced image plus a torn prefix of the unsynced writes. For every
//! failure point: every acknowledged transaction is there after reopening, the failed
//! one is either wholly there or absent, and the projections equal a rebuild.

mod common;
use common::*;
use engine::testkit::outpoint;
use engine::Engine;
use redb::StorageBackend;
use std::io;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct Disk {
    live: Vec<u8>,
    durable: Vec<u8>,
    /// Writes since the last sync, in order.
    unsynced: Vec<(u64, Vec<u8>)>,
    syncs: u64,
    fail_sync: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct FaultBackend(Arc<Mutex<Disk>>);

impl FaultBackend {
    fn on(image: Vec<u8>) -> FaultBackend {
        let d = Disk {
            live: image.clone(),
            durable: image,
            ..Disk::default()
        };
        FaultBackend(Arc::new(Mutex::new(d)))
    }

    /// What survives power loss: the synced image and the first `torn` unsynced writes,
    /// the last of them cut in half.
    fn after_power_loss(&self, torn: usize) -> Vec<u8> {
        let d = self.0.lock().unwrap();
        let mut img = d.durable.clone();
        for (i, (off, data)) in d.unsynced.iter().take(torn).enumerate() {
            let n = if i + 1 == torn {
                data.len() / 2
            } else {
                data.len()
            };
            let end = *off as usize + n;
            if img.len() < end {
                img.resize(end, 0);
            }
            img[*off as usize..end].copy_from_slice(&data[..n]);
        }
        img
    }
}

impl StorageBackend for FaultBackend {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.lock().unwrap().live.len() as u64)
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let d = self.0.lock().unwrap();
        let o = offset as usize;
        if o + out.len() > d.live.len() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        out.copy_from_slice(&d.live[o..o + out.len()]);
        Ok(())
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.lock().unwrap().live.resize(len as usize, 0);
        Ok(())
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        let mut d = self.0.lock().unwrap();
        d.syncs += 1;
        if d.fail_sync == Some(d.syncs) {
            return Err(io::Error::other("injected fsync failure"));
        }
        d.durable = d.live.clone();
        d.unsynced.clear();
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut d = self.0.lock().unwrap();
        let o = offset as usize;
        if d.live.len() < o + data.len() {
            d.live.resize(o + data.len(), 0);
        }
        d.live[o..o + data.len()].copy_from_slice(data);
        d.unsynced.push((offset, data.to_vec()));
        Ok(())
    }
}

#[test]
fn power_loss_at_every_sync_keeps_what_was_acknowledged_and_half_applies_nothing() {
    let now = Arc::new(std::sync::atomic::AtomicU64::new(START_TIME));
    let a = key(1);
    // A ledger with spendable coins, synced: the starting image of every run.
    let base = FaultBackend::default();
    let mut coin = {
        let e = Engine::with_backend(base.clone(), config(fast_params(), &now)).unwrap();
        let mut cb = None;
        for _ in 0..3 {
            now.fetch_add(60, std::sync::atomic::Ordering::SeqCst);
            let b = e.block_template(a.address(), vec![]).unwrap().mine_cpu();
            cb.get_or_insert(b.txs[0].txid());
            e.submit_block(b).unwrap();
        }
        (cb.unwrap(), 10u64)
    };
    let image = base.after_power_loss(0);
    let start = coin;
    let (mut runs, mut injected, mut kept) = (0, 0, 0);
    for fail_at in 1..=12u64 {
        for torn in [0usize, 1, 3, 1000] {
            runs += 1;
            coin = start;
            let disk = FaultBackend::on(image.clone());
            let e = Engine::with_backend(disk.clone(), config(fast_params(), &now)).unwrap();
            let syncs = disk.0.lock().unwrap().syncs;
            disk.0.lock().unwrap().fail_sync = Some(syncs + fail_at);
            let (mut acked, mut failed) = (Vec::new(), None);
            for _ in 0..8 {
                let tx = a.spend(&[outpoint(coin.0, 0)], &[(a.address(), coin.1 - 1)]);
                match e.submit_tx(tx.clone()) {
                    Ok(_) => {
                        acked.push(tx.txid());
                        coin = (tx.txid(), coin.1 - 1);
                    }
                    Err(_) => {
                        failed = Some(tx.txid());
                        break;
                    }
                }
            }
            injected += usize::from(failed.is_some());
            kept += acked.len();
            drop(e);
            let e = Engine::with_backend(
                FaultBackend::on(disk.after_power_loss(torn)),
                config(fast_params(), &now),
            )
            .unwrap_or_else(|err| panic!("sync {fail_at}, torn {torn}: reopen failed: {err}"));
            let pool: Vec<_> = e
                .mempool(100)
                .unwrap()
                .into_iter()
                .map(|m| m.txid)
                .collect();
            for t in &acked {
                assert!(
                    pool.contains(t),
                    "sync {fail_at}, torn {torn}: acknowledged {t} lost"
                );
            }
            let extra: Vec<_> = pool.iter().filter(|t| !acked.contains(t)).collect();
            assert!(
                extra.is_empty() || (extra.len() == 1 && Some(*extra[0]) == failed),
                "sync {fail_at}, torn {torn}: unexpected {extra:?}"
            );
            assert!(
                e.verify().unwrap().ok(),
                "sync {fail_at}, torn {torn}: projections differ from a rebuild"
            );
        }
    }
    eprintln!("power loss: {runs} runs, {injected} with an injected fsync failure, {kept} acknowledged transactions all kept");
    assert!(
        runs >= 40 && injected >= 30 && kept > 0,
        "{runs} runs, {injected} failures, {kept} kept"
    );
}
