/**
 * {@link TcpProxy}: a generic proxy. With `protocol: 'raw'` it proxies connections: each client gets its own
 * upstream connection (on the client's shard), chosen by `route`, and the two are paired (bytes both ways, FIN and
 * close carried over). With a framing protocol it proxies messages: upstream connections are pooled and each
 * message is routed on its own (`hash` of its key, `round-robin`, or the `first` server up) and paired with its
 * reply.
 *
 * Invariants: a raw client is never read before its upstream connection is paired with it; a client whose every
 * upstream refused is closed; in message mode every request gets one reply (or its client closes with the errno
 * where the protocol has no error reply).
 *
 * @module
 */
import { createHash } from 'node:crypto'

import type { AttachOptions, SockHash, StreamMessage } from '../map'
import { parsers, type LengthFieldOptions, type NativeParser } from '../parsers'
import { rules, type MessageKey } from '../rules'
import type { Socket } from '../socket'
import { Verdict } from '../verdict'
import { Gateway, type GatewayOptions } from './base'
import { gatewayMessage, type GatewayMessage, type RequestsOptions } from './native'
import { parseUpstreams, UpstreamPool, type UpstreamSpec } from './pool'

/** How a proxy frames messages: `'raw'` (no framing: connections are proxied) or a framer. */
export type ProxyProtocol = 'raw' | 'lines' | 'resp' | 'http1' | { kind: 'length'; options?: LengthFieldOptions }

/** How a proxy chooses the upstream of a connection (raw) or a message. */
export type ProxyRoute = 'hash' | 'first' | 'round-robin'

/** A TypeScript verdict of a proxy in message mode: returns `route()` for the default routing. */
export type ProxyPolicy = (msg: GatewayMessage, route: () => Verdict) => Verdict

/** Options of {@link TcpProxy}. */
export interface TcpProxyOptions extends GatewayOptions {
  /** The servers. */
  upstreams: UpstreamSpec[]
  /** The framing. Default: `'raw'`. */
  protocol?: ProxyProtocol
  /** The choice of upstream. Default: `'hash'`. */
  route?: ProxyRoute
  /** A TypeScript verdict (message mode only). */
  verdict?: ProxyPolicy
}

function framer(p: Exclude<ProxyProtocol, 'raw'>, side: 'request' | 'response'): NativeParser {
  // Lines keep their ending: they are forwarded as they came.
  if (p === 'lines') return parsers.delimiter({ delimiters: ['\n'], stripDelimiter: false })
  if (p === 'resp') return parsers.resp()
  if (p === 'http1') return parsers.http1({ role: side })
  return parsers.lengthField(p.options ?? {})
}

function keyOf(p: Exclude<ProxyProtocol, 'raw'>): MessageKey {
  if (p === 'resp') return rules.key.resp
  if (p === 'http1') return rules.key.httpHost
  return rules.key.socket
}

/** A generic TCP proxy. */
export class TcpProxy extends Gateway {
  readonly #protocol: ProxyProtocol
  readonly #route: ProxyRoute
  readonly #policy: ProxyPolicy | undefined
  /** Message mode: the pooled upstream connections. */
  readonly #pool: UpstreamPool | undefined
  /** Raw mode: the servers, and the map storing each client's upstream connection under the client's id (and back). */
  #servers: Array<{ host: string; port: number; name: string }> = []
  #next = 0
  #peers: SockHash | undefined
  /** Raw mode: the same sockets, each under its own id, carrying the redirect programs. */
  #linked: SockHash | undefined

  constructor(options: TcpProxyOptions) {
    super(options)
    const protocol = options.protocol ?? 'raw'
    const route = options.route ?? 'hash'
    if (!['hash', 'first', 'round-robin'].includes(route)) {
      throw new RangeError(`options.route must be 'hash', 'first' or 'round-robin', got ${String(route)}`)
    }
    const named = ['raw', 'lines', 'resp', 'http1']
    if (typeof protocol === 'string' ? !named.includes(protocol) : protocol?.kind !== 'length') {
      throw new RangeError("options.protocol must be 'raw', 'lines', 'resp', 'http1' or { kind: 'length' }")
    }
    if (options.verdict !== undefined && typeof options.verdict !== 'function') {
      throw new TypeError('options.verdict must be a function')
    }
    if (options.verdict !== undefined && protocol === 'raw') {
      throw new RangeError("options.verdict needs a framing protocol (not 'raw')")
    }
    this.#protocol = protocol
    this.#route = route
    this.#policy = options.verdict
    if (protocol === 'raw') {
      this.#servers = parseUpstreams('options.upstreams', options.upstreams)
      // Clients and their upstream connections redirect to each other (each stored under the other's id).
      this.#peers = this.engine.sockHash({ maxEntries: 2 * (options.maxClients ?? 65536) })
      this.#linked = this.engine.sockHash({ maxEntries: 2 * (options.maxClients ?? 65536) })
      this.#linked.attach({ verdict: rules.redirect(this.#peers, rules.key.socket) })
    } else {
      this.#pool = this.newPool('proxy', {
        upstreams: options.upstreams,
        protocol: protocol === 'resp' ? 'resp' : protocol === 'http1' ? 'http1' : 'tcp',
        programs: { parser: framer(protocol, 'response'), verdict: rules.reply() },
      })
    }
  }

  /** @internal */
  protected pools(): UpstreamPool[] {
    return this.#pool ? [this.#pool] : []
  }

  /** @internal */
  protected clientPrograms(): { options: AttachOptions; requests: RequestsOptions } | undefined {
    const protocol = this.#protocol
    if (protocol === 'raw') return undefined
    const pool = this.#pool as UpstreamPool
    const ring = pool.ring
    const first = (msg: StreamMessage): Verdict => {
      const key = pool.firstConnection(msg.socket)
      return key === undefined ? Verdict.DROP : msg.redirect(pool.members, key)
    }
    const native =
      this.#route === 'round-robin'
        ? rules.roundRobin(ring)
        : this.#route === 'hash'
          ? rules.hashRoute(ring, keyOf(protocol))
          : undefined
    const policy = this.#policy
    let verdict: AttachOptions['verdict']
    if (policy) {
      verdict = (m: StreamMessage): Verdict => {
        const msg = gatewayMessage(m)
        return policy(msg, () => (this.#route === 'first' ? first(m) : msg.route(ring)))
      }
    } else {
      verdict = native ?? first
    }
    return { options: { parser: framer(protocol, 'request'), verdict }, requests: this.requestsOptions() }
  }

  /** @internal */
  protected override admit(sock: Socket): void {
    if (this.#peers) void this.#proxyConnection(sock)
    else super.admit(sock)
  }

  /** Raw mode: the servers to try for a client, in order. */
  #order(sock: Socket): number[] {
    const n = this.#servers.length
    let start = 0
    if (this.#route === 'round-robin') start = this.#next++ % n
    else if (this.#route === 'hash') {
      const a = sock.remoteAddress
      start = createHash('md5').update(`${a?.address}:${a?.port}`).digest().readUInt32LE(0) % n
    }
    return Array.from({ length: n }, (_, i) => (start + i) % n)
  }

  async #proxyConnection(client: Socket): Promise<void> {
    for (const i of this.#order(client)) {
      const s = this.#servers[i]
      if (!s) continue
      let up: Socket
      try {
        up = await this.engine.connect({ host: s.host, port: s.port, near: client, timeoutMs: 2000 })
      } catch {
        continue
      }
      if (client.closed) {
        up.destroy()
        return
      }
      up.on('error', () => {})
      const peers = this.#peers as SockHash
      const linked = this.#linked as SockHash
      try {
        // Both lookups first (a map without programs: nothing is read yet), then both sockets take the redirect
        // programs: whichever speaks first finds its peer.
        peers.set(client.id, up)
        peers.set(up.id, client)
        client.pair(up)
        linked.set(client.id, client)
        linked.set(up.id, up)
      } catch {
        up.destroy()
        client.destroy()
      }
      return
    }
    client.destroy()
  }

  /** Swaps the servers: raw mode for connections made from now on, message mode for every message. */
  async reload(options: { upstreams: UpstreamSpec[] }): Promise<void> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    if (this.#pool) await this.#pool.reload(options.upstreams)
    else this.#servers = parseUpstreams('options.upstreams', options.upstreams)
  }
}
