// End-to-end test of the web page in headless Chromium against a real `bitplace-node --dev`:
// import a known mnemonic and see the address the CLI derives; mine and see the balance
// change without a reload; send (reviewed before signing, the fee shown being the
// policy's for the transaction the node gets), see it in the mempool, then confirmed;
// mine blocks in the browser on WebGPU (SwiftShader here: Tint compiles the native
// miner's WGSL) with the node accepting them; the explorer's charts drawn and updated
// live; no page wider than a 390 px phone; screenshots at 1280 px and 390 px.
// Run by scripts/test.sh (needs the workspace binaries built).
//
// Usage: node api/e2e/browser.mjs <target-dir> <screenshot-dir>

import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import assert from 'node:assert/strict';
import { DEFAULT_FEE_RATE, policyFee } from '../web/js/fee.js';

const MNEMONIC = 'abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about';
const OTHER = 'bp1s34c5a8ymvtzmt68ytxmfhjkaljjdhrnsrgqaa'; // same mnemonic, index 1
const [targetDir = 'target/debug', shotsArg = 'target/e2e'] = process.argv.slice(2);
// An older caller passed a file name: its folder is the screenshot folder.
const shots = shotsArg.endsWith('.png') ? dirname(shotsArg) : shotsArg;
const TIMEOUT = 20_000;
const MINE_TIMEOUT = 90_000; // pipeline creation on SwiftShader takes seconds; a dev block ~65k hashes

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
  // The dev chain as a newcomer gets it (per-block retarget included).
  const node = spawn(join(targetDir, 'bitplace-node'),
    ['--dev', '--listen', `127.0.0.1:${port}`, '--data-dir', join(dir, 'data')],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  let browser;
  try {
    await waitForNode(url);
    const expected = cliAddress(dir);
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--enable-unsafe-webgpu', '--disable-background-networking',
        '--disable-quic', '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    mkdirSync(shots, { recursive: true });
    const page = await browser.newPage({ viewport: { width: 390, height: 900 } });
    // The page's own errors, so a failure here says why, not only that a wait timed out.
    page.on('pageerror', (e) => console.error(`# page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.error(`# page ${m.type()}: ${m.text()}`); });
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
    // arrives over the push feed, without a reload. On a phone the dev panel starts folded.
    assert.equal(await page.isVisible('#dev-mine-button'), false, 'dev panel folded at 390 px');
    await page.click('[data-testid="dev-panel-toggle"]');
    const navigationsBefore = reloads.length;
    for (let i = 0; i < 2; i++) {
      await page.click('#dev-mine-button');
      await page.waitForFunction((n) => Number(document.querySelector('#wallet-balance')?.dataset.confirmed ?? 0) + Number(document.querySelector('#wallet-balance')?.dataset.immature ?? 0) >= n, 10 * (i + 1));
    }
    await page.waitForFunction(() => Number(document.querySelector('#wallet-balance')?.dataset.confirmed ?? 0) >= 10);
    assert.equal(reloads.length, navigationsBefore, 'the page did not reload');
    console.log('ok - mined balance pushed live');

    // Send 3 to another address at the default fee rate: reviewed (recipient, amount, fee)
    // before signing, then in the mempool, then confirmed.
    assert.equal(await page.inputValue('#send-fee-rate'), String(DEFAULT_FEE_RATE), 'the policy\'s default rate');
    await page.fill('#send-to', OTHER);
    await page.fill('#send-amount', '3');
    await page.click('#send-submit');
    await page.waitForSelector('#send-confirm');
    const review = await page.textContent('#send-confirm-panel');
    assert.ok(review.includes(OTHER) && review.includes('Total'), `the review names the recipient and the total: ${review}`);
    const shownFee = BigInt(await page.getAttribute(testid('send-fee'), 'data-units'));
    await page.screenshot({ path: join(shots, 'send-review-390.png'), fullPage: true });
    await page.click('#send-confirm');
    await page.waitForFunction(() => document.querySelector('#send-result')?.textContent.startsWith('Sent'));
    const href = await page.getAttribute('#send-result a', 'href');
    const txid = href.match(/[0-9a-f]{64}/)[0];
    const sent = await (await fetch(`${url}/v1/tx/${txid}`)).json();
    assert.equal(BigInt(sent.fee), shownFee, 'the node received the fee shown before signing');
    assert.equal(shownFee, policyFee(sent.size, DEFAULT_FEE_RATE), `the policy's fee for ${sent.size} bytes`);
    console.log(`ok - the send was reviewed first; fee ${shownFee} for ${sent.size} bytes at rate ${DEFAULT_FEE_RATE}`);
    await page.goto(`${url}/#/`);
    await page.waitForSelector(`#mempool-list a[href="#/tx/${txid}"]`);
    console.log(`ok - ${txid} is in the mempool`);
    await page.goto(`${url}/#/wallet`);
    // The wallet view shows either its unlock form or the unlocked wallet (the send form);
    // unlock only when asked (each blind attempt used to wait out a 20 s timeout).
    await page.waitForSelector('#wallet-unlock-password, #send-to');
    if (await page.locator('#wallet-unlock-password').isVisible()) {
      await page.fill('#wallet-unlock-password', 'browser-pass-123');
      await page.click('#wallet-unlock-button');
    }
    await page.click('#dev-mine-button');
    const confirmed = async () => (await (await fetch(`${url}/v1/tx/${txid}`)).json()).confirmations;
    for (let i = 0; i < 100 && !(await confirmed() >= 1); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(await confirmed() >= 1, 'the payment was confirmed');
    await page.goto(`${url}/#/tx/${txid}`);
    await page.waitForFunction((t) => document.body.textContent.includes(t), txid);
    const other = await (await fetch(`${url}/v1/addresses/${OTHER}`)).json();
    assert.equal(other.confirmed, 3);
    console.log('ok - payment confirmed and shown');
    await page.screenshot({ path: join(shots, 'tx-390.png'), fullPage: true });
    await checkTxPage(page, txid);

    await browserMiner(page, url, expected);
    await chartsLive(page, url);
    await noGpuMessage(browser, url);
    await layout(browser, url, txid);
  } finally {
    await browser?.close();
    node.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The tx page: fee rate, time, confirmations, the change output marked. */
async function checkTxPage(page, txid) {
  const text = await page.textContent('main');
  for (const want of ['Fee rate', 'Confirmations', 'Time', 'Amount sent']) assert.ok(text.includes(want), want);
  assert.equal(await page.locator('[data-testid="change-output"]').count(), 1, 'one change output marked');
  console.log(`ok - tx page of ${txid.slice(0, 12)}… shows fee rate, time, confirmations and change`);
}

const testid = (id) => `[data-testid="${id}"]`;

/** Mines blocks with WebGPU in the page; the node accepts them (its chain grows, paying us). */
async function browserMiner(page, url, address) {
  await page.goto(`${url}/#/mining`);
  await page.waitForSelector(testid('browser-miner-start'));
  assert.equal(await page.inputValue(testid('browser-miner-address')), address, 'prefilled from the browser wallet');
  const before = (await (await fetch(`${url}/v1/status`)).json()).height;
  await page.click(testid('browser-miner-start'));
  await page.waitForFunction(() => Number(document.querySelector('[data-testid="browser-miner-blocks"]')?.textContent) >= 1, null, { timeout: MINE_TIMEOUT })
    .catch(async (e) => {
      // Say what the panel showed (its rate, its last error), not only that time ran out.
      throw new Error(`${e.message}\nthe mining panel said: ${(await page.textContent('main')).replace(/\s+/g, ' ')}`);
    });
  const rate = await page.textContent(testid('browser-miner-rate'));
  assert.match(rate, /[1-9]/, `a hashrate is shown (${rate})`);
  const adapter = await page.textContent(testid('browser-miner-adapter'));
  assert.match(adapter, /swiftshader|google/i, `the adapter is named (${adapter})`);
  await page.click(testid('browser-miner-start')); // stop
  await page.waitForFunction(() => document.querySelector('[data-testid="browser-miner-start"]').textContent.startsWith('Start'));
  const found = Number(await page.textContent(testid('browser-miner-blocks')));
  const status = await (await fetch(`${url}/v1/status`)).json();
  assert.ok(status.height >= before + found, `the node's chain grew by the ${found} found`);
  // The block the page reports is on the chain and its coinbase pays the miner's address.
  const link = await page.getAttribute('main a[href^="#/block/"]', 'href');
  const block = await (await fetch(`${url}/v1/blocks/${link.split('/').pop()}`)).json();
  assert.equal(block.main_chain, true);
  assert.equal(block.txs[0].outputs[0].address, address);
  await page.screenshot({ path: join(shots, 'mining-found-390.png'), fullPage: true });
  console.log(`ok - browser miner found ${found} block(s) on WebGPU (${adapter}, ${rate}); the node accepted them`);
}

/** The home page's charts are drawn from the chain and follow a new block without a reload. */
async function chartsLive(page, url) {
  await page.goto(`${url}/#/`);
  for (const id of ['chart-difficulty', 'chart-block-interval', 'chart-mempool', 'chart-hashrate']) {
    await page.waitForSelector(`${testid(id)} svg`);
  }
  const points = async (id) => Number(await page.getAttribute(testid(id), 'data-points'));
  const height = (await (await fetch(`${url}/v1/status`)).json()).height;
  assert.equal(await points('chart-difficulty'), height + 1, 'one difficulty point per block');
  assert.equal(await points('chart-block-interval'), height - 1, 'intervals from block 1 on (not from genesis)');
  assert.ok(await page.locator(`${testid('chart-difficulty')} path`).count() === 1);
  await page.click(testid('dev-mine-button'));
  await page.waitForFunction((n) => Number(document.querySelector('[data-testid="chart-block-interval"]')?.dataset.points) >= n, height);
  console.log(`ok - charts drawn from ${height + 1} blocks and updated live by a new block`);
}

/** Without WebGPU the panel says so plainly and the button is off. */
async function noGpuMessage(browser, url) {
  const ctx = await browser.newContext();
  await ctx.addInitScript(() => Object.defineProperty(Navigator.prototype, 'gpu', { get: () => undefined }));
  const page = await ctx.newPage();
  await page.goto(`${url}/#/mining`);
  await page.waitForSelector(testid('browser-miner-status'));
  assert.match(await page.textContent(testid('browser-miner-status')), /no WebGPU/);
  assert.equal(await page.isDisabled(testid('browser-miner-start')), true);
  await ctx.close();
  console.log('ok - without WebGPU the miner panel says so');
}

/** Screenshots at 1280 and 390 px; on the phone no page is wider than the screen. */
async function layout(browser, url, txid) {
  for (const width of [1280, 390]) {
    const page = await browser.newPage({ viewport: { width, height: 900 } });
    page.setDefaultTimeout(TIMEOUT);
    for (const [name, route] of [['home', '#/'], ['blocks', '#/blocks/3'], ['block', '#/block/1'], ['tx', `#/tx/${txid}`], ['mempool', '#/mempool'], ['mining', '#/mining'], ['wallet', '#/wallet'], ['chainstate', '#/chainstate']]) {
      await page.goto(`${url}/${route}`);
      await page.waitForSelector('main .card');
      await page.waitForFunction(() => !document.querySelector('main[aria-busy]'));
      const wide = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(wide <= width, `${name} at ${width} px is ${wide} px wide`);
      if (['home', 'mining', 'wallet', 'block', 'tx'].includes(name)) await page.screenshot({ path: join(shots, `${name}-${width}.png`), fullPage: true });
    }
    await page.close();
  }
  console.log(`ok - no page wider than 390 px; screenshots in ${shots}`);
}

main().catch((e) => {
  console.error(`not ok - ${e.stack || e}`);
  process.exit(1);
});
