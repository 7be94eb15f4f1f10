import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Path of a compiled sibling module to run as a child process. Children always run the built
 * JavaScript (`dist/`), also when the parent is a test running the TypeScript sources, so
 * `npm test` (which builds first) and the installed CLI behave the same.
 */
export function distScript(name: string): string {
  const here = fileURLToPath(import.meta.url);
  return here.replace(/\/src\/[^/]+\.ts$/, `/dist/${name}.js`).replace(/\/dist\/[^/]+\.js$/, `/dist/${name}.js`);
}

/** Forks a child with IPC; rejects if it exits before sending its first message. */
export function forkChild(name: string, args: string[] = [], execArgv: string[] = []): ChildProcess {
  return fork(distScript(name), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
}

/** Waits for the next IPC message of a given `type` from a child. */
export function nextMessage<T extends { type: string }>(child: ChildProcess, type: T['type'], timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for "${type}" from child ${child.pid}`));
    }, timeoutMs);
    const onMessage = (m: T) => {
      if (m && m.type === type) {
        cleanup();
        resolve(m);
      }
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`child ${child.pid} exited (${code}) before sending "${type}"`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}
