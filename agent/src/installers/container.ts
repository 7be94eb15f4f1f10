import { AgentError } from '../errors.js';
import type { ContainerRecord } from '../platform/platform.js';
import { type InstallContext, type Installer, sectionExtra } from './installer.js';

const NAME = /^[A-Za-z0-9._-]{1,64}$/;
const VERSION = /^[A-Za-z0-9.+_~-]{1,64}$/;

/** Container name: the section's `NAME` key, else the file name without extensions and version. */
export function containerName(fileName: string, explicit?: string): string | undefined {
  if (explicit !== undefined) return NAME.test(explicit) ? explicit : undefined;
  const base = fileName.split('/').pop()!.replace(/(\.tar)?(\.xz|\.gz|\.zst)?$/i, '').replace(/[-_]v?\d+(\.\d+)*.*$/, '');
  return NAME.test(base) ? base : undefined;
}

function invalid(ctx: InstallContext, why: string): AgentError {
  return new AgentError('AGENT_CONTAINER_INVALID', `${ctx.section.fileName}: ${why}`);
}

function nameOf(ctx: InstallContext): string {
  const name = containerName(ctx.section.fileName, sectionExtra(ctx.section, 'NAME'));
  if (!name) throw invalid(ctx, 'no usable container name (set NAME=)');
  return name;
}

async function restorePrevious(ctx: InstallContext, name: string): Promise<void> {
  const data = ctx.section.data;
  if (!('previous' in data)) return;
  const previous = (data.previous ?? undefined) as ContainerRecord | undefined;
  await ctx.platform.containers.put(name, previous);
}

/**
 * Container images (`FILETYPE=Container`): install a new container or replace the version of an
 * existing one (it keeps its run state); the previous image stays on the device for rollback.
 */
export const containerInstaller: Installer = {
  fileTypes: ['Container'],
  async download(ctx) {
    nameOf(ctx);
    if (!ctx.section.version || !VERSION.test(ctx.section.version)) throw invalid(ctx, 'a container needs a VERSION');
  },
  async install(ctx) {
    const name = nameOf(ctx);
    const version = ctx.section.version!;
    const containers = ctx.platform.containers;
    const data = ctx.section.data;
    if (!('previous' in data)) {
      data.previous = (await containers.get(name)) ?? null;
      await ctx.save();
    }
    const previous = (data.previous ?? undefined) as ContainerRecord | undefined;
    await containers.storeImage(name, version, ctx.payload());
    const images = [...new Set([...(previous?.images ?? []), version])];
    await containers.put(name, {
      name,
      version,
      state: previous?.state === 'running' ? 'running' : 'stopped',
      images,
      ...(previous?.config ? { config: previous.config } : {}),
    });
  },
  needsReboot: () => false,
  async commit(ctx) {
    const name = nameOf(ctx);
    const current = await ctx.platform.containers.get(name);
    if (!current) return;
    // Keep the active image and the one before it (for a later rollback); drop older ones.
    const previous = (ctx.section.data.previous ?? undefined) as ContainerRecord | undefined;
    const keep = new Set([current.version, ...(previous ? [previous.version] : [])]);
    for (const image of current.images) if (!keep.has(image)) await ctx.platform.containers.removeImage(name, image);
    await ctx.platform.containers.put(name, { ...current, images: current.images.filter((i) => keep.has(i)) });
  },
  async rollback(ctx) {
    const name = nameOf(ctx);
    await restorePrevious(ctx, name);
    const previous = (ctx.section.data.previous ?? undefined) as ContainerRecord | undefined;
    const version = ctx.section.version;
    if (version && !previous?.images.includes(version)) await ctx.platform.containers.removeImage(name, version);
    return 'done';
  },
  async cleanup() {},
};

interface ContainerAction {
  container: string;
  action: 'start' | 'stop' | 'remove' | 'configure';
  config?: Record<string, unknown>;
}

function parseAction(ctx: InstallContext, bytes: Buffer): ContainerAction {
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw invalid(ctx, 'not JSON');
  }
  const v = value as Partial<ContainerAction>;
  if (typeof v !== 'object' || v === null || typeof v.container !== 'string' || !NAME.test(v.container)) {
    throw invalid(ctx, 'needs {"container": NAME, "action": start|stop|remove|configure}');
  }
  if (!['start', 'stop', 'remove', 'configure'].includes(v.action as string)) throw invalid(ctx, `unknown action ${String(v.action)}`);
  if (v.config !== undefined && (typeof v.config !== 'object' || v.config === null || Array.isArray(v.config))) {
    throw invalid(ctx, 'config must be an object');
  }
  return v as ContainerAction;
}

/**
 * Container configuration (`FILETYPE=ContainerConfiguration`, JSON
 * `{"container": "name", "action": "start"|"stop"|"remove"|"configure", "config": {…}}`): starts,
 * stops, removes or configures a container, usually one installed by an earlier section.
 */
export const containerConfigurationInstaller: Installer = {
  fileTypes: ['ContainerConfiguration'],
  async download(ctx) {
    parseAction(ctx, await ctx.readPayload(64 * 1024));
  },
  async install(ctx) {
    const action = parseAction(ctx, await ctx.readPayload(64 * 1024));
    const containers = ctx.platform.containers;
    const data = ctx.section.data;
    if (!('previous' in data)) {
      data.previous = (await containers.get(action.container)) ?? null;
      await ctx.save();
    }
    const current = (data.previous ?? undefined) as ContainerRecord | undefined;
    if (!current) throw new AgentError('AGENT_INSTALL_FAILED', `container ${action.container} is not installed`);
    switch (action.action) {
      case 'start':
        await containers.put(action.container, { ...current, state: 'running', ...(action.config ? { config: action.config } : {}) });
        break;
      case 'stop':
        await containers.put(action.container, { ...current, state: 'stopped' });
        break;
      case 'configure':
        await containers.put(action.container, { ...current, config: action.config ?? {} });
        break;
      case 'remove':
        // Images stay until commit, so a rollback can bring the container back.
        await containers.put(action.container, undefined);
        break;
    }
    data.container = action.container;
    data.action = action.action;
  },
  needsReboot: () => false,
  async commit(ctx) {
    const data = ctx.section.data;
    if (data.action === 'remove') {
      const previous = (data.previous ?? undefined) as ContainerRecord | undefined;
      for (const image of previous?.images ?? []) await ctx.platform.containers.removeImage(data.container as string, image);
    }
  },
  async rollback(ctx) {
    const data = ctx.section.data;
    if (typeof data.container === 'string') await restorePrevious(ctx, data.container);
    else if ('previous' in data && data.previous) await restorePrevious(ctx, (data.previous as ContainerRecord).name);
    return 'done';
  },
  async cleanup() {},
};
