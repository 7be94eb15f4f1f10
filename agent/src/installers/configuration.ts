import { Buffer } from 'node:buffer';
import { AgentError } from '../errors.js';
import { type InstallContext, type Installer, sectionExtra } from './installer.js';

const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

const backupId = (ctx: InstallContext) => `${ctx.executionId.replace(/[^A-Za-z0-9._-]/g, '_')}-${ctx.section.index}`;

async function backupOnce(ctx: InstallContext): Promise<void> {
  const data = ctx.section.data;
  if (data.backup) return;
  // Record the intent first: a rollback after a power cut here finds no backup and has nothing to restore.
  await ctx.platform.configuration.snapshot(backupId(ctx));
  data.backup = backupId(ctx);
  await ctx.save();
}

async function restore(ctx: InstallContext): Promise<'done'> {
  const id = ctx.section.data.backup as string | undefined;
  if (id) {
    await ctx.platform.configuration.restore(id);
    await ctx.platform.configuration.dropSnapshot(id);
  }
  return 'done';
}

/**
 * A configuration profile (openwisp-config's pattern): backup → apply → connectivity check (the
 * health check: a round trip to the server within the timeout) → restore the backup on failure.
 */
export const configurationProfileInstaller: Installer = {
  fileTypes: ['ConfigurationProfile'],
  async download(ctx) {
    const content = await ctx.readPayload(MAX_CONFIG_BYTES);
    const problem = ctx.platform.configuration.validate(content);
    if (problem) throw new AgentError('AGENT_CONFIGURATION_INVALID', `${ctx.section.fileName}: ${problem}`);
  },
  async install(ctx) {
    const content = await ctx.readPayload(MAX_CONFIG_BYTES);
    await backupOnce(ctx);
    await ctx.platform.configuration.apply(content, ctx.section.version);
  },
  needsReboot: () => false,
  async commit(ctx) {
    const id = ctx.section.data.backup as string | undefined;
    if (id) await ctx.platform.configuration.dropSnapshot(id);
  },
  rollback: restore,
  async cleanup() {},
};

/**
 * ASCII configuration: CLI commands applied at once (default) or, with `APPLY=store` in the
 * section, only stored (as a configuration snapshot named after the section) for later.
 */
export const asciiConfigurationInstaller: Installer = {
  fileTypes: ['AsciiConfiguration'],
  async download(ctx) {
    const bytes = await ctx.readPayload(MAX_CONFIG_BYTES);
    const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
    // ASCII configuration must be printable text (TAB, LF, CR allowed).
    // eslint-disable-next-line no-control-regex
    if (/[^\x09\x0a\x0d\x20-\x7e]/.test(text)) {
      throw new AgentError('AGENT_CONFIGURATION_INVALID', `${ctx.section.fileName}: not printable ASCII`);
    }
    const apply = sectionExtra(ctx.section, 'APPLY') ?? 'now';
    if (apply !== 'now' && apply !== 'store') throw new AgentError('AGENT_CONFIGURATION_INVALID', `APPLY=${apply}`);
  },
  async install(ctx) {
    const text = (await ctx.readPayload(MAX_CONFIG_BYTES)).toString('ascii');
    await backupOnce(ctx);
    if ((sectionExtra(ctx.section, 'APPLY') ?? 'now') === 'store') {
      // Stored for later, not applied: the running configuration is untouched.
      const name = `stored-config-${ctx.section.fileName.replace(/[^A-Za-z0-9._-]/g, '_').toLowerCase()}`;
      await ctx.platform.storage.write(name, Buffer.from(text, 'ascii'));
      ctx.section.data.stored = name;
      return;
    }
    await ctx.platform.configuration.applyCommands(text);
  },
  needsReboot: () => false,
  async commit(ctx) {
    const id = ctx.section.data.backup as string | undefined;
    if (id) await ctx.platform.configuration.dropSnapshot(id);
  },
  rollback: restore,
  async cleanup() {},
};
