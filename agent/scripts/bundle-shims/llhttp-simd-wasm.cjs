// undici's SIMD build of llhttp (72 KB of base64), replaced by no bytes: `new WebAssembly.Module`
// rejects them and undici's client-h1.js falls back to the plain llhttp build, as it does on a CPU
// without WebAssembly SIMD or with UNDICI_NO_WASM_SIMD=1. The bundle resolves
// undici/lib/llhttp/llhttp_simd-wasm.js here.
'use strict';
module.exports = Buffer.alloc(0);
