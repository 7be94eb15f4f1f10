/**
 * Identifier kinds of the server. An account, a device or a job has two ids: the SQLite row id
 * (`number`, used in joins and never shown outside the server) and the UUID (`string`, what the
 * REST API, the control channel and MQTT topics carry). Both used to be called `accountId`; these
 * branded types make passing one where the other is meant a type error. A brand costs nothing at
 * run time: the values stay plain numbers and strings.
 */

declare const kind: unique symbol;

/** `T` marked as identifier kind `K`. */
type Branded<T, K extends string> = T & { readonly [kind]: K };

/** `accounts.id`: an account's row id. */
export type AccountRowId = Branded<number, 'AccountRowId'>;
/** `accounts.uuid`: an account's public id. */
export type AccountUuid = Branded<string, 'AccountUuid'>;
/** `devices.id`: a device's row id. */
export type DeviceRowId = Branded<number, 'DeviceRowId'>;
/** `devices.uuid`: a device's public id (also its id on the control channel). */
export type DeviceUuid = Branded<string, 'DeviceUuid'>;

/** Marks a value read from `accounts.id` (or a column referencing it). */
export const asAccountRowId = (id: number): AccountRowId => id as AccountRowId;
/** Marks a value read from `accounts.uuid`. */
export const asAccountUuid = (uuid: string): AccountUuid => uuid as AccountUuid;
/** Marks a value read from `devices.id` (or a column referencing it). */
export const asDeviceRowId = (id: number): DeviceRowId => id as DeviceRowId;
/** Marks a value read from `devices.uuid`. */
export const asDeviceUuid = (uuid: string): DeviceUuid => uuid as DeviceUuid;
