export { type BaselineOptions, type BaselineResult, runBaseline } from './baseline.js';
export { loopbackSources, type Percentiles, percentiles } from './stats.js';
