export * from './codec.js';
export * from './connection-profile.js';
export * from './errors.js';
export * from './messages/index.js';
export * from './packet/index.js';
export * from './transport.js';
export * from './version.js';
export * from './state-table.js';
