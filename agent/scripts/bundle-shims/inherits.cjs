// What `inherits` exports in Node (bl uses it): util.inherits, without its browser fallback. The
// bundle resolves `inherits` here.
'use strict';
module.exports = require('node:util').inherits;
