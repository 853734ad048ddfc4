#!/usr/bin/env node
// A Roost chat client on the command line (MQTT.js): prints a room's messages as they arrive
// (with their attachments: name, type, size) and the edits, deletes and reactions of earlier ones
// as one line each, naming the message's seq; uploads the files given with --file and sends each
// as an attachment, sends the lines given with --send, and with --until exits once a message
// containing that text arrives (exit 1 after --timeout seconds without it).
//
//   ROOST_USER=carol ROOST_TOKEN=<access token> node chat.mjs --room lab --send '!ping' --until pong
//   ROOST_USER=carol ROOST_TOKEN=<access token> node chat.mjs --room lab --file cat.png
import mqtt from "mqtt";
import { readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import { parseArgs } from "node:util";

const { values: options } = parseArgs({
  options: {
    url: { type: "string", default: process.env.ROOST_MQTT_URL ?? "mqtt://127.0.0.1:1883" },
    http: { type: "string", default: process.env.ROOST_HTTP ?? "http://127.0.0.1:8080" },
    room: { type: "string", default: "lab" },
    file: { type: "string", multiple: true, default: [] },
    send: { type: "string", multiple: true, default: [] },
    until: { type: "string" },
    timeout: { type: "string", default: "30" },
  },
});
const user = process.env.ROOST_USER;
const token = process.env.ROOST_TOKEN;
const topic = `rooms/${options.room}/messages`;

const client = mqtt.connect(options.url, {
  username: user,
  password: token,
  clientId: `${user}-cli`,
  protocolVersion: 5,
  reconnectPeriod: 1000,
});

const timer = setTimeout(() => {
  console.error(`no message containing "${options.until}" within ${options.timeout} s`);
  process.exit(1);
}, Number(options.timeout) * 1000);
if (!options.until) clearTimeout(timer);

// The declared type; the server sniffs the bytes and refuses (415) a file that is not of this
// family. application/octet-stream lets the bytes decide.
const TYPES = {
  ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
  ".mp4": "video/mp4", ".webm": "video/webm", ".mp3": "audio/mpeg", ".ogg": "audio/ogg", ".wav": "audio/wav",
  ".pdf": "application/pdf", ".txt": "text/plain; charset=utf-8", ".zip": "application/zip",
};

/** POST /v1/rooms/{room}/media (PROTOCOL.md, 11): the upload {id, url, content_type, size, sha256, filename, width?, height?}. */
async function uploadFile(path) {
  const name = basename(path);
  const url = `${options.http}/v1/rooms/${encodeURIComponent(options.room)}/media?filename=${encodeURIComponent(name)}`;
  const response = await fetch(url, {
    method: "POST",
    headers: {
      authorization: `Bearer ${token}`,
      "content-type": TYPES[extname(path).toLowerCase()] ?? "application/octet-stream",
    },
    body: await readFile(path),
  });
  if (response.status !== 201) {
    // 413 payload_too_large / quota_exceeded, 415 unsupported_media_type, 403/404 not a member
    const { error } = await response.json().catch(() => ({}));
    throw new Error(`upload of ${name} refused: ${response.status} ${error?.code}: ${error?.message}`);
  }
  return response.json();
}

/** Uploads the file at `path` and sends a message attaching it (body: `body`, or the file's name). */
async function sendFile(path, body) {
  const upload = await uploadFile(path);
  const message = { body: body ?? upload.filename, attachments: [{ media: upload.id }] };
  await client.publishAsync(topic, JSON.stringify(message), { qos: 1 });
}

client.on("connect", async () => {
  const [granted] = await client.subscribeAsync(topic, { qos: 1 });
  if (granted.qos > 2) {
    console.error(`subscription to ${topic} refused (reason ${granted.qos})`);
    process.exit(1);
  }
  for (const path of options.file.splice(0)) {
    await sendFile(path).catch((error) => {
      console.error(error.message);
      process.exit(1);
    });
  }
  for (const body of options.send.splice(0)) {
    await client.publishAsync(topic, JSON.stringify({ body }), { qos: 1 });
  }
});

// An event changes the earlier message `target` (PROTOCOL.md, 4); it is never a new message.
const EVENTS = {
  edit: (e) => `edited ${e.target}: ${e.body}`,
  delete: (e) => `deleted ${e.target}`,
  reaction: (e) => (e.on ? `reacted ${e.key} to ${e.target}` : `took back ${e.key} on ${e.target}`),
};

client.on("message", (_topic, payload) => {
  const message = JSON.parse(payload.toString());
  if (message.type) {
    console.log(`[${message.seq}] ${message.from} ${EVENTS[message.type]?.(message) ?? `${message.type} ${message.target}`}`);
    return;
  }
  console.log(`[${message.seq}] ${message.from}: ${message.body}`);
  // expanded by the server: {media, content_type, size, filename, width?, height?}; the bytes
  // are at GET /v1/media/{media} with the bearer header
  for (const a of message.attachments ?? []) {
    const pixels = a.width ? `, ${a.width}x${a.height}` : "";
    console.log(`  attachment ${a.filename} (${a.content_type}, ${a.size} bytes${pixels}) media ${a.media}`);
  }
  if (options.until && message.from !== user && message.body.includes(options.until)) {
    client.end(false, () => process.exit(0));
  }
});

client.on("disconnect", (packet) => console.error(`server disconnected us: reason ${packet.reasonCode}`));
client.on("error", (error) => console.error(`mqtt: ${error.message}`));
