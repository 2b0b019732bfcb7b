/** Serves a folder laid out as Hub repos on loopback: `node --import tsx test/helpers/serve-hub.ts [ROOT] [PORT]`. */
import { HubServer } from "./hub-server.ts";
import { sharedHub } from "./paths.ts";

const server = await new HubServer({ root: process.argv[2] ?? sharedHub }).start(Number(process.argv[3] ?? 8080));
process.stdout.write(`Hub API on ${server.url} — export HF_ENDPOINT=${server.url}\n`);
