import { certificateInstaller } from './certificate.js';
import { asciiConfigurationInstaller, configurationProfileInstaller } from './configuration.js';
import { connectionProfileInstaller } from './connection-profile.js';
import { containerConfigurationInstaller, containerInstaller } from './container.js';
import { firmwareInstaller } from './firmware.js';
import type { Installer } from './installer.js';

/** The installers of the built-in payload types, by FILETYPE. */
export function defaultInstallers(options: { allowInsecure: boolean }): Installer[] {
  return [
    firmwareInstaller,
    configurationProfileInstaller,
    asciiConfigurationInstaller,
    certificateInstaller,
    containerInstaller,
    containerConfigurationInstaller,
    connectionProfileInstaller(options.allowInsecure),
  ];
}

export function installerMap(installers: readonly Installer[]): Map<string, Installer> {
  const map = new Map<string, Installer>();
  for (const installer of installers) for (const type of installer.fileTypes) map.set(type, installer);
  return map;
}
