// Shared command line and lifecycle of the Node baseline proxies: the same CLI and
// signals as the engine's `proxy` example, so the benchmark drives all of them alike.
//
//   node <proxy>.mjs --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT [--mode M]
//
// `unix:PATH` in place of an address listens on or connects to a Unix-domain stream socket.
//
// Prints `ready` once listening; stops on SIGTERM, SIGINT or end of stdin.
import { parseArgs } from 'node:util'

/** Parses `127.0.0.1:PORT` into `{ host, port }`, or `unix:PATH` into `{ path }`; refuses anything else. */
export function loopback(name, value) {
  if (value?.startsWith('unix:') && value.length > 5) return { path: value.slice(5) }
  const m = /^(127\.\d+\.\d+\.\d+|localhost):(\d+)$/.exec(value ?? '')
  if (!m) {
    throw new RangeError(`--${name} must be a loopback HOST:PORT or unix:PATH, got ${value}`)
  }
  return { host: m[1], port: Number(m[2]) }
}

/** Reads `--listen`, `--upstream` and `--mode` (defaulting to `defaultMode`), and the string options `extra` names
 * (`{ name: default }`). */
export function proxyArgs(defaultMode, extra = {}) {
  const { values } = parseArgs({
    options: {
      listen: { type: 'string' },
      upstream: { type: 'string' },
      mode: { type: 'string', default: defaultMode },
      ...Object.fromEntries(Object.entries(extra).map(([k, d]) => [k, { type: 'string', default: d }])),
    },
  })
  return {
    ...values,
    listen: loopback('listen', values.listen),
    upstream: loopback('upstream', values.upstream),
    mode: values.mode,
  }
}

/** Exits on SIGTERM/SIGINT or stdin EOF. */
export function exitOnStop() {
  const stop = () => process.exit(0)
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdin.on('end', stop)
  process.stdin.on('error', stop)
  process.stdin.resume()
}

/** Starts `server` on `listen`, prints `ready`, and exits on SIGTERM/SIGINT or stdin EOF. */
export function serve(server, listen) {
  exitOnStop()
  server.on('error', (err) => {
    console.error(`listen ${listen.path ?? `${listen.host}:${listen.port}`}: ${err.message}`)
    process.exit(1)
  })
  server.listen({ ...listen, backlog: 4096 }, () => {
    process.stdout.write('ready\n')
  })
}

/** Ties the fate of two sockets: an error on one destroys the other (an orderly end is
 * forwarded by the caller, so queued bytes still reach their destination). */
export function pair(a, b) {
  a.on('error', () => b.destroy())
  b.on('error', () => a.destroy())
}
