// Two users in two browser contexts use the chat page at ROOST_HTTP: register, meet in a room,
// chat both ways, see typing, presence and unread counts change, open a DM, reload and find
// the history. Screenshots go to SCREENSHOTS; the page's first-load timings are printed as
// one "timing {...}" line. Driven by tests/system/browser.rs; exits non-zero on any failure.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.ROOST_HTTP;
const shots = process.env.SCREENSHOTS;
const patience = { timeout: 10000 };
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  await scenario();
} finally {
  await browser.close();
}

async function scenario() {
  const aliceContext = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  const bobContext = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const alice = await aliceContext.newPage();

  // first load: navigation timings, then sign-up to a live MQTT connection
  await alice.goto(base);
  await alice.waitForSelector("#signin-form", patience);
  const timing = await alice.evaluate(() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const bytes = performance.getEntriesByType("resource").reduce((sum, r) => sum + r.transferSize, nav.transferSize);
    return { dom_content_loaded_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd, transferred_bytes: bytes };
  });
  await shot(alice, "01-sign-in");
  const signedUp = Date.now();
  await signUp(alice, "alice");
  timing.sign_up_to_online_ms = Date.now() - signedUp;
  console.log(`timing ${JSON.stringify(timing)}`);

  // alice creates a room, bob joins it
  await roomForm(alice, "lounge", "create");
  await alice.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  let bob = await bobContext.newPage();
  await bob.goto(base);
  await signUp(bob, "bob");
  await roomForm(bob, "lounge", "join");
  await bob.getByRole("heading", { name: "# lounge" }).waitFor(patience);

  // chat both ways
  await send(alice, "hello bob");
  await seeMessage(bob, "alice", "hello bob");
  await send(bob, "hi alice");
  await seeMessage(alice, "bob", "hi alice");

  // typing and presence
  await bob.locator("#message-input").pressSequentially("still typ", { delay: 20 });
  await alice.locator("#typing", { hasText: "bob is typing…" }).waitFor(patience);
  await alice.locator('#members li[data-user="bob"] .dot.online').waitFor(patience);
  await shot(alice, "02-alice-sees-bob-typing");
  await shot(bob, "03-bob-in-lounge");

  // bob moves to a room of his own and closes the page: alice sees him go offline
  await roomForm(bob, "quiet", "create");
  await bob.getByRole("heading", { name: "# quiet" }).waitFor(patience);
  await bob.close();
  await alice.locator('#members li[data-user="bob"] .dot:not(.online)').waitFor(patience);
  await alice.locator('#members li[data-user="bob"] .seen', { hasText: "last seen" }).waitFor(patience);
  await alice.locator("#typing", { hasText: /^$/ }).waitFor(patience);
  await shot(alice, "04-bob-offline");

  // alice writes while bob is away; bob comes back to one unread message in the lounge
  await send(alice, "are you there?");
  await seeMessage(alice, "alice", "are you there?");
  bob = await bobContext.newPage();
  await bob.goto(base);
  await bob.getByRole("heading", { name: "# quiet" }).waitFor(patience);
  await bob.locator('#rooms li[data-room="lounge"] .badge', { hasText: "1" }).waitFor(patience);
  await shot(bob, "05-bob-back-with-unread");
  await bob.locator('#rooms li[data-room="lounge"] button').click();
  await seeMessage(bob, "alice", "are you there?");
  await bob.locator('#rooms li[data-room="lounge"] .badge').waitFor({ state: "detached", ...patience });
  await alice.locator('#members li[data-user="bob"] .dot.online').waitFor(patience);

  // a direct message: bob's list gains the DM from his inbox
  await alice.locator("#dm-form input").fill("bob");
  await alice.locator("#dm-form button").click();
  await alice.getByRole("heading", { name: "@ bob" }).waitFor(patience);
  await send(alice, "just between us");
  await bob.locator("#rooms li button", { hasText: "@ alice" }).click(patience);
  await seeMessage(bob, "alice", "just between us");

  // a reload finds the lounge's history, in order
  await alice.locator('#rooms li[data-room="lounge"] button').click();
  await alice.reload();
  await alice.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  await alice.locator("body[data-connection=online]").waitFor(patience);
  const history = await alice.locator("#message-list li .body").allTextContents();
  if (JSON.stringify(history) !== JSON.stringify(["hello bob", "hi alice", "are you there?"])) {
    throw new Error(`history after reload: ${JSON.stringify(history)}`);
  }
  await shot(alice, "06-alice-after-reload");
  await alice.setViewportSize({ width: 390, height: 760 });
  await shot(alice, "07-phone-width");
  console.log("browser scenario passed");
}

async function signUp(page, user) {
  await page.locator('#signin-form input[name="username"]').fill(user);
  await page.locator('#signin-form input[name="password"]').fill("correct horse battery");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.locator("body[data-connection=online]").waitFor(patience);
}

async function roomForm(page, room, action) {
  await page.locator('#room-form input[name="room"]').fill(room);
  await page.locator(`#room-form button[value="${action}"]`).click();
}

async function send(page, text) {
  await page.locator("#message-input").fill(text);
  await page.locator("#message-input").press("Enter");
}

async function seeMessage(page, from, text) {
  await page.locator("#message-list li", { has: page.locator(".from", { hasText: from }), hasText: text }).waitFor(patience);
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}
