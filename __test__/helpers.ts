// Shared test helpers: loopback peers and deadlines. Every wait here is bounded.
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { accessSync, constants } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import tls from 'node:tls'

import { afterEach, expect } from 'vitest'

import {
  Engine,
  SockmapError,
  type AttachOptions,
  type EngineOptions,
  type Server,
  type SockMap,
  type Socket,
} from '../src/index'
import { pki } from './tls-certs'

/**
 * `SOCKMAP_TRANSPORT=tls`: the scenarios run with TLS on both sides. {@link listening} servers terminate TLS (the
 * `localhost` certificate of `tls-certs.ts`) and {@link clientOf} clients are Node `tls` clients, so every byte a
 * scenario checks went through the engine's record layer both ways.
 */
export const overTls = process.env.SOCKMAP_TRANSPORT === 'tls'

/** What `listen()` takes to terminate TLS with the test `localhost` certificate. */
export function tlsListen(): { tls: { cert: string; key: string } } {
  const p = pki()
  return { tls: { cert: p.localhost.cert, key: p.localhost.key } }
}

/** A Node client of `port` on loopback (TLS when {@link overTls}, trusting the test CA), once connected. */
export async function loopbackClient(port: number, ms = 5000, secure = overTls): Promise<net.Socket> {
  const client = secure
    ? tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ca: pki().ca })
    : net.connect({ host: '127.0.0.1', port })
  client.setNoDelay(true)
  await deadline(once(client, secure ? 'secureConnect' : 'connect'), ms, 'client connect')
  return client
}

/**
 * The `code` of the {@link SockmapError} that `fn` throws (asserting that it is one), or `undefined` if `fn` returns.
 */
export function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(SockmapError)
    return (err as SockmapError).code
  }
  return undefined
}

/** Rejects if `p` does not settle within `ms`. */
export function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`deadline: ${what} not within ${ms} ms`)), ms)
  })
  return Promise.race([p, limit]).finally(() => clearTimeout(timer))
}

/** Waits until `cond()` holds, polling every few ms; fails after `ms`. */
export async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`deadline: ${what} not within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 2))
  }
}

/**
 * Waits until no byte `sock` redirected awaits another I/O thread's acknowledgement: a redirect to
 * a socket of another shard is counted when that shard acknowledges it, which can be after the far
 * peer has read the bytes.
 */
export function acknowledged(sock: Socket, ms = 5000): Promise<void> {
  return until(() => sock.stats().remoteBytes === 0, ms, 'cross-shard acknowledgements')
}

/**
 * Sends one byte from the engine socket `sock` and reads it at `peer`, its Node end: the I/O thread serving `sock`
 * has handled it since everything `peer` wrote before was in the socket's receive buffer. A test that asserts that
 * something did not happen waits for this instead of a fixed time.
 */
export async function roundTrip(sock: Socket, peer: net.Socket, ms = 5000): Promise<void> {
  const got = readN(peer, 1, ms)
  await deadline(sock.send('.'), ms, 'round-trip send')
  expect((await got).toString()).toBe('.')
  // readN left `peer` flowing with no listener, which would drop what comes next: keep it for the next reader.
  peer.pause()
}

/** Reads exactly `n` bytes from a node:net socket; the bytes after them stay for the next reader. */
export function readN(sock: net.Socket, n: number, ms = 5000): Promise<Buffer> {
  const chunks: Buffer[] = []
  let have = 0
  return deadline(
    new Promise<Buffer>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        chunks.push(d)
        have += d.length
        if (have >= n) {
          sock.off('data', onData)
          sock.off('error', reject)
          const all = Buffer.concat(chunks)
          if (all.length > n) {
            // Keep the rest for the next reader: a flowing socket with no listener would drop it.
            sock.pause()
            sock.unshift(all.subarray(n))
          }
          resolve(all.subarray(0, n))
        }
      }
      sock.on('data', onData)
      sock.once('error', reject)
      sock.resume()
    }),
    ms,
    `reading ${n} bytes`,
  )
}

/** Collects `n` bytes of 'message' events from an engine socket. */
export function messagesN(sock: Socket, n: number, ms = 5000): Promise<Buffer[]> {
  const got: Buffer[] = []
  let have = 0
  return deadline(
    new Promise<Buffer[]>((resolve) => {
      const onMessage = (m: Buffer): void => {
        got.push(Buffer.from(m))
        have += m.length
        if (have >= n) {
          sock.off('message', onMessage)
          resolve(got)
        }
      }
      sock.on('message', onMessage)
    }),
    ms,
    `${n} bytes of messages`,
  )
}

/** A Node client connected to `server` (TLS when {@link overTls}), with the engine socket the server accepted for it. */
export async function clientOf(server: Server, ms = 5000): Promise<{ client: net.Socket; sock: Socket }> {
  const accepted = once(server, 'connection') as Promise<[Socket]>
  const client = await loopbackClient(server.address().port, ms)
  const [sock] = await deadline(accepted, ms, 'accept')
  return { client, sock }
}

/** A node:net server on loopback; `onConn` gets each connection. */
export async function netServer(onConn: (s: net.Socket) => void = () => {}): Promise<net.Server> {
  const srv = net.createServer(onConn)
  srv.listen(0, '127.0.0.1')
  await deadline(once(srv, 'listening'), 5000, 'net listen')
  return srv
}

/** The port of a node:net server. */
export function portOf(srv: net.Server): number {
  return (srv.address() as net.AddressInfo).port
}

/** An engine listening on loopback (terminating TLS when {@link overTls}). */
export async function listening(engine: Engine): Promise<Server> {
  return engine.listen({ host: '127.0.0.1', port: 0, ...(overTls ? tlsListen() : {}) })
}

/** A one-entry SockMap holding `sock` (at index 0), with `options` attached before the socket is put in. */
export function soloMap(engine: Engine, sock: Socket, options: AttachOptions): SockMap {
  const map = engine.sockMap({ maxEntries: 1 })
  map.attach(options)
  map.set(0, sock)
  return map
}

/** Length-prefixed frame (4-byte big-endian length, then the payload). */
export function frame(payload: string | Buffer): Buffer {
  const p = typeof payload === 'string' ? Buffer.from(payload) : payload
  const h = Buffer.alloc(4)
  h.writeUInt32BE(p.length)
  return Buffer.concat([h, p])
}

/** `n` node:net clients of one engine listener, with the engine sockets accepted for them. */
export async function connections(
  engine: Engine,
  n: number,
  clients: net.Socket[] = [],
): Promise<Array<{ client: net.Socket; sock: Socket }>> {
  const server = await listening(engine)
  const out = []
  for (let i = 0; i < n; i++) {
    const c = await clientOf(server)
    clients.push(c.client)
    out.push(c)
  }
  return out
}

/** Writes `data` one byte per turn of the event loop, so that the receiver reads it in many pieces. */
export async function writeBytewise(sock: net.Socket, data: Buffer): Promise<void> {
  for (let i = 0; i < data.length; i++) {
    sock.write(data.subarray(i, i + 1))
    await new Promise((r) => setImmediate(r))
  }
}

/** Waits for a socket's 'error' event and the close after it. */
export async function errorOf(sock: Socket, ms = 5000): Promise<{ code: string; hadError: boolean }> {
  return deadline(
    new Promise((resolve) => {
      let code = ''
      sock.once('error', (e) => {
        code = e.code
      })
      sock.once('close', (hadError) => resolve({ code, hadError }))
    }),
    ms,
    'socket error and close',
  )
}

/** An engine and one of its sockets, alone in a one-entry SockMap with programs attached (see {@link soloMap}). */
export interface SoloSocket {
  engine: Engine
  a: { client: net.Socket; sock: Socket } | undefined
  map: SockMap
}

/**
 * Engines and Node clients of one test file: `newEngine()` creates an engine, `clients` collects Node sockets; after
 * each test the clients are destroyed and every engine is closed (with a deadline). `soloSocket(options)` is a new
 * engine with one connection whose engine socket is in a {@link soloMap} with `options` attached.
 */
export function engineScope(): {
  newEngine: (options?: EngineOptions) => Engine
  clients: net.Socket[]
  soloSocket: (options: AttachOptions, engineOptions?: EngineOptions) => Promise<SoloSocket>
} {
  const engines: Engine[] = []
  const clients: net.Socket[] = []
  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy()
    await Promise.all(engines.splice(0).map((e) => deadline(e.close(), 5000, 'engine close')))
  })
  const newEngine = (options: EngineOptions = {}): Engine => {
    const e = new Engine(options)
    engines.push(e)
    return e
  }
  return {
    newEngine,
    clients,
    soloSocket: async (options, engineOptions) => {
      const engine = newEngine(engineOptions)
      const [a] = await connections(engine, 1, clients)
      return { engine, a, map: soloMap(engine, a!.sock, options) }
    },
  }
}

/** Collects the next `count` messages of an engine socket as latin1 strings (copied). */
export function collect(sock: Socket, count: number, ms = 5000): Promise<string[]> {
  const got: string[] = []
  return deadline(
    new Promise<string[]>((resolve) => {
      sock.on('message', (m) => {
        got.push(m.toString('latin1'))
        if (got.length === count) resolve(got)
      })
    }),
    ms,
    `${count} messages`,
  )
}

/** Runs `node <args>` in `__test__/fixtures` as a child process; rejects if it has not exited within `ms`. */
export function runFixture(
  args: string[],
  ms: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cwd = join(__dirname, 'fixtures')
  return new Promise((done, fail) => {
    execFile(process.execPath, args, { cwd, timeout: ms, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { killed?: boolean; code?: number | string }) | null
      if (e?.killed) fail(new Error(`deadline: ${args.join(' ')} still running after ${ms} ms\n${stderr}`))
      else done({ code: typeof e?.code === 'number' ? e.code : e ? 1 : 0, stdout: stdout.trim(), stderr })
    })
  })
}

/**
 * The path of the executable `name` on `PATH` (and `/usr/sbin`, where Debian puts `nutcracker`), or `undefined`: a
 * test that needs it skips with a message saying so (CI installs it).
 */
export function programPath(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':'), '/usr/sbin', '/usr/local/sbin'].filter((d) => d !== '')
  for (const d of dirs) {
    const p = join(d, name)
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {
      // not here
    }
  }
  return undefined
}

/** The programs of `names` that are absent; warns once naming them when some are (the caller then skips). */
export function missingPrograms(names: string[]): string[] {
  const missing = names.filter((n) => programPath(n) === undefined)
  if (missing.length > 0) console.warn(`skipping: ${missing.join(', ')} not installed`)
  return missing
}

/**
 * `n` distinct TCP ports free on loopback now, for external programs that must be told their ports (the kernel gave
 * each to a listener held until all `n` were chosen, then released; the programs bind them right after).
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers = Array.from({ length: n }, () => net.createServer().listen(0, '127.0.0.1'))
  try {
    await Promise.all(servers.map((srv) => deadline(once(srv, 'listening'), 5000, 'free port')))
    return servers.map(portOf)
  } finally {
    await Promise.all(servers.map((srv) => new Promise((r) => srv.close(r))))
  }
}

/** A TCP port free on loopback now (see {@link freePorts}). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1)
  return port!
}

/** Connects to `port` on loopback until it accepts, within `ms`. */
export async function untilListening(port: number, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port })
      s.once('connect', () => {
        s.destroy()
        resolve(true)
      })
      s.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > end) throw new Error(`${what}: port ${port} not listening within ${ms} ms`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A RESP request: an array of bulk strings (lengths in UTF-8 bytes). */
export function respCommand(...args: string[]): string {
  return `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`
}
