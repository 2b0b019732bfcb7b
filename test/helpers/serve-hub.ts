/** Serves a folder laid out as Hub repos on loopback: `node --import tsx test/helpers/serve-hub.ts [ROOT] [PORT]`. */
import { HubServer } from "./hub-server.ts";
import { sharedHub } from "./paths.ts";

const port = Number(process.argv[3] ?? 8080);
let server: HubServer;
try {
  server = await new HubServer({ root: process.argv[2] ?? sharedHub }).start(port);
} catch (error) {
  if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE") throw error;
  process.stderr.write(`hub:local: port ${port} is already in use (an earlier hub:local still running?); stop it, or pass another port\n`);
  process.exit(2);
}
process.stdout.write(`Hub API on ${server.url} — export HF_ENDPOINT=${server.url}\n`);

const stop = () => void server.stop().then(() => process.exit(0));
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.once(signal, stop);
// `npm run hub:local &` puts npm between the shell and this server: `kill $!` ends npm, not us. When our
// parent goes away we are re-parented, so stop then instead of holding the port forever.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop();
}, 500).unref();
