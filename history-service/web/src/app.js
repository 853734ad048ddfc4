// Roost's browser chat page: accounts and rooms over the HTTP API, everything live over MQTT 5
// on WebSocket (MQTT.js). The wire contract it follows is PROTOCOL.md at the repository's root.
import mqtt from "./mqtt.esm.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "roost.session";
const ROOM_KEY = "roost.room";
/** This browser's name among the user's devices registered for pushes. */
const DEVICE_KEY = "roost.device";
const PAGE = 50;
/** Envelopes an `after=` page of history asks for (gap recovery). */
const AFTER_PAGE = 500;
const TYPING_RENEW_MS = 3000;
const TYPING_IDLE_MS = 4000;
const TYPING_SHOWN_MS = 6000;
/** Attachments one message may carry (the server refuses more). */
const MAX_ATTACHMENTS = 10;
/** CSS pixels of the box a picture's thumbnail fits in. */
const THUMB_BOX = 320;
/** The reactions the picker offers (chips show any key others gave). */
const REACTION_KEYS = ["👍", "❤️", "😂", "🎉"];

const state = {
  session: JSON.parse(localStorage.getItem(SESSION_KEY) || "null"),
  rooms: new Map(),
  presence: new Map(),
  current: null,
  client: null,
  connectedOnce: false,
  refreshTimer: null,
  thumbnails: new Map(),
};

// ---- HTTP -------------------------------------------------------------------------------

class ApiError extends Error {}

/** `fetch` with the access token, refreshed once if the server says it expired. */
async function authorized(path, init = {}, retried = false) {
  const headers = { ...init.headers };
  if (state.session) headers.authorization = `Bearer ${state.session.access}`;
  const response = await fetch(path, { ...init, headers });
  if (response.status === 401 && state.session && !retried) {
    await refreshTokens();
    return authorized(path, init, true);
  }
  return response;
}

async function api(method, path, body) {
  const init = { method, headers: { "content-type": "application/json" }, body: body && JSON.stringify(body) };
  const response = await authorized(path, init);
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) throw new ApiError(json?.error?.message || `${method} ${path}: ${response.status}`);
  return json;
}

/** An upload's bytes (or its thumbnail's). Envelopes carry no signed URL, so the page fetches
 * them with its token and shows them through object URLs. */
async function mediaBlob(path) {
  const response = await authorized(path);
  if (!response.ok) throw new ApiError(`${path}: ${response.status}`);
  return response.blob();
}

function keepSession(user, tokens) {
  state.session = {
    user,
    access: tokens.access_token,
    refresh: tokens.refresh_token,
    expiresAt: Date.now() + tokens.expires_in * 1000,
  };
  localStorage.setItem(SESSION_KEY, JSON.stringify(state.session));
  scheduleRefresh();
}

/** Trades the refresh token for new tokens; the live connection uses them from its next CONNECT. */
async function refreshTokens() {
  const response = await fetch("/v1/auth/refresh", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ refresh_token: state.session.refresh }),
  });
  if (!response.ok) {
    signOut();
    throw new ApiError("your session ended: sign in again");
  }
  keepSession(state.session.user, await response.json());
  if (state.client) state.client.options.password = state.session.access;
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  const due = Math.max(5000, state.session.expiresAt - Date.now() - 60000);
  state.refreshTimer = setTimeout(() => refreshTokens().catch(showSidebarError), due);
}

// ---- signing in -----------------------------------------------------------------------------

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const action = event.submitter?.value || "login";
  const credentials = { username: form.username.value.trim(), password: form.password.value };
  $("signin-error").textContent = "";
  try {
    if (action === "register") await api("POST", "/v1/auth/register", credentials);
    keepSession(credentials.username, await api("POST", "/v1/auth/login", credentials));
    await start();
  } catch (error) {
    $("signin-error").textContent = error.message;
  }
});

$("signout").addEventListener("click", signOut);

function signOut() {
  localStorage.removeItem(SESSION_KEY);
  localStorage.removeItem(ROOM_KEY);
  state.client?.end(true);
  location.reload();
}

// ---- rooms ------------------------------------------------------------------------------------

/** Adds a room the user is a member of: its members and unread count. Its live topics arrive
 * on the one `rooms/+/+` subscription, which follows the user's rooms as they change. */
async function addRoom(id) {
  const detail = await api("GET", `/v1/rooms/${id}`);
  const existing = state.rooms.get(id);
  const room = existing || {
    id,
    messages: new Map(),
    loaded: false,
    hasOlder: true,
    through: 0,
    syncing: null,
    queue: [],
    typing: new Map(),
    pending: [],
  };
  Object.assign(room, { direct: detail.direct, owner: detail.owner, members: detail.members });
  await fetchUnread(room);
  state.rooms.set(id, room);
  renderRooms();
  return room;
}

/** The room's unread count from the server (others' messages after the last receipt). */
async function fetchUnread(room) {
  const { unread, capped } = await api("GET", `/v1/rooms/${room.id}/unread`);
  Object.assign(room, { unread, capped });
}

function dropRoom(id, why) {
  state.rooms.delete(id);
  if (state.current === id) {
    state.current = null;
    localStorage.removeItem(ROOM_KEY);
    renderRoom();
  }
  renderRooms();
  if (why) showSidebarError(why);
}

function roomLabel(room) {
  if (!room.direct) return `# ${room.id}`;
  const other = room.members.find((member) => member !== state.session.user) || state.session.user;
  return `@ ${other}`;
}

$("room-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const name = form.room.value.trim();
  try {
    if (event.submitter?.value === "create") await api("POST", "/v1/rooms", { name });
    else await api("POST", `/v1/rooms/${name}/join`);
    await addRoom(name);
    form.reset();
    openRoom(name);
  } catch (error) {
    showSidebarError(error.message);
  }
});

$("dm-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    const room = await api("POST", "/v1/dms", { user: form.user.value.trim() });
    await addRoom(room.id);
    form.reset();
    openRoom(room.id);
  } catch (error) {
    showSidebarError(error.message);
  }
});

// ---- the directory of public rooms -------------------------------------------------------------

// Public rooms whose name starts with what is typed, 50 at a time (More asks for the next 50);
// each joins with one click, or opens when already joined.

let directoryTimer = null;
// answers to an earlier search that arrive after a later one's are dropped
let directoryAsked = 0;

async function loadDirectory(cursor) {
  const q = $("directory-form").q.value.trim().toLowerCase();
  const query = new URLSearchParams({ q, ...(cursor ? { cursor } : {}) });
  const asked = ++directoryAsked;
  const page = await api("GET", `/v1/rooms/public?${query}`);
  if (asked !== directoryAsked) return;
  const list = $("directory");
  list.querySelector("li.more")?.remove();
  const listed = page.rooms.map((room) => {
    const action = state.rooms.has(room.id) ? "Open" : "Join";
    const button = element("button", { type: "button", className: "link", ariaLabel: `${action} ${room.id}` }, action);
    button.addEventListener("click", () => joinListed(room.id).catch((error) => showSidebarError(error.message)));
    const members = `${room.members} member${room.members === 1 ? "" : "s"}`;
    const name = element("span", {}, `# ${room.id}`);
    return element("li", { dataset: { room: room.id } }, name, element("span", { className: "count" }, members), button);
  });
  if (page.next) {
    const more = element("button", { type: "button", className: "link" }, "More");
    more.addEventListener("click", () => loadDirectory(page.next).catch((error) => showSidebarError(error.message)));
    listed.push(element("li", { className: "more" }, more));
  }
  if (cursor) list.append(...listed);
  else list.replaceChildren(...listed);
}

async function joinListed(id) {
  if (!state.rooms.has(id)) {
    await api("POST", `/v1/rooms/${id}/join`);
    await addRoom(id);
  }
  await openRoom(id);
  await loadDirectory();
}

$("directory-form").addEventListener("input", () => {
  clearTimeout(directoryTimer);
  directoryTimer = setTimeout(() => loadDirectory().catch((error) => showSidebarError(error.message)), 200);
});
$("directory-form").addEventListener("submit", (event) => {
  event.preventDefault();
  loadDirectory().catch((error) => showSidebarError(error.message));
});

// ---- searching messages --------------------------------------------------------------------

// What is typed searches every room of the user's, after a pause in the typing or at once on
// Enter: 20 messages at a time, newest first, More asks for the next 20. A click on one opens
// its room at that message, loading earlier history when the room does not hold it yet.

const SEARCH_PAUSE_MS = 250;
/** A message found and opened stays marked this long. */
const FOUND_SHOWN_MS = 6000;
/** Looking for a message older than its room holds, one click loads at most this many pages of
 * HUNT_PAGE messages (the server's largest); a further click loads as many more. */
const HUNT_PAGES = 10;
const HUNT_PAGE = 500;
/** A word as the server's search has it (roost_store::words): a run of letters and digits. */
const WORD = /[\p{Alphabetic}\p{N}]+/gu;
/** The server ignores longer words, in UTF-8 bytes. */
const MAX_WORD_BYTES = 64;

let searchTimer = null;
// answers to an earlier search that arrive after a later one's are dropped
let searchAsked = 0;
/** What the last search found, in words: shown again once a message found opens. */
let searchSummary = "";

/** The distinct words of `text`, lower-cased, as the server matches them. */
function searchWords(text) {
  const bytes = new TextEncoder();
  const words = (text.match(WORD) || []).filter((word) => bytes.encode(word).length <= MAX_WORD_BYTES);
  return new Set(words.map((word) => word.toLowerCase()));
}

function searchStatus(text, error = false) {
  const status = $("search-status");
  status.textContent = text;
  status.classList.toggle("error", error);
}

/** The first page of what `q` finds, or (with `before`, a page's `next`) the page after. */
async function search(q, before) {
  const asked = ++searchAsked;
  const list = $("search-results");
  if (!q) {
    list.replaceChildren();
    searchSummary = "";
    searchStatus("");
    return;
  }
  const query = new URLSearchParams({ q, ...(before ? { before } : {}) });
  let page;
  try {
    page = await api("GET", `/v1/search?${query}`);
  } catch (error) {
    // a query without a word, or with too many, says so (400)
    if (asked !== searchAsked) return;
    if (!before) list.replaceChildren();
    searchStatus(error.message, true);
    return;
  }
  if (asked !== searchAsked) return;
  const words = searchWords(q);
  list.querySelector("li.more")?.remove();
  const found = page.messages.map((message) => renderFound(message, words));
  if (page.next) {
    const more = element("button", { type: "button", className: "link" }, "More");
    more.addEventListener("click", () => search(q, page.next));
    found.push(element("li", { className: "more" }, more));
  }
  if (before) list.append(...found);
  else list.replaceChildren(...found);
  const shown = list.querySelectorAll("li[data-seq]").length;
  const counted = `${shown}${page.next ? "+" : ""} message${shown === 1 && !page.next ? "" : "s"} found`;
  searchSummary = shown === 0 ? "No messages found" : counted;
  searchStatus(searchSummary);
}

function searchNow() {
  clearTimeout(searchTimer);
  search($("search-form").q.value.trim());
}

$("search-form").addEventListener("input", () => {
  clearTimeout(searchTimer);
  // an emptied box clears the results at once; words wait for a pause in the typing
  if (!$("search-form").q.value.trim()) return searchNow();
  searchTimer = setTimeout(searchNow, SEARCH_PAUSE_MS);
});
$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  searchNow();
});

/** A message found: its room, sender, time and text (around the first word found when long),
 * the words asked for marked. */
function renderFound(message, words) {
  const room = state.rooms.get(message.room);
  const button = element(
    "button",
    { type: "button" },
    element("span", { className: "where" }, room ? roomLabel(room) : `# ${message.room}`),
    element("span", { className: "from" }, message.from),
    element("time", { dateTime: new Date(message.ts).toISOString() }, when(message.ts)),
    element("span", { className: "body" }, ...marked(excerpt(message.body, words), words)),
  );
  button.addEventListener("click", () => openFound(message).catch((error) => searchStatus(error.message, true)));
  return element("li", { dataset: { room: message.room, seq: message.seq } }, button);
}

/** Text nodes and <mark>s: `text` with each of `words` marked (text, never HTML). */
function marked(text, words) {
  const parts = [];
  let done = 0;
  for (const match of text.matchAll(WORD)) {
    if (!words.has(match[0].toLowerCase())) continue;
    parts.push(text.slice(done, match.index), element("mark", {}, match[0]));
    done = match.index + match[0].length;
  }
  parts.push(text.slice(done));
  return parts;
}

/** A long body cut to about 200 characters around the first word found, at spaces. */
function excerpt(body, words) {
  if (body.length <= 200) return body;
  const first = [...body.matchAll(WORD)].find((match) => words.has(match[0].toLowerCase()))?.index ?? 0;
  const start = first <= 60 ? 0 : body.lastIndexOf(" ", first - 60) + 1;
  const cut = body.indexOf(" ", start + 200);
  const end = cut === -1 ? body.length : cut;
  return `${start > 0 ? "…" : ""}${body.slice(start, end)}${end < body.length ? "…" : ""}`;
}

/** The time, and the date unless it is today's. */
function when(ts) {
  const date = new Date(ts);
  if (date.toDateString() === new Date().toDateString()) return clock(ts);
  return date.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
}

/** Opens a found message's room scrolled to it, marked for a few seconds. A message older than
 * the room holds is looked for in earlier history, HUNT_PAGES pages a click. */
async function openFound(found) {
  if (!state.rooms.has(found.room)) await addRoom(found.room);
  await openRoom(found.room);
  const room = state.rooms.get(found.room);
  if (!room || state.current !== room.id) return;
  if (!(await loadBackTo(room, found.seq))) {
    if (state.current !== room.id) return;
    renderMessages(room);
    const further = room.hasOlder ? "further back: click it again to load more" : "no longer in its history";
    searchStatus(`That message of ${roomLabel(room)} is ${further}`);
    return;
  }
  if (state.current !== room.id) return;
  searchStatus(searchSummary);
  room.found = found.seq;
  renderMessages(room);
  $("message-list").querySelector(`li[data-seq="${found.seq}"]`)?.scrollIntoView({ block: "center" });
  clearTimeout(room.foundTimer);
  room.foundTimer = setTimeout(() => {
    room.found = null;
    if (room.id === state.current) $("message-list").querySelector("li.found")?.classList.remove("found");
  }, FOUND_SHOWN_MS);
}

/** Loads the room's earlier history until it holds `seq`, at most HUNT_PAGES pages; whether it
 * does. Scrolling back waits meanwhile (loadOlder: one load at a time). */
async function loadBackTo(room, seq) {
  room.loadingOlder = true;
  try {
    for (let pages = 0; !room.messages.has(seq) && room.hasOlder && pages < HUNT_PAGES; pages += 1) {
      // held history runs without gaps from its oldest message: one older than that is the
      // only kind a further page can bring
      const oldest = Math.min(...room.messages.keys());
      if (room.messages.size === 0 || oldest < seq) break;
      const page = await api("GET", `/v1/rooms/${room.id}/messages?before=${oldest}&limit=${HUNT_PAGE}`);
      holdOlder(room, page);
      room.hasOlder = page.messages.length === HUNT_PAGE;
    }
  } finally {
    room.loadingOlder = false;
  }
  return room.messages.has(seq);
}

$("leave").addEventListener("click", async () => {
  const id = state.current;
  try {
    await api("POST", `/v1/rooms/${id}/leave`);
    dropRoom(id);
  } catch (error) {
    showSidebarError(error.message);
  }
});

$("back").addEventListener("click", () => {
  state.current = null;
  localStorage.removeItem(ROOM_KEY);
  renderRoom();
  renderRooms();
});

// ---- messages ---------------------------------------------------------------------------------

async function openRoom(id) {
  const room = state.rooms.get(id);
  if (!room) return;
  state.current = id;
  localStorage.setItem(ROOM_KEY, id);
  if (!room.loaded) await (room.syncing || sync(room));
  const members = await api("GET", `/v1/rooms/${id}/presence`);
  members.members.forEach(({ user, ...presence }) => state.presence.set(user, presence));
  markRead(room);
  renderRooms();
  renderRoom();
  $("message-input").focus();
}

/** One page of older messages, keeping the ones in view where they are; one load at a time. */
async function loadOlder() {
  const room = state.rooms.get(state.current);
  if (!room || !room.hasOlder || room.loadingOlder) return;
  room.loadingOlder = true;
  try {
    const oldest = Math.min(...room.messages.keys());
    const page = await api("GET", `/v1/rooms/${room.id}/messages?before=${oldest}&limit=${PAGE}`);
    holdOlder(room, page);
    room.hasOlder = page.messages.length === PAGE;
    const list = $("messages");
    const fromBottom = list.scrollHeight - list.scrollTop;
    renderMessages(room);
    list.scrollTop = list.scrollHeight - fromBottom;
  } finally {
    room.loadingOlder = false;
  }
}

/** Whether the message list showed its newest messages when last scrolled. */
let showsNewest = true;

$("older").addEventListener("click", () => loadOlder().catch(showSidebarError));
$("messages").addEventListener("scroll", (event) => {
  const list = event.target;
  showsNewest = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  if (list.scrollTop === 0) loadOlder().catch(showSidebarError);
});
// the list shrinks as the composer grows (files to send, upload errors): one that showed the
// newest messages goes on showing them
new ResizeObserver(() => {
  if (showsNewest) $("messages").scrollTop = $("messages").scrollHeight;
}).observe($("messages"));

// A loaded room is current up to `room.through`: every message and event of the room up to that
// seq is shown (messages as their events left them). History's latest page says how far it is
// current (its `through`: its newest rows may be events, which only `after=` pages list), and
// each envelope taken since, in seq order, moves it on. A live envelope at or below it is one the
// page shows already; one more than a seq above it means a gap, fetched with `after=`. Live
// envelopes wait in `room.queue` while the room's history loads. Each message held remembers
// `asOf`, the seq it is current to: an event above that changes it, one at or below is in it.

/** Brings the room up to date: its latest page when it has none yet, else what came after
 * `room.through`; then the live envelopes that waited meanwhile. One run at a time: asked again
 * meanwhile (a reconnect), it fetches once more before it ends. */
function sync(room) {
  if (room.syncing) {
    room.resync = true;
    return room.syncing;
  }
  room.syncing = (async () => {
    try {
      do {
        room.resync = false;
        if (room.loaded) await loadAfter(room);
        else await loadLatest(room);
      } while (room.resync);
    } finally {
      room.syncing = null;
      room.resync = false;
      // history is as current as it gets: a seq still missing before these is one the store
      // does not have (a node died numbering it), not one to fetch again
      room.queue
        .splice(0)
        .sort((a, b) => a.seq - b.seq)
        .forEach((envelope) => take(room, envelope));
    }
  })();
  return room.syncing;
}

/** The room's latest page: its messages, current as of its `through`. It replaces what the room
 * held unloaded (live messages kept only to count them unread). */
async function loadLatest(room) {
  const page = await api("GET", `/v1/rooms/${room.id}/messages?limit=${PAGE}`);
  // a message written between the server's reading `through` and the page is listed too, as
  // current as the page (what lies below it is in the page already)
  const asOf = Math.max(page.through ?? 0, ...page.messages.map((message) => message.seq));
  room.messages = new Map(page.messages.map((message) => [message.seq, Object.assign(message, { asOf })]));
  room.through = asOf;
  room.hasOlder = page.messages.length === PAGE;
  room.loaded = true;
}

/** Whatever the room got after `room.through` (missed while the connection was down, or a gap
 * in live seqs), oldest first: messages and events, a message current as of its page. */
async function loadAfter(room) {
  for (;;) {
    const page = await api("GET", `/v1/rooms/${room.id}/messages?after=${room.through}&limit=${AFTER_PAGE}`);
    const asOf = Math.max(page.through ?? 0, ...page.messages.map((message) => message.seq));
    page.messages.forEach((envelope) => take(room, envelope, asOf));
    if (page.messages.length < AFTER_PAGE) break;
  }
}

/** A `before=` page: older messages, no events, shown as their events left them when it was
 * read, so only events above the seq the room is current to change them. */
function holdOlder(room, page) {
  page.messages.forEach((message) => room.messages.set(message.seq, Object.assign(message, { asOf: room.through })));
}

/** After a reconnect: whatever the rooms got while the connection was down, by `seq`. */
async function recoverGaps() {
  for (const room of state.rooms.values()) {
    if (room.loaded || room.syncing) await sync(room);
    else await fetchUnread(room);
  }
  renderRooms();
}

/** An envelope of the room's messages topic, live: a message or an event (an edit, delete or
 * reaction). */
function receiveLive(room, envelope) {
  if (room.syncing) {
    room.queue.push(envelope);
  } else if (room.loaded && envelope.seq > room.through + 1) {
    room.queue.push(envelope);
    sync(room).catch(showSidebarError);
  } else {
    take(room, envelope);
  }
}

/** Takes in a message or an event, live or from an `after=` page (whose messages are current as
 * of `asOf`), in seq order. A room not loaded yet only counts its messages unread. */
function take(room, envelope, asOf = envelope.seq) {
  if (!room.loaded) {
    if (!envelope.type) receiveMessage(room, envelope, asOf);
    return;
  }
  if (envelope.seq <= room.through) return;
  room.through = envelope.seq;
  if (envelope.type) receiveChange(room, envelope);
  else receiveMessage(room, envelope, asOf);
}

/** A message: a line of the room, unread unless the room is in view. */
function receiveMessage(room, message, asOf) {
  if (room.messages.has(message.seq)) return;
  room.messages.set(message.seq, Object.assign(message, { asOf }));
  if (room.id === state.current && document.visibilityState === "visible") {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    renderMessages(room);
    if (atBottom || message.from === state.session.user) list.scrollTop = list.scrollHeight;
    markRead(room);
  } else if (message.from !== state.session.user && !message.deleted) {
    room.unread += 1;
  }
  room.typing.delete(message.from);
  renderTyping();
  renderRooms();
}

function markRead(room) {
  room.unread = 0;
  room.capped = false;
  const newest = room.loaded ? room.through : Math.max(0, ...room.messages.keys());
  if (newest > (room.readSent || 0)) {
    room.readSent = newest;
    publish(`rooms/${room.id}/receipts`, { read_seq: newest }, 1);
  }
}

document.addEventListener("visibilitychange", () => {
  const room = state.rooms.get(state.current);
  if (room && document.visibilityState === "visible") {
    renderMessages(room);
    markRead(room);
    renderRooms();
  }
});

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const room = state.rooms.get(state.current);
  const input = $("message-input");
  const body = input.value.trim();
  // Send is disabled while files upload, so every pending file here has its upload
  if (!room || (!body && room.pending.length === 0) || uploading(room)) return;
  // the id makes a resend after a reconnect idempotent: the server stores the message once
  const message = { id: crypto.randomUUID(), body };
  if (room.pending.length > 0) message.attachments = room.pending.map((pending) => ({ media: pending.upload.id }));
  if (room.replyTo) message.reply_to = room.replyTo.seq;
  publish(`rooms/${room.id}/messages`, message, 1);
  input.value = "";
  room.pending = [];
  room.replyTo = null;
  $("composer-error").textContent = "";
  renderPending();
  renderReplying();
  stopTyping();
});

// ---- replies ----------------------------------------------------------------------------------

// A message's Reply button quotes it above the input; the next message sent answers it.

function replyTo(room, message) {
  room.replyTo = { seq: message.seq, from: message.from, body: message.body };
  renderReplying();
  $("message-input").focus();
}

$("cancel-reply").addEventListener("click", () => {
  const room = state.rooms.get(state.current);
  if (room) room.replyTo = null;
  renderReplying();
});

/** The quote a reply shows: the answered message if it is loaded (as edits and deletes left it
 * since), else history's `quote`. */
function quoteOf(room, message) {
  if (message.reply_to == null) return null;
  const missing = { seq: message.reply_to, from: "", body: "", missing: true };
  return room.messages.get(message.reply_to) || message.quote || missing;
}

// ---- edits, deletes and reactions -------------------------------------------------------------

// Each is an event published on the room's messages topic, naming its target by `seq`. The
// server numbers it like a message and every member, this page too, gets it back and folds it
// into its target; until then the page changes nothing, so a refused event (the inbox's
// `rejected`) leaves the message as it was.

function publishChange(room, change) {
  publish(`rooms/${room.id}/messages`, { id: crypto.randomUUID(), ...change }, 1);
}

/** A live event, or one of an `after=` page (see take): folded into its target when the page
 * holds it and it is not in it already (the target is current as of a seq below the event's).
 * Nothing else moves: no line, no unread count, no scrolling away. */
function receiveChange(room, event) {
  const target = room.messages.get(event.target);
  if (!target || target.deleted || event.seq <= (target.asOf ?? 0)) return;
  applyChange(room, target, event);
  if (room.id === state.current && document.visibilityState === "visible") {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    renderMessages(room);
    if (atBottom) list.scrollTop = list.scrollHeight;
  }
}

/** PROTOCOL.md section 4's fold: an edit sets the body, a delete leaves a tombstone, a reaction
 * counts one more or one less under its key. */
function applyChange(room, message, event) {
  if (event.type === "edit") {
    Object.assign(message, { body: event.body, edited_at: event.ts });
  } else if (event.type === "delete") {
    for (const erased of ["attachments", "data", "mentions", "reply_to", "quote", "reactions", "edited_at"]) {
      delete message[erased];
    }
    Object.assign(message, { body: "", deleted: true, deleted_by: event.from });
    if (room.editing?.seq === message.seq) room.editing = null;
    if (room.replyTo?.seq === message.seq) {
      room.replyTo = null;
      if (room.id === state.current) renderReplying();
    }
  } else if (event.type === "reaction") {
    const reactions = (message.reactions ||= []);
    let chip = reactions.find((reaction) => reaction.key === event.key);
    if (!chip) {
      if (!event.on) return;
      chip = { key: event.key, count: 0, me: false };
      reactions.push(chip);
    }
    chip.count += event.on ? 1 : -1;
    if (event.from === state.session.user) chip.me = event.on;
    if (chip.count <= 0) message.reactions = reactions.filter((reaction) => reaction !== chip);
  }
}

/** Opens the inline editor on one of the user's messages: Enter saves, Escape cancels. */
function startEdit(room, message) {
  room.editing = { seq: message.seq, draft: message.body };
  room.confirming = null;
  renderMessages(room);
  const input = $("message-list").querySelector(".edit-form input");
  input?.focus();
  input?.setSelectionRange(input.value.length, input.value.length);
}

function endEdit(room) {
  room.editing = null;
  renderMessages(room);
  $("message-input").focus();
}

function saveEdit(room, seq) {
  const message = room.messages.get(seq);
  const body = room.editing.draft.trim();
  // the input refuses a blank edit (an edit needs a body: deleting is the way to empty it)
  if (message && !message.deleted && body && body !== message.body) {
    publishChange(room, { type: "edit", target: seq, body });
  }
  endEdit(room);
}

/** Delete asks once more, in place: a delete cannot be undone. */
function confirmDelete(room, message) {
  room.confirming = message.seq;
  renderMessages(room);
  $("message-list").querySelector(".confirm-delete")?.focus();
}

function deleteMessage(room, seq) {
  room.confirming = null;
  publishChange(room, { type: "delete", target: seq });
  renderMessages(room);
}

function togglePicker(room, message) {
  room.picking = room.picking === message.seq ? null : message.seq;
  renderMessages(room);
}

/** Gives `key`, or takes it back when the user gave it: the server toggles. */
function react(room, seq, key) {
  room.picking = null;
  publishChange(room, { type: "reaction", target: seq, key });
  renderMessages(room);
}

// ---- attachments ------------------------------------------------------------------------------

// Files upload as soon as they are picked or dropped, each to the open room (an upload belongs
// to one room); they wait as chips above the input and go with the room's next message.

$("attach").addEventListener("click", () => $("file-input").click());
$("file-input").addEventListener("change", (event) => {
  attach([...event.target.files]);
  // picking the same file again must fire `change` again
  event.target.value = "";
});

$("room").addEventListener("dragover", (event) => {
  if (!state.current || !event.dataTransfer.types.includes("Files")) return;
  event.preventDefault(); // accepts the drop
  event.dataTransfer.dropEffect = "copy";
  $("room").classList.add("dropping");
});
$("room").addEventListener("dragleave", (event) => {
  if (!$("room").contains(event.relatedTarget)) $("room").classList.remove("dropping");
});
$("room").addEventListener("drop", (event) => {
  $("room").classList.remove("dropping");
  if (!state.current || event.dataTransfer.files.length === 0) return;
  event.preventDefault(); // or the browser opens the file in place of the page
  attach([...event.dataTransfer.files]);
});

function attach(files) {
  const room = state.rooms.get(state.current);
  if (!room) return;
  const refused = [];
  for (const file of files) {
    if (room.pending.length >= MAX_ATTACHMENTS) {
      refused.push(`${file.name}: a message carries at most ${MAX_ATTACHMENTS} files`);
      continue;
    }
    const pending = { file, progress: 0, upload: null, xhr: null };
    room.pending.push(pending);
    uploadPending(room, pending).catch((error) => refusePending(room, pending, error.message));
  }
  $("composer-error").textContent = refused.join("\n");
  renderPending();
}

function uploading(room) {
  return room.pending.some((pending) => !pending.upload);
}

async function uploadPending(room, pending) {
  let xhr = await upload(room, pending);
  if (xhr.status === 401) {
    await refreshTokens();
    xhr = await upload(room, pending);
  }
  if (!room.pending.includes(pending)) return; // removed while it uploaded
  if (xhr.status !== 201) return refusePending(room, pending, uploadError(xhr));
  pending.upload = xhr.response;
  renderPending();
}

/** POSTs the file with XMLHttpRequest, which (unlike fetch) reports the upload's progress.
 * Resolves with the finished request whatever its outcome (status 0: network error or aborted). */
function upload(room, pending) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    pending.xhr = xhr;
    xhr.open("POST", `/v1/rooms/${room.id}/media?filename=${encodeURIComponent(pending.file.name)}`);
    xhr.setRequestHeader("authorization", `Bearer ${state.session.access}`);
    xhr.setRequestHeader("content-type", pending.file.type || "application/octet-stream");
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      pending.progress = event.loaded / event.total;
      renderPending();
    });
    xhr.addEventListener("loadend", () => resolve(xhr));
    xhr.send(pending.file);
  });
}

/** Why the server refused an upload, for its user: sizes in bytes read better in MB. */
function uploadError(xhr) {
  const error = xhr.response?.error;
  if (xhr.status === 0) return "the upload failed: the server could not be reached";
  if (!error) return `upload failed (${xhr.status})`;
  const detail = error.message.replace(/(\d+) bytes/, (_, bytes) => humanSize(Number(bytes)));
  const why = {
    payload_too_large: "too large to send",
    quota_exceeded: "your uploads use up your storage quota",
    unsupported_media_type: "this type of file cannot be sent",
  }[error.code];
  return why ? `${why} (${detail})` : detail;
}

function refusePending(room, pending, why) {
  room.pending = room.pending.filter((other) => other !== pending);
  const error = `${pending.file.name}: ${why}`;
  const errors = $("composer-error");
  // the user may have moved to another room meanwhile
  if (room.id === state.current) errors.textContent = [errors.textContent, error].filter(Boolean).join("\n");
  else showSidebarError(`${roomLabel(room)}: ${error}`);
  renderPending();
}

function removePending(room, pending) {
  room.pending = room.pending.filter((other) => other !== pending);
  pending.xhr?.abort();
  // a finished upload no message shows is the uploader's to delete, and counts against the
  // quota until then (the server sweeps unused uploads after a day anyway)
  if (pending.upload) api("DELETE", `/v1/media/${pending.upload.id}`).catch(() => {});
  renderPending();
}

// ---- pictures and files in messages ---------------------------------------------------------

/** A thumbnail's object URL, fetched once per upload: messages render again and again, and the
 * thumbnails stay for the page's life (they are small). */
function thumbnail(id) {
  if (!state.thumbnails.has(id)) {
    const box = THUMB_BOX * Math.min(2, Math.ceil(devicePixelRatio));
    const blob = mediaBlob(`/v1/media/${id}/thumbnail?width=${box}&height=${box}`);
    state.thumbnails.set(id, blob.then((thumb) => URL.createObjectURL(thumb)));
  }
  return state.thumbnails.get(id);
}

/** The full-size picture in a lightbox; its bytes go when the lightbox closes. */
async function view(attachment) {
  const picture = $("viewer").querySelector("img");
  picture.src = URL.createObjectURL(await mediaBlob(`/v1/media/${attachment.media}`));
  picture.alt = attachment.filename;
  $("viewer").showModal();
}

$("viewer").addEventListener("close", () => {
  const picture = $("viewer").querySelector("img");
  URL.revokeObjectURL(picture.src);
  picture.removeAttribute("src");
});
// a click on the backdrop lands on the dialog itself
$("viewer").addEventListener("click", (event) => {
  if (event.target === $("viewer")) $("viewer").close();
});

/** Saves an upload under its name: fetched with the token, handed over as a blob. */
async function download(attachment) {
  const url = URL.createObjectURL(await mediaBlob(`/v1/media/${attachment.media}`));
  element("a", { href: url, download: attachment.filename }).click();
  // the download reads the blob after this click returns
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

function humanSize(bytes) {
  const units = ["bytes", "KB", "MB", "GB"];
  let unit = 0;
  while (bytes >= 1024 && unit < units.length - 1) {
    bytes /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? bytes : bytes.toFixed(bytes < 10 ? 1 : 0)} ${units[unit]}`;
}

// ---- typing -----------------------------------------------------------------------------------

const typing = { room: null, sentAt: 0, idle: null };

$("message-input").addEventListener("input", () => {
  if (!state.current) return;
  if (typing.room !== state.current || Date.now() - typing.sentAt > TYPING_RENEW_MS) {
    typing.room = state.current;
    typing.sentAt = Date.now();
    publish(`rooms/${state.current}/typing`, { typing: true }, 0);
  }
  clearTimeout(typing.idle);
  typing.idle = setTimeout(stopTyping, TYPING_IDLE_MS);
});

function stopTyping() {
  clearTimeout(typing.idle);
  if (typing.room) publish(`rooms/${typing.room}/typing`, { typing: false }, 0);
  typing.room = null;
}

function receiveTyping(room, { from, typing: isTyping }) {
  if (from === state.session.user) return;
  clearTimeout(room.typing.get(from));
  if (isTyping) {
    room.typing.set(
      from,
      setTimeout(() => {
        room.typing.delete(from);
        renderTyping();
      }, TYPING_SHOWN_MS),
    );
  } else {
    room.typing.delete(from);
  }
  renderTyping();
}

// ---- MQTT -------------------------------------------------------------------------------------

function publish(topic, payload, qos) {
  state.client?.publish(topic, JSON.stringify(payload), { qos });
}

async function connect() {
  const config = await api("GET", "/v1/client-config");
  const secure = location.protocol === "https:" && config.wss_port;
  const url = `${secure ? "wss" : "ws"}://${location.hostname}:${secure ? config.wss_port : config.ws_port}/mqtt`;
  const user = state.session.user;
  const clientId = `web-${crypto.randomUUID().slice(0, 8)}`;
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    clientId,
    username: user,
    password: state.session.access,
    clean: true,
    keepalive: 30,
    reconnectPeriod: 2000,
    will: { topic: `presence/${user}/${clientId}`, payload: '{"status":"offline"}', qos: 1, retain: true },
  });
  state.client = client;
  client.on("connect", () => {
    const topics = [`users/${user}/inbox`, "presence/+", "rooms/+/+"];
    client.subscribe(topics, { qos: 1 });
    setConnection("online");
    if (state.connectedOnce) recoverGaps().catch(showSidebarError);
    state.connectedOnce = true;
  });
  client.on("reconnect", () => setConnection("reconnecting…"));
  client.on("offline", () => setConnection("offline"));
  client.on("disconnect", (packet) => {
    // 0xA0: the token this connection authenticated with expired
    if (packet.reasonCode === 0xa0) refreshTokens().catch(showSidebarError);
  });
  client.on("error", (error) => {
    if (error.code === 0x86 || error.code === 0x87) refreshTokens().catch(showSidebarError);
  });
  client.on("message", (topic, payload) => {
    let message;
    try {
      message = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return;
    }
    route(topic.split("/"), message);
  });
}

function route(levels, message) {
  const [kind, name, leaf] = levels;
  if (kind === "presence" && levels.length === 2) {
    state.presence.set(name, message);
    renderMembers();
    renderRooms();
  } else if (kind === "users" && leaf === "inbox") {
    receiveNotice(message);
  } else if (kind === "rooms") {
    const room = state.rooms.get(name);
    if (!room) return;
    if (leaf === "messages") receiveLive(room, message);
    else if (leaf === "typing") receiveTyping(room, message);
    else if (leaf === "events") receiveEvent(room, message);
  }
}

function receiveNotice(notice) {
  if (notice.type === "added_to_room" || notice.type === "new_dm") {
    addRoom(notice.room).catch(showSidebarError);
  } else if (notice.type === "rejected") {
    showSidebarError(`not sent: ${notice.message}`);
  }
}

function receiveEvent(room, event) {
  const me = state.session.user;
  if (event.type === "deleted") return dropRoom(room.id, `${roomLabel(room)} was deleted`);
  if ((event.type === "removed" || event.type === "left") && event.user === me) {
    return dropRoom(room.id, event.type === "removed" ? `you were removed from ${roomLabel(room)}` : null);
  }
  if (event.type === "joined" && !room.members.includes(event.user)) {
    room.members.push(event.user);
    // presence changes reach only users sharing a room: this one's current status is news here
    api("GET", `/v1/users/${event.user}/presence`)
      .then((presence) => {
        state.presence.set(event.user, presence);
        renderMembers();
      })
      .catch(showSidebarError);
  }
  if (event.type === "left" || event.type === "removed") room.members = room.members.filter((m) => m !== event.user);
  renderMembers();
}

// ---- rendering --------------------------------------------------------------------------------

function element(tag, { dataset = {}, ...props } = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  Object.assign(node.dataset, dataset);
  node.append(...children);
  return node;
}

function setConnection(text) {
  const status = $("connection");
  status.textContent = text;
  status.classList.toggle("online", text === "online");
  document.body.dataset.connection = text;
}

function showSidebarError(error) {
  $("sidebar-error").textContent = error?.message || error || "";
}

function presenceDot(user) {
  const online = state.presence.get(user)?.status === "online";
  return element("span", { className: online ? "dot online" : "dot", title: online ? "online" : "offline" });
}

function lastSeen(user) {
  const presence = state.presence.get(user);
  if (presence?.status === "online") return "online";
  if (!presence?.last_seen) return "offline";
  return `last seen ${new Date(presence.last_seen).toLocaleString([], { dateStyle: "short", timeStyle: "short" })}`;
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren(
    ...[...state.rooms.values()]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((room) => {
        const label = element("span", {}, roomLabel(room));
        if (room.direct) {
          const other = room.members.find((member) => member !== state.session.user);
          if (other) label.prepend(presenceDot(other));
        }
        const count = room.capped ? `${room.unread}+` : `${room.unread}`;
        const button = element("button", { type: "button" }, label);
        if (room.unread > 0) {
          button.append(element("span", { className: "badge", ariaLabel: `${count} unread` }, count));
        }
        button.setAttribute("aria-current", room.id === state.current ? "true" : "false");
        button.addEventListener("click", () => openRoom(room.id).catch(showSidebarError));
        return element("li", { dataset: { room: room.id } }, button);
      }),
  );
  $("chat").classList.toggle("in-room", Boolean(state.current));
}

function renderRoom() {
  const room = state.rooms.get(state.current);
  $("room-title").textContent = room ? roomLabel(room) : "Pick a room";
  $("composer").hidden = !room;
  // an owner deletes a room rather than leaving it (the server answers 409)
  $("leave").hidden = !room || room.direct || room.owner === state.session?.user;
  $("chat").classList.toggle("in-room", Boolean(room));
  $("composer-error").textContent = "";
  renderMembers();
  renderTyping();
  renderPending();
  renderReplying();
  if (room) {
    renderMessages(room);
    $("messages").scrollTop = $("messages").scrollHeight;
  } else {
    $("message-list").replaceChildren();
    $("older").hidden = true;
  }
}

function renderMembers() {
  const room = state.rooms.get(state.current);
  $("members").replaceChildren(
    ...(room?.members || []).map((user) =>
      element("li", { dataset: { user } }, presenceDot(user), `${user} · `, element("span", { className: "seen" }, lastSeen(user))),
    ),
  );
}

function renderPending() {
  const room = state.rooms.get(state.current);
  $("pending").replaceChildren(
    ...(room?.pending || []).map((pending) => {
      const { name } = pending.file;
      const remove = element("button", { type: "button", className: "link", ariaLabel: `Remove ${name}` }, "×");
      remove.addEventListener("click", () => removePending(room, pending));
      const progress = pending.upload
        ? element("span", { className: "size" }, humanSize(pending.upload.size))
        : element("progress", { value: pending.progress, ariaLabel: `Uploading ${name}` });
      return element("li", {}, element("span", { className: "name" }, name), progress, remove);
    }),
  );
  $("send").disabled = Boolean(room && uploading(room));
}

function renderAttachment(attachment) {
  // the server measures the pictures it can make thumbnails of
  if (!attachment.width || !attachment.height) return renderFile(attachment);
  const scale = Math.min(1, THUMB_BOX / attachment.width, THUMB_BOX / attachment.height);
  const picture = element("img", {
    alt: attachment.filename,
    width: Math.round(attachment.width * scale),
    height: Math.round(attachment.height * scale),
  });
  const title = `${attachment.filename}, ${humanSize(attachment.size)}`;
  const button = element("button", { type: "button", className: "thumb", title }, picture);
  button.addEventListener("click", () => view(attachment).catch(showSidebarError));
  thumbnail(attachment.media)
    .then((url) => {
      picture.src = url;
    })
    .catch(() => button.replaceWith(renderFile(attachment)));
  return button;
}

function renderFile(attachment) {
  // the href says what the link is; the bytes need the token, so a click fetches them
  const link = element("a", { href: `/v1/media/${attachment.media}`, download: attachment.filename }, attachment.filename);
  link.addEventListener("click", (event) => {
    event.preventDefault();
    download(attachment).catch(showSidebarError);
  });
  return element("span", { className: "file" }, link, element("span", { className: "size" }, humanSize(attachment.size)));
}

function renderReplying() {
  const room = state.rooms.get(state.current);
  const replying = room && room.replyTo;
  $("replying").hidden = !replying;
  if (replying) $("replying-to").replaceChildren(renderQuote(replying));
}

function renderQuote(quote) {
  const text = quote.body.length > 120 ? `${quote.body.slice(0, 120)}…` : quote.body;
  const shown = quote.missing ? "(not loaded)" : quote.deleted ? "deleted message" : text;
  return element(
    "blockquote",
    { className: quote.deleted ? "quote deleted" : "quote" },
    element("span", { className: "quote-from" }, quote.from || `#${quote.seq}`),
    element("span", { className: "quote-text" }, shown),
  );
}

function clock(ts) {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

/** The open room's messages (its events folded into them, never lines of their own). The list is
 * drawn anew on each change, so an edit in progress keeps its place and caret. */
function renderMessages(room) {
  $("older").hidden = !room.hasOlder;
  const list = $("message-list");
  const typed = list.querySelector(".edit-form input");
  const caret = typed && document.activeElement === typed ? [typed.selectionStart, typed.selectionEnd] : null;
  list.replaceChildren(
    ...[...room.messages.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((message) => renderMessage(room, message)),
  );
  if (caret) {
    const input = list.querySelector(".edit-form input");
    input?.focus();
    input?.setSelectionRange(...caret);
  }
}

function renderMessage(room, message) {
  const me = state.session.user;
  const classes = [
    message.from === me ? "mine" : "",
    (message.mentions || []).includes(me) ? "mentions-me" : "",
    message.deleted ? "deleted" : "",
    room.found === message.seq ? "found" : "",
  ];
  const head = [
    element("span", { className: "from" }, message.from),
    element("time", { dateTime: new Date(message.ts).toISOString() }, clock(message.ts)),
  ];
  if (message.deleted) {
    // the sender's own delete, or the room's owner's
    const owner = message.deleted_by && message.deleted_by !== message.from;
    const by = owner ? ` by ${message.deleted_by}, the room's owner` : "";
    return element(
      "li",
      { className: classes.join(" ").trim(), dataset: { seq: message.seq } },
      ...head,
      element("div", { className: "tombstone" }, `message deleted${by}`),
    );
  }
  if (message.edited_at) {
    const when = new Date(message.edited_at).toLocaleString([], { dateStyle: "short", timeStyle: "short" });
    head.push(element("span", { className: "edited", title: `edited ${when}` }, "(edited)"));
  }
  const quote = quoteOf(room, message);
  const editing = room.editing?.seq === message.seq;
  return element(
    "li",
    { className: classes.join(" ").trim(), dataset: { seq: message.seq } },
    ...head,
    ...(editing ? [] : messageActions(room, message)),
    ...(quote ? [renderQuote(quote)] : []),
    editing ? renderEditor(room, message) : element("div", { className: "body" }, message.body),
    ...(message.attachments
      ? [element("div", { className: "attachments" }, ...message.attachments.map(renderAttachment))]
      : []),
    ...(message.data ? [element("code", { className: "data" }, JSON.stringify(message.data))] : []),
    ...renderReactions(room, message),
  );
}

/** Reply for everyone; Edit on the user's own messages; Delete on those, and on every message of
 * a room the user owns; React opens the picker. */
function messageActions(room, message) {
  const me = state.session.user;
  const action = (name, label, text, onClick) => {
    const button = element("button", { type: "button", className: `link action ${name}`, ariaLabel: label }, text);
    button.addEventListener("click", onClick);
    return button;
  };
  const mine = message.from === me;
  const actions = [action("reply", `Reply to ${message.from}`, "Reply", () => replyTo(room, message))];
  if (mine) actions.push(action("edit", "Edit your message", "Edit", () => startEdit(room, message)));
  if (mine || room.owner === me) {
    if (room.confirming === message.seq) {
      const yes = action("confirm-delete", "Delete it for everyone", "Delete", () => deleteMessage(room, message.seq));
      const no = action("keep", "Keep it", "Keep", () => {
        room.confirming = null;
        renderMessages(room);
      });
      actions.push(element("span", { className: "confirm" }, "Delete this message?", yes, no));
    } else {
      const label = mine ? "Delete your message" : `Delete ${message.from}'s message`;
      actions.push(action("delete", label, "Delete", () => confirmDelete(room, message)));
    }
  }
  const picking = room.picking === message.seq;
  const opener = action("react", picking ? "Close the reactions" : `React to ${message.from}`, "React", () =>
    togglePicker(room, message),
  );
  opener.setAttribute("aria-expanded", String(picking));
  actions.push(opener);
  return actions;
}

function renderEditor(room, message) {
  const input = element("input", {
    name: "body",
    value: room.editing.draft,
    required: true,
    // a blank edit is refused: deleting is the way to empty a message
    pattern: ".*\\S.*",
    title: "an edit needs some text (Delete removes the message)",
    maxLength: 4000,
    autocomplete: "off",
    ariaLabel: "Edit your message",
  });
  input.addEventListener("input", () => {
    room.editing.draft = input.value;
  });
  input.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    event.preventDefault();
    endEdit(room);
  });
  const cancel = element("button", { type: "button", className: "secondary" }, "Cancel");
  cancel.addEventListener("click", () => endEdit(room));
  const form = element("form", { className: "edit-form" }, input, element("button", { type: "submit" }, "Save"), cancel);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    saveEdit(room, message.seq);
  });
  return form;
}

/** The chips (key and count, marked when one is the user's; a click toggles it) and, when open,
 * the picker. */
function renderReactions(room, message) {
  const picking = room.picking === message.seq;
  const reactions = message.reactions || [];
  if (reactions.length === 0 && !picking) return [];
  const chips = reactions.map(({ key, count, me }) => {
    const chip = element(
      "button",
      {
        type: "button",
        className: me ? "reaction me" : "reaction",
        title: me ? `You reacted ${key}: click to take it back` : `React ${key} too`,
        dataset: { key },
      },
      element("span", { className: "key" }, key),
      element("span", { className: "count" }, String(count)),
    );
    chip.setAttribute("aria-pressed", String(me));
    chip.addEventListener("click", () => react(room, message.seq, key));
    return chip;
  });
  if (picking) {
    const picks = REACTION_KEYS.map((key) => {
      const label = `React with ${key}`;
      const pick = element("button", { type: "button", className: "link pick", ariaLabel: label, dataset: { key } }, key);
      pick.addEventListener("click", () => react(room, message.seq, key));
      return pick;
    });
    chips.push(element("span", { className: "picker", role: "group", ariaLabel: "Reactions" }, ...picks));
  }
  return [element("div", { className: "reactions" }, ...chips)];
}

function renderTyping() {
  const room = state.rooms.get(state.current);
  const who = room ? [...room.typing.keys()] : [];
  $("typing").textContent =
    who.length === 0 ? "" : who.length === 1 ? `${who[0]} is typing…` : `${who.join(", ")} are typing…`;
}

// ---- notifications --------------------------------------------------------------------------

/** Offers notifications where the browser can be pushed to. A browser subscribed before
 * registers its subscription again (the push service may have rotated it). */
async function offerNotifications() {
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) return;
  const registration = await navigator.serviceWorker.register("/sw.js");
  const button = $("notify");
  button.hidden = false;
  const subscribed = await registration.pushManager.getSubscription();
  if (subscribed && Notification.permission === "granted") {
    await registerPush(subscribed);
    return;
  }
  button.onclick = () => enableNotifications(registration).catch(showSidebarError);
}

async function enableNotifications(registration) {
  if ((await Notification.requestPermission()) !== "granted") {
    throw new ApiError("notifications are blocked for this page (the browser's site settings)");
  }
  const { push } = await api("GET", "/v1/client-config");
  const subscription = await registration.pushManager.subscribe({
    userVisibleOnly: true,
    applicationServerKey: base64urlBytes(push.webpush_vapid_key),
  });
  await registerPush(subscription);
}

async function registerPush(subscription) {
  let device = localStorage.getItem(DEVICE_KEY);
  if (!device) {
    device = `web-${crypto.randomUUID().slice(0, 8)}`;
    localStorage.setItem(DEVICE_KEY, device);
  }
  await api("POST", "/v1/push/devices", { device, kind: "webpush", subscription: subscription.toJSON() });
  const button = $("notify");
  button.textContent = "Notifications on";
  button.disabled = true;
}

function base64urlBytes(text) {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

// a click on a notification (sw.js) opens its room
navigator.serviceWorker?.addEventListener("message", (event) => {
  if (event.data?.type === "open-room" && state.rooms.has(event.data.room)) {
    openRoom(event.data.room).catch(showSidebarError);
  }
});

// ---- start --------------------------------------------------------------------------------

async function start() {
  $("signin").hidden = true;
  $("chat").hidden = false;
  $("me-name").textContent = state.session.user;
  if (state.session.expiresAt - Date.now() < 60000) await refreshTokens();
  scheduleRefresh();
  const { rooms } = await api("GET", "/v1/rooms");
  await Promise.all(rooms.map((room) => addRoom(room.id)));
  await connect();
  loadDirectory().catch((error) => console.warn("room directory unavailable:", error));
  offerNotifications().catch((error) => console.warn("notifications unavailable:", error));
  // a notification opened in a new window names its room
  const linked = new URLSearchParams(location.hash.slice(1)).get("room");
  const remembered = linked || localStorage.getItem(ROOM_KEY);
  if (remembered && state.rooms.has(remembered)) await openRoom(remembered);
}

if (state.session) {
  start().catch((error) => {
    localStorage.removeItem(SESSION_KEY);
    $("chat").hidden = true;
    $("signin").hidden = false;
    $("signin-error").textContent = error.message;
  });
} else {
  $("signin").hidden = false;
}
