// Two users in two browser contexts use the chat page at ROOST_HTTP: register, meet in a room
// (he finds it in the directory of public rooms), chat both ways, see typing, presence and
// unread counts change, open a DM, reload and find the history; one loses his connection for
// a while and misses nothing; she answers him with a reply that quotes him and mentions him
// (his copy highlighted); she edits a message, both react to it and he takes his reaction
// back, she (the room's owner) deletes his, and reloaded pages show the same and count his next
// reaction once; they send each other a picture and a PDF, and a file the server refuses; a bot
// (MQTT.js from Node) fills a room and the page scrolls back to its first message; both search
// their rooms' messages and open what they find (one in history older than the page held); a
// third user turns notifications on and her service worker shows a push the browser delivers to
// it. Screenshots go to SCREENSHOTS; the page's first-load timings are printed as one
// "timing {...}" line. Driven by tests/system/browser.rs; exits non-zero on any failure.
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import mqtt from "mqtt";
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
  const bobLink = relay();
  await bobContext.routeWebSocket(/\/mqtt$/, bobLink.route);
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

  // alice creates a room, bob finds it in the directory of public rooms and joins it there
  await roomForm(alice, "lounge", "create");
  await alice.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  let bob = await bobContext.newPage();
  await bob.goto(base);
  await signUp(bob, "bob");
  await bob.locator('#directory-form input[name="q"]').fill("LOU");
  await bob.locator('#directory li[data-room="lounge"]', { hasText: "1 member" }).waitFor(patience);
  await shot(bob, "02a-bob-finds-the-lounge");
  await bob.getByRole("button", { name: "Join lounge" }).click();
  await bob.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  await bob.getByRole("button", { name: "Open lounge" }).waitFor(patience);

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
  const lounge = ["hello bob", "hi alice", "are you there?"];
  await seeHistory(alice, lounge);
  await shot(alice, "06-alice-after-reload");

  // bob's connection is cut (a train tunnel): alice sees him go offline and writes; what he
  // writes meanwhile waits; back online he recovers the gap by seq and his message goes out once
  await bob.locator('#rooms li[data-room="lounge"] button').click();
  await bob.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  await bobLink.cut();
  await bob.locator("body:not([data-connection=online])").waitFor(patience);
  await alice.locator('#members li[data-user="bob"] .dot:not(.online)').waitFor(patience);
  for (const n of [1, 2, 3]) await send(alice, `missed ${n}`);
  await seeMessage(alice, "alice", "missed 3");
  await send(bob, "written in the tunnel");
  await shot(bob, "07-bob-cut-off");
  bobLink.restore();
  await bob.locator("body[data-connection=online]").waitFor(patience);
  lounge.push("missed 1", "missed 2", "missed 3", "written in the tunnel");
  await seeHistory(bob, lounge);
  await seeHistory(alice, lounge);
  await alice.locator('#members li[data-user="bob"] .dot.online').waitFor(patience);
  await shot(bob, "08-bob-reconnected");

  // alice answers bob's message with a mention: both see the quote, bob's copy is highlighted
  const tunnel = alice.locator("#message-list li", { hasText: "written in the tunnel" });
  await tunnel.getByRole("button", { name: "Reply to bob" }).click();
  await alice.locator("#replying .quote", { hasText: "written in the tunnel" }).waitFor(patience);
  await send(alice, "@bob welcome back");
  await alice.locator("#replying").waitFor({ state: "hidden", ...patience });
  const answer = (page) => page.locator("#message-list li", { has: page.locator(".body", { hasText: "@bob welcome back" }) });
  await answer(alice).locator(".quote", { hasText: "written in the tunnel" }).waitFor(patience);
  await answer(bob).locator(".quote", { hasText: "written in the tunnel" }).waitFor(patience);
  await bob.locator("#message-list li.mentions-me", { hasText: "@bob welcome back" }).waitFor(patience);
  lounge.push("@bob welcome back");
  await shot(bob, "08b-bob-mentioned-in-a-reply");

  // alice fixes her first message in place: Escape leaves it as it was, Enter saves; both pages
  // show the new text marked (edited). Only one's own messages offer Edit
  const line = (page, seq) => page.locator(`#message-list li[data-seq="${seq}"]`);
  const hello = await byBody(alice, "hello bob").getAttribute("data-seq");
  const tunnelled = await byBody(alice, "written in the tunnel").getAttribute("data-seq");
  await line(alice, hello).locator("button.edit").click();
  const editor = line(alice, hello).locator(".edit-form input");
  await editor.fill("hello bbo");
  await editor.press("Escape");
  await line(alice, hello).locator(".edit-form").waitFor({ state: "detached", ...patience });
  await line(alice, hello).locator(".body", { hasText: /^hello bob$/ }).waitFor(patience);
  await line(alice, hello).locator("button.edit").click();
  await editor.fill("hello bob, welcome to the lounge");
  await shot(alice, "08c-alice-edits-her-greeting");
  await editor.press("Enter");
  for (const page of [alice, bob]) {
    await line(page, hello).locator(".body", { hasText: /^hello bob, welcome to the lounge$/ }).waitFor(patience);
    await line(page, hello).locator(".edited", { hasText: "(edited)" }).waitFor(patience);
  }
  await count(line(bob, hello).locator("button.edit"), 0);
  await count(line(alice, tunnelled).locator("button.edit"), 0);
  await count(line(bob, tunnelled).locator("button.edit"), 1);
  await shot(bob, "08d-bob-sees-the-edit");

  // bob reacts 👍 with the picker, alice adds hers with a click on his chip: 2 on both pages,
  // each marking its user's own; then bob's click on the chip takes his back: 1
  await line(bob, hello).locator("button.react").click();
  await line(bob, hello).locator('.picker button[data-key="👍"]').waitFor(patience);
  await shot(bob, "08e-bob-picks-a-reaction");
  await line(bob, hello).locator('.picker button[data-key="👍"]').click();
  const thumbs = (page, which = "") => line(page, hello).locator(`.reaction${which}[data-key="👍"] .count`);
  await thumbs(alice, ":not(.me)").filter({ hasText: /^1$/ }).waitFor(patience);
  await line(alice, hello).locator('.reaction[data-key="👍"]').click();
  for (const page of [alice, bob]) await thumbs(page, ".me").filter({ hasText: /^2$/ }).waitFor(patience);
  await count(line(bob, hello).locator(".picker"), 0);
  await shot(alice, "08f-alice-and-bob-react");
  await line(bob, hello).locator('.reaction[data-key="👍"]').click();
  await thumbs(bob, ":not(.me)").filter({ hasText: /^1$/ }).waitFor(patience);
  await thumbs(alice, ".me").filter({ hasText: /^1$/ }).waitFor(patience);
  await shot(bob, "08g-bob-takes-his-reaction-back");

  // alice owns the lounge: she may delete bob's message (bob has no Delete on hers), after a
  // second click; both pages show its tombstone, and the reply that quoted it a deleted message
  await count(line(bob, hello).locator("button.delete"), 0);
  await line(alice, tunnelled).locator("button.delete").click();
  await line(alice, tunnelled).locator(".confirm", { hasText: "Delete this message?" }).waitFor(patience);
  await shot(alice, "08h-alice-deletes-bobs-message");
  await line(alice, tunnelled).locator("button.confirm-delete").click();
  for (const page of [alice, bob]) {
    await line(page, tunnelled).locator(".tombstone", { hasText: "message deleted by alice" }).waitFor(patience);
    await answer(page).locator(".quote.deleted", { hasText: "deleted message" }).waitFor(patience);
    await count(line(page, tunnelled).locator(".body, .quote, .action"), 0);
  }
  await shot(bob, "08i-bob-sees-the-tombstone");

  // reloaded, both pages show history as the events left it, and no event as a line of its own
  const folded = lounge.map((body) => (body === "hello bob" ? "hello bob, welcome to the lounge" : body));
  folded.splice(folded.indexOf("written in the tunnel"), 1);
  for (const page of [alice, bob]) {
    await page.reload();
    await page.getByRole("heading", { name: "# lounge" }).waitFor(patience);
    await page.locator("body[data-connection=online]").waitFor(patience);
    await seeHistory(page, folded);
    await count(page.locator("#message-list li"), lounge.length);
    await line(page, hello).locator(".edited", { hasText: "(edited)" }).waitFor(patience);
    await line(page, tunnelled).locator(".tombstone", { hasText: "message deleted by alice" }).waitFor(patience);
    await answer(page).locator(".quote.deleted", { hasText: "deleted message" }).waitFor(patience);
  }
  await thumbs(alice, ".me").filter({ hasText: /^1$/ }).waitFor(patience);
  await thumbs(bob, ":not(.me)").filter({ hasText: /^1$/ }).waitFor(patience);
  await shot(bob, "08j-bob-reloads-the-lounge");

  // the lounge's newest rows are events, which a reloaded page does not list: its `through` says
  // it is current up to them, so bob's 👍 given again and taken back counts once on both pages,
  // and neither page takes the next seq for a gap to fetch
  const gapFetches = [];
  const watchGaps = (request) => {
    if (/\/messages\?after=/.test(request.url())) gapFetches.push(request.url());
  };
  for (const page of [alice, bob]) page.on("request", watchGaps);
  await line(bob, hello).locator('.reaction[data-key="👍"]').click();
  for (const page of [alice, bob]) await thumbs(page, ".me").filter({ hasText: /^2$/ }).waitFor(patience);
  await line(bob, hello).locator('.reaction[data-key="👍"]').click();
  await thumbs(bob, ":not(.me)").filter({ hasText: /^1$/ }).waitFor(patience);
  await thumbs(alice, ".me").filter({ hasText: /^1$/ }).waitFor(patience);
  for (const page of [alice, bob]) page.off("request", watchGaps);
  if (gapFetches.length > 0) throw new Error(`reloaded pages fetched gaps: ${gapFetches.join(", ")}`);

  // a picture: alice picks it with the attach button, sees it upload, sends it with a caption;
  // bob sees its thumbnail and opens the full-size picture in the lightbox
  const chooser = alice.waitForEvent("filechooser", patience);
  await alice.locator("#attach").click();
  await (await chooser).setFiles({ name: "sunset.png", mimeType: "image/png", buffer: await drawPng(alice, 480, 320) });
  await alice.locator("#pending li", { hasText: "sunset.png" }).locator(".size").waitFor(patience);
  await shot(alice, "09-alice-attaches-a-picture");
  await send(alice, "look at this");
  await alice.locator("#pending li").waitFor({ state: "detached", ...patience });
  const thumb = bob.locator("#message-list li", { hasText: "look at this" }).locator(".thumb img");
  await rendered(bob, thumb, 320);
  await shot(bob, "10-bob-sees-the-picture");
  await thumb.click();
  await rendered(bob, bob.locator("#viewer[open] img"), 480);
  await shot(bob, "11-bob-opens-the-picture");
  await bob.keyboard.press("Escape");
  await bob.locator("#viewer").waitFor({ state: "hidden", ...patience });

  // a PDF dropped on bob's messages goes without a caption; alice downloads it by its link
  const pdf = "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n";
  const dropped = await bob.evaluateHandle((text) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([text], "minutes.pdf", { type: "application/pdf" }));
    return transfer;
  }, pdf);
  await bob.dispatchEvent("#messages", "drop", { dataTransfer: dropped });
  await bob.locator("#pending li", { hasText: "minutes.pdf" }).locator(".size").waitFor(patience);
  await bob.locator("#message-input").press("Enter");
  const file = alice.locator("#message-list li", { has: alice.locator(".from", { hasText: "bob" }) }).locator(".file");
  const link = file.getByRole("link", { name: "minutes.pdf" });
  await link.waitFor(patience);
  await file.locator(".size", { hasText: `${pdf.length} bytes` }).waitFor(patience);
  const saving = alice.waitForEvent("download", patience);
  await link.click();
  const saved = await saving;
  if (saved.suggestedFilename() !== "minutes.pdf") throw new Error(`downloaded as ${saved.suggestedFilename()}`);
  if (readFileSync(await saved.path(), "utf8") !== pdf) throw new Error("the download is not the PDF sent");

  // a file attached by mistake is removed before sending (and its upload deleted)
  await alice.locator("#file-input").setInputFiles({ name: "draft.txt", mimeType: "text/plain", buffer: Buffer.from("not yet\n") });
  const draft = alice.locator("#pending li", { hasText: "draft.txt" });
  await draft.locator(".size").waitFor(patience);
  const deleted = alice.waitForResponse((response) => response.request().method() === "DELETE", patience);
  await alice.getByRole("button", { name: "Remove draft.txt" }).click();
  await draft.waitFor({ state: "detached", ...patience });
  if ((await deleted).status() !== 204) throw new Error("the removed upload was not deleted");

  // refused uploads say why: a web page posing as a picture (415), a file over 25 MiB (413)
  await alice.locator("#file-input").setInputFiles([
    { name: "cat.png", mimeType: "image/png", buffer: Buffer.from("<!doctype html><script>alert(1)</script>") },
    { name: "huge.png", mimeType: "image/png", buffer: Buffer.alloc(26 * 1024 * 1024 + 1) },
  ]);
  const refusals = alice.locator("#composer-error");
  await refusals.filter({ hasText: "cat.png: this type of file cannot be sent" }).waitFor(patience);
  await refusals.filter({ hasText: "huge.png: too large to send (an upload is at most 25 MB)" }).waitFor(patience);
  await alice.locator("#pending li").waitFor({ state: "detached", ...patience });
  await shot(alice, "12-alice-got-a-pdf-and-refusals");

  // scroll-back: a bot of alice's posts 120 readings with data; after a reload the page holds
  // the newest 50 and pages back to the first, by button and by scrolling to the top
  await roomForm(alice, "meters", "create");
  await alice.getByRole("heading", { name: "# meters" }).waitFor(patience);
  const bot = await alice.evaluate(async () => {
    const { access } = JSON.parse(localStorage.getItem("roost.session"));
    const response = await fetch("/v1/bots", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${access}` },
      body: JSON.stringify({ name: "meter", rooms: ["meters"] }),
    });
    return response.json();
  });
  const { ws_port } = await (await fetch(`${base}/v1/client-config`)).json();
  const meter = await mqtt.connectAsync(`ws://${new URL(base).hostname}:${ws_port}/mqtt`, {
    protocolVersion: 5,
    clientId: "meter-1",
    username: "meter",
    password: bot.token,
    reconnectPeriod: 0,
  });
  const readings = Array.from({ length: 120 }, (_, i) => `reading ${i + 1}`);
  for (const [i, body] of readings.entries()) {
    await meter.publishAsync("rooms/meters/messages", JSON.stringify({ body, data: { n: i + 1 } }), { qos: 1 });
  }
  await meter.endAsync();
  await alice.reload();
  await alice.getByRole("heading", { name: "# meters" }).waitFor(patience);
  await seeHistory(alice, readings.slice(70));
  await alice.locator('#message-list li[data-seq="120"] .data', { hasText: '{"n":120}' }).waitFor(patience);
  await alice.locator("#messages").evaluate((list) => {
    list.scrollTop = 0;
  });
  await seeHistory(alice, readings.slice(20));
  // the button sits at the top: reaching it by keyboard scrolls there too, so this page comes
  // from the focus's scroll or from the key, whichever is first (one load at a time)
  await alice.locator("#older").focus();
  await alice.keyboard.press("Enter");
  await seeHistory(alice, readings);
  await alice.locator("#older").waitFor({ state: "hidden", ...patience });
  await shot(alice, "13-scrolled-back-to-the-first-reading");

  // search: bob thanks alice in their DM, and "welcome" is then in two of his rooms (the
  // lounge's greeting by its edited text); the typing asks the server once it pauses, not per
  // key. Newest first, each with its room, sender and the word marked; a click opens the lounge
  // at the greeting, marked. A word nobody said finds nothing; a query without a word says why
  await bob.locator("#rooms li button", { hasText: "@ alice" }).click();
  await bob.getByRole("heading", { name: "@ alice" }).waitFor(patience);
  await send(bob, "thanks for the Welcome!");
  await seeMessage(bob, "bob", "thanks for the Welcome!");
  let searches = 0;
  bob.on("request", (request) => {
    if (new URL(request.url()).pathname === "/v1/search") searches += 1;
  });
  await bob.locator('#search-form input[name="q"]').pressSequentially("welcome", { delay: 40 });
  await bob.locator("#search-status", { hasText: "3 messages found" }).waitFor(patience);
  if (searches >= "welcome".length) throw new Error(`${searches} searches for 7 keys`);
  await results(bob, [
    { where: "@ alice", from: "bob", body: "thanks for the Welcome!", marks: ["Welcome"] },
    { where: "# lounge", from: "alice", body: "@bob welcome back", marks: ["welcome"] },
    { where: "# lounge", from: "alice", body: "hello bob, welcome to the lounge", marks: ["welcome"] },
  ]);
  await count(bob.locator("#search-results li.more"), 0);
  await shot(bob, "13a-bob-searches-for-welcome");
  await bob.locator(`#search-results li[data-room="lounge"][data-seq="${hello}"] button`).click();
  await bob.getByRole("heading", { name: "# lounge" }).waitFor(patience);
  await shown(bob, bob.locator(`#message-list li.found[data-seq="${hello}"]`));
  await count(bob.locator("#message-list li.found"), 1);
  await shot(bob, "13b-bob-opens-the-greeting-he-found");
  await bob.locator('#search-form input[name="q"]').fill("pineapple");
  await bob.locator('#search-form input[name="q"]').press("Enter");
  await bob.locator("#search-status:not(.error)", { hasText: /^No messages found$/ }).waitFor(patience);
  await count(bob.locator("#search-results li"), 0);
  await shot(bob, "13c-bob-finds-no-pineapple");
  await bob.locator('#search-form input[name="q"]').fill("🎉 !!");
  await bob.locator('#search-form input[name="q"]').press("Enter");
  await bob.locator("#search-status.error", { hasText: "q is 1 to 8 words" }).waitFor(patience);
  await count(bob.locator("#search-results li"), 0);
  await shot(bob, "13d-bob-searches-without-a-word");

  // alice's meters, reloaded, hold the newest 50 readings: "reading" finds 20 at a time (More
  // for the next 20); "reading 7" finds one, and a click loads the earlier history it is in
  await alice.reload();
  await alice.getByRole("heading", { name: "# meters" }).waitFor(patience);
  await alice.locator("body[data-connection=online]").waitFor(patience);
  await seeHistory(alice, readings.slice(70));
  const q = alice.locator('#search-form input[name="q"]');
  await q.fill("reading");
  await alice.locator("#search-status", { hasText: "20+ messages found" }).waitFor(patience);
  const bodies = alice.locator("#search-results li[data-seq] .body");
  if ((await bodies.first().textContent()) !== "reading 120") throw new Error("reading 120 is not found first");
  await alice.locator("#search-results li.more button").click();
  await alice.locator("#search-status", { hasText: "40+ messages found" }).waitFor(patience);
  await count(bodies, 40);
  await count(alice.locator("#search-results li.more"), 1);
  if ((await bodies.last().textContent()) !== "reading 81") throw new Error("the second page does not end at reading 81");
  await q.fill("reading 7");
  await q.press("Enter");
  await alice.locator("#search-status", { hasText: /^1 message found$/ }).waitFor(patience);
  await results(alice, [{ where: "# meters", from: "meter", body: "reading 7", marks: ["reading", "7"] }]);
  await alice.locator('#search-results li[data-seq="7"] button').click();
  await shown(alice, alice.locator('#message-list li.found[data-seq="7"]', { hasText: "reading 7" }));
  await seeHistory(alice, readings);
  await alice.locator("#older").waitFor({ state: "hidden", ...patience });
  await shot(alice, "13e-alice-opens-reading-7-from-earlier-history");

  await notifications();

  await alice.setViewportSize({ width: 390, height: 760 });
  await shot(alice, "14-phone-width");
  console.log("browser scenario passed");
}

/** Carol turns notifications on: the page registers its service worker, subscribes with the
 * server's VAPID key and registers the subscription. Headless Chromium reaches no push
 * service, so PushManager.subscribe is stubbed with a subscription as a browser gives one;
 * then the browser itself delivers a push to the service worker (DevTools' push button, a
 * trusted push event) and the notification it shows is read back. */
async function notifications() {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  await context.grantPermissions(["notifications"], { origin: base });
  await context.addInitScript(() => {
    const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
    PushManager.prototype.getSubscription = async () => null;
    PushManager.prototype.subscribe = async (options) => {
      const json = {
        endpoint: "https://8.8.8.8/push/carol-laptop",
        expirationTime: null,
        keys: { p256dh: b64url([4, ...Array.from({ length: 64 }, (_, i) => i + 1)]), auth: b64url(new Array(16).fill(7)) },
      };
      localStorage.setItem("test.applicationServerKey", b64url(new Uint8Array(options.applicationServerKey)));
      return { endpoint: json.endpoint, toJSON: () => json };
    };
  });
  const carol = await context.newPage();
  await carol.goto(base);
  await signUp(carol, "carol");
  await carol.getByRole("button", { name: "Enable notifications" }).click();
  await carol.getByRole("button", { name: "Notifications on" }).waitFor(patience);
  const { push } = await (await fetch(`${base}/v1/client-config`)).json();
  const registered = await carol.evaluate(async () => {
    const { access } = JSON.parse(localStorage.getItem("roost.session"));
    const listed = await fetch("/v1/push/devices", { headers: { authorization: `Bearer ${access}` } });
    return { devices: (await listed.json()).devices, key: localStorage.getItem("test.applicationServerKey") };
  });
  if (registered.key !== push.webpush_vapid_key) throw new Error(`subscribed with ${registered.key}`);
  const [device] = registered.devices;
  if (registered.devices.length !== 1 || device.kind !== "webpush" || device.endpoint !== "https://8.8.8.8/push/carol-laptop") {
    throw new Error(`registered ${JSON.stringify(registered.devices)}`);
  }

  const devtools = await context.newCDPSession(carol);
  const registration = new Promise((resolve) =>
    devtools.on("ServiceWorker.workerRegistrationUpdated", ({ registrations }) => {
      const found = registrations.find((r) => r.scopeURL === `${base}/` && !r.isDeleted);
      if (found) resolve(found.registrationId);
    }),
  );
  await devtools.send("ServiceWorker.enable");
  const notice = { type: "message", room: "lounge", seq: 7, from: "alice", ts: Date.now(), unread: 3, preview: "see you at 5" };
  await devtools.send("ServiceWorker.deliverPushMessage", {
    origin: base,
    registrationId: await registration,
    data: JSON.stringify(notice),
  });
  const deadline = Date.now() + patience.timeout;
  let shown = [];
  while (shown.length === 0 && Date.now() < deadline) {
    shown = await carol.evaluate(async () => {
      const worker = await navigator.serviceWorker.ready;
      return (await worker.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
    });
  }
  const expected = [{ title: "alice in lounge (3 unread)", body: "see you at 5", tag: "room:lounge" }];
  if (JSON.stringify(shown) !== JSON.stringify(expected)) throw new Error(`notifications: ${JSON.stringify(shown)}`);
  await shot(carol, "15-notifications-on");
  await context.close();
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

/** The open room's message whose body is `text`, exactly. */
function byBody(page, text) {
  const escaped = text.replace(/[.*+?^$()|[\]{}\\]/g, "\\$&");
  const exactly = new RegExp(`^${escaped}$`);
  return page.locator("#message-list li", { has: page.locator(".body", { hasText: exactly }) });
}

/** Checks that `locator` finds `expected` elements now (call it once the page has settled). */
async function count(locator, expected) {
  const found = await locator.count();
  if (found !== expected) throw new Error(`${locator} found ${found}, expected ${expected}`);
}

/** Waits until the search results are `expected` ({ where, from, body, marks }), in order. */
async function results(page, expected) {
  const deadline = Date.now() + patience.timeout;
  for (;;) {
    const listed = await page.locator("#search-results li[data-seq]").evaluateAll((items) =>
      items.map((item) => ({
        where: item.querySelector(".where").textContent,
        from: item.querySelector(".from").textContent,
        body: item.querySelector(".body").textContent,
        marks: [...item.querySelectorAll(".body mark")].map((mark) => mark.textContent),
      })),
    );
    if (JSON.stringify(listed) === JSON.stringify(expected)) return;
    if (Date.now() > deadline) throw new Error(`found ${JSON.stringify(listed)}, expected ${JSON.stringify(expected)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Waits for the message `locator` finds, then checks it is scrolled into the list's view. */
async function shown(page, locator) {
  await locator.waitFor(patience);
  const inView = await locator.evaluate((item) => {
    const list = document.getElementById("messages").getBoundingClientRect();
    const box = item.getBoundingClientRect();
    return box.top >= list.top && box.bottom <= list.bottom;
  });
  if (!inView) throw new Error(`${locator} is not in view`);
}

/** Waits until the open room shows exactly `bodies`, in order. */
async function seeHistory(page, bodies) {
  const deadline = Date.now() + patience.timeout;
  for (;;) {
    const shown = await page.locator("#message-list li .body").allTextContents();
    if (JSON.stringify(shown) === JSON.stringify(bodies)) return;
    if (Date.now() > deadline) throw new Error(`shown ${JSON.stringify(shown)}, expected ${JSON.stringify(bodies)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A PNG picture drawn on a canvas in `page`: a sunset over the sea. */
async function drawPng(page, width, height) {
  const base64 = await page.evaluate(
    ([width, height]) => {
      const canvas = Object.assign(document.createElement("canvas"), { width, height });
      const paint = canvas.getContext("2d");
      const sky = paint.createLinearGradient(0, 0, 0, height);
      sky.addColorStop(0, "#1f3b73");
      sky.addColorStop(1, "#f59e0b");
      paint.fillStyle = sky;
      paint.fillRect(0, 0, width, height);
      paint.fillStyle = "#fde047";
      paint.beginPath();
      paint.arc(width / 2, height * 0.7, height / 6, 0, 2 * Math.PI);
      paint.fill();
      paint.fillStyle = "#0e4f7a";
      paint.fillRect(0, height * 0.7, width, height * 0.3);
      return canvas.toDataURL("image/png").split(",")[1];
    },
    [width, height],
  );
  return Buffer.from(base64, "base64");
}

/** Waits until the image `locator` finds has loaded, `width` pixels wide. */
async function rendered(page, locator, width) {
  await locator.waitFor(patience);
  const image = await locator.elementHandle();
  await page.waitForFunction(([image, width]) => image.complete && image.naturalWidth === width, [image, width], patience);
}

/** A context's MQTT WebSockets, relayed to the broker until the test cuts them. */
function relay() {
  const live = new Set();
  let blocked = false;
  return {
    route(socket) {
      if (blocked) return socket.close();
      live.add({ socket, server: socket.connectToServer() });
    },
    async cut() {
      blocked = true;
      for (const { socket, server } of live) {
        await server.close().catch(() => {});
        await socket.close().catch(() => {});
      }
      live.clear();
    },
    restore() {
      blocked = false;
    },
  };
}

async function shot(page, name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}
