/**
 * SockMap and SockHash, and the programs they run: {@link AttachOptions}, the opaque {@link NativeRule}, the
 * TypeScript verdict function types and the message views those verdicts see. A map names its programs and a message
 * view names maps (its redirect targets), so they are declared together; the values they share come from `verdict`,
 * and `rules` builds native rules on top of this module.
 * @module
 */
import type { BindingEngine } from './binding.cjs'

/** A key as the binding takes it. */
type JsKey = number | Buffer
import { callBinding } from './errors'
import type { NativeParser } from './parsers'
import { hostOf, type Socket } from './socket'
import { socketStats, type MapStats } from './stats'
import { assertIntInRange, assertObject, assertOneOf, assertString } from './validate'
import type { HttpMeta, MapKey, MessageTls, ParseFunction, RedirectOptions, RespMeta, Verdict } from './verdict'

/** How {@link SockMap.set} treats an existing entry (the kernel's `BPF_ANY`, `BPF_NOEXIST`, `BPF_EXIST`). */
export type UpdateFlag = 'any' | 'noexist' | 'exist'

/** Options of {@link SockMap.set}. */
export interface SetOptions {
  /** `'any'`: create or replace; `'noexist'`: `EEXIST` if present; `'exist'`: `ENOENT` if absent. Default: `'any'`. */
  flag?: UpdateFlag
  /**
   * The server this entry is a connection to, on the map's consistent-hash ring (`rules.hashRoute`,
   * `rules.httpRoute`): entries with the same server share its points, and a route picks one of them, preferring the
   * source socket's I/O thread. For twemproxy's placement, name servers as its configuration does: `'host:port'`
   * (`'host'` alone for port 11211), or the name given after the weight. Absent: the entry is a server named by its
   * key (numbers in decimal).
   */
  server?: string
  /** The server's weight: its share of the ring (160 points × weight ÷ average weight). Integer ≥ 1. Default: `1`. */
  weight?: number
}

/** @internal */
export const kRule = Symbol('sockmap.rule')

/** A native verdict rule, made by one of the {@link rules} functions: evaluated on the I/O thread. Opaque. */
export interface NativeRule {
  /** @internal */
  readonly [kRule]: unknown
}

/**
 * A received message, as a stream verdict sees it. The library reuses one view for every message of a batch: keep
 * neither the view nor `data` (nor `resp`, `http`) after the verdict returns (copy what you need).
 */
export interface StreamMessage {
  /** Id of the source socket. */
  readonly socket: number
  /** The full message length in bytes. */
  readonly length: number
  /** The message bytes, or their first `peekBytes`; a view valid only during the call. */
  readonly data: Buffer
  /**
   * The RESP framer's metadata, when the map's parser is `parsers.resp()` and the message is a request whose command
   * name lies within the first `peekBytes`; else `undefined`. Nothing is built unless it is read.
   */
  readonly resp: RespMeta | undefined
  /**
   * The HTTP/1 framer's metadata, when the map's parser is `parsers.http1()` (requests) and the request's method and
   * target lie within the first `peekBytes`; else `undefined`. Nothing is built unless it is read.
   */
  readonly http: HttpMeta | undefined
  /**
   * The source socket's TLS parameters ({@link MessageTls}); `undefined` on a plain socket that names no server.
   * Nothing is built per message: it is looked up only when read.
   */
  readonly tls: MessageTls | undefined
  /**
   * Chooses a redirect target: the socket stored under `key` in `target`. Returns {@link Verdict.REDIRECT}, which the
   * verdict returns. A missing key or a dead target drops the message (counted), as in the kernel.
   */
  redirect(target: SockMap | SockHash, key: MapKey, opts?: RedirectOptions): Verdict
  /**
   * Answers the message with `data` (copied) instead of sending it anywhere: on a map attached with `requests`, the
   * reply takes the message's place in the client's reply order; elsewhere it is written out of the source socket.
   * Returns {@link Verdict.REDIRECT}, which the verdict returns. Stream verdicts only (a msg verdict's answer is
   * invalid).
   */
  reply(data: Uint8Array | string): Verdict
  /**
   * Routes the message to the connection of `pool` that its consistent-hash ring gives the message's RESP key (what
   * `rules.hashRoute(pool, rules.key.resp)` does; a message without a key has no route and is dropped, in requests
   * mode with an error reply). Returns {@link Verdict.REDIRECT}, which the verdict returns.
   */
  route(pool: SockHash): Verdict
}

/**
 * Data the application sends, as a msg verdict sees it (the kernel's `sk_msg_md` and `bpf_msg_*` helpers). The
 * helpers are checked with the kernel's rules and recorded; the engine applies them in order before the verdict.
 * `length` and `data` follow the edits (`data` holds the first `peekBytes` of the send, so bytes beyond them stay
 * out of view). Each `send()` is judged on its own unless `corkBytes` holds it for later sends.
 */
export interface SendMessage extends StreamMessage {
  /** This verdict covers the next `n` bytes; the verdict runs again for the bytes after them (`bpf_msg_apply_bytes`). */
  applyBytes(n: number): void
  /** Hold the data until `n` bytes are buffered, then run the verdict again on all of it (`bpf_msg_cork_bytes`). */
  corkBytes(n: number): void
  /**
   * Makes `data` show `[start, end)` (`bpf_msg_pull_data`; the bytes sent are unchanged). RangeError (code `EINVAL`)
   * when `end <= start`, `start >= length` or `end > length`.
   */
  pull(start: number, end: number): void
  /** Inserts `len` zero bytes at `start` (`bpf_msg_push_data`); RangeError (code `EINVAL`) when `start > length`. */
  push(start: number, len: number): void
  /**
   * Removes `len` bytes at `start` (`bpf_msg_pop_data`); RangeError (code `EINVAL`) when `start >= length` or
   * `start + len > length`.
   */
  pop(start: number, len: number): void
}

/** A stream verdict written in TypeScript: called once per received message, in batches. */
export type VerdictFunction = (msg: StreamMessage) => Verdict

/**
 * A msg verdict written in TypeScript: called once per send (or per `applyBytes` part, or once per cork), in batches.
 * `send()` resolves with the bytes accepted, rejects with `EACCES` when they are all dropped (a DROP verdict or a
 * missing redirect key) and `EPIPE` when the redirect target is closed or ended.
 */
export type MsgVerdictFunction = (msg: SendMessage) => Verdict

/** The programs of {@link SockMap.attach}: they apply to each socket inserted after the call. */
export interface AttachOptions {
  /** How received bytes are cut into messages: a native framer from `parsers`, or a TypeScript function. */
  parser?: NativeParser | ParseFunction
  /** The stream verdict for received messages: a native rule from `rules`, or a TypeScript function. */
  verdict?: NativeRule | VerdictFunction
  /** The sk_msg verdict for data the application sends: a native rule, or a TypeScript function. */
  msgVerdict?: NativeRule | MsgVerdictFunction
  /**
   * How much of each message a TypeScript verdict sees in `msg.data` (like the kernel's linear data); larger messages
   * are judged on their head. Default: `65536`.
   */
  peekBytes?: number
  /**
   * The verdict a message gets when its verdict or parser throws or returns garbage, or when its batch goes unanswered
   * past `batch.verdictTimeoutMs`. Default: `Verdict.DROP`.
   */
  onError?: Verdict
  /**
   * Request/response pairing: every message a socket of this map sends gets exactly one reply, in request order. A
   * message redirected to an upstream whose verdict is `rules.reply()` gets that upstream's reply; one dropped or
   * routed to nothing gets an error reply made by the parser (RESP `-ERR sockmap: ...`, HTTP/1 `502`/`503`/`504`/
   * `403`; other parsers close the socket with the errno); one passed to the application is answered by its next
   * `send()`.
   */
  requests?: RequestsOptions
}

/** Options of {@link AttachOptions.requests}; each one left out takes `nativeDefaults().requests`'s. */
export interface RequestsOptions {
  /**
   * An upstream that leaves its oldest request unanswered this long (ms) is closed with `ETIMEDOUT`, the request
   * answered with a timeout error reply. Default: `5000`.
   */
  timeoutMs?: number
  /** A client with this many requests awaiting replies is not read until half were answered. Default: `1024`. */
  maxPending?: number
  /**
   * The Redis command planner, for `parsers.resp()` clients routed by `rules.hashRoute`: `PING`, `ECHO`, `SELECT 0`,
   * `AUTH`... answered by the gateway, commands that cannot be sharded refused, and `MGET`, `MSET`, `DEL`, `UNLINK`,
   * `EXISTS`, `TOUCH` split over the servers their keys hash to, their replies merged.
   */
  redis?: RedisOptions
}

/** Options of {@link RequestsOptions.redis}. */
export interface RedisOptions {
  /** Clients must `AUTH` with this password before other commands. */
  password?: string
  /** Command names forwarded by their first key although the planner would refuse them (e.g. `['KEYS']`). */
  allow?: string[]
}

/** Validates {@link AttachOptions.requests} into the binding's form. @internal */
export function requestsSpec(r: unknown): { timeoutMs?: number; maxPending?: number; redis?: RedisOptions } {
  assertObject('options.requests', r)
  const { timeoutMs, maxPending, redis } = r as RequestsOptions
  const out: { timeoutMs?: number; maxPending?: number; redis?: RedisOptions } = {}
  if (redis !== undefined) {
    assertObject('options.requests.redis', redis)
    const spec: RedisOptions = {}
    if (redis.password !== undefined) {
      if (typeof redis.password !== 'string') throw new TypeError('options.requests.redis.password must be a string')
      spec.password = redis.password
    }
    if (redis.allow !== undefined) {
      if (!Array.isArray(redis.allow) || !redis.allow.every((a) => typeof a === 'string')) {
        throw new TypeError('options.requests.redis.allow must be an array of strings')
      }
      spec.allow = [...redis.allow]
    }
    out.redis = spec
  }
  if (timeoutMs !== undefined) {
    assertIntInRange('options.requests.timeoutMs', timeoutMs, 1, 2 ** 31 - 1)
    out.timeoutMs = timeoutMs
  }
  if (maxPending !== undefined) {
    assertIntInRange('options.requests.maxPending', maxPending, 1, 2 ** 31 - 1)
    out.maxPending = maxPending
  }
  return out
}

/** What a map needs from its engine. @internal */
export interface MapHost {
  readonly binding: BindingEngine
  /** Holds the engine's map changes until this JavaScript task ends, so the I/O threads take them together. */
  holdChanges(): void
  /** Sends the held map changes now (before answers that may depend on them). */
  releaseChanges(): void
  socketById(id: number): Socket | undefined
  /** The TLS parameters of socket `id`, or the server name its passed-through ClientHello asked for. */
  tlsOf(id: number): MessageTls | undefined
  /** Records the server name of a passed-through ClientHello (`parsers.tlsRecords()`) of socket `id`. */
  rememberSni(id: number, sni: string): void
  attachPrograms(map: SockMap | SockHash, id: number, options: AttachOptions): void
}

const mapIds = new WeakMap<object, { host: MapHost; id: number }>()

/** The engine and number of a map. @internal */
export function mapRef(map: SockMap | SockHash): { host: MapHost; id: number } {
  const r = mapIds.get(map)
  if (!r) throw new TypeError('not a SockMap or SockHash of this package')
  return r
}

abstract class BaseMap {
  /** Most entries. */
  readonly maxEntries: number
  readonly #host: MapHost
  readonly #id: number

  /** @internal */
  constructor(host: MapHost, id: number, maxEntries: number) {
    this.#host = host
    this.#id = id
    this.maxEntries = maxEntries
    mapIds.set(this, { host, id })
  }

  /** @internal */
  protected abstract key(name: string, key: unknown): JsKey

  /** @internal */
  protected abstract get kind(): 'sockmap' | 'sockhash'

  /**
   * Stores `sock` under `key` (`bpf_map_update_elem`); the socket takes the map's programs. Setting the same socket
   * again with another `server` or `weight` changes only its place on the ring.
   * @throws {TypeError} or {RangeError} for a bad `options.server` (a non-empty string) or `options.weight`.
   * @throws {SockmapError} `E2BIG` (index beyond the map, or a full hash), `EEXIST` / `ENOENT` per `flag`,
   * `EBUSY` (the socket carries another map's programs), `EOPNOTSUPP` (the socket is closed).
   */
  set(key: MapKey, sock: Socket, options: SetOptions = {}): this {
    const k = this.key('key', key)
    if (hostOf(sock) !== (this.#host as unknown)) throw new TypeError('sock must be a Socket of this engine')
    assertObject('options', options)
    const flag = options.flag ?? 'any'
    assertOneOf('options.flag', flag, ['any', 'noexist', 'exist'])
    let server: Buffer | undefined
    if (options.server !== undefined) {
      assertString('options.server', options.server)
      if (options.server === '') throw new RangeError('options.server must not be empty')
      server = Buffer.from(options.server)
    }
    const weight: unknown = options.weight
    if (weight !== undefined) assertIntInRange('options.weight', weight, 1, 2 ** 31 - 1)
    this.#host.holdChanges()
    callBinding(() => this.#host.binding.mapUpdate(this.#id, k, sock.id, flag, server, weight))
    return this
  }

  /** The socket stored under `key`, if any. */
  get(key: MapKey): Socket | undefined {
    const k = this.key('key', key)
    const id = callBinding(() => this.#host.binding.mapLookup(this.#id, k))
    return id < 0 ? undefined : this.#host.socketById(id)
  }

  /** Whether `key` holds a socket. */
  has(key: MapKey): boolean {
    const k = this.key('key', key)
    return callBinding(() => this.#host.binding.mapLookup(this.#id, k)) >= 0
  }

  /**
   * Removes the entry under `key` (`bpf_map_delete_elem`).
   * @throws {SockmapError} when the key is absent: `ENOENT` in a SockHash, `EINVAL` in a SockMap (as the kernel).
   */
  delete(key: MapKey): void {
    const k = this.key('key', key)
    this.#host.holdChanges()
    callBinding(() => this.#host.binding.mapDelete(this.#id, k))
  }

  /** The number of entries. */
  get size(): number {
    return callBinding(() => this.#host.binding.mapLen(this.#id))
  }

  /** The counters of the sockets that took this map's stream verdict. */
  stats(): MapStats {
    const raw = callBinding(() => this.#host.binding.mapStats(this.#id))
    return { ...socketStats(raw), map: this.#id, kind: this.kind, size: this.size }
  }

  /**
   * Attaches programs: each socket inserted afterwards takes them (sockets already in the map keep theirs).
   * @throws {TypeError} / {RangeError} for a bad option, naming it.
   * @throws {SockmapError} `EINVAL` for parser options the framer rejects.
   */
  attach(options: AttachOptions): void {
    assertObject('options', options)
    this.#host.attachPrograms(this as unknown as SockMap, this.#id, options)
  }

  /** @internal */
  protected entries(): Array<{ key: JsKey; sock: number }> {
    return callBinding(() => this.#host.binding.mapEntries(this.#id))
  }
}

/**
 * A SOCKMAP: sockets stored under integer indexes `0..maxEntries-1`. Create one with `engine.sockMap()`.
 */
export class SockMap extends BaseMap {
  /** @internal */
  protected get kind(): 'sockmap' {
    return 'sockmap'
  }

  /** @internal */
  protected key(name: string, key: unknown): JsKey {
    if (typeof key !== 'number') throw new TypeError(`${name} must be a number (a SockMap index), got ${typeof key}`)
    assertIntInRange(name, key, 0, 2 ** 32 - 1)
    return key
  }

  /** The indexes present, in order. */
  keys(): number[] {
    return this.entries()
      .map((e) => e.key as number)
      .sort((a, b) => a - b)
  }
}

/**
 * A SOCKHASH: sockets stored under byte-string keys (a string is its UTF-8 bytes; a number is its 8 little-endian
 * bytes, the form `rules.key.socket` produces). Create one with `engine.sockHash()`.
 */
export class SockHash extends BaseMap {
  /** @internal */
  protected get kind(): 'sockhash' {
    return 'sockhash'
  }

  /** @internal */
  protected key(name: string, key: unknown): JsKey {
    return hashKey(name, key)
  }

  /** The keys present, as Buffers (in no particular order). */
  keys(): Buffer[] {
    return this.entries().map((e) => e.key as Buffer)
  }
}

/** Normalises a SockHash key for the binding. @internal */
export function hashKey(name: string, key: unknown): JsKey {
  if (typeof key === 'number') {
    if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`${name} must be a non-negative integer`)
    return key
  }
  if (typeof key === 'string') {
    if (key.length === 0) throw new RangeError(`${name} must not be empty`)
    return Buffer.from(key)
  }
  if (key instanceof Uint8Array) {
    if (key.length === 0) throw new RangeError(`${name} must not be empty`)
    return Buffer.from(key.buffer, key.byteOffset, key.byteLength)
  }
  throw new TypeError(`${name} must be a string, Buffer or number, got ${key === null ? 'null' : typeof key}`)
}
