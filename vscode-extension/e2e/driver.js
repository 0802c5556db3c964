// Drives real VS Code (code-server in headless Chromium) through the ghost-text scenario of
// tests/editor_tests/test_vscode.py, the way a person would: open the file with Ctrl+P, go to a
// line, type, wait for the inline suggestion, accept it with Tab, save with Ctrl+S.
//
// Usage: node driver.js CONFIG.json   (puppeteer-core is found through NODE_PATH; install.sh
// installs it into a cache folder outside the repository)
//
// CONFIG: {url, chromium, outDir, fileName, line, typed, workbenchTimeoutMs, ghostTimeoutMs,
//          idleRetypeMs, retriggerEveryMs, totalTimeoutMs}
// Writes OUTDIR/result.json (also on failure, with `error` and the steps done), screenshots
// OUTDIR/*.png and OUTDIR/chromium.pid (so the caller can kill the browser's process group,
// which puppeteer starts detached). Exits 0 whenever it could write result.json, which says how
// far the scenario got; the caller judges it. Every wait is bounded, and so is the whole run
// (totalTimeoutMs).
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const puppeteer = require("puppeteer-core");

const config = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const out = config.outDir;
const t0 = Date.now();
const result = { steps: [], ghostText: null, statusItems: [], statusHistory: [], triggers: 0 };

function log(message) {
  const line = `[driver ${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}`;
  result.steps.push(line);
  console.error(line);
}

function save() {
  result.elapsedMs = Date.now() - t0;
  fs.writeFileSync(path.join(out, "result.json"), JSON.stringify(result, null, 2));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Calls `check` until it returns something truthy or `timeoutMs` has passed.
async function poll(check, timeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value || Date.now() >= deadline) return value;
    await sleep(intervalMs);
  }
}

async function screenshot(page, name) {
  const file = path.join(out, `${name}.png`);
  try {
    await page.screenshot({ path: file });
    (result.screenshots ??= []).push(file);
  } catch (err) {
    log(`screenshot ${name} failed: ${err.message}`);
  }
}

// Text of the suggestion shown in the editor. On the cursor's line it is one or more
// `.ghost-text-decoration` spans (one per syntax token); further lines sit in a `.ghost-text`
// view zone.
function ghostTextInPage() {
  const editor = document.querySelector(".editor-instance .monaco-editor");
  if (!editor) return null;
  const text = (el) => el.textContent.replace(/\u00a0/g, " ");
  const lines = [];
  for (const line of editor.querySelectorAll(".view-lines .view-line")) {
    const spans = [...line.querySelectorAll(".ghost-text-decoration")];
    if (spans.length) lines.push(spans.map(text).join(""));
  }
  for (const zone of editor.querySelectorAll(".ghost-text")) {
    for (const line of zone.querySelectorAll(".view-line")) lines.push(text(line));
  }
  const joined = lines.join("\n");
  return joined.trim() ? joined : null;
}

function statusItemsInPage() {
  return [...document.querySelectorAll(".statusbar .statusbar-item")]
    .map((el) => ({
      id: el.id,
      text: (el.innerText || "").trim(),
      label: el.getAttribute("aria-label") || "",
    }))
    .filter((item) => item.text || item.label);
}

// The text of editor line `n` as rendered (the file is short, so every line is in the DOM).
function editorLineInPage(n) {
  const editor = document.querySelector(".editor-instance .monaco-editor");
  if (!editor) return null;
  const lines = [...editor.querySelectorAll(".view-lines .view-line")];
  const lineHeight = lines.length ? lines[0].getBoundingClientRect().height : 0;
  if (!lineHeight) return null;
  // View lines are absolutely positioned by `top`; sort them to get buffer order.
  lines.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
  const line = lines[n - 1];
  return line ? line.textContent.replace(/\u00a0/g, " ") : null;
}

async function openFile(page, fileName) {
  await page.keyboard.down("Control");
  await page.keyboard.press("p");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", {
    visible: true,
    timeout: 15000,
  });
  await page.keyboard.type(fileName, { delay: 20 });
  // Wait until the file is listed (the workspace search runs in the server), then open it.
  await page.waitForFunction(
    (name) =>
      [...document.querySelectorAll(".quick-input-widget .monaco-list-row")].some((row) =>
        (row.getAttribute("aria-label") || row.textContent || "").includes(name),
      ),
    { timeout: 30000, polling: 200 },
    fileName,
  );
  await page.keyboard.press("Enter");
  await page.waitForFunction(
    (name) =>
      [...document.querySelectorAll(".tabs-container .tab.active")].some((tab) =>
        (tab.getAttribute("aria-label") || tab.textContent || "").includes(name),
      ) && document.querySelector(".editor-instance .monaco-editor .view-lines"),
    { timeout: 30000, polling: 200 },
    fileName,
  );
  // The editor has keyboard focus after opening from quick open.
  await page.waitForSelector(".editor-instance .monaco-editor.focused", { timeout: 10000 });
}

async function goToLineEnd(page, line) {
  await page.keyboard.down("Control");
  await page.keyboard.press("g");
  await page.keyboard.up("Control");
  await page.waitForSelector(".quick-input-widget .quick-input-box input", {
    visible: true,
    timeout: 10000,
  });
  await page.keyboard.type(String(line), { delay: 20 });
  await sleep(200);
  await page.keyboard.press("Enter");
  await page.waitForSelector(".editor-instance .monaco-editor.focused", { timeout: 10000 });
  await page.keyboard.press("End");
}

// The extension's status item: its text, the server state named in its tooltip ("codeswift:
// ready", "codeswift: loading", ...), and whether it spins (the server is loading or busy, or
// the client waits for a completion).
async function codeswiftStatus(page) {
  const items = (await page.evaluate(statusItemsInPage)).filter((item) =>
    `${item.text} ${item.label}`.toLowerCase().includes("codeswift"),
  );
  const text = items.map((item) => item.text).join(" | ");
  const state = items
    .map((item) => /codeswift: (\w+)/.exec(item.label) || /codeswift: (\w+)/.exec(item.text))
    .filter(Boolean)
    .map((m) => m[1])
    .join(" | ");
  const spinning = items.some((item) => item.label.includes("~spin"));
  return { text, state, spinning };
}

// Asks for a suggestion again the way a person would: delete the last typed character and type
// it again. (Alt+\, "Trigger Inline Suggestion", is no use twice: VS Code does not ask again
// at a position and document version it has explicitly asked at before.)
async function retype(page, why) {
  result.triggers += 1;
  log(`${why}: retype ${JSON.stringify(config.typed.slice(-1))}`);
  await page.keyboard.press("Backspace");
  await sleep(150);
  await page.keyboard.type(config.typed.slice(-1));
}

async function waitForGhost(page) {
  const start = Date.now();
  const deadline = start + config.ghostTimeoutMs;
  let lastAsk = start;
  let idleSince = null;
  let last = null;
  while (Date.now() < deadline) {
    const text = await page.evaluate(ghostTextInPage);
    if (text) return text;
    const status = await codeswiftStatus(page);
    if (last === null || status.text !== last.text || status.state !== last.state) {
      log(`status item: ${JSON.stringify(status.text)} (state ${JSON.stringify(status.state)})`);
      result.statusHistory.push({ ms: Date.now() - t0, ...status });
    }
    last = status;
    const idle = status.state && !status.spinning && !/starting|loading|busy/.test(status.state);
    if (!idle) idleSince = null;
    else if (idleSince === null) idleSince = Date.now();
    const now = Date.now();
    // Typing asked for a suggestion already. A request made while the server was still
    // loading the model, or one whose generation ran out of time, gets nothing, and VS Code
    // does not ask again by itself: ask again once the server sits idle with nothing shown,
    // and in any case every retriggerEveryMs (should the status item not tell).
    if (idle && now - idleSince >= config.idleRetypeMs && now - lastAsk >= config.idleRetypeMs) {
      await retype(page, "the server is idle and nothing is shown");
      lastAsk = Date.now();
      idleSince = null;
    } else if (now - lastAsk >= config.retriggerEveryMs) {
      await retype(page, "no ghost text yet");
      lastAsk = Date.now();
    }
    await sleep(250);
  }
  return null;
}

// What a person feels once the model is loaded: the accepted body is selected (Shift+Home,
// after the saved state, so the file on disk keeps it), the editor left to settle, then one key
// replaces it. No request was ever made at that place, so no offer or prediction answers it:
// the model runs, with whatever the server kept warm. The time until the ghost text shows is
// recorded (keystrokeGhostMs, null if none within 20 s).
async function timeKeystrokeToGhost(page) {
  await page.keyboard.down("Shift");
  await page.keyboard.press("Home");
  await page.keyboard.up("Shift");
  await sleep(2000);
  const pressed = Date.now();
  await page.keyboard.type(config.typed.slice(0, 1));
  const ghost = await poll(() => page.evaluate(ghostTextInPage), 20000, 10);
  result.keystrokeGhostMs = ghost ? Date.now() - pressed : null;
  result.keystrokeGhostText = ghost;
  log(`keystroke to ghost text: ${result.keystrokeGhostMs} ms (${JSON.stringify(ghost)})`);
  await screenshot(page, "keystroke");
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: config.chromium,
    headless: true,
    userDataDir: path.join(out, "chromium-profile"),
    defaultViewport: { width: 1400, height: 900 },
    protocolTimeout: 60000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-default-apps",
      "--disable-sync",
      "--disable-extensions",
      "--no-first-run",
      "--no-default-browser-check",
      "--window-size=1400,900",
    ],
  });
  const proc = browser.process();
  if (proc) fs.writeFileSync(path.join(out, "chromium.pid"), String(proc.pid));
  const watchdog = setTimeout(async () => {
    log(`overall time limit of ${config.totalTimeoutMs} ms reached`);
    result.error = result.error || "driver time limit reached";
    save();
    try {
      await browser.close();
    } finally {
      process.exit(2);
    }
  }, config.totalTimeoutMs);

  const page = (await browser.pages())[0] || (await browser.newPage());
  const consoleLog = fs.createWriteStream(path.join(out, "browser-console.log"));
  page.on("console", (msg) => consoleLog.write(`[${msg.type()}] ${msg.text()}\n`));
  page.on("pageerror", (err) => consoleLog.write(`[pageerror] ${err.message}\n`));

  try {
    log(`open ${config.url}`);
    await page.goto(config.url, { waitUntil: "domcontentloaded", timeout: 60000 });
    await page.waitForSelector(".monaco-workbench", { timeout: config.workbenchTimeoutMs });
    log("workbench is up");
    // Let the workbench restore its layout before typing into it.
    await page.waitForSelector(".statusbar", { timeout: 30000 });
    await sleep(1500);

    await openFile(page, config.fileName);
    log(`${config.fileName} is open`);
    await goToLineEnd(page, config.line);
    result.lineBefore = await page.evaluate(editorLineInPage, config.line);
    log(`at the end of line ${config.line}: ${JSON.stringify(result.lineBefore)}`);

    await page.keyboard.type(config.typed, { delay: 80 });
    result.lineTyped = await page.evaluate(editorLineInPage, config.line);
    log(`typed ${JSON.stringify(config.typed)}: ${JSON.stringify(result.lineTyped)}`);

    const ghostStart = Date.now();
    result.ghostText = await waitForGhost(page);
    result.ghostMs = Date.now() - ghostStart;
    result.statusItems = await page.evaluate(statusItemsInPage);
    await screenshot(page, "ghost");
    if (!result.ghostText) {
      result.error = `no ghost text within ${config.ghostTimeoutMs} ms`;
      log(result.error);
      return;
    }
    log(`ghost text after ${result.ghostMs} ms: ${JSON.stringify(result.ghostText)}`);

    await page.keyboard.press("Tab");
    const typedLine = (result.lineTyped || "").trimEnd();
    const changed = await poll(async () => {
      const line = await page.evaluate(editorLineInPage, config.line);
      return line !== null && line.trimEnd() !== typedLine;
    }, 10000);
    if (!changed) throw new Error("Tab did not change the line");
    result.lineAccepted = await page.evaluate(editorLineInPage, config.line);
    result.ghostAfterAccept = await page.evaluate(ghostTextInPage);
    log(`Tab: ${JSON.stringify(result.lineAccepted)}`);

    await page.keyboard.down("Control");
    await page.keyboard.press("s");
    await page.keyboard.up("Control");
    await page.waitForFunction(() => !document.querySelector(".tabs-container .tab.active.dirty"), {
      timeout: 15000,
      polling: 100,
    });
    log("saved");
    result.statusItems = await page.evaluate(statusItemsInPage);
    await screenshot(page, "accepted");
    await timeKeystrokeToGhost(page);
    result.done = true;
  } catch (err) {
    result.error = `${err.name}: ${err.message}`;
    log(`failed: ${result.error}`);
    result.statusItems = await page.evaluate(statusItemsInPage).catch(() => []);
    await screenshot(page, "failure");
  } finally {
    clearTimeout(watchdog);
    save();
    consoleLog.end();
    await browser.close().catch(() => {});
  }
}

main().catch((err) => {
  result.error = `${err.name}: ${err.message}`;
  log(`failed: ${result.error}`);
  save();
  process.exit(1);
});
