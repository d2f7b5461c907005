// Static checks of the page's sources: nothing fetched from elsewhere, no polling timers,
// and every element id the README promises to tests exists in the code.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const web = join(dirname(fileURLToPath(import.meta.url)), "..");

function files(dir) {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? (f === "test" ? [] : files(p)) : [p];
  });
}
const sources = files(web).filter((f) => /\.(html|css|js)$/.test(f));
const all = sources.map((f) => readFileSync(f, "utf8")).join("\n");

test("no outside URLs: scripts, styles and requests come from the node only", () => {
  for (const f of sources) {
    const text = readFileSync(f, "utf8").replace("http://www.w3.org/2000/svg", "");
    assert.doesNotMatch(text, /(src|href)\s*=\s*["']?(https?:)?\/\//i, f);
    assert.doesNotMatch(text, /(fetch|EventSource)\(\s*["'`]https?:/, f);
    assert.doesNotMatch(text, /@import\s+url\(\s*["']?https?:/, f);
  }
});

test("no polling: no setInterval anywhere", () => {
  assert.doesNotMatch(all, /setInterval\s*\(/);
});

test("every element id listed in README.md exists in the sources", () => {
  const readme = readFileSync(join(web, "README.md"), "utf8");
  const section = readme.slice(readme.indexOf("## Stable element ids"), readme.indexOf("## Tests"));
  const ids = [...section.matchAll(/^\|([^|]+)\|/gm)].flatMap((m) => [...m[1].matchAll(/`([a-z0-9-]+)`/g)].map((x) => x[1])).filter((id) => !id.startsWith("data-"));
  assert.ok(ids.length > 20, "ids found in the README table");
  for (const id of ids) {
    const quoted = new RegExp(`["']${id}["']`);
    assert.match(all, quoted, `id ${id}`);
  }
});

test("index.html loads only local modules and has the live regions", () => {
  const html = readFileSync(join(web, "index.html"), "utf8");
  assert.match(html, /<script type="module" src="js\/app.js"><\/script>/);
  assert.match(html, /id="toasts"[^>]*aria-live="polite"/);
  assert.match(html, /id="toasts-alert"[^>]*aria-live="assertive"/);
  assert.match(html, /name="viewport"/);
});
