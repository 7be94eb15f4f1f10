import type { Store } from './database.js';

/** One device with a position, for the dashboard's map. */
export interface DeviceLocationRow {
  uuid: string;
  name: string;
  location: string;
  latitude: number;
  longitude: number;
  source: 'reported' | 'typed-in';
  online: number;
  admission: string | null;
}

/**
 * The dashboard's aggregates over one account's devices: each one query over indexed columns
 * (devices_account_effective_firmware, devices_account_effective_model, devices_account_status,
 * devices_account_geo), so they stay fast at 50,000 devices. Model, firmware and position are what
 * the router reported when it did, else what was typed in. Every statement carries `account_id = ?`.
 */
export class AccountDashboard {
  constructor(
    private readonly store: Store,
    readonly accountId: number,
  ) {}

  firmware(): { firmware: string | null; count: number }[] {
    return this.store
      .stmt<{ firmware: string | null; count: number }>(
        `SELECT COALESCE(reported_firmware, firmware) AS firmware, COUNT(*) AS count FROM devices WHERE account_id = ?
         GROUP BY COALESCE(reported_firmware, firmware) ORDER BY count DESC, firmware`,
      )
      .all(this.accountId);
  }

  models(): { model: string | null; count: number }[] {
    return this.store
      .stmt<{ model: string | null; count: number }>(
        `SELECT COALESCE(reported_model, model) AS model, COUNT(*) AS count FROM devices WHERE account_id = ?
         GROUP BY COALESCE(reported_model, model) ORDER BY count DESC, model`,
      )
      .all(this.accountId);
  }

  status(): { total: number; online: number; unmanaged: number } {
    return this.store
      .stmt<{ total: number; online: number; unmanaged: number }>(
        `SELECT COUNT(*) AS total,
           COUNT(CASE WHEN online = 1 AND admission = 'managed' THEN 1 END) AS online,
           COUNT(CASE WHEN online = 1 AND admission = 'unmanaged' THEN 1 END) AS unmanaged
         FROM devices WHERE account_id = ?`,
      )
      .get(this.accountId)!;
  }

  locations(): DeviceLocationRow[] {
    return this.store
      .stmt<DeviceLocationRow>(
        `SELECT uuid, name, location,
           CASE WHEN reported_lat IS NOT NULL THEN reported_lat ELSE latitude END AS latitude,
           CASE WHEN reported_lat IS NOT NULL THEN reported_lon ELSE longitude END AS longitude,
           CASE WHEN reported_lat IS NOT NULL THEN 'reported' ELSE 'typed-in' END AS source,
           online, admission FROM devices
         WHERE account_id = ? AND ((latitude IS NOT NULL AND longitude IS NOT NULL) OR (reported_lat IS NOT NULL AND reported_lon IS NOT NULL))
         ORDER BY id`,
      )
      .all(this.accountId);
  }
}
