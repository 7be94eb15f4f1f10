import { Buffer } from 'node:buffer';
import { existsSync } from 'node:fs';
import {
  CONNECTION_PROFILE_FILENAME,
  CONNECTION_PROFILE_FORMAT,
  type ConnectionProfile,
  type MqttProtocolVersion,
  writePacket,
} from '@router-fleet/protocol';
import type { Clock } from '../clock.js';
import type { ServerConfig } from '../config.js';
import type { CredentialVault } from '../devices/credentials.js';
import { sessionParams } from '../devices/keep-alive.js';
import { AppError } from '../errors.js';
import { pemBlocks, readText } from '../pki/files.js';
import { localTlsFiles } from '../pki/local-tls.js';
import { loadOrCreateSigningPki, type SigningPki } from '../pki/signing.js';
import type { ProfileRow } from '../store/devices.js';
import type { AccountScope } from '../store/scope.js';
import type { TrustAnchorSet } from '../pki/trust-anchors.js';

/** Path of the control channel on the server. */
export const CHANNEL_PATH = '/api/channel';

export type ProfileFormat = 'json' | 'update-packet';

/** A profile as this server writes it: with the MQTT binding it names the broker's protocol level. */
export type ServedProfile = ConnectionProfile & { mqttVersion?: MqttProtocolVersion };

/** Devices read from the store per page while streaming a bulk download. */
const BULK_PAGE = 500;

/**
 * Connection profiles: the per-device `ConnectionProfile` of the protocol package,
 * delivered as JSON or as a signed update packet (one section `FILETYPE=ConnectionProfile`). The
 * signing PKI lives in the data directory (created on first start, see pki/signing.ts).
 */
export class ProfileService {
  #pki: SigningPki | undefined;
  #caCertPem: string | undefined;
  #listenPort: number;
  #mqttPort: number;
  #anchors: ((accountKey: number) => TrustAnchorSet) | undefined;

  constructor(
    private readonly config: ServerConfig,
    private readonly vault: CredentialVault,
    private readonly clock: Clock,
  ) {
    this.#listenPort = config.port;
    this.#mqttPort = config.mqttPort;
  }

  /** Loads (creating on first start) the signing PKI and the TLS CA that goes into profiles. */
  async init(): Promise<void> {
    this.#pki ??= await loadOrCreateSigningPki(this.config.dataDir, new Date(this.clock.now()));
    this.#caCertPem ??= this.#findTlsCa(this.#pki);
  }

  /** Where profiles take their trust anchors from (the account's complete set); set once when wiring. */
  useTrustAnchors(anchors: (accountKey: number) => TrustAnchorSet): void {
    this.#anchors = anchors;
  }

  /** After a rotation on disk: sign profiles with the new signer. */
  reload(pki: SigningPki): void {
    this.#pki = pki;
  }

  /** The server's own signing roots (current and rotated-out, not retired). */
  get trustAnchorsPem(): readonly string[] {
    return this.#ready().pki.trustAnchorsPem;
  }

  get caCertPem(): string {
    return this.#ready().ca;
  }

  /** Called once the server listens (port 0 resolves to the real port). */
  setListenPort(port: number): void {
    this.#listenPort = port;
  }

  /** Called once the embedded broker listens (mqttPort 0 resolves to the real port). */
  setMqttPort(port: number): void {
    this.#mqttPort = port;
  }

  /** The host name devices reach this server at when no public URL says it (a wildcard: localhost). */
  #ownHost(): string {
    const wildcard = ['0.0.0.0', '::', ''].includes(this.config.host);
    const host = wildcard ? 'localhost' : this.config.host;
    return host.includes(':') ? `[${host}]` : host;
  }

  /**
   * Base URL of the HTTP API as devices reach it (`https://host:port`): packet download URLs in job
   * offers are built on it whatever transport the control channel uses. `--public-url`, or derived
   * from host, port and TLS.
   */
  httpBaseUrl(): string {
    if (this.config.publicUrl) {
      const u = new URL(this.config.publicUrl);
      const scheme = u.protocol === 'https:' || u.protocol === 'wss:' ? 'https:' : 'http:';
      const path = u.pathname.endsWith(CHANNEL_PATH) ? u.pathname.slice(0, -CHANNEL_PATH.length) : u.pathname;
      return `${scheme}//${u.host}${path.replace(/\/$/, '')}`;
    }
    return `${this.config.tlsCert !== null ? 'https' : 'http'}://${this.#ownHost()}:${this.#listenPort}`;
  }

  /** The WebSocket control-channel URL (`wss://…/api/channel`) on the HTTP base URL. */
  channelUrl(): string {
    const u = new URL(this.httpBaseUrl());
    return `${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.host}${u.pathname.replace(/\/$/, '')}${CHANNEL_PATH}`;
  }

  /**
   * The broker devices dial with the MQTT binding: `mqttPublicUrl`, else the external broker's
   * `mqttUrl`, else the embedded broker on this server's host (mqtts with the server's certificate).
   * Undefined when MQTT is off.
   */
  mqttUrl(): string | undefined {
    const c = this.config;
    if (c.mqtt === 'off' && c.mqttUrl === null) return undefined;
    if (c.mqttPublicUrl) return c.mqttPublicUrl;
    if (c.mqttUrl) return c.mqttUrl;
    const host = c.publicUrl ? new URL(c.publicUrl).hostname : this.#ownHost();
    return `${c.tlsCert !== null ? 'mqtts' : 'mqtt'}://${host}:${this.#mqttPort}`;
  }

  /** MQTT protocol level of the devices' broker: 3.1.1 (4) for the embedded one, which speaks no other; 5 otherwise. */
  mqttVersion(): MqttProtocolVersion {
    return this.config.mqtt === 'embedded' ? 4 : 5;
  }

  /** The control-channel URL new profiles name (`deviceTransport`): the broker or the WebSocket endpoint. */
  serverUrl(): string {
    return (this.config.deviceTransport === 'mqtt' ? this.mqttUrl() : undefined) ?? this.channelUrl();
  }

  /** The device's profile; 404 when the uuid is not a device of this account. */
  profile(scope: AccountScope, deviceUuid: string): ServedProfile {
    const row = scope.devices.profileRows({ afterId: 0, limit: 1, uuids: [deviceUuid] })[0];
    if (!row) throw new AppError('SERVER_NOT_FOUND');
    return this.profileOf(row, scope.accountId);
  }

  /**
   * The profile of a device of account `accountKey`: its trust anchors are every root that signs
   * what the device will be sent (server, vendor, the account's policy), not only the server's.
   */
  profileOf(row: ProfileRow, accountKey: number): ServedProfile {
    const { pki, ca } = this.#ready();
    const set = this.#anchors?.(accountKey);
    const mqtt = this.config.deviceTransport === 'mqtt' && this.mqttUrl() !== undefined;
    return {
      format: CONNECTION_PROFILE_FORMAT,
      serverUrl: this.serverUrl(),
      ...(mqtt ? { mqttVersion: this.mqttVersion() } : {}),
      caCertPem: ca,
      trustAnchorsPem: set ? set.anchors.map((a) => a.certPem) : [...pki.trustAnchorsPem],
      ...(set ? { trustAnchors: set.anchors.map((a) => ({ scope: a.scope, certPem: a.certPem })) } : {}),
      deviceId: row.uuid,
      serialNumber: row.serial_number,
      credential: this.vault.reveal(row.credential_enc),
      keepAlive: sessionParams(row),
    };
  }

  /** The profile as a signed update packet (uncompressed tar). */
  async packet(profile: ConnectionProfile): Promise<Buffer> {
    const { pki } = this.#ready();
    return writePacket({
      files: [
        {
          name: CONNECTION_PROFILE_FILENAME,
          fileType: 'ConnectionProfile',
          source: { data: Buffer.from(JSON.stringify(profile), 'utf8') },
          description: `Connection profile of ${profile.serialNumber}`,
        },
      ],
      description: `router-fleet connection profile for ${profile.serialNumber}`,
      createdAt: new Date(this.clock.now()),
      signer: pki.signer,
    });
  }

  /**
   * NDJSON lines for many devices, streamed page by page from the store: with `json` one
   * ConnectionProfile per line; with `update-packet` `{deviceId, serialNumber, packet}` where
   * `packet` is the signed packet in base64. Unknown uuids are refused before anything is sent.
   */
  bulk(scope: AccountScope, select: { deviceUuids?: readonly string[] }, format: ProfileFormat): AsyncIterable<string> {
    this.#ready();
    let listed: ProfileRow[] | undefined;
    if (select.deviceUuids) {
      const unique = [...new Set(select.deviceUuids)];
      listed = scope.devices.profileRows({ afterId: 0, limit: unique.length, uuids: unique });
      if (listed.length !== unique.length) {
        throw new AppError('SERVER_NOT_FOUND', `${unique.length - listed.length} of the devices are not in your account.`);
      }
    }
    const profileOf = (r: ProfileRow) => this.profileOf(r, scope.accountId);
    const packetOf = (r: ProfileRow) => this.packet(this.profileOf(r, scope.accountId));
    async function* pages(): AsyncGenerator<ProfileRow[]> {
      if (listed) {
        for (let i = 0; i < listed.length; i += BULK_PAGE) yield listed.slice(i, i + BULK_PAGE);
        return;
      }
      let afterId = 0;
      for (;;) {
        const rows = scope.devices.profileRows({ afterId, limit: BULK_PAGE });
        if (rows.length === 0) return;
        afterId = rows[rows.length - 1]!.id;
        yield rows;
      }
    }
    async function* lines(): AsyncGenerator<string> {
      for await (const rows of pages()) {
        if (format === 'json') {
          yield rows.map((r) => `${JSON.stringify(profileOf(r))}\n`).join('');
          continue;
        }
        for (const r of rows) {
          const packet = await packetOf(r);
          yield `${JSON.stringify({ deviceId: r.uuid, serialNumber: r.serial_number, packet: packet.toString('base64') })}\n`;
        }
      }
    }
    return lines();
  }

  #ready(): { pki: SigningPki; ca: string } {
    if (!this.#pki || this.#caCertPem === undefined) throw new Error('ProfileService.init() has not run');
    return { pki: this.#pki, ca: this.#caCertPem };
  }

  /**
   * The CA that verifies the server's TLS certificate: `tlsCa`, else `DATA/tls/ca.pem` (from
   * `fleet-server tls generate`), else the last certificate of the `tlsCert` chain (a self-signed
   * certificate is its own CA). Without TLS (`ws://`, local use only) no CA is needed; the profile
   * format still requires a certificate, so it carries the signing root.
   */
  #findTlsCa(pki: SigningPki): string {
    if (this.config.tlsCa) return readText(this.config.tlsCa);
    const local = localTlsFiles(this.config.dataDir).caCert;
    if (existsSync(local)) return readText(local);
    if (this.config.tlsCert) {
      const chain = pemBlocks(readText(this.config.tlsCert));
      if (chain.length > 0) return chain[chain.length - 1]!;
    }
    return pki.trustAnchorsPem[0]!;
  }
}
