// Worker bootstrap: registers tsx in this thread (loader hooks do not reach a worker's entry in Node 20),
// then runs the TypeScript module named in workerData.entry.
import { workerData } from "node:worker_threads";
import { register } from "tsx/esm/api";

register();
await import(workerData.entry);
