import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig } from './config.js';
import { type ConnectionProfile, validateConnectionProfile } from './connection-profile.js';
import { AgentError } from './errors.js';

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * What `fleet-agent status` prints: the local state read from the data directory without starting
 * or "powering on" anything. Never includes the credential or any key.
 */
export async function readLocalStatus(dataDir: string): Promise<Record<string, unknown>> {
  const agentDir = join(dataDir, 'agent');
  const device = join(dataDir, 'device');
  const profile = (await readJson(join(agentDir, 'connection-profile.json'))) as Partial<ConnectionProfile> | undefined;
  const journal = (await readJson(join(agentDir, 'journal.json'))) as Record<string, unknown> | undefined;
  const history = ((await readJson(join(agentDir, 'history.json'))) as unknown[] | undefined) ?? [];
  const reports = ((await readJson(join(agentDir, 'reports.json'))) as unknown[] | undefined) ?? [];
  let outboxPending = 0;
  try {
    const log = await readFile(join(agentDir, 'outbox.log'), 'utf8');
    const seqs = new Set<number>();
    for (const line of log.split('\n')) {
      try {
        const r = JSON.parse(line) as { e?: { seq: number }; a?: number[] };
        if (r.e) seqs.add(r.e.seq);
        for (const s of r.a ?? []) seqs.delete(s);
      } catch {
        // torn or empty line
      }
    }
    outboxPending = seqs.size;
  } catch {
    // no outbox yet
  }
  const boot = (await readJson(join(device, 'boot.json'))) as Record<string, unknown> | undefined;
  const slot = async (s: string) => (await readJson(join(device, `slot-${s}.json`))) as { version?: string } | undefined;
  return {
    dataDir,
    provisioned: profile !== undefined,
    ...(profile
      ? {
          profile: {
            serverUrl: profile.serverUrl,
            deviceId: profile.deviceId,
            serialNumber: profile.serialNumber,
            trustAnchors: profile.trustAnchorsPem?.length ?? 0,
          },
        }
      : {}),
    firmware: boot
      ? { booted: boot.booted, committed: boot.committed, bootCount: boot.bootCount, versions: { a: (await slot('a'))?.version, b: (await slot('b'))?.version } }
      : undefined,
    activeJob: journal ? { executionId: journal.executionId, state: journal.state, transitions: journal.transitions, resumes: journal.resumes } : null,
    unacknowledgedResults: reports.length,
    outboxPending,
    recentJobs: history.slice(-10),
  };
}

/** A profile built from configuration options (`serverUrl`, `caCertFile`, …) instead of a packet. */
export async function profileFromConfig(config: AgentConfig): Promise<ConnectionProfile | undefined> {
  if (config.serverUrl === null) return undefined;
  const need = (value: string | null, name: string) => {
    if (value === null) throw new AgentError('AGENT_CONFIG_INVALID', `serverUrl is set: ${name} is required too`);
    return value;
  };
  const read = (path: string) => readFile(path, 'utf8');
  const value = {
    format: 'router-fleet.connection-profile/1',
    serverUrl: config.serverUrl,
    ...(config.mqttVersion !== null ? { mqttVersion: config.mqttVersion } : {}),
    caCertPem: await read(need(config.caCertFile, 'caCertFile')),
    trustAnchorsPem: await Promise.all(need(config.trustAnchorFiles, 'trustAnchorFiles').split(',').map((p) => read(p.trim()))),
    deviceId: need(config.deviceId, 'deviceId'),
    serialNumber: need(config.serialNumber, 'serialNumber'),
    credential: (await read(need(config.credentialFile, 'credentialFile'))).trim(),
  };
  const result = validateConnectionProfile(value, { allowInsecure: config.allowInsecureTransport });
  if (!result.ok) throw new AgentError('AGENT_PROFILE_INVALID', result.errors.join('; '));
  return result.profile;
}
