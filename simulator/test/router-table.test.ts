import { SESSION_STATES, SESSION_TABLE } from '@router-fleet/agent';
import { describe, expect, it } from 'vitest';
import { ADMISSION, codeTable, RouterFlag, RouterTable, SESSION } from '../src/router-table.js';

describe('codeTable', () => {
  it('maps every name to its index and back', () => {
    const t = codeTable(['a', 'b', 'c'] as const);
    expect(t.code).toEqual({ a: 0, b: 1, c: 2 });
    for (const name of t.names) expect(t.name(t.code[name])).toBe(name);
  });

  it('rejects a code outside the table', () => {
    const t = codeTable(['a', 'b'] as const);
    expect(() => t.name(2)).toThrow(/code 2 is not in the table/);
    expect(() => t.name(-1)).toThrow(/not in the table/);
  });

  it('rejects duplicate names and more names than a byte holds', () => {
    expect(() => codeTable(['a', 'b', 'a'])).toThrow(/duplicate/);
    expect(() => codeTable(Array.from({ length: 257 }, (_, i) => `s${i}`))).toThrow(/at most 256/);
    expect(() => codeTable(Array.from({ length: 256 }, (_, i) => `s${i}`))).not.toThrow();
  });

  it('is frozen', () => {
    expect(Object.isFrozen(SESSION)).toBe(true);
    expect(Object.isFrozen(SESSION.code)).toBe(true);
  });
});

describe('SESSION and ADMISSION codes', () => {
  it('code the agent’s session states in its own order, the initial state as 0 (a zeroed slot)', () => {
    expect(SESSION.names).toBe(SESSION_STATES);
    expect(SESSION.code[SESSION_TABLE.initial]).toBe(0);
  });

  it('code "no decision yet" as 0 and every decision distinctly', () => {
    expect(ADMISSION.code.none).toBe(0);
    expect(new Set(ADMISSION.names.map((n) => ADMISSION.code[n])).size).toBe(ADMISSION.names.length);
  });
});

describe('RouterFlag', () => {
  it('gives every flag its own bit of one byte', () => {
    const bits = Object.values(RouterFlag);
    for (const bit of bits) {
      expect(bit).toBeGreaterThan(0);
      expect(bit & (bit - 1)).toBe(0); // a power of two
      expect(bit).toBeLessThan(256);
    }
    expect(new Set(bits).size).toBe(bits.length);
  });
});

describe('RouterTable', () => {
  it('starts every router in the initial session state, no admission, no flags, no times', () => {
    const t = new RouterTable(3);
    for (let j = 0; j < 3; j++) {
      expect(t.state(j)).toBe('starting');
      expect(t.admission(j)).toBe('none');
      for (const flag of Object.values(RouterFlag)) expect(t.has(j, flag)).toBe(false);
      expect(t.downAt[j]).toBe(0);
      expect(t.reconnects[j]).toBe(0);
    }
  });

  it('stores every session state and admission per router', () => {
    const t = new RouterTable(2);
    for (const state of SESSION_STATES) {
      t.setState(1, state);
      expect(t.state(1)).toBe(state);
      expect(t.stateCode(1)).toBe(SESSION.code[state]);
      expect(t.state(0)).toBe('starting');
    }
    for (const admission of ADMISSION.names) {
      t.setAdmission(0, admission);
      expect(t.admission(0)).toBe(admission);
      expect(t.admissionCode(0)).toBe(ADMISSION.code[admission]);
      expect(t.admission(1)).toBe('none');
    }
  });

  it('sets, clears and takes each flag without touching the others or other routers', () => {
    const t = new RouterTable(2);
    const flags = Object.values(RouterFlag);
    for (const flag of flags) {
      const others = flags.filter((f) => f !== flag);
      for (const other of others) t.set(0, other);
      t.set(0, flag);
      expect(t.has(0, flag)).toBe(true);
      expect(t.has(1, flag)).toBe(false);
      expect(t.take(0, flag)).toBe(true);
      expect(t.has(0, flag)).toBe(false);
      expect(t.take(0, flag)).toBe(false); // taken once only
      for (const other of others) expect(t.has(0, other)).toBe(true);
      t.set(0, flag);
      t.clear(0, flag);
      expect(t.has(0, flag)).toBe(false);
      for (const other of others) t.clear(0, other);
    }
  });
});
