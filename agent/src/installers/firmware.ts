import { AgentError } from '../errors.js';
import type { Slot } from '../platform/platform.js';
import type { Installer } from './installer.js';

const other = (slot: Slot): Slot => (slot === 'a' ? 'b' : 'a');

/**
 * Full firmware images: written to the inactive slot, booted once as a trial, committed after the
 * health check; otherwise the boot loader (or a rollback reboot) returns to the previous slot.
 */
export const firmwareInstaller: Installer = {
  fileTypes: ['FirmwareFull'],

  async download(ctx) {
    if (!ctx.section.version) throw new AgentError('AGENT_PACKET_INVALID', `${ctx.section.fileName}: firmware without VERSION`);
  },

  async install(ctx) {
    const fw = ctx.platform.firmware;
    const state = await fw.state();
    const data = ctx.section.data;
    if (data.targetSlot === undefined) {
      if (state.booted !== state.committed) {
        throw new AgentError('AGENT_INSTALL_FAILED', 'the running firmware is not committed yet');
      }
      data.previousSlot = state.booted;
      data.targetSlot = other(state.booted);
      await ctx.save();
    }
    const target = data.targetSlot as Slot;
    const written = await fw.writeSlot(target, ctx.payload(), { version: ctx.section.version! });
    if (written.sha256 !== ctx.section.sha256 || written.size !== ctx.section.size) {
      throw new AgentError('AGENT_STAGING_TAMPERED', 'the firmware written differs from the verified image');
    }
    await fw.setTrialBoot(target);
    ctx.log.info({ slot: target, version: ctx.section.version }, 'firmware written; trial boot set');
  },

  needsReboot: () => true,

  async commit(ctx) {
    const state = await ctx.platform.firmware.state();
    if (state.booted !== ctx.section.data.targetSlot) {
      throw new AgentError('AGENT_COMMIT_FAILED', `running slot ${state.booted}, expected ${String(ctx.section.data.targetSlot)}`);
    }
    if (state.committed !== state.booted) await ctx.platform.firmware.commit();
  },

  async rollback(ctx) {
    const fw = ctx.platform.firmware;
    const state = await fw.state();
    const target = ctx.section.data.targetSlot as Slot | undefined;
    if (target === undefined) return 'done';
    if (state.booted === target) {
      if (state.committed === target) throw new AgentError('AGENT_ROLLBACK_FAILED', 'the new firmware is already committed');
      // Running the uncommitted trial: a reboot returns to the committed slot.
      await fw.clearTrialBoot();
      return 'reboot';
    }
    if (state.trial !== undefined) await fw.clearTrialBoot();
    return 'done';
  },

  async cleanup() {},
};
