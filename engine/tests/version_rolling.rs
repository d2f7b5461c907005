//! BIP 310 version rolling: the header version is not a consensus rule here (as in
//! Bitcoin, where miners roll bits 13–28 under BIP 320), so a block whose version a
//! Stratum miner rolled is valid, connects, and keeps its version through the log.

mod common;
use common::*;
use engine::BlockAccepted;

#[test]
fn a_block_with_rolled_version_bits_connects_and_keeps_them() {
    let f = Fixture::new();
    let miner = key(3);
    for rolled in [0x1fff_e001u32, 0x0000_6001, 0x2000_0000] {
        f.tick();
        let mut t = f.engine.block_template(miner.address(), vec![]).unwrap();
        t.header.version = rolled;
        let block = t.mine_cpu();
        let hash = block.hash();
        let r = f.engine.submit_block(block).unwrap();
        assert!(matches!(r, BlockAccepted::Connected { .. }), "{r:?}");
        let (_, stored) = f.engine.block(&hash).unwrap().unwrap();
        assert_eq!(stored.header.version, rolled);
        assert_eq!(f.engine.status().unwrap().best_hash, hash);
    }
}
