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

/** The built-in installers by FILETYPE, made once per process and setting (shared by every agent in it; not to be changed). */
const defaultMaps = new Map<boolean, Map<string, Installer>>();

/**
 * The built-in installers by FILETYPE. They keep no state of their own (each call gets its
 * context), so every agent of a process shares one map: a process that runs thousands of agents
 * (the simulator) otherwise made a set of installers for each router at its first job.
 */
export function defaultInstallerMap(options: { allowInsecure: boolean }): Map<string, Installer> {
  let map = defaultMaps.get(options.allowInsecure);
  if (!map) defaultMaps.set(options.allowInsecure, (map = installerMap(defaultInstallers(options))));
  return map;
}

export function installerMap(installers: readonly Installer[]): Map<string, Installer> {
  const map = new Map<string, Installer>();
  for (const installer of installers) for (const type of installer.fileTypes) map.set(type, installer);
  return map;
}
