/**
 * The engine features the gateways build on, in one place: request/response pairing (`attach({ requests })`,
 * `rules.reply()`), and the TypeScript verdict's `msg.reply()` / `msg.route()`.
 *
 * Invariant: a gateway reaches a feature the engine may lack only through this module, so that its absence gives one
 * clear `EOPNOTSUPP` naming it (never a silent fallback that would pair replies wrongly).
 *
 * @module
 */
import { SockmapError } from '../errors'
import type { RequestsOptions as EngineRequestsOptions, SockHash, StreamMessage } from '../map'
import type { Verdict } from '../verdict'

/** How a client map pairs each request with one reply: the engine's options, and the Redis planner's. */
export interface RequestsOptions extends EngineRequestsOptions {
  /** The Redis command planner: AUTH checked against `password`, commands refused unless in `allow`. */
  redis?: { password?: string; allow?: string[] }
}

/** A client request as a gateway's TypeScript verdict sees it: a stream message that can be answered or routed. */
export interface GatewayMessage extends StreamMessage {
  /** Answers the request with `data` (in order with the client's other replies); returns the verdict to return. */
  reply(data: Uint8Array | string): Verdict
  /** Routes the request over `pool`'s ring as the native rule would (the Redis planner included). */
  route(pool: SockHash): Verdict
}

/** Views a verdict's message as a {@link GatewayMessage}. @throws {SockmapError} `EOPNOTSUPP` where it is not one. */
export function gatewayMessage(msg: StreamMessage): GatewayMessage {
  const m = msg as Partial<GatewayMessage>
  if (typeof m.reply !== 'function' || typeof m.route !== 'function') {
    throw new SockmapError('EOPNOTSUPP', 'EOPNOTSUPP: this engine has no msg.reply() and msg.route()')
  }
  return msg as GatewayMessage
}
