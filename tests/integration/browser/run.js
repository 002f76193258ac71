// Drives Debian's chromium with playwright-core for test_browser.py:
//   node run.js PAGE_URL SERVICE JID PASSWORD PEER TEXT
// Prints one JSON line: {"ok": true, "result": {...}} or {"ok": false, "error": "..."}.
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

(async () => {
  const [pageUrl, service, jid, password, peer, text] = process.argv.slice(2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starling-chromium-"));
  let ctx;
  try {
    ctx = await chromium.launchPersistentContext(dir, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync"],
    });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on("console", (m) => process.stderr.write("console: " + m.text() + "\n"));
    await page.goto(pageUrl);
    const result = await page.evaluate(
      ([s, j, p, peerJid, t]) => window.runScenario(s, j, p, peerJid, t),
      [service, jid, password, peer, text]);
    await page.waitForTimeout(300);
    console.log(JSON.stringify({ ok: true, result }));
  } catch (e) {
    console.log(JSON.stringify({ ok: false, error: String(e) }));
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
