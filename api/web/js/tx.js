// Transfer transactions, byte for byte as engine/src/tx.rs encodes them (version 1):
//
//   body = u32 version | u8 kind (1 = transfer)
//        | CompactSize n | n x { prev txid [32, internal order] | u32 vout | ed25519 pubkey [32] }
//        | CompactSize m | m x { u64 amount | address payload [20] }
//   full = body | n x signature [64]
//
// txid = SHA-256d(body), shown reversed (display order). Each signature is ed25519 over
// the 32 txid bytes in internal order.

import { compactSize, concat, hashFromDisplay, hashToDisplay, sha256d, toHex, u32le, u64le } from "./bytes.js";
import { decodeAddress, encodeAddress } from "./bech32m.js";
import { sign } from "./ed25519.js";

export const TX_VERSION = 1;
const KIND_TRANSFER = 1;
const SIGNATURE_LEN = 64;

/**
 * A transfer description:
 *   { inputs: [{ txid: display hex, vout: number, publicKey: Uint8Array(32) }],
 *     outputs: [{ amount: BigInt|number, address: "bp1..." }] }
 */
function encodeInput(input) {
  if (input.publicKey?.length !== 32) throw new Error("an input needs a 32-byte public key");
  return concat(hashFromDisplay(input.txid), u32le(input.vout), input.publicKey);
}

function encodeOutput(output) {
  if (BigInt(output.amount) <= 0n) throw new Error("output amounts must be positive");
  return concat(u64le(output.amount), decodeAddress(output.address));
}

const header = () => concat(u32le(TX_VERSION), Uint8Array.of(KIND_TRANSFER));

/** The signed body: everything but the signatures. */
export function encodeBody(tx) {
  if (!tx.inputs.length) throw new Error("a transfer needs at least one input");
  if (!tx.outputs.length) throw new Error("a transfer needs at least one output");
  return concat(
    header(),
    compactSize(tx.inputs.length),
    ...tx.inputs.map(encodeInput),
    compactSize(tx.outputs.length),
    ...tx.outputs.map(encodeOutput),
  );
}

/** The txid in internal byte order (what signatures sign). */
export async function txidBytes(tx) {
  return sha256d(encodeBody(tx));
}

/** The txid as explorers and the API show it (display order). */
export async function txid(tx) {
  return hashToDisplay(await txidBytes(tx));
}

/** Full encoding: body then one 64-byte signature per input. */
export function encodeSigned(tx, signatures) {
  if (signatures.length !== tx.inputs.length || signatures.some((s) => s.length !== SIGNATURE_LEN)) {
    throw new Error("one 64-byte signature per input is required");
  }
  return concat(encodeBody(tx), ...signatures);
}

/**
 * Signs every input (privateKeys[i] signs input i) and returns
 * { txid (display), hex (full encoding, for POST /v1/tx), size, signatures }.
 */
export async function signTransfer(tx, privateKeys) {
  const id = await txidBytes(tx);
  const signatures = [];
  for (let i = 0; i < tx.inputs.length; i++) signatures.push(await sign(privateKeys[i], id));
  const full = encodeSigned(tx, signatures);
  return { txid: hashToDisplay(id), hex: toHex(full), size: full.length, signatures };
}

// Every input and output encodes to a fixed length, so the size of a signed transfer follows
// from one of each; the fee is priced from it before the transaction exists.
const DUMMY_INPUT = { txid: "00".repeat(32), vout: 0, publicKey: new Uint8Array(32) };
const DUMMY_OUTPUT = { amount: 1n, address: encodeAddress(new Uint8Array(20)) };

/** Size in bytes of a signed transfer with n inputs and m outputs, from the encoders above. */
export function transferSize(n, m) {
  const input = encodeInput(DUMMY_INPUT).length + SIGNATURE_LEN;
  const output = encodeOutput(DUMMY_OUTPUT).length;
  return header().length + compactSize(n).length + n * input + compactSize(m).length + m * output;
}
