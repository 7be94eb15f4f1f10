import { parseConnectionProfile } from '../connection-profile.js';
import { AgentError } from '../errors.js';
import type { InstallContext, Installer } from './installer.js';

async function parse(ctx: InstallContext, allowInsecure: boolean) {
  const result = parseConnectionProfile(await ctx.readPayload(256 * 1024), { allowInsecure });
  if (!result.ok) throw new AgentError('AGENT_PROFILE_INVALID', `${ctx.section.fileName}: ${result.errors.join('; ')}`);
  return result.profile;
}

/**
 * Re-provisioning (`FILETYPE=ConnectionProfile` in a job): the new profile replaces the current one
 * (kept as the previous one), the agent reconnects with it, and the health check needs a new
 * session with the new profile; otherwise the previous profile is restored and the agent reconnects.
 */
export function connectionProfileInstaller(allowInsecure: boolean): Installer {
  return {
    fileTypes: ['ConnectionProfile'],
    async download(ctx) {
      const next = await parse(ctx, allowInsecure);
      const current = ctx.profiles.current();
      if (next.deviceId !== current.deviceId) {
        throw new AgentError('AGENT_PROFILE_INVALID', 'the new profile is for another device id');
      }
    },
    async install(ctx) {
      const next = await parse(ctx, allowInsecure);
      ctx.section.data.replaced = true;
      await ctx.save();
      await ctx.profiles.replace(next, true);
      ctx.reconnect();
    },
    needsReboot: () => false,
    requiresNewSession: () => true,
    async commit(ctx) {
      await ctx.profiles.dropPrevious();
    },
    async rollback(ctx) {
      if (ctx.section.data.replaced && (await ctx.profiles.previous())) {
        await ctx.profiles.restorePrevious();
        ctx.reconnect();
      }
      return 'done';
    },
    async cleanup() {},
  };
}
