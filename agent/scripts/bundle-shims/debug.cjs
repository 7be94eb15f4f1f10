// `debug` for mqtt and mqtt-packet (their trace logging of every packet, off unless DEBUG names
// them): Node's own `util.debuglog`, switched on by NODE_DEBUG instead of DEBUG
// (`NODE_DEBUG=mqttjs:*,mqtt-packet:*`), without debug's colours, ms and supports-color. The bundle
// resolves `debug` here. mqtt-packet calls the module itself, so this stays CommonJS.
'use strict';
const { debuglog } = require('node:util');

module.exports = (namespace) => debuglog(namespace);
