// mqtt takes its keep-alive interval from worker-timers only in a browser's main thread (where
// timers of background tabs are throttled; `timerVariant: 'auto'`, mqtt's get-timer.js) and from
// the global timers everywhere else. The agent runs in Node, so the worker variant never runs: the
// bundle resolves `worker-timers` here (Node's timers) instead of the browser worker and its broker
// (worker-timers-broker, broker-factory, fast-unique-numbers, @babel/runtime).
export const setInterval = (fn, ms, ...args) => globalThis.setInterval(fn, ms, ...args);
export const clearInterval = (id) => globalThis.clearInterval(id);
export const setTimeout = (fn, ms, ...args) => globalThis.setTimeout(fn, ms, ...args);
export const clearTimeout = (id) => globalThis.clearTimeout(id);
