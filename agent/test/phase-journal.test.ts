import { describe, expect, it } from 'vitest';
import { JOURNAL_VERSION, Journal, type JobRecord, type SectionPhase } from '../src/lifecycle/journal.js';
import { journaledStep } from '../src/lifecycle/phase-journal.js';
import { createEmulatedPlatform } from '../src/platform/emulated.js';
import { tempDir } from './helpers/device.js';

/** A record with one section, journaled in a real data directory. */
async function setup(phase: SectionPhase = 'pending') {
  const platform = await createEmulatedPlatform({ dataDir: await tempDir() });
  const journal = new Journal(platform.storage);
  const record: JobRecord = {
    v: JOURNAL_VERSION,
    executionId: 'e1',
    jobId: 'j1',
    offer: {
      executionId: 'e1',
      jobId: 'j1',
      packet: { url: 'https://127.0.0.1:1/p.tar', size: 10, sha256: 'a'.repeat(64) },
      download: { token: 't', expiresAt: Date.now() + 600_000 },
      deadline: Date.now() + 600_000,
      allowDowngrade: false,
    },
    state: 'installing',
    transitions: 4,
    resumes: 0,
    enteredAt: Date.now(),
    packet: {
      sections: [{ index: 0, fileName: 'fw.bin', fileType: 'FirmwareFull', sha256: 'b'.repeat(64), size: 1, extra: [], phase, data: {} }],
    },
  };
  await journal.save(record);
  const section = record.packet!.sections[0]!;
  /** The section as a restart would find it on disk. */
  const durable = async () => {
    const loaded = await journal.load();
    if (loaded.kind !== 'record') throw new Error(`journal is ${loaded.kind}`);
    return loaded.record.packet!.sections[0]!;
  };
  let saves = 0;
  const save = async () => {
    saves++;
    await journal.save(record);
  };
  return { section, durable, save, saves: () => saves };
}

describe('journaledStep: a section phase journaled around an installer call', () => {
  it('persists the entering phase before the call and the settled result after it', async () => {
    const { section, durable, save, saves } = await setup();
    const seenDuringCall: SectionPhase[] = [];
    const end = await journaledStep(save, section, {
      entering: 'installing',
      call: async () => {
        seenDuringCall.push((await durable()).phase);
        return 'slot-b';
      },
      settle: (slot) => {
        section.phase = 'installed';
        section.data.targetSlot = slot;
      },
    });
    expect(end).toEqual({ ok: true, value: 'slot-b' });
    expect(seenDuringCall).toEqual(['installing']);
    expect(await durable()).toMatchObject({ phase: 'installed', data: { targetSlot: 'slot-b' } });
    expect(saves()).toBe(2);
  });

  it('without an entering phase, saves only the result (the step is idempotent)', async () => {
    const { section, durable, save, saves } = await setup('installed');
    const seenDuringCall: SectionPhase[] = [];
    const end = await journaledStep(save, section, {
      call: async () => {
        seenDuringCall.push((await durable()).phase);
      },
      settle: () => {
        section.phase = 'committed';
      },
    });
    expect(end.ok).toBe(true);
    expect(seenDuringCall).toEqual(['installed']);
    expect((await durable()).phase).toBe('committed');
    expect(saves()).toBe(1);
  });

  it('returns the error of the call and leaves the entering phase as the last durable word', async () => {
    const { section, durable, save } = await setup();
    const boom = new Error('flash write failed');
    let settled = false;
    const end = await journaledStep(save, section, {
      entering: 'installing',
      call: async () => {
        throw boom;
      },
      settle: () => {
        settled = true;
      },
    });
    expect(end).toEqual({ ok: false, error: boom });
    expect(settled).toBe(false);
    expect((await durable()).phase).toBe('installing');
  });

  it('a journal that cannot be written stops the step before the call, and throws', async () => {
    const { section, durable } = await setup();
    let called = false;
    const full = new Error('ENOSPC');
    const step = journaledStep(
      async () => {
        throw full;
      },
      section,
      {
        entering: 'installing',
        call: async () => {
          called = true;
        },
        settle: () => {},
      },
    );
    await expect(step).rejects.toBe(full);
    expect(called).toBe(false);
    expect((await durable()).phase).toBe('pending');
  });

  it('a result that cannot be written throws instead of reporting the step done', async () => {
    const { section, save } = await setup();
    let saves = 0;
    const full = new Error('ENOSPC');
    const step = journaledStep(
      async () => {
        if (++saves === 2) throw full;
        await save();
      },
      section,
      {
        entering: 'installing',
        call: async () => 'done',
        settle: () => {
          section.phase = 'installed';
        },
      },
    );
    await expect(step).rejects.toBe(full);
  });
});
