/**
 * Starts one role from its command-line words; the same code runs under the thread host, the
 * process host and `cairn provider|client` typed by an operator.
 */
import { CairnError } from '../errors.js';
import { loadActorConfig, parseArgs, wholeNumber } from '../config/config.js';
import { startProvider } from '../provider/provider.js';
import { startClient } from '../client/client.js';
import type { ActorReady, RunningRole } from './actor.js';

const ROLE_FLAGS = new Set(['id', 'port', 'lane-port', 'config-sources']);

/** A port given as `--name`, read by the settings' own whole-number reader, or `fallback`. */
function portFlag(flags: Map<string, string>, name: string, fallback: number): number {
  return wholeNumber(flags.get(name) ?? fallback, `--${name}`, 0, 65535);
}

export async function startRole(argv: string[]): Promise<{ ready: ActorReady; role: RunningRole }> {
  const [role, ...rest] = argv;
  const { flags } = parseArgs(rest);
  const config = loadActorConfig(flags, process.env, ROLE_FLAGS);
  const port = portFlag(flags, 'port', role === 'provider' ? config.providerBasePort : config.clientBasePort);
  if (role === 'provider') {
    const id = flags.get('id');
    if (!id) throw new CairnError('BAD_CONFIG', 'cairn provider needs --id (e.g. --id sp1)');
    const lanePort = portFlag(flags, 'lane-port', 0);
    if (lanePort !== 0 && lanePort === port) throw new CairnError('BAD_CONFIG', `--lane-port must differ from --port (${port})`);
    const running = await startProvider({ id, port, lanePort, host: config.host, dataDir: config.dataDir, clusterFile: config.cluster, orphanGraceMs: config.orphanGraceMs, diskReserveBytes: config.diskReserveBytes });
    return { ready: { id, role: 'provider', url: running.url }, role: running };
  }
  if (role === 'client') {
    const id = flags.get('id') ?? 'client';
    const running = await startClient({ id, port, host: config.host, clusterFile: config.cluster, config });
    return { ready: { id, role: 'client', url: running.url }, role: running };
  }
  throw new CairnError('BAD_CONFIG', `unknown role ${role}`);
}
