/**
 * What every gateway shares: an engine (its own unless given), one listener, a client map per program generation,
 * the pools, stats, metrics and a draining close.
 *
 * Invariants: each accepted client is inserted into the current client map, whose programs it keeps for its whole
 * life (a reload makes a new generation for the clients that come after it, so no client is dropped or re-programmed
 * mid-stream); `close()` stops accepting first, then waits (bounded) until no client has a request in flight, then
 * ends the clients, then the pools, then the engine it owns.
 *
 * @module
 */
import { EventEmitter } from 'node:events'

import { Engine, type EngineOptions } from '../engine'
import type { AttachOptions, SockHash } from '../map'
import type { Server, Socket } from '../socket'
import { addStats, zeroStats, type EngineStats, type MapStats, type SocketStats } from '../stats'
import { parseHostPort, type HostPort } from './address'
import type { RequestsOptions } from './native'
import { UpstreamPool, poolMetrics, type HealthCheckOptions, type ReconnectOptions, type UpstreamStats } from './pool'

/** Options every gateway takes. */
export interface GatewayOptions {
  /** Where clients connect: `'host:port'` or `{ host, port }` (port `0`: any free port). */
  listen: string | HostPort
  /** The engine to run on; without one the gateway makes its own (and closes it with itself). */
  engine?: Engine
  /** Options of the engine the gateway makes (`shards`, `backend`, ...). */
  engineOptions?: EngineOptions
  /** Upstream connections per server per shard. Default: `1`. */
  connections?: number
  /** A request not answered within this many milliseconds gets a timeout error reply. Default: the engine's. */
  timeoutMs?: number
  /** Most requests of one client in flight. Default: the engine's. */
  maxPending?: number
  /** Upstream health checks, or `false`. */
  healthCheck?: HealthCheckOptions | false
  /** Consecutive failures that eject a server. Default: `3`. */
  failures?: number
  /** Reconnection backoff. */
  reconnect?: ReconnectOptions
  /** Most clients at once. Default: `65536`. */
  maxClients?: number
}

/** Options of `close()`. */
export interface CloseOptions {
  /** Longest to wait for the requests in flight before the clients are ended. Default: `5000`. */
  drainMs?: number
}

/** What `stats()` returns. */
export interface GatewayStats {
  /** Clients connected now. */
  clients: number
  /** Clients accepted so far. */
  accepted: number
  /** The counters of the client sockets (every generation). */
  requests: SocketStats
  /** The upstream servers of every pool. */
  upstreams: Array<UpstreamStats & { pool: string }>
  /** The engine's counters. */
  engine: EngineStats
}

/** Events of every gateway. */
export interface GatewayEvents {
  /** A pool's server entered the ring. */
  up: [server: string, pool: string]
  /** A pool's server left the ring. */
  down: [server: string, reason: string, pool: string]
  /** A client connected. */
  connection: [socket: Socket]
  /**
   * HttpRouter: an `Upgrade` or `CONNECT` request, handed to the application with the client socket (its stream
   * from then on is the application's: `socket.on('message')` reads it, `socket.send()` writes).
   */
  upgrade: [socket: Socket, head: Buffer]
}

/** @internal */
export function checkCommon(options: GatewayOptions): HostPort {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
  if (options.engine !== undefined && !(options.engine instanceof Engine)) {
    throw new TypeError('options.engine must be an Engine')
  }
  if (typeof options.listen === 'object' && options.listen !== null) {
    const l = options.listen
    parseHostPort('options.listen', `[${l.host}]:${l.port}`)
    return { host: l.host, port: l.port }
  }
  return parseHostPort('options.listen', options.listen)
}

/** The base of the gateways. */
export abstract class Gateway extends EventEmitter<GatewayEvents> {
  /** The engine the gateway runs on. */
  readonly engine: Engine
  readonly #ownEngine: boolean
  readonly #listen: HostPort
  readonly #maxClients: number
  #server: Server | undefined
  /** The client map new clients go to. */
  #clients: SockHash | undefined
  /** Every client map made, for stats. */
  readonly #generations: SockHash[] = []
  readonly #open = new Set<Socket>()
  #accepted = 0
  #closing: Promise<void> | undefined
  /** @internal */
  protected readonly common: GatewayOptions

  /** @internal */
  constructor(options: GatewayOptions) {
    super()
    this.#listen = checkCommon(options)
    this.common = options
    this.#ownEngine = options.engine === undefined
    this.engine = options.engine ?? new Engine(options.engineOptions ?? {})
    this.#maxClients = options.maxClients ?? 65536
  }

  /** The pools, by label. @internal */
  protected abstract pools(): UpstreamPool[]

  /** Makes the client map of a new generation (its programs attached). @internal */
  protected abstract clientPrograms(): { options: AttachOptions; requests: RequestsOptions } | undefined

  /** @internal */
  protected newPool(label: string, extra: ConstructorParameters<typeof UpstreamPool>[1]): UpstreamPool {
    const o = this.common
    const pool = new UpstreamPool(this.engine, {
      label,
      ...(o.connections !== undefined ? { connections: o.connections } : {}),
      ...(o.healthCheck !== undefined ? { healthCheck: o.healthCheck } : {}),
      ...(o.failures !== undefined ? { failures: o.failures } : {}),
      ...(o.reconnect !== undefined ? { reconnect: o.reconnect } : {}),
      ...extra,
    })
    pool.on('up', (s) => this.emit('up', s, label))
    pool.on('down', (s, reason) => this.emit('down', s, reason, label))
    return pool
  }

  /** @internal */
  protected requestsOptions(): RequestsOptions {
    const r: RequestsOptions = {}
    if (this.common.timeoutMs !== undefined) r.timeoutMs = this.common.timeoutMs
    if (this.common.maxPending !== undefined) r.maxPending = this.common.maxPending
    return r
  }

  /** Starts a new generation of client programs: clients accepted from now on take them. @internal */
  protected renewPrograms(): void {
    const programs = this.clientPrograms()
    if (!programs) return
    const { options, requests } = programs
    const map = this.engine.sockHash({ maxEntries: this.#maxClients })
    map.attach({ ...options, requests })
    this.#clients = map
    this.#generations.push(map)
  }

  /** Connects the pools and listens; resolves with the address clients connect to. */
  async listen(): Promise<HostPort> {
    if (this.#server) return this.address()
    // One pool after the other: each connects near the connections the ones before it made on each shard.
    for (const p of this.pools()) await p.ready()
    this.renewPrograms()
    const server = await this.engine.listen(this.#listen)
    this.#server = server
    server.on('connection', (sock) => this.#accept(sock))
    return this.address()
  }

  /** The address clients connect to. */
  address(): HostPort {
    if (!this.#server) throw new Error('the gateway is not listening')
    const a = this.#server.address()
    return { host: a.address, port: a.port }
  }

  #accept(sock: Socket): void {
    if (this.#closing) {
      sock.destroy()
      return
    }
    this.#accepted++
    this.#open.add(sock)
    sock.once('close', () => this.#open.delete(sock))
    sock.once('end', () => void this.#endWhenAnswered(sock))
    sock.on('error', () => {})
    try {
      this.admit(sock)
    } catch {
      sock.destroy()
      return
    }
    this.emit('connection', sock)
  }

  /** Gives a new client its programs: inserts it into the current client map. @internal */
  protected admit(sock: Socket): void {
    this.#clients?.set(sock.id, sock)
  }

  /**
   * A client that shut its side gets the replies of its requests in flight, then the gateway's FIN (bounded by the
   * request timeout and a second).
   */
  async #endWhenAnswered(sock: Socket): Promise<void> {
    const end = Date.now() + (this.common.timeoutMs ?? 5000) + 1000
    while (!sock.closed && Date.now() < end) {
      const s = sock.stats() as SocketStats & { pendingRequests?: number }
      if ((s.pendingRequests ?? 0) === 0 && s.pendingBytes === 0) break
      await new Promise((r) => setTimeout(r, 5))
    }
    sock.end()
  }

  /** Client, upstream and engine counters. */
  stats(): GatewayStats {
    const requests = zeroStats()
    for (const m of this.#generations) addStats(requests, m.stats())
    return {
      clients: this.#open.size,
      accepted: this.#accepted,
      requests,
      upstreams: this.pools().flatMap((p) => p.stats().map((s) => ({ ...s, pool: p.label }))),
      engine: this.engine.stats(),
    }
  }

  /** The engine's metrics and the pools', in the Prometheus text format. */
  metrics(): string {
    const gauges = [
      '# HELP sockmap_gateway_clients Clients connected.',
      '# TYPE sockmap_gateway_clients gauge',
      `sockmap_gateway_clients ${this.#open.size}`,
      '# HELP sockmap_gateway_accepted_total Clients accepted.',
      '# TYPE sockmap_gateway_accepted_total counter',
      `sockmap_gateway_accepted_total ${this.#accepted}`,
    ].join('\n')
    return [this.engine.metrics(), poolMetrics(this.pools()), gauges + '\n'].join('')
  }

  /** Requests in flight (forwarded, not yet answered) over every client. */
  inFlight(): number {
    let n = 0
    for (const m of this.#generations) {
      const s = m.stats() as MapStats & { pendingRequests?: number }
      n += (s.pendingRequests ?? 0) + s.pendingBytes + s.queuedBytes
    }
    return n
  }

  /**
   * Stops accepting, waits until no request is in flight (at most `drainMs`), then ends every client, the pools and
   * the engine the gateway made.
   */
  close(options: CloseOptions = {}): Promise<void> {
    this.#closing ??= this.#close(options.drainMs ?? 5000)
    return this.#closing
  }

  async #close(drainMs: number): Promise<void> {
    await this.#server?.close()
    const end = Date.now() + drainMs
    // Drained: nothing in flight and nothing read from the clients over a few polls in a row (bytes the clients sent
    // before the close may still be on their way in).
    let quiet = 0
    let lastIn = -1
    while (this.#open.size > 0 && quiet < 4 && Date.now() < end) {
      const bytesIn = this.#generations.reduce((n, m) => n + m.stats().bytesIn, 0)
      quiet = this.inFlight() === 0 && bytesIn === lastIn ? quiet + 1 : 0
      lastIn = bytesIn
      await new Promise((r) => setTimeout(r, 5))
    }
    const closed = [...this.#open].map((s) => new Promise((r) => s.once('close', r)))
    for (const s of this.#open) s.end()
    await Promise.race([Promise.all(closed), new Promise((r) => setTimeout(r, Math.max(100, end - Date.now())))])
    for (const s of this.#open) s.destroy()
    await Promise.all(this.pools().map((p) => p.close()))
    if (this.#ownEngine) await this.engine.close()
  }

  /** `await using gw = ...` closes it. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }
}
