/** Version of the router-fleet agent (reported in hello). Kept in step with agent/package.json. */
export const AGENT_VERSION = '0.1.0';
