// #/wallet: create or import a mnemonic, unlock, see the live balance, receive (address +
// QR code) and send. Everything secret happens in this browser.

import { h, field, testid, replace, dl } from "../dom.js";
import { api } from "../api.js";
import { generateMnemonic, mnemonicToEntropy, normalizeWords } from "../bip39.js";
import { checkNewPassword, MIN_PASSWORD } from "../wallet.js";
import { ALL, parseAmount, parseUnits, planPayment, sendPayment } from "../send.js";
import { DEFAULT_FEE_RATE } from "../fee.js";
import { encodeQr, qrToSvg } from "../qr.js";
import { units, delta, link } from "../format.js";
import { toast } from "../toast.js";
import { historyTable } from "./address.js";

const input = (id, attrs = {}) => testid(h("input", { name: id, ...attrs }), id);
const button = (id, text, attrs = {}) => testid(h("button", { type: "submit", ...attrs }, text), id);
const errorLine = (id) => testid(h("p", { class: "form-error", role: "alert" }), id);

/** An event handler running an async form action with the form's buttons disabled and
 * errors shown inline. */
function guarded(form, errorEl, action) {
  return async (ev) => {
    ev.preventDefault();
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    errorEl.textContent = "";
    try {
      await action();
    } catch (e) {
      errorEl.textContent = e.message; // shown once, next to the form (no toast as well)
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  };
}

function handleSubmit(form, errorEl, action) {
  form.addEventListener("submit", guarded(form, errorEl, action));
}

// ------------------------------------------------------------------ no wallet yet

function passwordFields() {
  return [
    field("Password (encrypts the wallet in this browser)", input("wallet-password", { type: "password", autocomplete: "new-password", minlength: MIN_PASSWORD, required: true }), `At least ${MIN_PASSWORD} characters.`),
    field("Repeat the password", input("wallet-password-confirm", { type: "password", autocomplete: "new-password", required: true })),
  ];
}

function readPasswords() {
  const pw = document.getElementById("wallet-password").value;
  checkNewPassword(pw, document.getElementById("wallet-password-confirm").value);
  return pw;
}

function showMnemonicOnce(root, ctx, mnemonic) {
  const words = h("ol", { class: "mnemonic" }, mnemonic.split(" ").map((w) => h("li", {}, w)));
  const done = button("mnemonic-confirm-button", "I have written the words down", { type: "button" });
  done.addEventListener("click", () => {
    ctx.mnemonicOnScreen = false;
    root.dispatchEvent(new CustomEvent("rerender", { bubbles: true }));
  });
  replace(root,
    h("section", { class: "card warn" },
      h("h2", {}, "Your recovery words"),
      h("p", {}, "Write these words down, in order, and keep them offline. They are shown only once; anyone who has them can spend your coins, and without them a forgotten password cannot be recovered."),
      testid(words, "mnemonic-display"),
      done));
}

function onboarding(root, ctx) {
  const createForm = h("form", { class: "card", "aria-labelledby": "create-title" },
    h("h2", { id: "create-title" }, "2. Create a new wallet…"),
    field("Number of words", testid(h("select", { name: "words" }, h("option", { value: "12" }, "12 words"), h("option", { value: "24" }, "24 words")), "wallet-words")),
    button("wallet-create-button", "Create wallet"));
  const createError = errorLine("wallet-create-error");
  createForm.append(createError);

  const importError = errorLine("mnemonic-import-error");
  const mnemonicBox = testid(h("textarea", { name: "mnemonic", rows: 3, autocomplete: "off", spellcheck: "false", autocapitalize: "none", required: true }), "mnemonic-import");
  mnemonicBox.addEventListener("input", () => liveCheck(mnemonicBox, importError));
  const importForm = h("form", { class: "card", "aria-labelledby": "import-title" },
    h("h2", { id: "import-title" }, "…or import one"),
    field("Recovery words (BIP39 mnemonic)", mnemonicBox, "12 to 24 English words separated by spaces."),
    h("details", {}, h("summary", {}, "Advanced: BIP39 passphrase"),
      field("BIP39 passphrase (optional, the \"25th word\")", input("mnemonic-import-passphrase", { type: "password", autocomplete: "off" }))),
    button("mnemonic-import-button", "Import wallet"),
    importError);

  handleSubmit(createForm, createError, async () => {
    const pw = readPasswords();
    const mnemonic = await generateMnemonic(Number(createForm.querySelector("#wallet-words").value));
    ctx.mnemonicOnScreen = true; // keep the words on screen when the wallet change re-renders
    await ctx.wallet.setMnemonic(mnemonic, "", pw);
    toast("Wallet created. Write down the recovery words now.", "success");
    showMnemonicOnce(root, ctx, mnemonic);
  });
  handleSubmit(importForm, importError, async () => {
    const words = importForm.querySelector("#mnemonic-import").value;
    await mnemonicToEntropy(words); // names an unknown word / bad checksum
    const pw = readPasswords();
    const address = await ctx.wallet.setMnemonic(words, importForm.querySelector("#mnemonic-import-passphrase").value, pw);
    toast(`Wallet imported: ${address}`, "success");
  });
  root.append(
    h("form", { class: "card", "aria-labelledby": "password-title", onsubmit: (e) => e.preventDefault() },
      h("h2", { id: "password-title" }, "1. Choose a password"),
      h("p", { class: "muted" }, "It encrypts the wallet in this browser's storage (AES-GCM). The node never sees it, nor your words."),
      h("div", { class: "columns" }, passwordFields())),
    h("div", { class: "columns" }, createForm, importForm));
}

async function liveCheck(box, errorEl) {
  const words = normalizeWords(box.value);
  if (words.length < 12) {
    errorEl.textContent = "";
    box.removeAttribute("aria-invalid");
    return;
  }
  try {
    await mnemonicToEntropy(box.value);
    errorEl.textContent = "";
    box.removeAttribute("aria-invalid");
  } catch (e) {
    errorEl.textContent = e.message;
    box.setAttribute("aria-invalid", "true");
  }
}

// ------------------------------------------------------------------ the wallet

/** Updates the balance elements (inside `scope`) from {confirmed, unconfirmed, immature}. */
export function showBalance(b, scope = document) {
  const el = scope.querySelector("#wallet-balance");
  if (!el || !b) return;
  el.textContent = units(b.confirmed);
  el.dataset.confirmed = String(b.confirmed);
  el.dataset.unconfirmed = String(b.unconfirmed);
  el.dataset.immature = String(b.immature);
  const details = scope.querySelector("#wallet-balance-details");
  const available = BigInt(b.confirmed) + BigInt(b.unconfirmed);
  if (details) {
    details.textContent = `confirmed · ${units(available)} available with the mempool (${delta(b.unconfirmed)}) · immature ${units(b.immature)}`;
  }
}

/** Re-reads the wallet's balance and history (on render and after a pushed balance change). */
export async function refreshHistory(address, scope = document) {
  const el = scope.querySelector("#wallet-history");
  if (!el) return;
  try {
    const a = await api.address(address);
    replace(el, historyTable(a.history));
    showBalance(a, scope);
  } catch (e) {
    replace(el, h("p", { class: "form-error" }, e.message));
  }
}

function receiveCard(address) {
  const qr = testid(h("div", { class: "qr", role: "img", "aria-label": `QR code of ${address}` }), "receive-qr");
  qr.innerHTML = qrToSvg(encodeQr(address), { moduleSize: 5 }); // our own SVG, no outside text
  const copy = testid(h("button", { type: "button" }, "Copy address"), "wallet-copy-button");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(address);
      toast("Address copied", "success");
    } catch {
      toast("Copy failed: select the address and copy it by hand", "error");
    }
  });
  return h("section", { class: "card", "aria-labelledby": "receive-title" },
    h("h2", { id: "receive-title" }, "Receive"),
    h("p", {}, "Your address:"),
    testid(h("p", { class: "mono break address" }, address), "wallet-address"),
    qr, copy);
}

function balanceCard(ctx) {
  const w = ctx.wallet;
  const lock = testid(h("button", { type: "button" }, "Lock"), "wallet-lock-button");
  lock.addEventListener("click", () => w.lock());
  const forget = testid(h("button", { type: "button", class: "danger" }, "Remove wallet from this browser"), "wallet-forget-button");
  forget.addEventListener("click", () => {
    if (confirm("Remove the wallet from this browser? Only your recovery words can restore it.")) w.forget();
  });
  return h("section", { class: "card", "aria-labelledby": "balance-title" },
    h("h2", { id: "balance-title" }, "Balance"),
    h("p", { class: "balance" }, testid(h("span", { "aria-live": "polite" }, "…"), "wallet-balance"), " units"),
    testid(h("p", { class: "muted" }), "wallet-balance-details"),
    h("p", { class: "muted small" }, `Path ${w.path} · pushed live by the node`),
    w.unlocked ? h("div", { class: "row" }, lock, forget) : unlockForm(w, forget));
}

function unlockForm(w, forget) {
  const err = errorLine("wallet-unlock-error");
  const form = h("form", { class: "inline-form" },
    field("Password to unlock", input("wallet-unlock-password", { type: "password", autocomplete: "current-password", required: true })),
    h("div", { class: "row" }, button("wallet-unlock-button", "Unlock"), forget),
    err);
  handleSubmit(form, err, async () => {
    await w.unlock(form.querySelector("#wallet-unlock-password").value);
    toast("Wallet unlocked", "success");
  });
  return form;
}

/** What the user confirms before anything is signed: recipient, amount, fee and total. */
function confirmDetails(plan, rate) {
  const fee = testid(h("strong", {}, units(plan.fee)), "send-fee");
  fee.dataset.units = String(plan.fee);
  const inputs = plan.selected.length;
  return [
    h("h3", {}, "Confirm the payment"),
    dl([
      ["To", h("span", { class: "mono break" }, plan.to)],
      ["Amount", units(plan.amount)],
      ["Fee", fee],
      ["Total", units(plan.amount + plan.fee)],
    ]),
    h("p", { class: "muted small" },
      `${plan.size} bytes at ${rate} per 1,000 bytes · ${inputs} input${inputs === 1 ? "" : "s"} · change ${units(plan.change)} back to this wallet`),
  ];
}

function sendCard(ctx) {
  const err = errorLine("send-error");
  const result = testid(h("p", { class: "ok", "aria-live": "polite" }), "send-result");
  const amount = input("send-amount", { type: "text", inputmode: "numeric", required: true });
  const all = testid(h("button", { type: "button" }, "All"), "send-all");
  const details = h("div", {});
  const confirmBtn = testid(h("button", { type: "button" }, "Sign and send"), "send-confirm");
  const cancel = testid(h("button", { type: "button" }, "Cancel"), "send-cancel");
  const panel = testid(h("div", { class: "card warn", hidden: true, "aria-live": "polite" }, details, h("div", { class: "row" }, confirmBtn, cancel)), "send-confirm-panel");
  const form = h("form", { class: "card", "aria-labelledby": "send-title", novalidate: true },
    h("h2", { id: "send-title" }, "Send"),
    field("To address", input("send-to", { type: "text", autocomplete: "off", spellcheck: "false", placeholder: "bp1…", required: true })),
    field("Amount (units)", amount, "A whole number, or All: everything spendable minus the fee."),
    all,
    field("Fee rate (units per 1,000 bytes)", input("send-fee-rate", { type: "text", inputmode: "numeric", value: String(DEFAULT_FEE_RATE) }),
      "The fee is the signed size × rate / 1000, rounded up; it goes to the miner, and higher rates confirm first."),
    button("send-submit", "Review payment"),
    panel, err, result);
  let plan = null; // the reviewed payment; editing the form discards it
  const discard = () => {
    plan = null;
    panel.hidden = true;
  };
  form.addEventListener("input", discard);
  cancel.addEventListener("click", discard);
  all.addEventListener("click", () => {
    amount.value = ALL;
    discard();
  });
  handleSubmit(form, err, async () => {
    discard();
    result.textContent = "";
    if (!ctx.wallet.unlocked) throw new Error("unlock the wallet first (password above)");
    const to = form.querySelector("#send-to").value.trim();
    const rate = parseUnits(form.querySelector("#send-fee-rate").value || String(DEFAULT_FEE_RATE), "the fee rate", { allowZero: true });
    plan = await planPayment(ctx.wallet.address, to, parseAmount(amount.value), rate);
    replace(details, confirmDetails(plan, rate));
    panel.hidden = false;
    confirmBtn.focus();
  });
  confirmBtn.addEventListener("click", guarded(form, err, async () => {
    if (!ctx.wallet.unlocked) throw new Error("unlock the wallet first (password above)");
    const sent = await sendPayment(ctx.wallet.key, plan);
    discard();
    replace(result, "Sent: ", link.tx(sent.txid), ` (${sent.size} bytes, fee ${units(sent.fee)})`);
    toast(`Transaction ${sent.txid.slice(0, 12)}… accepted by the node`, "success");
    amount.value = "";
  }));
  return form;
}

function walletHome(root, ctx) {
  const address = ctx.wallet.address;
  root.append(
    h("div", { class: "columns" }, balanceCard(ctx), receiveCard(address)),
    h("div", { class: "columns" }, sendCard(ctx),
      h("section", { class: "card", "aria-labelledby": "history-title" },
        h("h2", { id: "history-title" }, "History"),
        testid(h("div", {}, h("p", { class: "muted" }, "Loading…")), "wallet-history"))));
  return refreshHistory(address, root);
}

/** #/wallet */
export async function walletView(root, _params, ctx) {
  if (!ctx.ed25519) {
    root.append(h("section", { class: "card warn", role: "alert" }, h("h2", {}, "Wallet unavailable"),
      h("p", {}, "This browser's WebCrypto has no Ed25519. Use a current Chrome, Edge, Firefox or Safari.")));
    return;
  }
  if (ctx.wallet.exists) await walletHome(root, ctx);
  else onboarding(root, ctx);
}
