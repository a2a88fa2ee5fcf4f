/**
 * One uploader of the concurrent-uploads scenario, run as a process of its own. Eight uploads
 * driven from the benchmark's one event loop measured that loop's scheduling more than cairn's:
 * one upload finished in a third of the others' time, while eight curl processes against the
 * same cluster finished within 5 % of each other.
 *
 * It prints `ready` once loaded and uploads when a line arrives on stdin, so the scenario's clock
 * starts after eight node processes have started up (child-uploader.ts says why).
 *
 *   node dist/test/bench/upload-child.js BASE_URL TOKEN NAME SIZE   → `ready`, then the outcome as JSON
 */
import { HttpApi, newTag } from './http-load.js';

const [base, token, name, size] = process.argv.slice(2);
if (!base || !token || !name || !size) {
  console.error('usage: upload-child BASE_URL TOKEN NAME SIZE');
  process.exit(2);
}
const api = new HttpApi(base);
api.token = token;
process.stdout.write('ready\n');
const go = await new Promise<boolean>((resolve) => {
  process.stdin.once('data', () => resolve(true));
  process.stdin.once('end', () => resolve(false)); // the parent went away before the start
});
process.stdin.destroy();
if (!go) process.exit(1);
const outcome = await api.uploadGenerated(name, Number(size), newTag());
api.close();
process.stdout.write(`${JSON.stringify(outcome)}\n`);
