#!/usr/bin/env node
// A Roost chat client on the command line (MQTT.js): prints a room's messages as they arrive,
// sends the lines given with --send, and with --until exits once a message containing that
// text arrives (exit 1 after --timeout seconds without it).
//
//   ROOST_USER=carol ROOST_TOKEN=<access token> node chat.mjs --room lab --send '!ping' --until pong
import mqtt from "mqtt";
import { parseArgs } from "node:util";

const { values: options } = parseArgs({
  options: {
    url: { type: "string", default: process.env.ROOST_MQTT_URL ?? "mqtt://127.0.0.1:1883" },
    room: { type: "string", default: "lab" },
    send: { type: "string", multiple: true, default: [] },
    until: { type: "string" },
    timeout: { type: "string", default: "30" },
  },
});
const user = process.env.ROOST_USER;
const topic = `rooms/${options.room}/messages`;

const client = mqtt.connect(options.url, {
  username: user,
  password: process.env.ROOST_TOKEN,
  clientId: `${user}-cli`,
  protocolVersion: 5,
  reconnectPeriod: 1000,
});

const timer = setTimeout(() => {
  console.error(`no message containing "${options.until}" within ${options.timeout} s`);
  process.exit(1);
}, Number(options.timeout) * 1000);
if (!options.until) clearTimeout(timer);

client.on("connect", async () => {
  const [granted] = await client.subscribeAsync(topic, { qos: 1 });
  if (granted.qos > 2) {
    console.error(`subscription to ${topic} refused (reason ${granted.qos})`);
    process.exit(1);
  }
  for (const body of options.send.splice(0)) {
    await client.publishAsync(topic, JSON.stringify({ body }), { qos: 1 });
  }
});

client.on("message", (_topic, payload) => {
  const message = JSON.parse(payload.toString());
  console.log(`[${message.seq}] ${message.from}: ${message.body}`);
  if (options.until && message.from !== user && message.body.includes(options.until)) {
    client.end(false, () => process.exit(0));
  }
});

client.on("disconnect", (packet) => console.error(`server disconnected us: reason ${packet.reasonCode}`));
client.on("error", (error) => console.error(`mqtt: ${error.message}`));
