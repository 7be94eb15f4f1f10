/**
 * The connection profile (content of a `FILETYPE=ConnectionProfile` section) is defined in the
 * protocol package, shared by the server that produces it and the agent that applies it.
 */
export {
  CONNECTION_PROFILE_FILENAME,
  CONNECTION_PROFILE_FORMAT,
  type ConnectionProfile,
  parseConnectionProfile,
  type ProfileValidation,
  validateConnectionProfile,
} from '@router-fleet/protocol';
