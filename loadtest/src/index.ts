export { type BaselineOptions, type BaselineResult, runBaseline } from './baseline.js';
export { loopbackSources, type Percentiles, percentiles } from './stats.js';
export {
  assignBuckets,
  BRIDGE_ACCOUNT,
  bridgeRole,
  type BrokerDevice,
  type BrokerFleet,
  type BrokerFleetOptions,
  type BrokerShard,
  DEFAULT_DEVICES_PER_BROKER,
  MOSQUITTO_MISSING,
  startBrokerFleet,
} from './brokers.js';
export { LoadtestError, type LoadtestErrorCode, LoadtestErrorCodes } from './errors.js';
export { floorDevices, measureMqttFloor, type MqttFloorOptions, type MqttFloorResult, runMqttFloor } from './mqtt-floor.js';
export { compareScaleCounts, type CountDifference, readScaleCounts } from './compare-counts.js';
export { openRunStore, parseStoreOption, type RunStore } from './run-store.js';
export { checkScaleOptions, runScale, type ScaleCounts, type ScaleOptions } from './scale.js';
