// End-to-end browser test: the demo in headless Chromium. Signs in, opens every page, fails on
// any JavaScript error, checks the map's 10 districts and that live counters change within 10 s,
// switches to English, and saves screenshots under target/browser/.
const puppeteer = require("puppeteer-core");
const fs = require("fs");

const base = process.argv[2];
const shots = process.argv[3];
const chromium = process.env.CHROMIUM || "/usr/bin/chromium";

function fail(message) {
  console.error("BROWSER TEST FAILED: " + message);
  process.exit(1);
}

// WCAG 2.1 A and AA checked by axe-core in the page as it stands; serious and critical
// violations are collected and fail the test at the end, each with the page and an element.
const axeSource = fs.readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const inaccessible = [];
const checkedPages = [];
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return result.violations
      .filter((v) => v.impact === "serious" || v.impact === "critical")
      .map((v) => v.id + " ×" + v.nodes.length + " (" + v.nodes[0].target.join(" ") + ": " + (v.nodes[0].failureSummary || "").split("\n").slice(1, 2).join("").trim() + ")");
  });
  checkedPages.push(name);
  violations.forEach((v) => inaccessible.push(name + ": " + v));
}

(async () => {
  fs.mkdirSync(shots, { recursive: true });
  const browser = await puppeteer.launch({ executablePath: chromium, args: ["--no-sandbox", "--headless=new"] });
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => { if (m.type() === "error") { errors.push(m.text()); } });
  page.on("requestfailed", (r) => { if (!r.url().endsWith("/ui/stream")) { errors.push("request failed: " + r.url()); } });
  await page.setViewport({ width: 1400, height: 900 });

  await page.goto(base + "/", { waitUntil: "load" });
  if (!page.url().endsWith("/ui/sign-in")) { fail("not sent to the sign-in page: " + page.url()); }
  await accessible(page, "sign-in");
  const lang = await page.$eval("html", (e) => e.lang);
  if (lang !== "zh-CN") { fail("the sign-in page is not Chinese by default: " + lang); }
  await page.type("input[name=username]", "admin");
  await page.type("input[name=password]", "yunnao-demo");
  await Promise.all([page.waitForNavigation(), page.click("button[type=submit]")]);

  const districts = await page.$$eval("#map .district", (e) => e.length);
  if (districts !== 10) { fail("the map shows " + districts + " districts"); }
  const read = () => page.$$eval("[data-k]", (els) => els.map((e) => e.textContent).join("|"));
  await page.waitForFunction(() => document.body.dataset.updated, { timeout: 10000 });
  const first = await read();
  await new Promise((r) => setTimeout(r, 10000));
  const later = await read();
  if (first === later) { fail("the live counters did not change within 10 s: " + first); }
  await page.screenshot({ path: shots + "/overview-zh.png" });
  await accessible(page, "overview");
  const bars = await page.$$eval("#daily rect", (e) => e.length);
  if (bars === 0) { fail("the incidents-per-day chart is empty"); }

  // Every district opens within a second, drawn inside the map's place in its panel.
  const mapBox = await (await page.$("#map")).boundingBox();
  const opened = [];
  for (const code of await page.$$eval("#map .district", (e) => e.map((d) => d.dataset.code))) {
    const started = Date.now();
    await page.$eval('#map .district[data-code="' + code + '"]', (e) => e.dispatchEvent(new MouseEvent("click", { bubbles: true })));
    await page.waitForFunction((c) => {
      const view = document.getElementById("district-view");
      return view && view.dataset.code === c && view.style.display !== "none";
    }, { timeout: 30000, polling: 10 }, code);
    const ms = Date.now() - started;
    const [name, count] = await page.$eval("#district-view", (e) => [e.querySelector(".district-bar b").textContent, Number(e.dataset.grids)]);
    const canvas = await (await page.$("#district-view canvas")).boundingBox();
    opened.push(name + " " + count + " grids " + ms + " ms");
    if (count === 0) { fail(name + " opened without unit grids"); }
    if (ms > 1000) { fail(name + " (" + count + " unit grids) took " + ms + " ms to open: " + opened.join(", ")); }
    if (canvas.width > mapBox.width + 1 || canvas.height > mapBox.height + 1) {
      fail(name + " is drawn " + canvas.width + "×" + canvas.height + ", beyond the map's " + mapBox.width + "×" + mapBox.height);
    }
    await page.screenshot({ path: shots + "/district-" + code + ".png" });
    await page.click("#back-to-city");
  }
  console.log("districts opened: " + opened.join(", "));

  // The keyboard reaches the districts: Tab from the page's start lands on one, Enter opens it,
  // focus moves to "back", and "back" returns focus to the district.
  await page.evaluate(() => document.activeElement && document.activeElement.blur());
  let tabs = 0;
  while (tabs < 40 && !(await page.evaluate(() => document.activeElement.classList.contains("district")))) {
    await page.keyboard.press("Tab");
    tabs++;
  }
  const focused = await page.evaluate(() => document.activeElement.dataset.code);
  if (!focused) { fail("Tab never reached a district of the map"); }
  await page.keyboard.press("Enter");
  await page.waitForFunction((c) => {
    const view = document.getElementById("district-view");
    return view && view.dataset.code === c && view.style.display !== "none" && document.activeElement.id === "back-to-city";
  }, { timeout: 5000 }, focused);
  await page.keyboard.press("Enter");
  const back = await page.evaluate(() => document.activeElement.dataset.code);
  if (back !== focused) { fail("after back, focus is not on the district that was opened: " + back); }

  // A click zooms in. (The district's shape, not its box: the box's middle may be sea or a neighbour.)
  await page.$eval('#map .district[data-code="370202"]', (e) => e.dispatchEvent(new MouseEvent("click", { bubbles: true })));
  await page.waitForFunction(() => {
    const view = document.getElementById("district-view");
    return view && view.dataset.code === "370202" && view.style.display !== "none";
  }, { timeout: 10000 });
  const grids = await page.$eval("#district-view", (e) => Number(e.dataset.grids));
  const box = await (await page.$("#district-view canvas")).boundingBox();
  await page.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  const zoom = await page.$eval("#district-view", (e) => e.dataset.zoom);
  if (zoom !== "4") { fail("clicking the district did not zoom in: " + zoom); }
  await page.mouse.move(box.x + box.width / 2 + 3, box.y + box.height / 2 + 3);
  await page.screenshot({ path: shots + "/district.png" });
  await accessible(page, "district");
  await page.click("#back-to-city");

  for (const [path, name] of [["/ui/devices", "devices"], ["/ui/incidents", "workbench"], ["/ui/plan", "plan"]]) {
    const link = await page.$('header nav a[href="' + path + '"]');
    if (!link) { fail("no link to " + path + " in the navigation"); }
    const response = await page.goto(base + path, { waitUntil: "load" });
    if (response.status() !== 200) { fail(path + " answered " + response.status()); }
    await page.screenshot({ path: shots + "/" + name + ".png", fullPage: name === "workbench" });
    await accessible(page, name);
  }
  const targets = await page.$eval('[data-plan="targets"]', (e) => e.textContent);
  if (targets !== "47") { fail("the plan page lists " + targets + " targets"); }
  const sealed = await page.$$eval('[data-seal="verified"]', (e) => e.length);
  if (sealed === 0) { fail("the plan page shows no report with a verified seal"); }
  const traditional = await page.$eval("main.plan", (e) => /[數據雲區設備]/.test(e.textContent));
  if (traditional) { fail("the plan page shows traditional characters"); }
  await page.goto(base + "/ui/incidents", { waitUntil: "load" });
  const firstCase = await page.$("main.workbench tbody a");
  if (firstCase) {
    await Promise.all([page.waitForNavigation(), firstCase.click()]);
    await page.screenshot({ path: shots + "/case.png", fullPage: true });
    await accessible(page, "case");
  }

  await page.goto(base + "/ui/devices", { waitUntil: "load" });
  await page.goto(base + "/ui/devices?profile=manhole-gas", { waitUntil: "load" });
  // Names, not codes: device types and departments read in Chinese, times without a "T".
  const coded = await page.$$eval("main.workbench tbody tr", (rows) => rows
    .map((r) => [r.cells[2].textContent, r.cells[3].textContent, r.cells[5].textContent])
    .filter(([profile, department, seen]) => /^[a-z0-9-]+$/.test(profile) || /^[a-z0-9-]+$/.test(department) || /\dT\d/.test(seen)));
  if (coded.length > 0) { fail("the device list shows codes instead of names: " + JSON.stringify(coded[0])); }
  const header = await page.$eval("header", (e) => e.textContent);
  if (!header.includes("北京时间")) { fail("the header does not say which time zone the pages use: " + header); }
  const firstDevice = await page.$("main.workbench tbody a");
  if (!firstDevice) { fail("the device list is empty"); }
  await Promise.all([page.waitForNavigation(), firstDevice.click()]);
  const series = await page.$$eval("svg.series, .chart-box", (e) => e.length);
  if (series === 0) { fail("the device page shows no chart"); }
  const rules = await page.$$eval("table.rules tbody tr", (e) => e.length);
  if (rules === 0) { fail("the gas sensor's page lists no alarm rule"); }
  await page.screenshot({ path: shots + "/device.png", fullPage: true });
  await accessible(page, "device");

  await page.goto(base + "/ui/lang/en", { waitUntil: "load" });
  const english = await page.$eval("h1", (e) => e.textContent);
  if (!english.includes("yunnao")) { fail("no English after the switch: " + english); }
  await page.screenshot({ path: shots + "/overview-en.png" });
  await accessible(page, "overview (English)");

  if (errors.length > 0) { fail("JavaScript errors: " + errors.join("; ")); }
  if (inaccessible.length > 0) { fail("serious accessibility violations (axe-core, WCAG 2.1 AA):\n  " + inaccessible.join("\n  ")); }
  console.log("browser test passed: 10 districts, counters live (" + first + " → " + later + "), 市南区 " + grids +
    " unit grids with zoom, " + sealed + " sealed reports on the plan page, 6 pages, districts by keyboard, English switch, no serious WCAG 2.1 AA violation on " + checkedPages.length + " pages (axe-core); screenshots in " + shots);
  await browser.close();
})().catch((e) => fail(e.stack || String(e)));
