// Merkle inclusion proofs as the engine serves them (engine/src/merkle.rs): the sibling
// at each level from the leaf up, hashes in internal order, pairs hashed with SHA-256d.

import { concat, fromHex, hashFromDisplay, hashToDisplay, sha256d } from "./bytes.js";

/** The root (display order) that proof {index, branch} yields for a txid (display order). */
export async function rootFromProof(txid, proof) {
  let acc = hashFromDisplay(txid);
  let pos = proof.index;
  for (const siblingHex of proof.branch) {
    const sibling = fromHex(siblingHex);
    acc = await sha256d(pos % 2 === 0 ? concat(acc, sibling) : concat(sibling, acc));
    pos = Math.floor(pos / 2);
  }
  return hashToDisplay(acc);
}

/** Whether the proof links the txid to the block's merkle root (display order). */
export async function verifyProof(txid, proof, merkleRoot) {
  return (await rootFromProof(txid, proof)) === merkleRoot.toLowerCase();
}
