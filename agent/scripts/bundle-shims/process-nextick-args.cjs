// What process-nextick-args exports on every Node since 1.8 (mqtt-packet's writeToStream uses its
// `nextTick`): `process` itself. The bundle resolves `process-nextick-args` here.
'use strict';
module.exports = process;
