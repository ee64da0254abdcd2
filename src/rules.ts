import { kRule, type NativeRule, type SockHash, type SockMap } from './map'
import type { MapKey, RedirectOptions } from './verdict'
import { assertBoolean, assertIntInRange, assertObject, assertString } from './validate'

const kKey = Symbol('sockmap.key')

/** A key a native rule takes from each message, made by {@link rules.key}. Opaque. */
export interface MessageKey {
  /** @internal */
  readonly [kKey]: { kind: 'socket' | 'resp' | 'httpHost' | 'sni' | 'bytes'; offset?: number; length?: number }
}

/** Options of {@link rules.hashRoute}. */
export interface HashRouteOptions extends RedirectOptions {
  /**
   * Two characters, e.g. `'{}'`: hash only what lies between the first opening one and the next closing one, when that
   * is not empty (twemproxy's `hash_tag`), so `user:{42}:name` and `user:{42}:mail` go to one server. Absent: the whole key is hashed.
   */
  hashTag?: string
}

/** One route of {@link rules.httpRoute}: a request matches when every condition given holds. */
export interface HttpRouteEntry {
  /** The `Host` header, without its port, compared case-insensitively. Absent: any host. */
  host?: string
  /** A prefix of the request target (`'/api/'`). Absent: any path. */
  pathPrefix?: string
  /** The map of upstream connections serving the route. */
  pool: SockMap | SockHash
}

/** @internal */
export interface RuleInternal {
  kind: 'pass' | 'drop' | 'redirect' | 'hashRoute' | 'roundRobin' | 'httpRoute' | 'reply'
  map?: SockMap | SockHash
  key?: MapKey | MessageKey
  ingress?: boolean
  hashTag?: string
  routes?: readonly HttpRouteEntry[]
}

/** @internal */
export function ruleOf(r: unknown): RuleInternal | undefined {
  return typeof r === 'object' && r !== null
    ? ((r as Partial<NativeRule>)[kRule] as RuleInternal | undefined)
    : undefined
}

/** @internal */
export function messageKeyOf(k: unknown): MessageKey[typeof kKey] | undefined {
  return typeof k === 'object' && k !== null && !(k instanceof Uint8Array)
    ? (k as Partial<MessageKey>)[kKey]
    : undefined
}

function messageKey(spec: MessageKey[typeof kKey]): MessageKey {
  return Object.freeze({ [kKey]: spec })
}

function rule(spec: RuleInternal): NativeRule {
  return Object.freeze({ [kRule]: spec })
}

function checkKey(name: string, key: unknown): asserts key is MapKey | MessageKey {
  if (typeof key === 'number' || typeof key === 'string' || key instanceof Uint8Array) return
  if (messageKeyOf(key)) return
  throw new TypeError(`${name} must be a number, string, Buffer or a rules.key value`)
}

function target(name: string, map: unknown): asserts map is SockMap | SockHash {
  if (typeof map !== 'object' || map === null || !('attach' in map)) {
    throw new TypeError(`${name} must be a SockMap or SockHash`)
  }
}

/**
 * Native verdict rules: verdicts decided on the I/O thread, with no JavaScript per message.
 *
 * @example
 * ```ts
 * // a proxy: each socket's partner is stored under the socket's own id
 * peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
 * peers.set(client.id, upstream)
 * peers.set(upstream.id, client)
 * ```
 */
export const rules = {
  /** Always PASS. */
  pass(): NativeRule {
    return rule({ kind: 'pass' })
  },

  /** Always DROP. */
  drop(): NativeRule {
    return rule({ kind: 'drop' })
  },

  /**
   * The stream verdict of upstream sockets in request/response pairing (see `attach({ requests })`): each message an
   * upstream sends answers the oldest request forwarded to it and goes to that request's client, in the client's
   * request order. A message with no request pending is passed to the application (counted `unsolicited`).
   */
  reply(): NativeRule {
    return rule({ kind: 'reply' })
  },

  /** Redirect each message to the socket stored under `key` in `map` (egress unless `ingress`). */
  redirect(map: SockMap | SockHash, key: MapKey | MessageKey, opts: RedirectOptions = {}): NativeRule {
    target('map', map)
    checkKey('key', key)
    assertObject('opts', opts)
    if (opts.ingress !== undefined) assertBoolean('opts.ingress', opts.ingress)
    return rule({ kind: 'redirect', map, key, ingress: opts.ingress ?? false })
  },

  /**
   * Route each message to an entry of `map` chosen by its consistent-hash ring from `key`. The ring is twemproxy's
   * ketama (`distribution: ketama`, `hash: fnv1a_64`): entries set with the same `server` (see `SetOptions`) are
   * connections to one server, which gets 160 points scaled by its weight; entries without one are servers named by
   * their key. Of the chosen server, a connection on the source socket's I/O thread is preferred. With the same server
   * names and weights, keys go where twemproxy sends them. An empty map drops (counted `droppedNoKey`).
   */
  hashRoute(map: SockMap | SockHash, key: MapKey | MessageKey, opts: HashRouteOptions = {}): NativeRule {
    target('map', map)
    checkKey('key', key)
    assertObject('opts', opts)
    if (opts.ingress !== undefined) assertBoolean('opts.ingress', opts.ingress)
    const spec: RuleInternal = { kind: 'hashRoute', map, key, ingress: opts.ingress ?? false }
    if (opts.hashTag !== undefined) {
      assertString('opts.hashTag', opts.hashTag)
      if (!/^[\x21-\x7e]{2}$/.test(opts.hashTag)) {
        throw new RangeError('opts.hashTag must be two printable ASCII characters, such as "{}"')
      }
      spec.hashTag = opts.hashTag
    }
    return rule(spec)
  },

  /**
   * Send each message to the next entry of `map`, in key order, among the entries on the source socket's I/O thread
   * when there are any there (else among all). An empty map drops (counted `droppedNoKey`).
   */
  roundRobin(map: SockMap | SockHash, opts: RedirectOptions = {}): NativeRule {
    target('map', map)
    assertObject('opts', opts)
    if (opts.ingress !== undefined) assertBoolean('opts.ingress', opts.ingress)
    return rule({ kind: 'roundRobin', map, ingress: opts.ingress ?? false })
  },

  /**
   * Route HTTP/1 requests (`parsers.http1()`) to the pool of the first route they match, by `Host` (without port,
   * case-insensitively) and path prefix. Within the pool, the ring (see {@link rules.hashRoute}) on the client socket's
   * id picks the connection, so one client's requests stay on one upstream connection. A request no route matches is
   * dropped (counted `droppedNoRoute`).
   *
   * @example
   * ```ts
   * front.attach({ parser: parsers.http1(), verdict: rules.httpRoute([
   *   { host: 'api.example.com', pathPrefix: '/v1/', pool: apiV1 },
   *   { pool: web },
   * ]) })
   * ```
   */
  httpRoute(routes: readonly HttpRouteEntry[], opts: RedirectOptions = {}): NativeRule {
    if (!Array.isArray(routes) || routes.length === 0) throw new TypeError('routes must be a non-empty array')
    const copy = routes.map((r: unknown, i) => {
      assertObject(`routes[${i}]`, r)
      target(`routes[${i}].pool`, r.pool)
      const out: HttpRouteEntry = { pool: r.pool }
      if (r.host !== undefined) {
        assertString(`routes[${i}].host`, r.host)
        const bracketed = /^\[[0-9a-fA-F:.]+\]$/.test(r.host)
        if (!bracketed && !/^[^\s:/]+$/.test(r.host)) {
          throw new RangeError(`routes[${i}].host must be a host name without port`)
        }
        out.host = r.host
      }
      if (r.pathPrefix !== undefined) {
        assertString(`routes[${i}].pathPrefix`, r.pathPrefix)
        out.pathPrefix = r.pathPrefix
      }
      return Object.freeze(out)
    })
    assertObject('opts', opts)
    if (opts.ingress !== undefined) assertBoolean('opts.ingress', opts.ingress)
    return rule({ kind: 'httpRoute', routes: Object.freeze(copy), ingress: opts.ingress ?? false })
  },

  /** Keys taken from each message. */
  key: {
    /** The source socket's id. */
    socket: messageKey({ kind: 'socket' }),
    /** The first key of a RESP command. */
    resp: messageKey({ kind: 'resp' }),
    /** The Host header of an HTTP/1 request. */
    httpHost: messageKey({ kind: 'httpHost' }),
    /**
     * The server name (lowercased) the source socket's TLS stream asked for: on a socket the engine terminates TLS
     * on (`listen({ tls })`), the one its handshake agreed on; on a plain socket (TLS passed through), the one of the
     * ClientHello that `parsers.tlsRecords()` framed first, kept for every later record of the socket. No name, no
     * key: the message is dropped (counted `droppedNoKey`).
     */
    sni: messageKey({ kind: 'sni' }),
    /** `length` bytes at `offset` of the message (a shorter message has no key and is dropped). */
    bytes(offset: number, length: number): MessageKey {
      assertIntInRange('offset', offset, 0, 2 ** 31)
      assertIntInRange('length', length, 1, 255)
      return messageKey({ kind: 'bytes', offset, length })
    },
  },
}
