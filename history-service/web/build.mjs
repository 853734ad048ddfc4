// Assembles the chat page's assets: the page's own files from src/ and MQTT.js's browser build
// from the installed npm package. Usage: node build.mjs NODE_MODULES OUT_DIR
import { copyFileSync, mkdirSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [modules, out] = process.argv.slice(2);
if (!modules || !out) {
  console.error("usage: node build.mjs NODE_MODULES OUT_DIR");
  process.exit(2);
}
const src = join(dirname(fileURLToPath(import.meta.url)), "src");
mkdirSync(out, { recursive: true });
for (const file of readdirSync(src)) copyFileSync(join(src, file), join(out, file));
copyFileSync(join(modules, "mqtt", "dist", "mqtt.esm.js"), join(out, "mqtt.esm.js"));
