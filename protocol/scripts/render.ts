/**
 * Renders the generated artifacts of the protocol package from the message catalogue:
 * `protocol/schema/*.json` (one JSON Schema per message type) and `docs/protocol.md`.
 * `generate.ts` writes them; a test fails when the checked-in copies are stale.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TSchema } from '@sinclair/typebox';
import {
  CANCELLABLE_JOB_STATES,
  CloseCodes,
  JOB_EXECUTION_STATES,
  JOB_TRANSITIONS,
  MAX_FRAME_BYTES,
  MESSAGE_CATALOGUE,
  MESSAGE_TYPES,
  type MessageType,
  MQTT_BINDING,
  MQTT_MAX_PACKET_BYTES,
  MQTT_MESSAGE_EXPIRY_SEC,
  MQTT_SESSION_EXPIRY_SEC,
  messageSchema,
  PROTOCOL_VERSION,
  ProtocolErrorCodes,
  WS_SUBPROTOCOL,
} from '../src/index.js';

export const protocolDir = join(dirname(fileURLToPath(import.meta.url)), '..');
export const repoDir = join(protocolDir, '..');

/** JSON Schema files: name → content. TypeBox schemas are JSON Schema; symbols are dropped by JSON. */
export function renderSchemaFiles(): Record<string, string> {
  const files: Record<string, string> = {};
  for (const type of MESSAGE_TYPES) {
    const schema = { $schema: 'https://json-schema.org/draft/2020-12/schema', ...messageSchema(type) };
    files[`${type}.json`] = `${JSON.stringify(schema, null, 2)}\n`;
  }
  return files;
}

interface Row {
  path: string;
  type: string;
  required: boolean;
  description: string;
}

function describeType(s: TSchema): string {
  const schema = s as Record<string, unknown> & TSchema;
  if (Array.isArray(schema.anyOf)) {
    const parts = (schema.anyOf as TSchema[]).map((x) =>
      'const' in x ? `\`${JSON.stringify(x.const)}\`` : describeType(x),
    );
    return parts.join(' \\| ');
  }
  if ('const' in schema) return `\`${JSON.stringify(schema.const)}\``;
  const bits: string[] = [];
  const t = String(schema.type ?? 'any');
  if (t === 'string') {
    if (schema.minLength !== undefined || schema.maxLength !== undefined) {
      bits.push(`length ${schema.minLength ?? 0}–${schema.maxLength ?? '∞'}`);
    }
    if (schema.pattern) bits.push(`pattern \`${String(schema.pattern).replace(/\|/g, '\\|')}\``);
  }
  if (t === 'integer' || t === 'number') {
    if (schema.minimum !== undefined) bits.push(`≥ ${schema.minimum}`);
    if (schema.maximum !== undefined && Number(schema.maximum) < Number.MAX_SAFE_INTEGER)
      bits.push(`≤ ${schema.maximum}`);
  }
  if (t === 'array') {
    if (schema.minItems !== undefined) bits.push(`≥ ${schema.minItems} items`);
    if (schema.maxItems !== undefined) bits.push(`≤ ${schema.maxItems} items`);
    if (schema.uniqueItems) bits.push('unique');
  }
  if (t === 'object' && schema.patternProperties) {
    bits.push(`map${schema.maxProperties !== undefined ? `, ≤ ${schema.maxProperties} keys` : ''}`);
  }
  return bits.length ? `${t} (${bits.join(', ')})` : t;
}

function flatten(schema: TSchema, prefix: string, required: boolean, rows: Row[]): void {
  const s = schema as Record<string, unknown> & TSchema;
  if (prefix)
    rows.push({ path: prefix, type: describeType(s), required, description: String(s.description ?? '') });
  if (s.type === 'object' && s.properties) {
    const req = new Set((s.required as string[] | undefined) ?? []);
    for (const [k, v] of Object.entries(s.properties as Record<string, TSchema>)) {
      flatten(v, `${prefix}/${k}`, req.has(k), rows);
    }
  }
  if (s.type === 'object' && s.patternProperties) {
    for (const v of Object.values(s.patternProperties as Record<string, TSchema>)) {
      if ((v as { type?: string }).type === 'object') flatten(v, `${prefix}/*`, false, rows);
    }
  }
  if (s.type === 'array' && s.items) {
    const items = s.items as TSchema;
    if ((items as { type?: string }).type === 'object') flatten(items, `${prefix}/0…`, true, rows);
  }
}

function fieldTable(schema: TSchema, prefix: string): string {
  const rows: Row[] = [];
  flatten(schema, prefix, true, rows);
  const lines = ['| Field | Type | Req. | Description |', '| --- | --- | --- | --- |'];
  for (const r of rows) {
    lines.push(
      `| \`${r.path}\` | ${r.type} | ${r.required ? 'yes' : 'no'} | ${r.description.replace(/\|/g, '\\|').replace(/\n/g, ' ')} |`,
    );
  }
  return lines.join('\n');
}

function example(type: MessageType): string {
  const file = join(protocolDir, 'test', 'fixtures', `${type}.json`);
  if (!existsSync(file)) return '_(no fixture)_';
  const fixture = JSON.parse(readFileSync(file, 'utf8')) as { valid?: { frame: unknown }[] };
  const frame = fixture.valid?.[0]?.frame;
  return frame ? `\`\`\`json\n${JSON.stringify(frame, null, 2)}\n\`\`\`` : '_(no fixture)_';
}

const DIRECTION = { up: 'device → server', down: 'server → device', both: 'either side' } as const;

function packetFormat(): string {
  const file = join(protocolDir, 'src', 'packet', 'FORMAT.md');
  if (!existsSync(file)) return '_The packet format description is missing (protocol/src/packet/FORMAT.md)._';
  return readFileSync(file, 'utf8').replace(/^# .*\n+/, '').replace(/^# /gm, '### ').replace(/^## /gm, '### ').trim();
}

export function renderProtocolDoc(): string {
  const out: string[] = [];
  out.push(`<!-- Generated by \`npm run generate\` from protocol/src and protocol/test/fixtures. Do not edit. -->

# router-fleet control-channel protocol ${PROTOCOL_VERSION}

Every part of router-fleet — the router agent, the simulator, the reference server — speaks this
protocol, and update packets use the format at the end of this page. The TypeScript definitions
in \`@router-fleet/protocol\` are the source of this page and of the JSON Schemas in
\`protocol/schema/\`.

## Contents
- [Versioning and compatibility](#versioning-and-compatibility)
- [Transport](#transport)
- [Envelope](#envelope)
- [Flows](#flows)
- [Message catalogue](#message-catalogue)
- [Job execution states](#job-execution-states)
- [Error codes](#error-codes)
- [Update packets](#update-packets)

## Versioning and compatibility
- The version is \`MAJOR.MINOR\` (now \`${PROTOCOL_VERSION}\`), sent in every envelope as \`v\`.
- Within a major version changes are **additive**: new optional fields, new message types. A
  receiver accepts every minor version of its major.
- **Unknown fields are ignored.** Receivers must accept and ignore fields they do not know, in the
  envelope and in bodies, at any depth. \`decode\` keeps them in the returned object untouched.
- An **unknown message type** is answered with an \`error\` (\`PROTO_UNKNOWN_TYPE\`); the channel
  stays open, so a newer peer can fall back.
- A **different major version** is refused: in the WebSocket handshake (the subprotocol carries the
  major), or with \`PROTO_UNSUPPORTED_VERSION\`.

## Transport
### WebSocket (default)
- The device dials out (routers sit behind NAT); the server never dials in. TLS (\`wss://\`) with
  the CA from the device's connection profile; the server certificate is verified.
- Subprotocol: \`${WS_SUBPROTOCOL}\`. The server refuses a handshake without it.
- One message per **text** frame, UTF-8 JSON. Maximum frame size **${MAX_FRAME_BYTES} bytes**; larger
  frames are refused (close ${CloseCodes.MESSAGE_TOO_BIG}). Packet bytes never travel on the channel:
  they are fetched over HTTPS with \`Range\`.
- Application-level \`ping\`/\`pong\` with the server's session parameters detects half-open links on
  both sides: a side that has heard nothing for \`pingIntervalSec\` sends \`ping\`; no \`pong\` within
  \`pongTimeoutSec\` → close ${CloseCodes.PONG_TIMEOUT} and reconnect (device) or drop (server).

| Close code | Name | Meaning |
| --- | --- | --- |
${Object.entries(CloseCodes)
  .map(([name, code]) => `| ${code} | \`${name}\` | ${closeMeaning[name] ?? ''} |`)
  .join('\n')}

### MQTT binding
The same JSON messages travel through an MQTT broker: one message per PUBLISH, QoS ${MQTT_BINDING.qos}
everywhere, the same envelope, message types, error codes and close codes. The connection profile
names the transport by its URL: \`mqtts://host:port\` (\`mqtt://\` only where insecure transport is
allowed), and says which MQTT version the broker speaks (\`mqttVersion\`: 5, or 4 for MQTT 3.1.1).

**Versions.** MQTT 5 with brokers that speak it (Mosquitto 2); MQTT 3.1.1 with the server's embedded
broker, which speaks only 3.1.1. Everything below works on 3.1.1; what MQTT 5 adds is marked (5).

**Topics.** \`{bucket}\` is the FNV-1a hash of the device id modulo ${MQTT_BINDING.buckets} (\`mqttBucket()\`);
a server process consumes whole buckets, so every uplink of one device reaches one process, in order.

| Topic | Direction | Notes |
| --- | --- | --- |
| \`${MQTT_BINDING.topicRoot}/{bucket}/{deviceId}/up\` | device → server | every protocol message of the device, \`hello\` first on each link |
| \`${MQTT_BINDING.topicRoot}/{bucket}/{deviceId}/down\` | server → device | protocol messages and close frames; the device subscribes |
| \`${MQTT_BINDING.topicRoot}/{bucket}/{deviceId}/presence\` | device (broker) | retained \`{"presence":"online","link":L}\`; last will \`{"presence":"offline","link":L}\` |

**Connecting.** Client id = user name = the device id; password = the device credential (the broker
refuses anything else: a refused credential is backed off like close ${CloseCodes.AUTH_FAILED}). Clean start
false, so QoS 1 downlinks (job offers) wait in the broker while the device is away; (5) session
expiry ${MQTT_SESSION_EXPIRY_SEC} s and maximum packet size ${MQTT_MAX_PACKET_BYTES} bytes in CONNECT. A device may
publish only on its own \`up\` and \`presence\` topics and subscribe only to its own \`down\` topic.

**A link** is one MQTT connection. After CONNACK the device subscribes to \`down\`, publishes its
\`online\` presence (retained) with a fresh link id \`L\` and waits for the PUBACK, then publishes
\`hello\` on \`up\`; its will is the \`offline\` presence with the same \`L\`. On the server a
\`hello\` always starts a new session of that device (the previous one ends, as a replaced
WebSocket does); anything else from a device without a session is answered like a first message
that is not \`hello\` (error, then close ${CloseCodes.HELLO_REQUIRED}), so a device whose server restarted behind a
live broker says \`hello\` again.

**Closing.** The server closes a link with a close frame on \`down\`:
\`{"close":<code>,"reason":"<text>"}\` (no protocol message has a \`close\` member). The device ends its
MQTT connection and treats the code exactly as the WebSocket close code of the same number (table
above). Close frames queued for an earlier link (they arrive right after CONNACK, before the new
\`hello\`) are ignored.

**Liveness.** MQTT keep-alive guards each client's connection to the broker. When a device's
keep-alive lapses or its connection drops without DISCONNECT, the broker publishes its will; the
server ends that session on the \`offline\` presence whose link id is the session's (a stale will
of an older link is ignored), and the licence lease's grace period starts then, as when a WebSocket
closes. Application \`ping\`/\`pong\` still runs end to end with the session parameters: it is what
tells a device that the server behind a live broker has gone, and the server that a device behind a
live broker stopped answering.

**Expiry (5).** Downlinks that are worthless later expire in the broker: ${Object.entries(MQTT_MESSAGE_EXPIRY_SEC).map(([t, s]) => `\`${t}\` ${s} s`).join(', ')}. Job offers and
cancels do not expire: the device must see them when it comes back (offers are idempotent by
execution id).

**Ordering.** Per device and direction, messages arrive in the order sent: one topic per direction,
QoS 1, one consuming server process per bucket. Delivery is at least once; the protocol's own
acknowledgements (event sequence numbers, offers by execution id) make repeats harmless.

## Envelope
Every message is one JSON object:

| Field | Type | Req. | Description |
| --- | --- | --- | --- |
| \`/v\` | string \`MAJOR.MINOR\` | yes | Protocol version of the sender. |
| \`/type\` | string | yes | Message type: the discriminator. |
| \`/id\` | string (1–64, \`[A-Za-z0-9._:-]\`) | yes | Unique message id (UUID recommended). |
| \`/correlationId\` | string (1–64) | no | For replies: the \`id\` of the message answered (\`welcome\` → \`hello\`, \`pong\` → \`ping\`, \`ack\`/\`error\` → the message concerned). |
| \`/sentAt\` | integer | yes | Sender clock, ms since the Unix epoch (UTC). |
| \`/body\` | object | yes | The type's body, below. |

## Flows
### Provisioning
1. An operator registers the router by serial number (\`POST /api/inventory/managed-devices\`).
2. The server produces a per-device **connection profile** as a signed update packet
   (\`GET …/connection-profile?format=update-packet\`, \`FILETYPE=ConnectionProfile\`): server URL, TLS CA,
   packet-signing trust anchors, device id and credential, keep-alive parameters.
3. The profile is applied on the router (\`fleet-agent provision PROFILE.tar\`); the agent dials out.

### Hello and admission
\`\`\`
device                                   server
  │── hello {serial, deviceId, credential…} ─▶│ authenticate (unknown/revoked → close 4003)
  │                                          │ lease a floating licence, first come first served
  │◀─ welcome {admission, session, consent} ─│ managed | unmanaged | rejected(+retryAfterSec)
  │── status ───────────────────────────────▶│ (rejected: server closes 4004; device waits retryAfterSec)
  │◀──────────── ping / pong ───────────────▶│ every pingIntervalSec of silence, either side
\`\`\`
The first message must be \`hello\` (otherwise close ${CloseCodes.HELLO_REQUIRED}). A lease survives a disconnect for
\`sessionTimeoutSec\` (and the server's grace period) and is reclaimed by the same device. When
licences drop, the devices that connected most recently beyond the limit receive \`licence-change\`
with \`unmanaged\`; they stay connected and visible but get no jobs.

### Trust anchors (since 1.1)
A device verifies every packet against its **trust anchors**: the server's signing roots (\`server\`),
the roots of the account's packet policy (\`account\`) and the firmware vendor's roots (\`vendor\`). The
connection profile carries them (\`trustAnchorsPem\`, and \`trustAnchors\` with the scope of each). The
device reports \`trustAnchorsDigest\` (SHA-256 over the sorted SHA-256 fingerprints of the DER
certificates) in \`hello\` and \`status\`; whenever it differs from the set the server would put in a
profile now (after a key rotation, a policy change, a vendor root imported), the server sends
\`trust-anchors\` with the complete set. The device accepts it only on its welcomed TLS session (never
from a packet), stores it atomically, then trusts exactly that set. A rotation keeps the old root in
the set until it is retired, so packets signed before and after the rotation both verify.

### Job lifecycle
\`\`\`
server: queued ──job-offer──▶ device: offered → downloading (Range, resumable) → downloaded (fully
verified: signature, hashes, model, REQUIRED_SW, downgrade) → installing (commit point) →
[rebooting →] verifying (health check) → succeeded | failed (rolled back) | rejected
\`\`\`
The device reports each state with \`job-progress\` (repeating a state = progress). Offers are
idempotent by \`executionId\`: a redelivered offer for a known execution is answered with its current
state, never re-applied. A terminal \`job-progress\` is repeated (after reconnects) until the server
answers with an \`ack\` whose \`correlationId\` is that message's id. \`job-cancel\` before the commit point
ends in \`cancelled\`; after it, the device finishes and reports the real result.

### Events and acknowledgements
Events carry a per-device \`seq\` (1, 2, 3, … kept across reboots). The device keeps each event in a
bounded persistent outbox until an \`ack\` lists its \`seq\`; after a reconnect it resends what is not
acknowledged. The server stores each \`seq\` once and acknowledges duplicates again, so nothing is lost
or doubled by a reconnect.

### Analytics
Only while the account consents (\`welcome.analyticsConsent\`, then \`settings\`), and only the
allowed metrics; both sides drop any other key.

## Message catalogue
| Type | Direction | Purpose |
| --- | --- | --- |
${MESSAGE_TYPES.map((t) => `| [\`${t}\`](#${t}) | ${DIRECTION[MESSAGE_CATALOGUE[t].direction]} | ${String(MESSAGE_CATALOGUE[t].body.description ?? '').replace(/\|/g, '\\|')} |`).join('\n')}
`);
  for (const type of MESSAGE_TYPES) {
    const entry = MESSAGE_CATALOGUE[type];
    out.push(`### ${type}
${DIRECTION[entry.direction]}. ${entry.body.description ?? ''} JSON Schema: \`protocol/schema/${type}.json\`.

${fieldTable(entry.body, '/body')}

Example:

${example(type)}
`);
  }
  out.push(`## Job execution states
Shared by agent and server (\`JOB_EXECUTION_STATES\`, \`JOB_TRANSITIONS\`). Reporting the current state
again is a progress update. Cancellable (before the commit point): ${CANCELLABLE_JOB_STATES.map((s) => `\`${s}\``).join(', ')}.

| From | Legal next states |
| --- | --- |
${JOB_EXECUTION_STATES.map((s) => `| \`${s}\` | ${JOB_TRANSITIONS[s].length ? JOB_TRANSITIONS[s].map((t) => `\`${t}\``).join(', ') : '— (terminal)'} |`).join('\n')}

## Error codes
\`decode\` never throws: it returns the message or a \`ProtocolError\` with one of these codes (and, for
schema violations, the JSON pointer of the first violation). The packet reader rejects with the
\`PROTO_PACKET_*\` codes.

| Code | Meaning |
| --- | --- |
${Object.entries(ProtocolErrorCodes)
  .map(([code, text]) => `| \`${code}\` | ${text.replace(/\|/g, '\\|')} |`)
  .join('\n')}

## Update packets
${packetFormat()}
`);
  return out.join('\n');
}

const closeMeaning: Record<string, string> = {
  NORMAL: 'Session ended normally.',
  GOING_AWAY: 'Server shutting down or device rebooting; reconnect with backoff.',
  PROTOCOL_ERROR: 'Frame-level protocol error (e.g. a binary frame).',
  INVALID_PAYLOAD: 'Invalid UTF-8 (`PROTO_INVALID_UTF8`).',
  POLICY_VIOLATION: 'Too many bad messages, or a slow consumer whose buffer overflowed.',
  MESSAGE_TOO_BIG: 'Frame larger than the maximum (`PROTO_TOO_LARGE`).',
  INTERNAL_ERROR: 'Server error; reconnect with backoff.',
  SERVICE_RESTART: 'Server restarting; reconnect with backoff.',
  TRY_AGAIN_LATER: 'Overloaded; reconnect with backoff.',
  UNSUPPORTED_VERSION: 'Protocol major version not supported.',
  HELLO_REQUIRED: 'The first message was not a valid `hello`, or it did not arrive in time.',
  AUTH_FAILED: 'Device credential unknown or revoked; back off for long.',
  REJECTED: 'No licence free; `welcome.retryAfterSec` says when to retry.',
  PONG_TIMEOUT: 'No `pong` within the pong timeout (half-open link).',
  REPLACED: 'A newer connection of the same device replaced this one.',
};
