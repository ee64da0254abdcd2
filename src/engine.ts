import { lookup } from 'node:dns/promises'
import { EventEmitter } from 'node:events'
import { isIP, type Socket as NetSocket } from 'node:net'

import {
  BindingEngine,
  availableCores,
  EventKind,
  nativeDefaults,
  Wake,
  type EngineOptions as NativeEngineOptions,
  type JsEvent,
  type KeySpec,
  type ParserSpec,
  type ProgramsSpec,
  type HttpRouteSpec,
  type RuleSpec,
  type TlsClientSpec,
  type VerdictSpec,
} from './binding.cjs'
import { SockmapError, callBinding, fromBinding, type SockmapErrorCode } from './errors'
import {
  SockHash,
  SockMap,
  hashKey,
  mapRef,
  requestsSpec,
  type AttachOptions,
  type MapHost,
  type MsgVerdictFunction,
  type VerdictFunction,
} from './map'
import { parserSpecOf } from './parsers'
import { messageKeyOf, ruleOf, type RuleInternal } from './rules'
import {
  clientSpec,
  serverSpec,
  tlsInfo,
  type TlsConnectOptions,
  type TlsInfo,
  type TlsServerOptions,
  type TlsStats,
} from './tls'
import {
  Server,
  Socket,
  hostOf,
  kClose,
  kEvent,
  kTls,
  kTlsInfo,
  kTlsError,
  type AddressInfo,
  type PairOptions,
  type SocketHost,
} from './socket'
import { addStats, toPrometheus, zeroStats, type EngineStats, type MapStats } from './stats'
import { assertIntInRange, assertObject, assertOneOf, assertString, assertUnixName } from './validate'
import { BatchRunner } from './batch'
import { DatagramSocket, sessionsSpec, type DatagramBindOptions, type DatagramConnectOptions } from './dgram'
import { Verdict, type MessageTls, type ParseFunction } from './verdict'

/** The engine's defaults (the single source of every default below). */
const defaults = nativeDefaults()

/** How TypeScript callbacks are batched. */
export interface BatchOptions {
  /** Most messages handed to JavaScript in one batch (one boundary crossing). Default: `1024`. */
  maxMessages?: number
  /** Longest a message waits for its batch to be handed over, in microseconds. Default: `50`. */
  maxDelayMicros?: number
  /** Most batches awaiting answers at once, per I/O thread (`shards`). Default: `4`. */
  maxInFlight?: number
  /**
   * Longest a batch handed to JavaScript may go unanswered, in milliseconds: then each of its messages gets its map's
   * `onError` verdict (a TypeScript parser's socket closes with `ETIMEDOUT`), the engine reports one `ETIMEDOUT`
   * error per batch, and the answer, when it comes, is ignored (`verdictTimeouts` and `verdictsLate` in the stats; a
   * batch JavaScript had not started yet still runs its callbacks when JavaScript gets to it).
   * With `drive: 'threads'`, a verdict that runs long (or a JavaScript thread busy elsewhere) no longer holds its
   * sockets. With `drive: 'inline'` the JavaScript thread runs the I/O loop: nothing moves while a verdict runs, and
   * the answer it returns is applied before the deadline is looked at, so the deadline only ends batches that never
   * get to run. Default: `5000`.
   */
  verdictTimeoutMs?: number
}

/** What {@link Engine.backendInfo} tells. */
export interface BackendInfo {
  /** The backend running: `'poll'` is the readiness backend outside Linux (kqueue on macOS, IOCP on Windows). */
  backend: 'epoll' | 'io_uring' | 'poll'
  /** What was asked for (the option, else `SOCKMAP_BACKEND`, else `'auto'`). */
  requested: 'auto' | 'epoll' | 'io_uring'
  /** The kernel features in use, e.g. `'multishot-recv'`, `'buffer-ring'`, `'defer-taskrun'`. */
  features: string[]
  /** Each step down from the most capable backend, with its reason (empty when nothing was missing). */
  fallbacks: string[]
}

/** What {@link Engine.backendStats} counts, over all I/O threads. */
export interface BackendStats {
  /** Times the I/O threads entered the kernel to wait (`epoll_wait`, or `io_uring_enter`, which also submits). */
  waits: number
  /** io_uring receives that ran out of provided buffers (backpressure) and were armed again. */
  starved: number
  /** io_uring completions of operations whose socket had closed, ignored. */
  stale: number
  /** Read passes that spliced bytes nothing inspects through a pipe instead of copying them (epoll). */
  spliced: number
  /** Datagrams sent as segments of `UDP_SEGMENT` sends (GSO: several datagrams of one size to one peer in one send). */
  segmented: number
  /** Datagrams received coalesced with others by `UDP_GRO` (then split into datagrams again). */
  coalesced: number
}

/** Options of {@link Engine}. */
export interface EngineOptions {
  /**
   * The I/O backend. `'auto'`: io_uring where the kernel allows it (multishot receives into a provided-buffer ring),
   * else epoll, each step down said in {@link Engine.backendInfo}. `'epoll'`: the readiness backend (epoll on Linux; kqueue
   * on macOS and IOCP on Windows, where it reports itself as `'poll'`). `'io_uring'`: io_uring or an error (`EPERM`,
   * `ENOSYS`, `EOPNOTSUPP`... as the kernel refused it), never a silent fallback. Left out, the environment variable
   * `SOCKMAP_BACKEND` chooses, or else `'auto'`. Default: `'auto'`.
   */
  backend?: 'auto' | 'epoll' | 'io_uring'
  /**
   * I/O threads (shards), each with its own backend, sockets and buffers; `'auto'`: the cores this process may use.
   * Accepted connections go to the shard with the fewest sockets; maps are shared by all shards, and a redirect to a
   * socket another shard owns crosses threads with the same backpressure as a local one (connect upstreams with
   * `near` to keep pairs on one thread). Left out, the environment variable `SOCKMAP_SHARDS` chooses, or else `1`.
   * Default: `1`.
   */
  shards?: number | 'auto'
  /**
   * Who runs the I/O loop. `'threads'`: the engine's own I/O threads (one per shard); TypeScript callbacks are
   * called in batches handed across threads, which lets the loop read and write while JavaScript is busy and scales
   * native-only traffic over `shards` cores. `'inline'`: this JavaScript thread, inside Node's event loop (libuv
   * watches the engine's epoll or kqueue descriptor): a TypeScript verdict or parser is a plain call on the thread
   * that read the message, and its answer is written in the same turn, with no thread hop, so a TypeScript verdict
   * adds far less latency than across threads (about 2× a native rule rather than 3.5–5×); the engine then shares the JavaScript thread's time with the
   * application. Pick `'inline'` for sockets whose messages TypeScript judges, `'threads'` for native rules, bulk
   * forwarding and several shards (an application may run one engine of each). Inline driving runs one shard on the
   * readiness backend (`'auto'` reports that step in {@link Engine.backendInfo}; `backend: 'io_uring'` and `shards`
   * above 1 are refused with `EOPNOTSUPP` and `EINVAL`), and needs a Unix platform (Linux, macOS). Left out, the
   * environment variable `SOCKMAP_DRIVE` chooses, or else `'threads'`. Default: `'threads'`.
   */
  drive?: 'threads' | 'inline'
  /**
   * Size of the buffers reads land in, in bytes (on io_uring, each buffer of the provided-buffer ring). Default: 64
   * KiB (65536).
   */
  readBuffer?: number
  /**
   * Buffers in the io_uring backend's provided-buffer ring, rounded up to a power of two (at most 32768). Chunks of at
   * most 1 KiB, and every chunk while the ring is low, are copied out so that held messages never pin buffers; an
   * empty ring is backpressure, never an error. Default: `128`.
   */
  recvBuffers?: number
  /**
   * Bytes a datagram socket may hold queued to send; a datagram beyond it is dropped and counted
   * (`droppedOverflow`), a send rejects with `ENOBUFS`. Default: 1 MiB.
   */
  dgramQueueBytes?: number
  /**
   * Datagrams a datagram socket may hold queued to send (and a session before it reads); beyond: as
   * `dgramQueueBytes`. Default: `4096`.
   */
  dgramQueueDatagrams?: number
  /** How TypeScript callbacks are batched. */
  batch?: BatchOptions
  /** Send ring high watermark in bytes: above it, sources feeding the socket stop being read. Default: 1 MiB. */
  sendHighWatermark?: number
  /** Sources stopped by a full send ring resume once it drains to this many bytes. Default: 256 KiB. */
  sendLowWatermark?: number
  /**
   * Bounds each socket's application queue: above this many bytes delivered to a socket's application (its
   * `'message'` events) and not yet consumed, the sockets feeding it stop being read until it is half empty. A
   * message is consumed when its `'message'` event is emitted, or handed out by an async iterator; held messages of a
   * paused socket are not. Default: 1 MiB.
   */
  appHighWatermark?: number
  /**
   * Bounds what one socket holds for TypeScript callbacks: above this many bytes of its messages awaiting a
   * TypeScript verdict (or of its bytes a TypeScript parser has not framed yet), the engine stops reading the socket
   * (its peer is pushed back by TCP flow control) until half of them are answered. In bytes, at least 1. Default:
   * 1 MiB (1048576).
   */
  maxPendingBytes?: number
  /**
   * Fairness: bytes the I/O thread reads from one socket per loop turn before other sockets get a turn. In bytes, at
   * least 1. Default: 256 KiB (262144).
   */
  readBudget?: number
}

/** Options of {@link Engine.listen}: a TCP address (`host`, `port`) or a Unix socket (`path`), not both. */
export type ListenOptions = TcpListenOptions | UnixListenOptions

/** Options of {@link Engine.listen} on TCP, IPv4 or IPv6. */
export interface TcpListenOptions {
  /** The address to bind: IPv4, IPv6 (`'::1'`; `'::'` accepts IPv4 too where the OS is dual-stack), or a name. Default: `'127.0.0.1'`. */
  host?: string
  /** The port; `0` picks a free one. */
  port: number
  /** The accept backlog. Default: `1024`. */
  backlog?: number
  /**
   * Terminate TLS on every accepted connection: a socket is announced (`'connection'`) once its handshake finished,
   * with `socket.tls` set, and its parser, verdict and application see plaintext only. A failed handshake closes the
   * connection, is counted in `stats().tls` and emitted as the server's `'tlsClientError'`.
   */
  tls?: TlsServerOptions
  /** Not with `host`/`port`. */
  path?: undefined
}

/** Options of {@link Engine.listen} on a Unix-domain stream socket. */
export interface UnixListenOptions {
  /**
   * The socket's path (at most 107 bytes), or on Linux an abstract name written with a leading NUL (`'\0name'`), as
   * `node:net` writes it; the name is exactly the bytes after the NUL (Node 20's `net` pads its abstract names with
   * NULs to 107 bytes: to meet it, pad yours the same way). A path that exists already is refused
   * (`EADDRINUSE`); the engine removes the path when the server closes (or the engine does), if it still names this
   * socket.
   */
  path: string
  /** The accept backlog. Default: `1024`. */
  backlog?: number
  /** Not with `path`. */
  host?: undefined
  /** Not with `path`. */
  port?: undefined
}

/** Options of {@link Engine.connect}: a TCP address (`host`, `port`) or a Unix socket (`path`), not both. */
export type ConnectOptions = TcpConnectOptions | UnixConnectOptions

/** What every {@link Engine.connect} takes, whatever the family. */
export interface ConnectCommonOptions {
  /** Give up with `ETIMEDOUT` after this many milliseconds (`0`: no limit). Default: no limit beyond the kernel's. */
  timeoutMs?: number
  /**
   * A socket of this engine whose I/O thread the new socket joins, so that redirects between the two never cross
   * threads (a gateway connects a client's upstream near the client). Left out: the least loaded thread.
   */
  near?: Socket
}

/** Options of {@link Engine.connect} over TCP, IPv4 or IPv6. */
export interface TcpConnectOptions extends ConnectCommonOptions {
  /** The host to connect to: an IPv4 or IPv6 address or a name. Default: `'127.0.0.1'`. */
  host?: string
  /** The port. */
  port: number
  /**
   * Originate TLS: the connect resolves once the handshake finished (`socket.tls` set), and rejects with its failure
   * (`EPROTO` with the reason in the message, `ETIMEDOUT`, `ECONNRESET`); bytes sent or redirected to the socket are
   * encrypted as they leave.
   */
  tls?: TlsConnectOptions
  /** Not with `host`/`port`. */
  path?: undefined
}

/** Options of {@link Engine.connect} to a Unix-domain stream socket. */
export interface UnixConnectOptions extends ConnectCommonOptions {
  /** The socket's path, or on Linux an abstract name with a leading NUL (`'\0name'`; see {@link UnixListenOptions.path}). */
  path: string
  /** Not with `path`. */
  host?: undefined
  /** Not with `path`. */
  port?: undefined
}

/** Checks a Unix socket path option (see {@link assertUnixName}), which excludes `host` and `port`. */
function assertUnixPath(options: Record<string, unknown>, name = 'options.path'): string {
  const path = options.path
  assertUnixName(name, path)
  if (options.host !== undefined || options.port !== undefined) {
    throw new TypeError('options.path cannot be combined with options.host or options.port')
  }
  return path
}

/** Events of an {@link Engine}. */
export interface EngineEvents {
  /**
   * An error not tied to one call: a TypeScript verdict or parser that threw or returned garbage (code
   * `'ERR_CALLBACK'`, with the thrown value as `cause`), or the I/O thread failing (`'ERR_ENGINE_PANIC'`). Without a
   * listener, the error is emitted as a process warning instead, and the engine keeps running.
   */
  error: [err: SockmapError]
}

/**
 * The engine: owns the native I/O thread, the sockets and the maps.
 *
 * @example
 * ```ts
 * const engine = new Engine()
 * const peers = engine.sockHash({ maxEntries: 1024 })
 * peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
 * const server = await engine.listen({ port: 0 })
 * server.on('connection', async (client) => {
 *   const upstream = await engine.connect({ port: 6379 })
 *   peers.set(client.id, upstream).set(upstream.id, client)
 * })
 * ```
 */
export class Engine extends EventEmitter<EngineEvents> {
  readonly #binding: BindingEngine
  readonly #sockets = new Map<number, Socket | Server>()
  /**
   * Accepted sockets no one has asked for yet (their listener had no `'connection'` listener): a `Socket` is made
   * only when the application reaches one (a map lookup, a partner).
   */
  readonly #unborn = new Map<number, AddressInfo>()
  readonly #connecting = new Map<number, { resolve: (s: Socket) => void; reject: (e: unknown) => void }>()
  /** TLS parameters of accepted sockets not made yet; the failure text of TLS connects under way. */
  readonly #tlsPending = new Map<number, TlsInfo>()
  readonly #tlsFailures = new Map<number, string>()
  /** The server names of passed-through ClientHellos (`parsers.tlsRecords()`), by socket, until it closes. */
  readonly #helloSni = new Map<number, MessageTls>()
  readonly #maps: Array<SockMap | SockHash> = []
  #req = 0
  #closing: Promise<void> | undefined
  readonly #host: SocketHost & MapHost
  readonly #runner: BatchRunner

  constructor(options: EngineOptions = {}) {
    super()
    assertObject('options', options)
    if (options.backend !== undefined) {
      assertOneOf('options.backend', options.backend, ['auto', 'epoll', 'io_uring'])
    }
    if (options.shards !== undefined && options.shards !== 'auto') {
      assertIntInRange('options.shards', options.shards, 1, 256)
    }
    if (options.drive !== undefined) assertOneOf('options.drive', options.drive, ['threads', 'inline'])
    const batch = options.batch ?? {}
    assertObject('options.batch', batch)
    // Each option given is checked and passed on; one left out keeps the engine's default.
    const native: NativeEngineOptions = {}
    const opt = (
      key: Exclude<keyof NativeEngineOptions, 'backend' | 'drive'>,
      name: string,
      v: unknown,
      min: number,
      max: number,
    ): void => {
      if (v === undefined) return
      assertIntInRange(name, v, min, max)
      native[key] = v as number
    }
    const b = batch as BatchOptions
    opt('maxMessages', 'options.batch.maxMessages', b.maxMessages, 1, 1 << 20)
    opt('maxDelayMicros', 'options.batch.maxDelayMicros', b.maxDelayMicros, 0, 1_000_000)
    opt('maxInFlight', 'options.batch.maxInFlight', b.maxInFlight, 1, 1024)
    opt('verdictTimeoutMs', 'options.batch.verdictTimeoutMs', b.verdictTimeoutMs, 1, 2 ** 31 - 1)
    opt('sendHighWatermark', 'options.sendHighWatermark', options.sendHighWatermark, 1, 2 ** 40)
    opt('sendLowWatermark', 'options.sendLowWatermark', options.sendLowWatermark, 1, 2 ** 40)
    opt('appHighWatermark', 'options.appHighWatermark', options.appHighWatermark, 1, 2 ** 40)
    opt('maxPendingBytes', 'options.maxPendingBytes', options.maxPendingBytes, 1, 2 ** 40)
    opt('readBudget', 'options.readBudget', options.readBudget, 1, 2 ** 40)
    opt('readBuffer', 'options.readBuffer', options.readBuffer, 512, 1 << 26)
    opt('dgramQueueBytes', 'options.dgramQueueBytes', options.dgramQueueBytes, 1, 2 ** 40)
    opt('dgramQueueDatagrams', 'options.dgramQueueDatagrams', options.dgramQueueDatagrams, 1, 2 ** 31)
    opt('recvBuffers', 'options.recvBuffers', options.recvBuffers, 1, 1 << 15)
    if (options.backend !== undefined) native.backend = options.backend
    if (options.drive !== undefined) native.drive = options.drive
    if (options.shards !== undefined) native.shards = options.shards === 'auto' ? availableCores() : options.shards
    // A threaded engine calls it with nothing (both may wait); an inline one says what waits.
    const wake = (what?: number): void => this.#drain(what ?? Wake.Events | Wake.Batches)
    this.#binding = callBinding(() => new BindingEngine(native, wake))
    const self = this
    this.#host = {
      binding: this.#binding,
      nextRequest: () => ++self.#req,
      forget: (id) => {
        self.#sockets.delete(id)
        self.#helloSni.delete(id)
      },
      ack: (id, bytes) => self.#ack(id, bytes),
      socketById: (id) => {
        const s = self.#sockets.get(id)
        if (s instanceof Socket) return s
        const remote = self.#unborn.get(id)
        if (remote === undefined) return undefined
        self.#unborn.delete(id)
        return self.#newSocket(id, remote)
      },
      tlsOf: (id) => {
        const s = self.#sockets.get(id)
        return (s instanceof Socket ? s[kTlsInfo] : self.#tlsPending.get(id)) ?? self.#helloSni.get(id)
      },
      rememberSni: (id, sni) => {
        if (!self.#helloSni.has(id)) self.#helloSni.set(id, Object.freeze({ sni }))
      },
      attachPrograms: (map, id, opts) => self.#attach(map, id, opts),
      pair: (a, b, opts) => self.pair(a as Socket, b as Socket, opts),
      holdChanges: () => self.#holdChanges(),
      releaseChanges: () => self.#releaseChanges(),
    }
    this.#runner = new BatchRunner(this.#host)
    this.#report = (err) => this.reportError(err)
  }

  readonly #report: (err: SockmapError) => void
  #changesHeld = false
  #holds = 0

  /**
   * Map changes and pairings made in one synchronous run of JavaScript reach the I/O threads together, when it ends:
   * no message is judged between `set(a.id, b)` and `set(b.id, a)`.
   */
  #holdChanges(): void {
    if (this.#changesHeld) return
    this.#changesHeld = true
    const hold = ++this.#holds
    this.#binding.holdChanges()
    queueMicrotask(() => {
      if (hold === this.#holds) this.#releaseChanges()
    })
  }

  #releaseChanges(): void {
    if (!this.#changesHeld) return
    this.#changesHeld = false
    this.#binding.releaseChanges()
  }

  /** Consumed bytes per socket, sent to the engine once per turn of the JavaScript thread. */
  readonly #acks = new Map<number, number>()
  #ackScheduled = false

  #ack(id: number, bytes: number): void {
    this.#acks.set(id, (this.#acks.get(id) ?? 0) + bytes)
    if (!this.#ackScheduled) {
      this.#ackScheduled = true
      queueMicrotask(() => this.#flushAcks())
    }
  }

  #flushAcks(): void {
    this.#ackScheduled = false
    if (this.#closing) {
      this.#acks.clear()
      return
    }
    try {
      for (const [id, bytes] of this.#acks) callBinding(() => this.#binding.ack(id, bytes))
    } catch (err) {
      this.reportError(err as SockmapError)
    }
    this.#acks.clear()
  }

  /** The backends' counters, over all I/O threads. */
  backendStats(): BackendStats {
    return this.#binding.backendStats()
  }

  /** The number of I/O threads (shards). */
  get shards(): number {
    return this.#binding.shards()
  }

  /** Who runs the I/O loop: the engine's own threads, or this JavaScript thread (see {@link EngineOptions.drive}). */
  get drive(): 'threads' | 'inline' {
    return this.#binding.drive as 'threads' | 'inline'
  }

  /** The backend in use. */
  get backend(): 'epoll' | 'io_uring' | 'poll' {
    return this.backendInfo.backend
  }

  /** The backend in use, what was asked for, the kernel features it uses and why it runs rather than a better one. */
  get backendInfo(): BackendInfo {
    const i = this.#binding.backendInfo()
    return {
      backend: i.backend as BackendInfo['backend'],
      requested: i.requested as BackendInfo['requested'],
      features: i.features,
      fallbacks: i.fallbacks,
    }
  }

  /**
   * Listens for TCP connections (`host`, `port`: IPv4 or IPv6) or on a Unix-domain stream socket (`path`); accepted
   * sockets arrive as the server's `'connection'` event, paused. A host name is resolved with `dns.lookup()` (the
   * first address). A Unix server's `address()` is `{ address: path, port: 0, family: 'Unix' }`.
   * @throws {TypeError} when `path` comes with `host` or `port`, or is not a string; {RangeError} for a path of more
   * than 107 bytes.
   * @throws the `dns.lookup()` error (`ENOTFOUND`...) unchanged when the host name does not resolve.
   */
  async listen(options: ListenOptions): Promise<Server> {
    assertObject('options', options)
    if (options.backlog !== undefined) assertIntInRange('options.backlog', options.backlog, 1, 65535)
    if (options.path !== undefined) {
      const path = assertUnixPath(options as unknown as Record<string, unknown>)
      this.#checkOpen()
      return this.#serve(callBinding(() => this.#binding.listenUnix(path, options.backlog)))
    }
    const host = options.host ?? defaults.host
    assertString('options.host', host)
    assertIntInRange('options.port', options.port, 0, 65535)
    const tls = options.tls === undefined ? undefined : serverSpec('options.tls', options.tls)
    this.#checkOpen()
    const ip = isIP(host) !== 0 ? host : (await lookup(host)).address
    this.#checkOpen()
    return this.#serve(callBinding(() => this.#binding.listen(ip, options.port, options.backlog, tls)))
  }

  #serve(r: { id: number; address: string; port: number; family: string }): Server {
    const server = new Server(
      this.#host,
      r.id,
      { address: r.address, port: r.port, family: r.family },
      (id, remote, later) => {
        if (!later) return this.#newSocket(id, remote)
        this.#unborn.set(id, remote)
        return undefined
      },
    )
    this.#sockets.set(r.id, server)
    return server
  }

  /**
   * Connects to `host:port` (IPv4 or IPv6), or to the Unix-domain stream socket `path`. A host name is resolved with
   * `dns.lookup()` (the first address).
   * @throws {SockmapError} `ECONNREFUSED`, `ETIMEDOUT`...; for a Unix path, `ENOENT` (no such socket),
   * `ECONNREFUSED` (nothing listens) or `EAGAIN` (the listener's backlog is full).
   * @throws {TypeError} when `path` comes with `host` or `port`; {RangeError} for a path of more than 107 bytes.
   * @throws the `dns.lookup()` error (`ENOTFOUND`...) unchanged when the host name does not resolve, as
   * `net.connect()` and `fetch()` report it.
   */
  connect(options: ConnectOptions): Promise<Socket> {
    assertObject('options', options)
    const path = options.path !== undefined ? assertUnixPath(options as unknown as Record<string, unknown>) : undefined
    const host = options.host ?? defaults.host
    if (path === undefined) {
      assertString('options.host', host)
      assertIntInRange('options.port', options.port, 1, 65535)
    }
    if (options.timeoutMs !== undefined) assertIntInRange('options.timeoutMs', options.timeoutMs, 0, 2 ** 31)
    const tls = options.tls === undefined || path !== undefined ? undefined : clientSpec('options.tls', options.tls)
    if (path !== undefined && options.tls !== undefined) throw new TypeError('options.tls is for TCP connects only')
    const timeoutMs = options.timeoutMs === 0 ? undefined : options.timeoutMs
    const near = options.near
    if (near !== undefined && !(near instanceof Socket && this.#sockets.get(near.id) === near)) {
      throw new TypeError('options.near must be a socket of this engine')
    }
    this.#checkOpen()
    if (path !== undefined) {
      return this.#pendingConnect(() => this.#binding.connectUnix(path, timeoutMs, near?.id))
    }
    const port = options.port as number
    if (isIP(host) !== 0) return this.#connectTo(host, port, timeoutMs, near, tls)
    return lookup(host).then((a) => {
      this.#checkOpen()
      return this.#connectTo(a.address, port, timeoutMs, near, tls)
    })
  }

  #connectTo(
    ip: string,
    port: number,
    timeoutMs: number | undefined,
    near: Socket | undefined,
    tls: TlsClientSpec | undefined,
  ): Promise<Socket> {
    return this.#pendingConnect(() => this.#binding.connect(ip, port, timeoutMs, near?.id, tls))
  }

  /**
   * Binds a UDP socket (`host`, `port`: IPv4 or IPv6) or a Unix datagram socket (`path`): datagrams from anyone,
   * each one message. Without `sessions` it passes each datagram with its sender (`'message'`'s `rinfo`) and
   * `send(data, port, host)` names each destination; with `sessions`, each client address gets a session socket
   * (`'session'`). It starts paused, like an accepted socket (with sessions it reads at once, for them).
   * @throws {SockmapError} the bind error (`EADDRINUSE`...).
   * @throws {TypeError} when `path` comes with `host` or `port`; {RangeError} for a port or session bound out of
   * range.
   */
  async bindUdp(options: DatagramBindOptions): Promise<DatagramSocket> {
    assertObject('options', options)
    const sessions = sessionsSpec(options.sessions)
    if (options.path !== undefined) {
      const path = assertUnixPath(options as unknown as Record<string, unknown>)
      this.#checkOpen()
      const r = callBinding(() => this.#binding.bindUnixDgram(path, sessions))
      return this.#datagram(r.id, r)
    }
    const host = options.host ?? defaults.host
    assertString('options.host', host)
    assertIntInRange('options.port', options.port, 0, 65535)
    this.#checkOpen()
    const ip = isIP(host) !== 0 ? host : (await lookup(host)).address
    this.#checkOpen()
    const r = callBinding(() => this.#binding.bindUdp(ip, options.port as number, sessions))
    return this.#datagram(r.id, r)
  }

  /**
   * A UDP socket connected to `host:port` (bound to `localHost:localPort` if given), or a Unix datagram socket
   * connected to `path` (bound to `localPath` if given): each datagram from its peer one message, each send or
   * redirect to it one datagram to its peer. It starts paused.
   * @throws {SockmapError} the bind or connect error (`ENOENT`, `ECONNREFUSED` for a Unix path).
   * @throws {TypeError} when `path` comes with `host` or `port`; {RangeError} for a port out of range.
   */
  async connectUdp(options: DatagramConnectOptions): Promise<DatagramSocket> {
    assertObject('options', options)
    const near = options.near
    if (near !== undefined && !(near instanceof Socket && this.#sockets.get(near.id) === near)) {
      throw new TypeError('options.near must be a socket of this engine')
    }
    if (options.path !== undefined) {
      const path = assertUnixPath(options as unknown as Record<string, unknown>)
      const localPath =
        options.localPath === undefined ? undefined : assertUnixPath({ path: options.localPath }, 'options.localPath')
      this.#checkOpen()
      const id = callBinding(() => this.#binding.connectUnixDgram(path, localPath, near?.id))
      const local = { address: localPath ?? '', port: 0, family: 'Unix' }
      return this.#datagram(id, local, { address: path, port: 0, family: 'Unix' })
    }
    const host = options.host ?? defaults.host
    assertString('options.host', host)
    assertIntInRange('options.port', options.port, 1, 65535)
    if (options.localHost !== undefined) assertString('options.localHost', options.localHost)
    if (options.localPort !== undefined) assertIntInRange('options.localPort', options.localPort, 0, 65535)
    this.#checkOpen()
    const ip = isIP(host) !== 0 ? host : (await lookup(host)).address
    this.#checkOpen()
    const localHost =
      options.localHost === undefined || isIP(options.localHost) !== 0
        ? options.localHost
        : (await lookup(options.localHost)).address
    const localIp = localHost ?? (options.localPort !== undefined ? (isIP(ip) === 6 ? '::' : '0.0.0.0') : undefined)
    const r = callBinding(() =>
      this.#binding.connectUdp(ip, options.port as number, localIp, options.localPort, near?.id),
    )
    return this.#datagram(r.id, r, {
      address: ip,
      port: options.port as number,
      family: isIP(ip) === 6 ? 'IPv6' : 'IPv4',
    })
  }

  #datagram(id: number, local: AddressInfo, remote?: AddressInfo): DatagramSocket {
    const s = new DatagramSocket(
      this.#host,
      id,
      { address: local.address, port: local.port, family: local.family },
      remote,
      (sid, r) => this.#newSocket(sid, r),
    )
    this.#sockets.set(id, s)
    return s
  }

  /** The socket of a connect under way, resolved when it connects. */
  #pendingConnect(start: () => number): Promise<Socket> {
    let id: number
    try {
      id = callBinding(start)
    } catch (e) {
      return Promise.reject(e)
    }
    const sock = this.#newSocket(id)
    return new Promise((resolve, reject) => this.#connecting.set(id, { resolve: () => resolve(sock), reject }))
  }

  /**
   * Takes over a connected `node:net` socket: Node stops reading it and closes its handle, and the engine owns the
   * connection from then on. Bytes Node had already read and buffered (and nobody consumed) go to the engine with it:
   * once the socket is inserted into a map with programs (or resumed), they pass through its parser and verdict
   * first, in order, before anything the engine reads from the connection. Data Node already emitted as `'data'` is
   * not given back.
   * @throws {TypeError} when `netSocket` is not a connected TCP or Unix stream socket.
   */
  adopt(netSocket: NetSocket): Socket {
    const handle = (netSocket as unknown as { _handle?: { fd?: number; readStop?: () => void } } | null)?._handle
    if (!handle || typeof handle.fd !== 'number' || handle.fd < 0) {
      throw new TypeError('netSocket must be a connected node:net Socket')
    }
    this.#checkOpen()
    handle.readStop?.()
    netSocket.pause()
    const buffered: Buffer[] = []
    for (let chunk = netSocket.read() as Buffer | null; chunk !== null; chunk = netSocket.read() as Buffer | null) {
      buffered.push(chunk)
    }
    const initial = buffered.length > 0 ? Buffer.concat(buffered) : undefined
    const id = callBinding(() => this.#binding.adopt(handle.fd as number, initial))
    netSocket.destroy()
    return this.#newSocket(id)
  }

  /**
   * Declares `a` and `b` partners, once and whatever the verdicts of their maps (a TypeScript verdict, a native rule,
   * none): the peer's FIN read on one goes to the other after every byte received before it (judged and queued, so
   * after the answers of the verdicts still out), and the other shuts its write side after writing everything queued
   * before it; a close of one ends or destroys the other ({@link PairOptions.onClose}; a reset always destroys it);
   * each leaves its maps when it closes. The pair holds until either closes or {@link Socket.unpair}. Works across I/O
   * threads. A native `rules.redirect(map, rules.key.socket)` forwards FINs to its target without a pair; a pair
   * takes precedence over it.
   * @throws {TypeError} when `a` or `b` is not a `Socket`, {@link PairOptions} are malformed.
   * @throws {SockmapError} `EINVAL` when `a` is `b`, or a socket belongs to another engine; `ENOTCONN` when one is
   * closed; `EBUSY` when one already has a partner.
   */
  pair(a: Socket, b: Socket, options: PairOptions = {}): void {
    assertObject('options', options)
    const onClose = options.onClose ?? (defaults.pairOnClose as 'end' | 'destroy')
    assertOneOf('options.onClose', onClose, ['end', 'destroy'])
    const check = (name: string, s: unknown): Socket => {
      if (!(s instanceof Socket)) throw new TypeError(`${name} must be a Socket`)
      if (hostOf(s) !== this.#host) throw new SockmapError('EINVAL', `EINVAL: ${name} is a socket of another engine`)
      if (s.closed) throw new SockmapError('ENOTCONN', `ENOTCONN: ${name} is closed`)
      return s
    }
    const x = check('a', a)
    const y = check('b', b)
    if (x === y) throw new SockmapError('EINVAL', 'EINVAL: a socket cannot be its own partner')
    this.#checkOpen()
    this.#holdChanges()
    callBinding(() => this.#binding.pair(x.id, y.id, onClose))
  }

  /** Creates a SOCKMAP: sockets under integer indexes `0..maxEntries-1`. */
  sockMap(options: { maxEntries: number }): SockMap {
    assertObject('options', options)
    assertIntInRange('options.maxEntries', options.maxEntries, 1, 1 << 24)
    this.#checkOpen()
    const id = callBinding(() => this.#binding.createMap('sockmap', options.maxEntries))
    const map = new SockMap(this.#host, id, options.maxEntries)
    this.#maps.push(map)
    return map
  }

  /** Creates a SOCKHASH: sockets under string, Buffer or number keys. */
  sockHash(options: { maxEntries: number }): SockHash {
    assertObject('options', options)
    assertIntInRange('options.maxEntries', options.maxEntries, 1, 1 << 24)
    this.#checkOpen()
    const id = callBinding(() => this.#binding.createMap('sockhash', options.maxEntries))
    const map = new SockHash(this.#host, id, options.maxEntries)
    this.#maps.push(map)
    return map
  }

  /** Totals, boundary crossings and per-map counters. */
  stats(): EngineStats {
    const maps: MapStats[] = this.#maps.map((m) => m.stats())
    const totals = zeroStats()
    for (const m of maps) addStats(totals, m)
    return {
      sockets: this.#sockets.size + this.#unborn.size,
      wakeups: this.#binding.wakeups,
      batches: this.#runner.counters.batches,
      verdictMessages: this.#runner.counters.messages,
      parseRequests: this.#runner.counters.parseRequests,
      parserCalls: this.#runner.counters.parserCalls,
      callbackErrors: this.#runner.counters.errors,
      tls: this.#binding.tlsStats() as TlsStats,
      tlsServers: this.#tlsServers(),
      totals,
      maps,
    }
  }

  /** The TLS counters of every open TLS server. */
  #tlsServers(): EngineStats['tlsServers'] {
    const out: EngineStats['tlsServers'] = []
    for (const s of this.#sockets.values()) {
      if (!(s instanceof Server)) continue
      const tls = s.stats().tls
      if (tls !== undefined) out.push({ server: s.id, tls })
    }
    return out
  }

  /** The same as {@link Engine.stats}, in the Prometheus text exposition format. */
  metrics(): string {
    return toPrometheus(this.stats())
  }

  /** Makes the engine keep the Node.js process alive (the default), like `net.Server.ref()`. */
  ref(): this {
    if (!this.#closing) this.#binding.ref()
    return this
  }

  /** Lets the Node.js process exit while the engine runs, like `net.Server.unref()`. */
  unref(): this {
    if (!this.#closing) this.#binding.unref()
    return this
  }

  /**
   * Flushes what is queued, closes every socket and stops the I/O thread. Sockets still open emit `'close'`; pending
   * connects and sends reject with `EPIPE`. Always lets the process exit afterwards.
   */
  close(): Promise<void> {
    if (this.#closing) return this.#closing
    this.#drain(Wake.Events | Wake.Batches)
    this.#closing = this.#binding.close().then(() => {
      for (const [id, p] of this.#connecting) {
        this.#connecting.delete(id)
        p.reject(new SockmapError('EPIPE', 'EPIPE: the engine closed'))
      }
      this.#unborn.clear()
      for (const s of [...this.#sockets.values()]) s[kClose](undefined)
    })
    return this.#closing
  }

  /** `await using engine = new Engine()` closes it at the end of the scope. */
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #checkOpen(): void {
    if (this.#closing) throw new SockmapError('EPIPE', 'EPIPE: the engine is closed')
  }

  #newSocket(id: number, remote?: { address: string; port: number; family: string }): Socket {
    const s = new Socket(this.#host, id, remote)
    const tls = this.#tlsPending.get(id)
    if (tls) {
      this.#tlsPending.delete(id)
      s[kTls](tls)
    }
    this.#sockets.set(id, s)
    return s
  }

  /** Reports an error on the engine: to 'error' listeners, else as a process warning. @internal */
  reportError(err: SockmapError): void {
    if (this.listenerCount('error') > 0) this.emit('error', err)
    else process.emitWarning(err)
  }

  #drain(what: number): void {
    let events: JsEvent[] = []
    try {
      if (what & Wake.Events) events = this.#binding.drain()
    } catch (err) {
      this.reportError(fromBinding(err) as SockmapError)
      return
    }
    let thrown: { err: unknown } | undefined
    // TLS parameters first: the batches below may judge messages of the sockets whose handshakes these report.
    for (const ev of events) {
      if (ev.kind !== EventKind.Tls) continue
      try {
        this.#onTls(ev)
      } catch (err) {
        thrown ??= { err }
      }
    }
    if (what & Wake.Batches && this.#runner.active) {
      try {
        this.#runner.run(this.#binding, this.#report)
      } catch (err) {
        this.reportError(fromBinding(err) as SockmapError)
      }
    }
    for (const ev of events) {
      try {
        this.#dispatch(ev)
      } catch (err) {
        thrown ??= { err }
      }
    }
    // A listener that threw must not cost the other events: rethrow once they are all delivered.
    if (thrown) {
      const { err } = thrown
      process.nextTick(() => {
        throw err
      })
    }
  }

  #dispatch(ev: JsEvent): void {
    if (ev.kind === EventKind.Tls) return // handled before the batches (`#drain`)
    if (ev.kind === EventKind.Connected) {
      const p = this.#connecting.get(ev.sock)
      if (!p) return
      this.#connecting.delete(ev.sock)
      const tlsFailure = this.#tlsFailures.get(ev.sock)
      this.#tlsFailures.delete(ev.sock)
      if (ev.code) {
        const code = ev.code as SockmapErrorCode
        p.reject(new SockmapError(code, `${code}: ${tlsFailure ?? 'connect failed'}`))
      } else {
        p.resolve(this.#sockets.get(ev.sock) as Socket)
      }
      return
    }
    if (ev.kind === EventKind.Error && (ev.sock < 0 || ev.fatal)) {
      const code = (ev.code ?? 'EIO') as SockmapErrorCode
      this.reportError(new SockmapError(code, `${code}: ${ev.detail ?? 'engine error'}`))
      return
    }
    const target = this.#sockets.get(ev.sock)
    if (target) target[kEvent](ev)
    else if (ev.kind === EventKind.Closed) {
      this.#unborn.delete(ev.sock)
      this.#tlsPending.delete(ev.sock)
      this.#helloSni.delete(ev.sock)
    }
  }

  /** A TLS handshake finished (the socket's `tls`), or a TLS connection failed (a connect's rejection, the server's
   * `'tlsClientError'`). */
  #onTls(ev: JsEvent): void {
    const t = ev.tls
    if (!t) return
    if (t.reason != null) {
      const code = (ev.code ?? 'EPROTO') as SockmapErrorCode
      const text = `TLS ${t.reason} failure: ${ev.detail ?? ''}`
      const server = ev.other >= 0 ? this.#sockets.get(ev.other) : undefined
      // A connect rejects with the text; an announced socket's 'close' carries the code; else the server hears it.
      if (this.#connecting.has(ev.sock)) this.#tlsFailures.set(ev.sock, text)
      else if (!this.#sockets.has(ev.sock) && server instanceof Server) {
        server[kTlsError](new SockmapError(code, `${code}: ${text}`))
      }
      return
    }
    const info = tlsInfo(t)
    const sock = this.#sockets.get(ev.sock)
    if (sock instanceof Socket) sock[kTls](info)
    else this.#tlsPending.set(ev.sock, info)
  }

  #attach(map: SockMap | SockHash, id: number, opts: AttachOptions): void {
    const spec: ProgramsSpec = {}
    if (opts.peekBytes !== undefined) assertIntInRange('options.peekBytes', opts.peekBytes, 1, 1 << 30)
    if (opts.onError !== undefined && opts.onError !== Verdict.PASS && opts.onError !== Verdict.DROP) {
      throw new RangeError('options.onError must be Verdict.PASS or Verdict.DROP')
    }
    if (opts.parser !== undefined) spec.parser = this.#parserSpec(opts.parser)
    const onError = opts.onError ?? Verdict.DROP
    const peekBytes = opts.peekBytes
    if (opts.verdict !== undefined) {
      spec.verdict = this.#verdictSpec('options.verdict', opts.verdict, onError, peekBytes)
    }
    if (opts.msgVerdict !== undefined) {
      spec.msgVerdict = this.#verdictSpec('options.msgVerdict', opts.msgVerdict, onError, peekBytes)
    }
    if (opts.requests !== undefined) spec.requests = requestsSpec(opts.requests)
    void map
    callBinding(() => this.#binding.attach(id, spec))
  }

  #parserSpec(p: unknown): ParserSpec {
    const native = parserSpecOf(p)
    if (native) {
      const out: ParserSpec = { ...(native.options as Partial<ParserSpec>), kind: native.kind }
      if (native.maxMessageBytes !== undefined) out.maxMessageBytes = native.maxMessageBytes
      if (native.messageTimeoutMs !== undefined) out.messageTimeoutMs = native.messageTimeoutMs
      return out
    }
    if (typeof p === 'function') return { kind: 'external', tag: this.#runner.registerParser(p as ParseFunction) }
    throw new TypeError('options.parser must be a parsers.* framer or a function')
  }

  #verdictSpec(name: string, v: unknown, onError: Verdict, peekBytes: number | undefined): VerdictSpec {
    const rule = ruleOf(v)
    if (rule) return { kind: 'rule', rule: this.#ruleSpec(name, rule) }
    if (typeof v === 'function') {
      const tag =
        name === 'options.msgVerdict'
          ? this.#runner.registerMsg(v as MsgVerdictFunction, onError)
          : this.#runner.register(v as VerdictFunction, onError)
      const spec: VerdictSpec = { kind: 'external', tag, onError: onError === Verdict.PASS ? 'pass' : 'drop' }
      if (peekBytes !== undefined) spec.peekBytes = peekBytes
      return spec
    }
    throw new TypeError(`${name} must be a rules.* rule or a function`)
  }

  #ruleSpec(name: string, r: RuleInternal): RuleSpec {
    if (r.kind === 'pass' || r.kind === 'drop' || r.kind === 'reply') return { kind: r.kind }
    const mapId = (what: string, map: unknown): number => {
      const ref = mapRef(map as SockMap)
      if (ref.host !== this.#host) throw new TypeError(`${name}: the ${what} belongs to another engine`)
      return ref.id
    }
    if (r.kind === 'httpRoute') {
      const routes = (r.routes ?? []).map((route) => {
        const out: HttpRouteSpec = { pool: mapId("route's pool", route.pool) }
        if (route.host !== undefined) out.host = route.host
        if (route.pathPrefix !== undefined) out.pathPrefix = route.pathPrefix
        return out
      })
      return { kind: r.kind, routes, ingress: !!r.ingress }
    }
    const map = mapId("rule's map", r.map)
    if (r.kind === 'roundRobin') return { kind: r.kind, map, ingress: !!r.ingress }
    const spec: RuleSpec = {
      kind: r.kind,
      map,
      key: this.#keySpec(r.key, r.map instanceof SockMap),
      ingress: !!r.ingress,
    }
    if (r.hashTag !== undefined) spec.hashTag = r.hashTag
    return spec
  }

  #keySpec(key: unknown, indexed: boolean): KeySpec {
    const mk = messageKeyOf(key)
    if (mk) {
      const out: KeySpec = { kind: mk.kind }
      if (mk.offset !== undefined) out.offset = mk.offset
      if (mk.length !== undefined) out.length = mk.length
      return out
    }
    if (indexed) {
      if (typeof key !== 'number') throw new TypeError('key must be a number for a SockMap')
      assertIntInRange('key', key, 0, 2 ** 32 - 1)
      return { kind: 'fixed', value: key }
    }
    return { kind: 'fixed', value: hashKey('key', key) }
  }
}
