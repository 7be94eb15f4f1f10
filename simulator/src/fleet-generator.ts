import { en, Faker } from '@faker-js/faker';

/** One router of a generated fleet: the columns the server's CSV mass registration imports. */
export interface FleetDevice {
  serialNumber: string;
  name: string;
  model: string;
  firmware: string;
  group: string;
  location: string;
  latitude: number;
  longitude: number;
  customFields: Record<string, string>;
}

export interface FleetOptions {
  /** Number of routers. */
  devices: number;
  /** Seed of the generator: the same seed (and faker version) gives the same fleet, byte for byte. */
  seed: number;
  /** Add custom fields (a paid-plan feature on the server). Default true. */
  customFields?: boolean;
}

/** Model mix of a typical industrial fleet (weights in percent) with each model's firmware spread. */
export const MODEL_MIX: ReadonlyArray<{ model: string; code: string; weight: number }> = [
  { model: 'MRX5 LTE', code: 'M5L', weight: 28 },
  { model: 'MRX3 LTE', code: 'M3L', weight: 18 },
  { model: 'MRX6 5G', code: 'M65', weight: 9 },
  { model: 'MRO-L200', code: 'OL2', weight: 14 },
  { model: 'MRO-L300', code: 'OL3', weight: 6 },
  { model: 'SCR-WL', code: 'SWL', weight: 10 },
  { model: 'ECR-LW300', code: 'ELW', weight: 8 },
  { model: 'MRCC', code: 'MCC', weight: 7 },
];

/** Firmware spread: most routers near the latest release, a long tail of old ones. */
export const FIRMWARE_SPREAD: ReadonlyArray<{ version: string; weight: number }> = [
  { version: '10.4.0', weight: 34 },
  { version: '10.3.2', weight: 24 },
  { version: '10.3.0', weight: 12 },
  { version: '10.2.1', weight: 11 },
  { version: '10.1.0', weight: 8 },
  { version: '9.8.3', weight: 7 },
  { version: '9.4.0', weight: 4 },
];

/** Places routers are installed, weighted towards Europe (where most industrial fleets of this kind run). */
const SITES: ReadonlyArray<{ city: string; country: string; lat: number; lon: number; weight: number }> = [
  { city: 'Regensburg', country: 'DE', lat: 49.013, lon: 12.101, weight: 9 },
  { city: 'Munich', country: 'DE', lat: 48.137, lon: 11.575, weight: 8 },
  { city: 'Hamburg', country: 'DE', lat: 53.551, lon: 9.993, weight: 6 },
  { city: 'Stuttgart', country: 'DE', lat: 48.776, lon: 9.183, weight: 6 },
  { city: 'Vienna', country: 'AT', lat: 48.208, lon: 16.373, weight: 5 },
  { city: 'Zurich', country: 'CH', lat: 47.377, lon: 8.541, weight: 4 },
  { city: 'Rotterdam', country: 'NL', lat: 51.924, lon: 4.478, weight: 4 },
  { city: 'Lyon', country: 'FR', lat: 45.764, lon: 4.836, weight: 4 },
  { city: 'Milan', country: 'IT', lat: 45.464, lon: 9.19, weight: 4 },
  { city: 'Madrid', country: 'ES', lat: 40.417, lon: -3.704, weight: 3 },
  { city: 'Gdansk', country: 'PL', lat: 54.352, lon: 18.646, weight: 3 },
  { city: 'Gothenburg', country: 'SE', lat: 57.709, lon: 11.975, weight: 3 },
  { city: 'Aberdeen', country: 'GB', lat: 57.15, lon: -2.094, weight: 3 },
  { city: 'Houston', country: 'US', lat: 29.76, lon: -95.37, weight: 5 },
  { city: 'Chicago', country: 'US', lat: 41.878, lon: -87.63, weight: 4 },
  { city: 'Calgary', country: 'CA', lat: 51.045, lon: -114.057, weight: 2 },
  { city: 'Monterrey', country: 'MX', lat: 25.686, lon: -100.316, weight: 2 },
  { city: 'Sao Paulo', country: 'BR', lat: -23.55, lon: -46.633, weight: 3 },
  { city: 'Johannesburg', country: 'ZA', lat: -26.204, lon: 28.047, weight: 2 },
  { city: 'Dubai', country: 'AE', lat: 25.205, lon: 55.271, weight: 2 },
  { city: 'Pune', country: 'IN', lat: 18.52, lon: 73.857, weight: 3 },
  { city: 'Shenzhen', country: 'CN', lat: 22.543, lon: 114.058, weight: 3 },
  { city: 'Singapore', country: 'SG', lat: 1.352, lon: 103.82, weight: 2 },
  { city: 'Osaka', country: 'JP', lat: 34.694, lon: 135.502, weight: 2 },
  { city: 'Perth', country: 'AU', lat: -31.953, lon: 115.857, weight: 2 },
];

const SITE_KINDS = ['pump station', 'substation', 'wind turbine', 'water tower', 'filling plant', 'depot', 'solar park', 'treatment plant', 'compressor station', 'cell site'];
const GROUPS = ['water', 'energy', 'oil-gas', 'logistics', 'building', 'machinery'];

function weighted<T extends { weight: number }>(f: Faker, items: ReadonlyArray<T>): T {
  return f.helpers.weightedArrayElement(items.map((value) => ({ value, weight: value.weight })));
}

/** Generates a deterministic fleet: same options → same routers, in the same order. */
export function generateFleet(options: FleetOptions): FleetDevice[] {
  if (!Number.isInteger(options.devices) || options.devices < 0) throw new RangeError('devices must be an integer ≥ 0');
  const f = new Faker({ locale: [en], seed: options.seed });
  const withCustom = options.customFields ?? true;
  const fleet: FleetDevice[] = [];
  for (let i = 0; i < options.devices; i++) {
    const model = weighted(f, MODEL_MIX);
    const site = weighted(f, SITES);
    const kind = f.helpers.arrayElement(SITE_KINDS);
    const group = f.helpers.arrayElement(GROUPS);
    // Serial numbers: model code, production year, running number: unique by construction.
    const year = f.number.int({ min: 18, max: 25 });
    const serialNumber = `${model.code}${year}${String(i + 1).padStart(7, '0')}`;
    const device: FleetDevice = {
      serialNumber,
      name: `${site.city} ${kind} ${f.number.int({ min: 1, max: 99 })}`,
      model: model.model,
      firmware: weighted(f, FIRMWARE_SPREAD).version,
      group: `${group}-${site.country.toLowerCase()}`,
      location: `${site.city}, ${site.country}`,
      latitude: round(site.lat + f.number.float({ min: -0.4, max: 0.4 }), 5),
      longitude: round(site.lon + f.number.float({ min: -0.6, max: 0.6 }), 5),
      customFields: {},
    };
    if (withCustom) {
      device.customFields = {
        site: `${site.country}-${f.string.alphanumeric({ length: 6, casing: 'upper' })}`,
        installer: f.company.name(),
        commissioned: f.date.between({ from: '2018-01-01T00:00:00Z', to: '2025-12-31T00:00:00Z' }).toISOString().slice(0, 10),
      };
    }
    fleet.push(device);
  }
  return fleet;
}

function round(value: number, digits: number): number {
  const k = 10 ** digits;
  return Math.round(value * k) / k;
}

function csvCell(value: string | number): string {
  const s = String(value);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** The fleet as the CSV the server's mass registration imports (RFC 4180, LF line ends). */
export function fleetToCsv(fleet: readonly FleetDevice[]): string {
  const customKeys = [...new Set(fleet.flatMap((d) => Object.keys(d.customFields)))].sort();
  const header = ['serialNumber', 'name', 'model', 'firmware', 'group', 'location', 'latitude', 'longitude', ...customKeys.map((k) => `customFields.${k}`)];
  const lines = [header.join(',')];
  for (const d of fleet) {
    lines.push(
      [d.serialNumber, d.name, d.model, d.firmware, d.group, d.location, d.latitude, d.longitude, ...customKeys.map((k) => d.customFields[k] ?? '')]
        .map(csvCell)
        .join(','),
    );
  }
  return `${lines.join('\n')}\n`;
}
