/**
 * The FILETYPE vocabulary of MANIFEST sections. Only `Container` is spelled out in the vendor's
 * public documentation; the other strings are ours (see FORMAT.md). Keys are the exact,
 * case-sensitive strings written after `FILETYPE=`; values describe them.
 */
export const FileTypes = {
  FirmwareFull:
    'A complete firmware image (e.g. `autoupdate-<version>-full.arm64.tar`); replaces the running firmware.',
  FirmwareIncremental:
    'A firmware delta from one version to another (e.g. `autoupdate-2.0-to-2.3.tar`); REQUIRED_SW names the base.',
  ConfigurationProfile: 'A binary configuration profile: stored on the router, then activated.',
  AsciiConfiguration: 'CLI configuration commands as ASCII text, applied at once or stored.',
  Certificate: 'A PEM certificate (optionally with its private key) for the router to install.',
  CaCertificate: 'A PEM CA certificate to add to the router trust store.',
  Container: 'A container image: an xz-compressed rootfs tar (the vendor-documented `FILETYPE=Container`).',
  ContainerConfiguration: 'The configuration that creates and starts a container installed by a Container section.',
  ConnectionProfile: 'The per-device connection profile (management endpoint and credentials) used at registration.',
} as const;

/** One of the known FILETYPE strings. */
export type FileType = keyof typeof FileTypes;

/** True when `value` is one of the known FILETYPE strings (exact, case-sensitive match). */
export function isFileType(value: string): value is FileType {
  return Object.hasOwn(FileTypes, value);
}
