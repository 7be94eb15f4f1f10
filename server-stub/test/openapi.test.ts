import SwaggerParser from '@apidevtools/swagger-parser';
import { afterEach, describe, expect, it } from 'vitest';
import { type AppWorld, appWorld } from './helpers/http.js';
import { removeTempDirs } from './helpers/setup.js';

const worlds: AppWorld[] = [];
afterEach(async () => {
  for (const w of worlds.splice(0)) await w.app.close();
  removeTempDirs();
});

describe('/openapi.json', () => {
  // Test mode adds the test-clock routes: both documents are served, so both must be valid.
  it.each([false, true])('is a valid OpenAPI 3.0 document (testClock %s)', async (testClock) => {
    const w = await appWorld({ testClock });
    worlds.push(w);
    const doc = (await w.req('GET', '/openapi.json')).json();
    expect(doc.openapi).toBe('3.0.3');
    // validate() dereferences in place: give it a copy. It throws with every violation listed.
    const api = await SwaggerParser.validate(structuredClone(doc));
    expect(Object.keys(api.paths ?? {})).toContain('/api/licences/activate');
  });
});
