// Drives Debian's chromium with playwright-core for test_webchat.py:
//   node webchat.js PAGE_URL JID PASSWORD TEXT SCREENSHOT
// Loads Starling's chat page (modules.webchat: converse.js served by the server itself),
// logs in through converse.js's own login form and waits until converse receives TEXT.
// Prints one JSON line: {"ok": true, "result": {...}} or {"ok": false, "error": "..."}.
const { chromium } = require("playwright-core");
const fs = require("fs");
const os = require("os");
const path = require("path");

(async () => {
  const [pageUrl, jid, password, text, shot] = process.argv.slice(2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "starling-chromium-"));
  const requests = [];
  let ctx, page;
  try {
    ctx = await chromium.launchPersistentContext(dir, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync"],
    });
    page = ctx.pages()[0] || await ctx.newPage();
    page.on("console", (m) => process.stderr.write("console: " + m.text() + "\n"));
    // What actually left the browser (the page's CSP stops other origins first).
    page.on("requestfinished", (r) => requests.push(r.url()));
    page.on("pageerror", (e) => process.stderr.write("pageerror: " + e + "\n"));
    page.on("response", (r) => {
      if (r.status() >= 400) process.stderr.write(`HTTP ${r.status()} ${r.url()}\n`);
    });
    // converse.js assigns window.converse while its module loads, before the page calls
    // initialize(): register a probe plugin then, recording the message bodies that
    // converse's connection receives.
    await page.addInitScript(() => {
      window.probeBodies = [];
      let api;
      Object.defineProperty(window, "converse", {
        configurable: true,
        get() { return api; },
        set(v) {
          api = v;
          if (!v || window.probeAdded) return;
          window.probeAdded = true;
          // Third-party plugins run only when whitelisted in the page's configuration.
          const cfg = window.starlingWebchat;
          cfg.whitelisted_plugins = (cfg.whitelisted_plugins || []).concat(["starling-probe"]);
          v.plugins.add("starling-probe", {
            initialize() {
              // Every message stanza converse's connection receives.
              this._converse.api.listen.on("connected", () => {
                this._converse.api.listen.stanza("message", (st) => {
                  const b = st.querySelector("body");
                  if (b) window.probeBodies.push(b.textContent);
                  return true;
                });
              });
            },
          });
        },
      });
    });
    await page.goto(pageUrl);
    await page.locator("input[name=jid]").fill(jid, { timeout: 30000 });
    await page.locator("input[name=password]").fill(password);
    await page.locator("form#converse-login [type=submit]").click();
    await page.waitForFunction((t) => window.probeBodies.includes(t), text,
                               { timeout: 45000 });
    const config = await page.evaluate(() => window.starlingWebchat);
    const online = await page.locator("text=I am online").count();
    if (shot) await page.screenshot({ path: shot });
    const foreign = requests.filter((u) => !u.startsWith(new URL(pageUrl).origin) &&
                                           !u.startsWith("ws://") && !u.startsWith("data:") &&
                                           !u.startsWith("blob:"));
    console.log(JSON.stringify({ ok: true, result: { config, foreign, online } }));
  } catch (e) {
    if (page && shot) await page.screenshot({ path: shot }).catch(() => {});
    if (page) {
      process.stderr.write("requests: " + requests.join(" ") + "\n");
    }
    console.log(JSON.stringify({ ok: false, error: String(e) }));
  } finally {
    if (ctx) await ctx.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
})();
