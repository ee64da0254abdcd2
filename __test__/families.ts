// Test helpers for socket families: names and endpoints of TCP over IPv4 and IPv6 and Unix stream sockets (paths and
// Linux abstract names), node:net clients of engine servers and node:net servers of engine connects on each family;
// `'tls'`, TCP over IPv4 with TLS the engine terminates, for clients; datagram peers of engine datagram sockets
// (node:dgram for UDP; node:dgram has no Unix datagram sockets, so their peer is a bound datagram socket of another
// engine).
import dgram from 'node:dgram'
import { once } from 'node:events'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import type { DatagramSocket, Engine, Server, Socket } from '../src/index'
import { deadline, loopbackClient, tlsListen, until } from './helpers'
import { hasOpenssl } from './tls-certs'

/** A socket family a test listens and connects on. */
export type Family = 'tcp4' | 'tcp6' | 'unix' | 'abstract'

/** Every family this platform has (abstract names are Linux-only, Unix sockets not on Windows). */
export const families: Family[] = (['tcp4', 'tcp6', 'unix', 'abstract'] as const).filter(
  (f) => (f !== 'abstract' || process.platform === 'linux') && (f !== 'unix' || process.platform !== 'win32'),
)

/** A family, or `'tls'`: TCP over IPv4, the engine terminating TLS, its clients Node `tls` clients. */
export type ClientKind = Family | 'tls'

/** The kinds of clients this platform has: every family, and `'tls'` where openssl can make the certificates. */
export const clientKinds: ClientKind[] = [...families, ...(hasOpenssl() ? (['tls'] as const) : [])]

let seq = 0

/**
 * A fresh Unix socket name of the family: a path under the temp dir, or an abstract name. Abstract names fill all
 * 107 bytes (NUL-padded): Node 20's `net` pads them so, and a full-length name is the same bytes either way.
 */
export function unixName(family: 'unix' | 'abstract'): string {
  const base = `sockmap-net-${process.pid}-${seq++}`
  return family === 'abstract' ? `\0${base.padEnd(107, '\0')}` : join(tmpdir(), `${base}.sock`)
}

/** What `listen`/`connect` and node:net take for a family (port 0: any). */
export function endpoint(family: Family): { host: string; port: number } | { path: string } {
  if (family === 'tcp4') return { host: '127.0.0.1', port: 0 }
  if (family === 'tcp6') return { host: '::1', port: 0 }
  return { path: unixName(family) }
}

/** A Node client of a new engine server on `kind`, the engine socket accepted for it, and the server. */
export async function clientOn(
  engine: Engine,
  kind: ClientKind,
  clients: net.Socket[],
): Promise<{ client: net.Socket; sock: Socket; server: Server }> {
  const ep = endpoint(kind === 'tls' ? 'tcp4' : kind)
  const server = await engine.listen(kind === 'tls' ? { ...ep, ...tlsListen() } : ep)
  const accepted = once(server, 'connection') as Promise<[Socket]>
  let client: net.Socket
  if ('path' in ep) {
    client = net.connect({ path: ep.path })
    clients.push(client)
    await deadline(once(client, 'connect'), 5000, 'client connect')
  } else if (ep.host === '127.0.0.1') {
    client = await loopbackClient(server.address().port, 5000, kind === 'tls')
    clients.push(client)
  } else {
    client = net.connect({ host: ep.host, port: server.address().port })
    clients.push(client)
    await deadline(once(client, 'connect'), 5000, 'client connect')
  }
  const [sock] = await deadline(accepted, 5000, 'accept')
  return { client, sock, server }
}

/** A node:net server on `family` and an engine socket connected to it near `near`, with the server's end. */
export async function upstreamOn(
  engine: Engine,
  family: Family,
  near: Socket,
  clients: net.Socket[],
): Promise<{ peer: net.Socket; sock: Socket }> {
  const ep = endpoint(family)
  let peer: net.Socket | undefined
  const srv = net.createServer((s) => {
    peer = s
    clients.push(s)
  })
  srv.listen('path' in ep ? { path: ep.path } : { host: ep.host, port: 0 })
  await deadline(once(srv, 'listening'), 5000, 'net listen')
  const to =
    'path' in ep ? { path: ep.path, near } : { host: ep.host, port: (srv.address() as net.AddressInfo).port, near }
  const sock = await deadline(engine.connect(to), 5000, 'engine connect')
  await until(() => peer !== undefined, 5000, 'upstream accepted')
  srv.close()
  return { peer: peer!, sock }
}

/** Bytes whose value depends on their position and `salt`, so a lost, doubled or reordered chunk shows. */
export function pattern(n: number, salt: number): Buffer {
  const b = Buffer.alloc(n)
  for (let i = 0; i < n; i++) b[i] = (i * 7 + salt) % 251
  return b
}

/** A datagram socket family. */
export type DgramFamily = 'udp4' | 'udp6' | 'unixdgram'

/** Every datagram family this platform has (the engine's datagram sockets are Linux-only). */
export const dgramFamilies: DgramFamily[] = process.platform === 'linux' ? ['udp4', 'udp6', 'unixdgram'] : []

/** The peer of an engine datagram socket: what it sends arrives at the engine socket, what the socket sends arrives here. */
export interface DgramPeer {
  /** The engine's socket, connected to this peer. */
  sock: DatagramSocket
  /** Sends one datagram to the engine socket. */
  send(data: Buffer): Promise<void>
  /** The next `n` datagrams the peer receives, each whole. */
  received(n: number, ms?: number): Promise<Buffer[]>
  close(): void
}

/** Collects datagrams from an emitter of `'message'` into a queue that `take` drains `n` at a time. */
function datagramQueue(source: { on(e: 'message', f: (m: Buffer) => void): unknown }) {
  const queue: Buffer[] = []
  let wake: (() => void) | undefined
  source.on('message', (m) => {
    queue.push(Buffer.from(m))
    wake?.()
  })
  return async (n: number, ms = 5000): Promise<Buffer[]> => {
    await deadline(
      (async () => {
        while (queue.length < n) await new Promise<void>((r) => (wake = r))
      })(),
      ms,
      `${n} datagrams`,
    )
    return queue.splice(0, n)
  }
}

/**
 * A datagram peer on `family` and an engine socket of `engine` connected to it (near `near`); `peers` hosts the Unix
 * datagram peers (another engine).
 */
export async function dgramPeerOn(
  engine: Engine,
  family: DgramFamily,
  peers: Engine,
  near?: Socket,
): Promise<DgramPeer> {
  if (family === 'unixdgram') {
    const peerPath = unixName('abstract')
    const peer = await peers.bindUdp({ path: peerPath })
    const received = datagramQueue(peer)
    peer.resume()
    const localPath = unixName('abstract')
    const sock = await engine.connectUdp({ path: peerPath, localPath, ...(near ? { near } : {}) })
    return {
      sock,
      send: async (data) => {
        await peer.send(data, localPath)
      },
      received,
      close: () => peer.destroy(),
    }
  }
  const host = family === 'udp4' ? '127.0.0.1' : '::1'
  const peer = dgram.createSocket(family)
  peer.bind(0, host)
  await deadline(once(peer, 'listening'), 5000, 'dgram bind')
  const received = datagramQueue(peer)
  const sock = await engine.connectUdp({ host, port: peer.address().port, ...(near ? { near } : {}) })
  return {
    sock,
    send: (data) =>
      new Promise<void>((resolve, reject) =>
        peer.send(data, sock.address().port, host, (err) => (err ? reject(err) : resolve())),
      ),
    received,
    close: () => peer.close(),
  }
}
