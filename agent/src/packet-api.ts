/**
 * The update-packet API the agent uses, from the protocol package: one import point, so the agent
 * does not depend on where in the protocol it lives.
 */
export {
  type CertificateAndKey,
  createTestPki,
  issueCertificate,
  type PacketSigner,
  type ReadPacketResult,
  readPacket,
  readPacketHead,
  type TestPki,
  writePacket,
} from '@router-fleet/protocol';
