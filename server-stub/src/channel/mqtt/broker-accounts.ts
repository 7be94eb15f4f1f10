/**
 * The broker's device accounts, as the server keeps them in step with its devices: with an
 * external Mosquitto the dynamic-security plugin holds one client (user name = client id = device
 * id, password = the device credential) and one role (its own up, down and presence topics) per
 * device; the embedded broker asks the store at every CONNECT instead, and only needs to hear of
 * deletions ({@link droppingAccounts}).
 */
export interface BrokerAccounts {
  /** Creates or updates the broker client of a device (registration, a new credential). */
  provision(devices: readonly { deviceId: string; credential: string }[]): Promise<void>;
  /** Removes the broker clients of deleted devices; a connected one is disconnected by the broker. */
  remove(deviceIds: readonly string[]): Promise<void>;
  /**
   * Brings the broker in step with the store at start: `devices` lists every device id with a way
   * to read its credential; clients of unknown devices are removed, missing ones created.
   */
  reconcile(devices: Iterable<string>, credentialOf: (deviceId: string) => string | undefined): Promise<{ created: number; removed: number }>;
  close(): Promise<void>;
}

/**
 * The embedded broker's side of the accounts: nothing to provision or reconcile (it asks the store
 * at every CONNECT); a deleted device's open connection is ended by `drop` (its will ends its link).
 */
export function droppingAccounts(drop: (deviceIds: readonly string[]) => void): BrokerAccounts {
  return {
    provision: () => Promise.resolve(),
    remove: (deviceIds) => {
      drop(deviceIds);
      return Promise.resolve();
    },
    reconcile: () => Promise.resolve({ created: 0, removed: 0 }),
    close: () => Promise.resolve(),
  };
}
