import { ProtocolError } from '../errors.js';
import type { Manifest } from './manifest.js';
import { compareVersions, parseVersion, satisfiesRange } from './version-range.js';

/** The device a packet is checked against. */
export interface DeviceCompatibility {
  /** The router model, compared exactly with TARGET_MODELS. */
  model: string;
  /** The running firmware version (see {@link parseVersion}). */
  firmwareVersion: string;
  /** Accept firmware sections whose VERSION is older than the running firmware. Default false. */
  allowDowngrade?: boolean;
}

const FIRMWARE_TYPES = new Set(['FirmwareFull', 'FirmwareIncremental']);

/**
 * Checks that a packet is meant for this device, from its MANIFEST alone (so it can run before any
 * payload byte is downloaded or written): the model is in TARGET_MODELS (when non-empty), the
 * firmware satisfies every section's REQUIRED_SW, and no firmware section's VERSION is older than the
 * running firmware unless `allowDowngrade`. Returns undefined when compatible, otherwise a
 * `PROTO_PACKET_INCOMPATIBLE` error (with `entry` set to the section concerned). Never throws.
 */
export function checkPacketCompatibility(
  manifest: Manifest,
  device: DeviceCompatibility,
): ProtocolError | undefined {
  const models = manifest.header?.targetModels ?? [];
  if (models.length > 0 && !models.includes(device.model)) {
    return new ProtocolError(
      'PROTO_PACKET_INCOMPATIBLE',
      `the packet targets ${models.join(', ')}, not ${device.model}`,
    );
  }
  const running = parseVersion(device.firmwareVersion);
  for (const section of manifest.sections) {
    const entry = { entry: section.fileName };
    if (section.requiredSw !== undefined && !(running && satisfiesRange(running, section.requiredSw))) {
      return new ProtocolError(
        'PROTO_PACKET_INCOMPATIBLE',
        `${section.fileName} requires firmware ${section.requiredSw}, the device runs ${device.firmwareVersion}`,
        entry,
      );
    }
    if (FIRMWARE_TYPES.has(section.fileType) && section.version !== undefined && !device.allowDowngrade) {
      const target = parseVersion(section.version);
      if (!target || !running) {
        return new ProtocolError(
          'PROTO_PACKET_INCOMPATIBLE',
          `cannot compare firmware versions ${section.version} and ${device.firmwareVersion}`,
          entry,
        );
      }
      if (compareVersions(target, running) < 0) {
        return new ProtocolError(
          'PROTO_PACKET_INCOMPATIBLE',
          `${section.fileName} would downgrade the firmware from ${device.firmwareVersion} to ${section.version}`,
          entry,
        );
      }
    }
  }
  return undefined;
}
