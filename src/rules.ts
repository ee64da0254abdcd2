import type { SockHash, SockMap } from './map'
import type { MapKey, RedirectOptions } from './verdict'
import { assertBoolean, assertIntInRange, assertObject } from './validate'

const kRule = Symbol('sockmap.rule')
const kKey = Symbol('sockmap.key')

/** A key a native rule takes from each message, made by {@link rules.key}. Opaque. */
export interface MessageKey {
  /** @internal */
  readonly [kKey]: { kind: 'socket' | 'resp' | 'httpHost' | 'bytes'; offset?: number; length?: number }
}

/** A native verdict rule, made by one of the {@link rules} functions: evaluated on the I/O thread. Opaque. */
export interface NativeRule {
  /** @internal */
  readonly [kRule]: RuleInternal
}

/** @internal */
export interface RuleInternal {
  kind: 'pass' | 'drop' | 'redirect' | 'hashRoute' | 'reply'
  map?: SockMap | SockHash
  key?: MapKey | MessageKey
  ingress?: boolean
}

/** @internal */
export function ruleOf(r: unknown): RuleInternal | undefined {
  return typeof r === 'object' && r !== null ? (r as Partial<NativeRule>)[kRule] : undefined
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

  /** Route each message to an entry of `map` chosen by a consistent hash of `key`. */
  hashRoute(map: SockMap | SockHash, key: MapKey | MessageKey, opts: RedirectOptions = {}): NativeRule {
    target('map', map)
    checkKey('key', key)
    assertObject('opts', opts)
    if (opts.ingress !== undefined) assertBoolean('opts.ingress', opts.ingress)
    return rule({ kind: 'hashRoute', map, key, ingress: opts.ingress ?? false })
  },

  /** Keys taken from each message. */
  key: {
    /** The source socket's id. */
    socket: messageKey({ kind: 'socket' }),
    /** The first key of a RESP command. */
    resp: messageKey({ kind: 'resp' }),
    /** The Host header of an HTTP/1 request. */
    httpHost: messageKey({ kind: 'httpHost' }),
    /** `length` bytes at `offset` of the message (a shorter message has no key and is dropped). */
    bytes(offset: number, length: number): MessageKey {
      assertIntInRange('offset', offset, 0, 2 ** 31)
      assertIntInRange('length', length, 1, 255)
      return messageKey({ kind: 'bytes', offset, length })
    },
  },
}
