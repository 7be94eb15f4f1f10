import { request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { main } from '../src/main.js';
import { removeTempDirs, tempDir, testConfig } from './helpers/setup.js';

afterEach(() => removeTempDirs());

describe('main', () => {
  it('listens on a real socket and closes gracefully', async () => {
    const server = await main(testConfig(tempDir()), { handleSignals: false });
    try {
      const res = await request(`${server.url}/healthz`);
      expect(res.statusCode).toBe(200);
      await res.body.json();
    } finally {
      await server.close();
    }
    await expect(request(`${server.url}/healthz`)).rejects.toThrow();
  });
});
