import { readFileSync } from 'node:fs';
import { SimError, type SimErrorCode } from './errors.js';

/**
 * Reads a JSON file: `SIM_FILE_UNREADABLE` when it cannot be read, `invalidCode` when it is not
 * JSON. `what` names the file in the message ("report", "scenario").
 */
export function readJsonFile(file: string, what: string, invalidCode: SimErrorCode): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new SimError('SIM_FILE_UNREADABLE', `cannot read ${what} ${file}: ${(err as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new SimError(invalidCode, `${file}: not JSON (${(err as Error).message})`);
  }
}
