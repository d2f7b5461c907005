// End-to-end test of the web page in headless Chromium against a real `bitplace-node --dev`:
// import a known mnemonic and see the address the CLI derives; mine and see the balance
// change without a reload; send, see the transaction in the mempool, then confirmed;
// save a screenshot. Run by scripts/test.sh (needs the workspace binaries built).
//
// Usage: node api/e2e/browser.mjs <target-dir> <screenshot.png>

import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const MNEMONIC = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';
const OTHER = 'bp1s34c5a8ymvtzmt68ytxmfhjkaljjdhrnsrgqaa'; // same mnemonic, index 1
const [targetDir = 'target/debug', screenshot = 'target/e2e-wallet.png'] = process.argv.slice(2);
const TIMEOUT = 20_000;

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

async function waitForNode(url) {
  for (let i = 0; i < 200; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`node at ${url} did not start`);
}

/** The address `bitplace-wallet import` derives for the mnemonic (the CLI is the reference). */
function cliAddress(dir) {
  const out = execFileSync(join(targetDir, 'bitplace-wallet'),
    ['--wallet', join(dir, 'cli-wallet.json'), '--json', 'import', '--mnemonic', MNEMONIC],
    { env: { ...process.env, BITPLACE_WALLET_PASSPHRASE: 'correct horse battery' } });
  return JSON.parse(out.toString()).address;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bitplace-e2e-'));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = spawn(join(targetDir, 'bitplace-node'),
    ['--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  let browser;
  try {
    await waitForNode(url);
    const expected = cliAddress(dir);
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
        '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    const page = await browser.newPage({ viewport: { width: 390, height: 900 } });
    page.setDefaultTimeout(TIMEOUT);
    const reloads = [];
    page.on('framenavigated', (f) => { if (f === page.mainFrame()) reloads.push(f.url()); });
    await page.goto(`${url}/#/wallet`);

    // Import: the browser derives the same address as the CLI.
    await page.fill('#wallet-password', 'browser-pass-123');
    await page.fill('#wallet-password-confirm', 'browser-pass-123');
    await page.fill('#mnemonic-import', MNEMONIC);
    await page.click('#mnemonic-import-button');
    await page.waitForFunction((a) => document.querySelector('#wallet-address')?.textContent.includes(a), expected);
    console.log(`ok - browser derives the CLI's address ${expected}`);

    // Mine twice in dev mode (the first coinbase matures in the next block): the balance
    // arrives over the push feed, without a reload.
    const navigationsBefore = reloads.length;
    for (let i = 0; i < 2; i++) {
      await page.click('#dev-mine-button');
      await page.waitForFunction((n) => Number(document.querySelector('#wallet-balance')?.dataset.confirmed ?? 0) + Number(document.querySelector('#wallet-balance')?.dataset.immature ?? 0) >= n, 10 * (i + 1));
    }
    await page.waitForFunction(() => Number(document.querySelector('#wallet-balance')?.dataset.confirmed ?? 0) >= 10);
    assert.equal(reloads.length, navigationsBefore, 'the page did not reload');
    console.log('ok - mined balance pushed live');

    // Send 3 to another address: in the mempool, then confirmed.
    await page.fill('#send-to', OTHER);
    await page.fill('#send-amount', '3');
    await page.click('#send-submit');
    await page.waitForFunction(() => document.querySelector('#send-result')?.textContent.startsWith('Sent'));
    const href = await page.getAttribute('#send-result a', 'href');
    const txid = href.match(/[0-9a-f]{64}/)[0];
    await page.goto(`${url}/#/`);
    await page.waitForSelector(`#mempool-list a[href="#/tx/${txid}"]`);
    console.log(`ok - ${txid} is in the mempool`);
    await page.goto(`${url}/#/wallet`);
    await page.fill('#wallet-unlock-password', 'browser-pass-123').catch(() => {});
    await page.click('#wallet-unlock-button').catch(() => {});
    await page.click('#dev-mine-button');
    const confirmed = async () => (await (await fetch(`${url}/v1/tx/${txid}`)).json()).confirmations;
    for (let i = 0; i < 100 && !(await confirmed() >= 1); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await confirmed() >= 1, 'the payment was confirmed');
    await page.goto(`${url}/#/tx/${txid}`);
    await page.waitForFunction((t) => document.body.textContent.includes(t), txid);
    const other = await (await fetch(`${url}/v1/addresses/${OTHER}`)).json();
    assert.equal(other.confirmed, 3);
    console.log('ok - payment confirmed and shown');
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`ok - screenshot at ${screenshot}`);
  } finally {
    await browser?.close();
    node.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`not ok - ${e.stack || e}`);
  process.exit(1);
});
