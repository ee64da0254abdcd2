/**
 * The engine features the gateways build on: request/response pairing (`requests` in `attach()`, `rules.reply()`),
 * ring entries that name their server and weight, hash tags, `rules.roundRobin()` and `rules.httpRoute()`.
 *
 * Invariant: every gateway reaches these features through this module only, so that an engine without one of them
 * gives one clear `EOPNOTSUPP` naming the feature (never a silent fallback that would pair replies wrongly).
 *
 * @module
 */
import { SockmapError } from '../errors'
import type { AttachOptions, RequestsOptions as EngineRequestsOptions, SetOptions, SockHash, SockMap } from '../map'
import { rules, type MessageKey, type NativeRule } from '../rules'
import type { Socket } from '../socket'
import type { MapKey, RedirectOptions, StreamMessage, Verdict } from '../verdict'

/** How a client map pairs each request with one reply: the engine's options, and the Redis planner's. */
export interface RequestsOptions extends EngineRequestsOptions {
  /** The Redis command planner: AUTH checked against `password`, commands refused unless in `allow`. */
  redis?: { password?: string; allow?: string[] }
}

/** A ring entry's server and weight (`hash.set(key, sock, { server, weight })`). */
export interface EntryOptions {
  /** The server this connection belongs to: the ring has points per server. */
  server?: string
  /** The server's weight on the ring (points scale with it). */
  weight?: number
}

/** One route of `rules.httpRoute()`. */
export interface HttpRouteSpec {
  /** The `Host` (without port, case-insensitive); absent: any. */
  host?: string
  /** The path prefix; absent: any. */
  pathPrefix?: string
  /** The ring the route's requests go to. */
  pool: SockHash
}

type Extended = typeof rules & {
  reply?: () => NativeRule
  roundRobin?: (map: SockMap | SockHash) => NativeRule
  httpRoute?: (routes: HttpRouteSpec[]) => NativeRule
}

const ext = rules as Extended

function missing(feature: string): SockmapError {
  return new SockmapError('EOPNOTSUPP', `EOPNOTSUPP: this engine has no ${feature}`)
}

/** Whether the engine pairs requests with replies. */
export function hasPairing(): boolean {
  return typeof ext.reply === 'function'
}

/** `rules.reply()`: the stream verdict of upstream sockets (each reply answers the oldest request sent there). */
export function replyRule(): NativeRule {
  if (typeof ext.reply !== 'function') throw missing('request/response pairing (rules.reply)')
  return ext.reply()
}

/** `rules.roundRobin(map)`. */
export function roundRobinRule(map: SockHash): NativeRule {
  if (typeof ext.roundRobin !== 'function') throw missing('round-robin routing (rules.roundRobin)')
  return ext.roundRobin(map)
}

/** `rules.httpRoute(routes)`. */
export function httpRouteRule(routes: HttpRouteSpec[]): NativeRule {
  if (typeof ext.httpRoute !== 'function') throw missing('HTTP routing (rules.httpRoute)')
  return ext.httpRoute(routes)
}

/** `rules.hashRoute(map, key, { hashTag })`. */
export function hashRouteRule(map: SockHash, key: MessageKey | MapKey, hashTag?: string): NativeRule {
  const opts = (hashTag === undefined ? {} : { hashTag }) as RedirectOptions
  return rules.hashRoute(map, key, opts)
}

/** `map.attach({ ..., requests })`: the map's client sockets get one reply per request, in order. */
export function attachRequests(map: SockMap | SockHash, options: AttachOptions, requests: RequestsOptions): void {
  if (!hasPairing()) throw missing('request/response pairing (attach requests)')
  map.attach({ ...options, requests } as AttachOptions)
}

/** `hash.set(key, sock, { server, weight })`. */
export function setEntry(hash: SockHash, key: MapKey, sock: Socket, entry: EntryOptions): void {
  const opts: SetOptions & EntryOptions = { ...entry }
  hash.set(key, sock, opts)
}

/** A client request as a gateway's TypeScript verdict sees it: a stream message that can be answered or routed. */
export interface GatewayMessage extends StreamMessage {
  /** Answers the request with `data` (in order with the client's other replies); returns the verdict to return. */
  reply(data: Uint8Array | string): Verdict
  /** Routes the request over `pool`'s ring as the native rule would (the Redis planner included). */
  route(pool: SockHash): Verdict
}

/** Views a verdict's message as a {@link GatewayMessage}. @throws {SockmapError} `EOPNOTSUPP` without pairing. */
export function gatewayMessage(msg: StreamMessage): GatewayMessage {
  const m = msg as Partial<GatewayMessage>
  if (typeof m.reply !== 'function' || typeof m.route !== 'function') throw missing('msg.reply() and msg.route()')
  return msg as GatewayMessage
}
