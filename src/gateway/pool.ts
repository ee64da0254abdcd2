/**
 * {@link UpstreamPool}: the connections a gateway keeps to its upstream servers, and the ring its routes use.
 *
 * Invariants:
 * - Every open upstream connection is in `members` (the SockHash whose programs frame and pair the replies), from
 *   its connect to its close; `ring` (no programs: the routing table client rules point at) holds exactly the open
 *   connections of the servers that are up, each under its own key with `{ server, weight }`.
 * - A server goes down (its ring entries deleted, one `'down'` event) on a closed connection or `failures`
 *   consecutive failed connects or checks, and comes back up (one `'up'` event) after a successful health check, or
 *   a successful connect when checks are off.
 * - Each connection slot belongs to one shard: it connects `near` a pool connection of that shard once there is one,
 *   so that routes stay on the client's shard. A closed slot reconnects with exponential backoff and jitter until
 *   the pool closes or the server leaves it.
 *
 * @module
 */
import { EventEmitter } from 'node:events'

import type { Engine } from '../engine'
import { SockmapError } from '../errors'
import type { AttachOptions, SockHash } from '../map'
import { hostOf, type Socket } from '../socket'
import { formatHostPort, parseHostPort } from './address'
import { check, respCommand, type CheckProtocol } from './health'

/** An upstream server: `'host:port'`, or its address with a weight and a name. */
export type UpstreamSpec = string | UpstreamServer

/** An upstream server. */
export interface UpstreamServer {
  /** Host name or address. Default: `'127.0.0.1'`. */
  host?: string
  /** Port. */
  port: number
  /** Weight on the ring (points scale with it). Default: `1`. */
  weight?: number
  /** The server's name on the ring (what twemproxy's `name` is). Default: `'host:port'`. */
  name?: string
}

/** Active health checks. */
export interface HealthCheckOptions {
  /** Time between checks of one server. Default: `1000`. */
  intervalMs?: number
  /** Longest a check waits for its answer. Default: `1000`. */
  timeoutMs?: number
  /** HTTP: the path of the `GET`. Default: `'/'`. */
  path?: string
}

/** Reconnection after a closed or failed connection: exponential backoff with jitter. */
export interface ReconnectOptions {
  /** The first delay. Default: `50`. */
  initialMs?: number
  /** The longest delay. Default: `5000`. */
  maxMs?: number
  /** Each delay is multiplied by a random factor in `[1 - jitter, 1 + jitter]`. Default: `0.2`. */
  jitter?: number
}

/** Options of {@link UpstreamPool}. */
export interface UpstreamPoolOptions {
  /** The servers. */
  upstreams: UpstreamSpec[]
  /** The exchange health checks make: RESP `PING`, HTTP `GET`, or a TCP connect. */
  protocol: CheckProtocol
  /** The programs of the upstream connections (their parser and `rules.reply()`). */
  programs: AttachOptions
  /** Connections per server per shard. Default: `1`. */
  connections?: number
  /** Connect timeout. Default: `2000`. */
  connectTimeoutMs?: number
  /** Active health checks, or `false` for none. Default: every second. */
  healthCheck?: HealthCheckOptions | false
  /** Consecutive failed connects or checks that eject a server. Default: `3`. */
  failures?: number
  /** Backoff of reconnections. */
  reconnect?: ReconnectOptions
  /** RESP: the password of the upstream servers, sent with `AUTH` on each connection and check. */
  password?: string
  /** A label for metrics. Default: `'default'`. */
  label?: string
}

/** Events of an {@link UpstreamPool}. */
export interface UpstreamPoolEvents {
  /** A server entered the ring. */
  up: [server: string]
  /** A server left the ring, with the reason. */
  down: [server: string, reason: string]
  /** A connect or check failed (emitted only while someone listens, so that a failing upstream never throws). */
  error: [err: Error & { server?: string }]
}

/** The counters of one server. */
export interface UpstreamStats {
  /** The server's name on the ring. */
  server: string
  /** `host:port`. */
  address: string
  /** Whether the server is in the ring. */
  up: boolean
  /** Its weight. */
  weight: number
  /** Connections open. */
  connections: number
  /** Connection slots (per shard times `connections`). */
  slots: number
  /** Consecutive failures now. */
  failures: number
  /** Times it left the ring. */
  ejections: number
  /** Connects made after the first of each slot. */
  reconnects: number
  /** Connects that failed. */
  connectErrors: number
  /** Health checks that passed and that failed. */
  checksOk: number
  checksFailed: number
  /** The last failure, if any. */
  lastError: string | undefined
}

interface Slot {
  key: string
  /** The shard the slot serves. */
  shard: number
  /** The shard its connection is on (the same, unless no connection of the pool was there to connect near). */
  onShard: number
  sock: Socket | undefined
  connecting: boolean
  attempt: number
  connectedOnce: boolean
  timer: NodeJS.Timeout | undefined
}

interface ServerState {
  name: string
  host: string
  port: number
  weight: number
  up: boolean
  retired: boolean
  slots: Slot[]
  checkTimer: NodeJS.Timeout | undefined
  checking: boolean
  s: Omit<UpstreamStats, 'server' | 'address' | 'up' | 'weight' | 'connections' | 'slots'>
}

const defaults = {
  connections: 1,
  connectTimeoutMs: 2000,
  failures: 3,
  health: { intervalMs: 1000, timeoutMs: 1000, path: '/' },
  reconnect: { initialMs: 50, maxMs: 5000, jitter: 0.2 },
}

/** Normalises the servers of a pool. @throws {TypeError}/{RangeError} naming the bad entry. */
export function parseUpstreams(name: string, list: unknown): Array<Required<UpstreamServer>> {
  if (!Array.isArray(list) || list.length === 0) throw new TypeError(`${name} must be a non-empty array`)
  const seen = new Set<string>()
  return list.map((u, i) => {
    const n = `${name}[${i}]`
    let out: Required<UpstreamServer>
    if (typeof u === 'string') {
      const a = parseHostPort(n, u, 1)
      out = { ...a, weight: 1, name: formatHostPort(a) }
    } else if (typeof u === 'object' && u !== null) {
      const o = u as UpstreamServer
      const host = o.host ?? '127.0.0.1'
      if (typeof host !== 'string' || host === '') throw new TypeError(`${n}.host must be a non-empty string`)
      if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535)
        throw new RangeError(`${n}.port must be 1 to 65535`)
      const weight = o.weight ?? 1
      if (!Number.isInteger(weight) || weight < 1 || weight > 1000)
        throw new RangeError(`${n}.weight must be 1 to 1000`)
      if (o.name !== undefined && (typeof o.name !== 'string' || o.name === '')) {
        throw new TypeError(`${n}.name must be a non-empty string`)
      }
      out = { host, port: o.port, weight, name: o.name ?? formatHostPort({ host, port: o.port }) }
    } else {
      throw new TypeError(`${n} must be 'host:port' or { host, port, weight?, name? }`)
    }
    if (seen.has(out.name)) throw new RangeError(`${n}: server '${out.name}' is listed twice`)
    seen.add(out.name)
    return out
  })
}

function intOpt(name: string, v: unknown, def: number, min: number, max: number): number {
  if (v === undefined) return def
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new TypeError(`${name} must be an integer`)
  if (v < min || v > max) throw new RangeError(`${name} must be ${min} to ${max}, got ${v}`)
  return v
}

/**
 * A pool of upstream connections: per server, `connections` per shard, each in the pool's `ring` (a SockHash the
 * gateways route with) while its server is up. Reconnects with backoff, checks each server actively, and ejects a
 * failing one from the ring until it answers again.
 *
 * @example
 * ```ts
 * const pool = new UpstreamPool(engine, {
 *   upstreams: ['127.0.0.1:6379', { port: 6380, weight: 2 }],
 *   protocol: 'resp',
 *   programs: { parser: parsers.resp(), verdict: rules.reply() },
 * })
 * await pool.ready()
 * clients.attach({ parser: parsers.resp(), verdict: rules.hashRoute(pool.ring, rules.key.resp), requests: {} })
 * ```
 */
export class UpstreamPool extends EventEmitter<UpstreamPoolEvents> {
  /** The routing table: the open connections of the servers that are up. */
  readonly ring: SockHash
  /** Every open connection (it carries the pool's programs). */
  readonly members: SockHash
  /** The label of the pool's metrics. */
  readonly label: string
  readonly #engine: Engine
  readonly #servers = new Map<string, ServerState>()
  readonly #opts: {
    protocol: CheckProtocol
    connections: number
    connectTimeoutMs: number
    health: Required<HealthCheckOptions> | false
    failures: number
    reconnect: Required<ReconnectOptions>
    password: string | undefined
  }
  #closed = false
  #initial: Promise<void> | undefined

  constructor(engine: Engine, options: UpstreamPoolOptions) {
    super()
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const servers = parseUpstreams('options.upstreams', options.upstreams)
    if (!['resp', 'http1', 'tcp'].includes(options.protocol)) {
      throw new RangeError(`options.protocol must be 'resp', 'http1' or 'tcp', got ${String(options.protocol)}`)
    }
    const h = options.healthCheck
    if (h !== undefined && h !== false && (typeof h !== 'object' || h === null)) {
      throw new TypeError('options.healthCheck must be an object or false')
    }
    const r = options.reconnect ?? {}
    const jitter = r.jitter ?? defaults.reconnect.jitter
    if (typeof jitter !== 'number' || !(jitter >= 0 && jitter <= 1)) {
      throw new RangeError('options.reconnect.jitter must be 0 to 1')
    }
    if (options.password !== undefined && typeof options.password !== 'string') {
      throw new TypeError('options.password must be a string')
    }
    this.#opts = {
      protocol: options.protocol,
      connections: intOpt('options.connections', options.connections, defaults.connections, 1, 64),
      connectTimeoutMs: intOpt(
        'options.connectTimeoutMs',
        options.connectTimeoutMs,
        defaults.connectTimeoutMs,
        1,
        600_000,
      ),
      health:
        h === false
          ? false
          : {
              intervalMs: intOpt(
                'options.healthCheck.intervalMs',
                h?.intervalMs,
                defaults.health.intervalMs,
                10,
                3_600_000,
              ),
              timeoutMs: intOpt('options.healthCheck.timeoutMs', h?.timeoutMs, defaults.health.timeoutMs, 1, 600_000),
              path: h?.path ?? defaults.health.path,
            },
      failures: intOpt('options.failures', options.failures, defaults.failures, 1, 1000),
      reconnect: {
        initialMs: intOpt('options.reconnect.initialMs', r.initialMs, defaults.reconnect.initialMs, 1, 600_000),
        maxMs: intOpt('options.reconnect.maxMs', r.maxMs, defaults.reconnect.maxMs, 1, 3_600_000),
        jitter,
      },
      password: options.password,
    }
    this.label = options.label ?? 'default'
    this.#engine = engine
    const slots = servers.length * this.#opts.connections * engine.shards
    this.members = engine.sockHash({ maxEntries: Math.max(16, slots * 2) })
    this.members.attach(options.programs)
    this.ring = engine.sockHash({ maxEntries: Math.max(16, slots * 2) })
    for (const s of servers) this.#add(s)
  }

  /** Resolves once every connection slot tried its first connect (servers that refused are down). */
  ready(): Promise<void> {
    this.#initial ??= this.#start()
    return this.#initial
  }

  /** The names of the servers in the ring. */
  get upServers(): string[] {
    return [...this.#servers.values()].filter((s) => s.up).map((s) => s.name)
  }

  /** The servers' names, in order. */
  get servers(): string[] {
    return [...this.#servers.keys()]
  }

  /**
   * The key in {@link UpstreamPool.members} of the connection that requests of client `socketId` go to: a connection
   * of an up server on the client's shard (else on any shard), the same one for the same client while it stays up.
   */
  connectionFor(socketId: number): string | undefined {
    const up = [...this.#servers.values()].filter((s) => s.up)
    if (up.length === 0) return undefined
    const anchor = this.#anySocket()
    const shard = anchor ? (hostOf(anchor)?.binding.shardOf(socketId) ?? 0) : 0
    const open = (slot: Slot): boolean => slot.sock !== undefined && !slot.sock.closed
    const server = up[socketId % up.length] as ServerState
    const candidates = server.slots.filter((x) => open(x) && x.onShard === shard)
    const pick = candidates.length > 0 ? candidates : up.flatMap((s) => s.slots.filter(open))
    return pick.length === 0 ? undefined : (pick[socketId % pick.length] as Slot).key
  }

  /** Like {@link UpstreamPool.connectionFor}, on the first server (in order) that is up. */
  firstConnection(socketId: number): string | undefined {
    const server = [...this.#servers.values()].find((s) => s.up && s.slots.some((x) => x.sock && !x.sock.closed))
    if (!server) return undefined
    const anchor = this.#anySocket()
    const shard = anchor ? (hostOf(anchor)?.binding.shardOf(socketId) ?? 0) : 0
    const open = server.slots.filter((x) => x.sock !== undefined && !x.sock.closed)
    const near = open.filter((x) => x.onShard === shard)
    const pick = near.length > 0 ? near : open
    return (pick[socketId % pick.length] as Slot).key
  }

  /** Per-server counters. */
  stats(): UpstreamStats[] {
    return [...this.#servers.values()].map((s) => ({
      server: s.name,
      address: formatHostPort(s),
      up: s.up,
      weight: s.weight,
      connections: s.slots.filter((x) => x.sock !== undefined).length,
      slots: s.slots.length,
      ...s.s,
    }))
  }

  /** The pool's counters in the Prometheus text format. */
  metrics(): string {
    return poolMetrics([this])
  }

  /**
   * Replaces the servers: new ones are added, removed ones leave the ring at once and their connections end after
   * `graceMs` (so replies already on their way arrive), kept ones (same name, address and weight) are untouched.
   */
  async reload(upstreams: UpstreamSpec[], graceMs = 1000): Promise<void> {
    const next = parseUpstreams('upstreams', upstreams)
    const keep = new Set<string>()
    for (const n of next) {
      const cur = this.#servers.get(n.name)
      if (cur && cur.host === n.host && cur.port === n.port && cur.weight === n.weight) keep.add(n.name)
    }
    for (const s of [...this.#servers.values()]) {
      if (!keep.has(s.name)) this.#retire(s, graceMs)
    }
    const added = next.filter((n) => !keep.has(n.name)).map((n) => this.#add(n))
    if (this.#initial) await Promise.all(added.map((s) => this.#startServer(s)))
  }

  /** Ends every connection (after what is queued) and stops checks and reconnects. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const closing: Array<Promise<unknown>> = []
    for (const s of this.#servers.values()) {
      clearTimeout(s.checkTimer)
      for (const slot of s.slots) {
        clearTimeout(slot.timer)
        const sock = slot.sock
        if (sock && !sock.closed) {
          closing.push(new Promise((r) => sock.once('close', r)))
          sock.end()
        }
      }
    }
    await Promise.race([Promise.all(closing), new Promise((r) => setTimeout(r, 2000).unref())])
    for (const s of this.#servers.values()) for (const slot of s.slots) slot.sock?.destroy()
  }

  #add(n: Required<UpstreamServer>): ServerState {
    const s: ServerState = {
      ...n,
      up: false,
      retired: false,
      slots: [],
      checkTimer: undefined,
      checking: false,
      s: {
        failures: 0,
        ejections: 0,
        reconnects: 0,
        connectErrors: 0,
        checksOk: 0,
        checksFailed: 0,
        lastError: undefined,
      },
    }
    for (let shard = 0; shard < this.#engine.shards; shard++) {
      for (let i = 0; i < this.#opts.connections; i++) {
        s.slots.push({
          key: `${n.name}#${shard}.${i}`,
          shard,
          onShard: shard,
          sock: undefined,
          connecting: false,
          attempt: 0,
          connectedOnce: false,
          timer: undefined,
        })
      }
    }
    this.#servers.set(n.name, s)
    return s
  }

  async #start(): Promise<void> {
    for (const s of this.#servers.values()) await this.#startServer(s)
  }

  async #startServer(s: ServerState): Promise<void> {
    // One at a time, so that each shard gets a connection the next ones can join (the engine places a connect
    // without `near` on the least loaded shard).
    for (const slot of s.slots) await this.#connect(s, slot)
    this.#scheduleCheck(s)
  }

  #shardOf(sock: Socket): number {
    return hostOf(sock)?.binding.shardOf(sock.id) ?? 0
  }

  /** An open connection of any pool of this engine on `shard`, to connect near. */
  #nearOn(shard: number): Socket | undefined {
    for (const sock of poolSockets(this.#engine)) {
      if (!sock.closed && this.#shardOf(sock) === shard) return sock
    }
    return undefined
  }

  /** Any open pool connection (its engine tells the shard of a client). */
  #anySocket(): Socket | undefined {
    for (const srv of this.#servers.values()) for (const x of srv.slots) if (x.sock && !x.sock.closed) return x.sock
    return undefined
  }

  async #connect(s: ServerState, slot: Slot): Promise<void> {
    // Without a connection on the slot's shard to connect near, the engine places the connect on its least loaded
    // shard: one that lands elsewhere serves a free slot of that shard, and the slot tries again (a few times).
    for (let tries = 0; tries <= 2 * this.#engine.shards; tries++) {
      if (this.#closed || s.retired || slot.sock || slot.connecting) return
      const near = this.#nearOn(slot.shard)
      const sock = await this.#open(s, slot, near)
      if (!sock) return
      const shard = this.#shardOf(sock)
      const other =
        shard === slot.shard || near ? undefined : s.slots.find((x) => x.shard === shard && !x.sock && !x.connecting)
      if (!other) {
        this.#adopt(s, slot, sock, shard)
        return
      }
      this.#adopt(s, other, sock, shard)
    }
  }

  /** Opens a connection for `slot` (AUTH included); on failure counts it and schedules the retry. */
  async #open(s: ServerState, slot: Slot, near: Socket | undefined): Promise<Socket | undefined> {
    slot.connecting = true
    clearTimeout(slot.timer)
    slot.timer = undefined
    let sock: Socket
    try {
      sock = await this.#engine.connect({
        host: s.host,
        port: s.port,
        timeoutMs: this.#opts.connectTimeoutMs,
        ...(near ? { near } : {}),
      })
      if (this.#opts.password !== undefined) await this.#auth(sock)
    } catch (err) {
      slot.connecting = false
      s.s.connectErrors++
      this.#failure(s, `connect: ${(err as Error).message}`)
      this.#retry(s, slot)
      return undefined
    }
    slot.connecting = false
    if (this.#closed || s.retired) {
      sock.destroy()
      return undefined
    }
    return sock
  }

  /** Makes `sock` the connection of `slot`: a member of the pool, and in the ring while its server is up. */
  #adopt(s: ServerState, slot: Slot, sock: Socket, shard: number): void {
    if (slot.connectedOnce) s.s.reconnects++
    slot.connectedOnce = true
    slot.attempt = 0
    slot.sock = sock
    slot.onShard = shard
    clearTimeout(slot.timer)
    slot.timer = undefined
    const all = poolSockets(this.#engine)
    all.add(sock)
    sock.once('close', () => {
      all.delete(sock)
      this.#closedSlot(s, slot, sock)
    })
    sock.on('error', () => {})
    // An upstream that shuts its side will answer nothing more: the connection is done.
    sock.once('end', () => sock.destroy())
    this.members.set(slot.key, sock)
    if (s.up) this.ring.set(slot.key, sock, { server: s.name, weight: s.weight })
    // A connect brings a server up, but after an ejection only a health check does (when checks are on).
    else if (this.#opts.health === false || s.s.ejections === 0) this.#up(s)
  }

  /** Sends `AUTH` on a new connection and reads its `+OK` before the connection joins the pool. */
  async #auth(sock: Socket): Promise<void> {
    const answer = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer to AUTH')), this.#opts.connectTimeoutMs)
      let got = ''
      const onMessage = (m: Buffer): void => {
        got += m.toString('latin1')
        if (got.includes('\r\n')) {
          clearTimeout(timer)
          sock.off('message', onMessage)
          sock.pause()
          resolve(got)
        }
      }
      sock.on('message', onMessage)
    })
    await sock.send(respCommand(['AUTH', this.#opts.password as string]))
    const line = await answer
    if (!line.startsWith('+OK')) {
      sock.destroy()
      throw new SockmapError('EACCES', `EACCES: upstream refused AUTH: ${line.trim()}`)
    }
  }

  #closedSlot(s: ServerState, slot: Slot, sock: Socket): void {
    if (slot.sock !== sock) return
    slot.sock = undefined
    if (this.#closed || s.retired) return
    this.#down(s, 'connection closed')
    this.#retry(s, slot)
    // Check at once rather than at the next interval: a server that merely closed an idle connection is back in the
    // ring within a round trip.
    const h = this.#opts.health
    if (h !== false) void this.#check(s, h)
  }

  #retry(s: ServerState, slot: Slot): void {
    if (this.#closed || s.retired || slot.timer) return
    const r = this.#opts.reconnect
    const base = Math.min(r.maxMs, r.initialMs * 2 ** Math.min(slot.attempt, 30))
    slot.attempt++
    const delay = Math.max(1, Math.round(base * (1 - r.jitter + 2 * r.jitter * Math.random())))
    slot.timer = setTimeout(() => {
      slot.timer = undefined
      void this.#connect(s, slot)
    }, delay)
    slot.timer.unref()
  }

  #failure(s: ServerState, reason: string): void {
    s.s.failures++
    s.s.lastError = reason
    if (this.listenerCount('error') > 0) {
      const err = Object.assign(new Error(`${s.name}: ${reason}`), { server: s.name })
      this.emit('error', err)
    }
    if (s.s.failures >= this.#opts.failures) this.#down(s, reason)
  }

  #up(s: ServerState): void {
    if (s.up || s.retired || this.#closed) return
    s.up = true
    s.s.failures = 0
    for (const slot of s.slots) {
      if (slot.sock && !slot.sock.closed) this.ring.set(slot.key, slot.sock, { server: s.name, weight: s.weight })
    }
    this.emit('up', s.name)
  }

  #down(s: ServerState, reason: string): void {
    if (!s.up) return
    s.up = false
    s.s.ejections++
    for (const slot of s.slots) if (this.ring.has(slot.key)) this.ring.delete(slot.key)
    this.emit('down', s.name, reason)
  }

  #scheduleCheck(s: ServerState): void {
    const h = this.#opts.health
    if (h === false || this.#closed || s.retired || s.checkTimer) return
    s.checkTimer = setTimeout(() => {
      s.checkTimer = undefined
      void this.#check(s, h).finally(() => this.#scheduleCheck(s))
    }, h.intervalMs)
    s.checkTimer.unref()
  }

  async #check(s: ServerState, h: Required<HealthCheckOptions>): Promise<void> {
    if (s.checking) return
    s.checking = true
    try {
      await this.#checkOnce(s, h)
    } finally {
      s.checking = false
    }
  }

  async #checkOnce(s: ServerState, h: Required<HealthCheckOptions>): Promise<void> {
    try {
      await check({
        host: s.host,
        port: s.port,
        protocol: this.#opts.protocol,
        timeoutMs: h.timeoutMs,
        path: h.path,
        ...(this.#opts.password !== undefined ? { password: this.#opts.password } : {}),
      })
    } catch (err) {
      s.s.checksFailed++
      this.#failure(s, `health check: ${(err as Error).message}`)
      return
    }
    s.s.checksOk++
    if (this.#closed || s.retired) return
    s.s.failures = 0
    // Healthy again: reconnect the closed slots now rather than at the end of their backoff, then rejoin the ring.
    const missing = s.slots.filter((slot) => !slot.sock)
    for (const slot of missing) {
      slot.attempt = 0
      clearTimeout(slot.timer)
      slot.timer = undefined
      await this.#connect(s, slot)
    }
    if (s.slots.some((slot) => slot.sock)) this.#up(s)
  }

  #retire(s: ServerState, graceMs: number): void {
    this.#down(s, 'removed')
    s.retired = true
    this.#servers.delete(s.name)
    clearTimeout(s.checkTimer)
    for (const slot of s.slots) {
      clearTimeout(slot.timer)
      const sock = slot.sock
      if (sock) setTimeout(() => sock.end(), graceMs).unref()
    }
  }
}

/** The counters of `pools` in the Prometheus text format: each metric's HELP and TYPE once, a series per server. */
export function poolMetrics(pools: UpstreamPool[]): string {
  const out: string[] = []
  const series: Array<[string, string, string, (r: UpstreamStats) => number]> = [
    ['sockmap_upstream_up', 'gauge', 'Whether the server is in the ring.', (r) => (r.up ? 1 : 0)],
    ['sockmap_upstream_connections', 'gauge', 'Upstream connections open.', (r) => r.connections],
    ['sockmap_upstream_ejections_total', 'counter', 'Times the server left the ring.', (r) => r.ejections],
    ['sockmap_upstream_reconnects_total', 'counter', 'Reconnections made.', (r) => r.reconnects],
    ['sockmap_upstream_connect_errors_total', 'counter', 'Connects that failed.', (r) => r.connectErrors],
    ['sockmap_upstream_checks_ok_total', 'counter', 'Health checks passed.', (r) => r.checksOk],
    ['sockmap_upstream_checks_failed_total', 'counter', 'Health checks failed.', (r) => r.checksFailed],
  ]
  const rows = pools.flatMap((p) =>
    p.stats().map((r) => ({ r, label: `pool="${esc(p.label)}",server="${esc(r.server)}"` })),
  )
  for (const [name, type, help, get] of series) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`)
    for (const { r, label } of rows) out.push(`${name}{${label}} ${get(r)}`)
  }
  return out.join('\n') + '\n'
}

/** The open connections of every pool of each engine: what new connections join to land on a given shard. */
const socketsByEngine = new WeakMap<Engine, Set<Socket>>()

function poolSockets(engine: Engine): Set<Socket> {
  let set = socketsByEngine.get(engine)
  if (!set) socketsByEngine.set(engine, (set = new Set()))
  return set
}

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
}
