/**
 * The columns of the bulk-import CSV files, in one place: the server's importers read by them and
 * the console's import pages show them. The console bundles this file into the browser, so it
 * imports nothing (no Node built-ins, no server modules).
 */

/** Columns of the device registration file (`POST /api/inventory/managed-devices/import`), any order. */
export const DEVICE_CSV_COLUMNS = [
  'serialNumber',
  'name',
  'location',
  'group',
  'groupUuid',
  'model',
  'firmware',
  'connectionPingInterval',
  'connectionPongTimeout',
  'connectionSessionTimeout',
  'latitude',
  'longitude',
] as const;

/** The one column a device file must have. */
export const DEVICE_CSV_REQUIRED = 'serialNumber' satisfies (typeof DEVICE_CSV_COLUMNS)[number];

/** Prefix of the custom-field columns of a device file: `customFields.<key>`. */
export const DEVICE_CSV_CUSTOM_PREFIX = 'customFields.';

/**
 * The column of the vendor's licence file (`POST /api/licences/import`) that holds the activation
 * codes. The vendor's file also has `plan` and `issuedAt` (what `fleet-server licences issue --csv`
 * prints); they are not read: the code alone says what the licence is.
 */
export const LICENCE_CSV_CODE_COLUMN = 'code';
