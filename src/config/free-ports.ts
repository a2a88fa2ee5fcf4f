/** Picking ports for actors that are told to use "any free port". */
import { createServer, type Server } from 'node:net';

/**
 * `count` distinct free ports on host. Every probe stays bound until all are chosen: probing one
 * at a time let the kernel hand the same port out twice, and two actors then raced for it.
 */
export async function freePorts(count: number, host: string): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Server>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, host, () => resolve(s));
        }),
    ),
  );
  const out = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return out;
}
