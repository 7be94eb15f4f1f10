// The parts of node-forge the agent and protocol use (X.509, certificate chains, PKCS#7, ASN.1,
// message digests), without its index's TLS, SSH, ed25519, KEM and cipher-suite modules: the bundle
// resolves `node-forge` here. Each module registers itself on the shared `forge` object.
import forge from 'node-forge/lib/forge.js';
import 'node-forge/lib/asn1.js';
import 'node-forge/lib/md.all.js';
import 'node-forge/lib/pki.js';
import 'node-forge/lib/pkcs7.js';
import 'node-forge/lib/util.js';

export default forge;
