import { describe, expect, it } from 'vitest';
import { storeForChild } from '../src/local-server.js';

describe('a store URL handed to a server process', () => {
  it('goes on the command line without its password, which travels in PGPASSWORD', () => {
    expect(storeForChild('postgres://fleet:p%40ss%3Aw0rd@127.0.0.1:5432/fleet_run')).toEqual({
      args: ['--store', 'postgres://fleet@127.0.0.1:5432/fleet_run'],
      env: { PGPASSWORD: 'p@ss:w0rd' },
    });
  });

  it('is passed as it is when it has no password, and nothing is passed without a store', () => {
    expect(storeForChild('postgres://postgres@127.0.0.1:5432/db?options=-c%20search_path%3Ds1')).toEqual({
      args: ['--store', 'postgres://postgres@127.0.0.1:5432/db?options=-c%20search_path%3Ds1'],
      env: {},
    });
    expect(storeForChild(undefined)).toEqual({ args: [], env: {} });
  });
});
