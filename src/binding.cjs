'use strict'
// The native addon's exports (typed by the generated binding.d.cts); native.cjs finds the binary.
module.exports = require('./native.cjs').load()
