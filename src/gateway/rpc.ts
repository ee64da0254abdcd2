/**
 * {@link RpcRouter}: a router of length-prefixed requests, routed by a field of their header (`key` bytes at
 * `offset`, hashed on the ring of the upstream servers) and paired with their replies, which are framed the same way.
 *
 * Invariant: every request gets exactly one reply, in order; the protocol has no error reply, so a request that
 * cannot be answered (no server up, timeout, upstream closed) closes its client with the errno.
 *
 * @module
 */
import type { AttachOptions } from '../map'
import { parsers, type LengthFieldOptions } from '../parsers'
import { rules } from '../rules'
import { Gateway, type GatewayOptions } from './base'
import type { RequestsOptions } from './native'
import type { UpstreamPool, UpstreamSpec } from './pool'

/** Options of {@link RpcRouter}. */
export interface RpcRouterOptions extends GatewayOptions {
  /** The servers. */
  upstreams: UpstreamSpec[]
  /** The framing of requests and replies. Default: a 4-byte big-endian length before each payload. */
  framing?: LengthFieldOptions
  /** The routing field: `length` bytes at `offset` of each message (the length prefix included). */
  key: { offset: number; length: number }
}

/** A length-prefixed RPC router. */
export class RpcRouter extends Gateway {
  /** The servers and their ring. */
  readonly pool: UpstreamPool
  readonly #framing: LengthFieldOptions
  readonly #key: { offset: number; length: number }

  constructor(options: RpcRouterOptions) {
    super(options)
    if (typeof options.key !== 'object' || options.key === null) throw new TypeError('options.key must be an object')
    rules.key.bytes(options.key.offset, options.key.length) // checks both
    this.#key = { offset: options.key.offset, length: options.key.length }
    this.#framing = options.framing ?? { lengthFieldLength: 4 }
    parsers.lengthField(this.#framing) // checks the framing
    this.pool = this.newPool('rpc', {
      upstreams: options.upstreams,
      protocol: 'tcp',
      programs: { parser: parsers.lengthField(this.#framing), verdict: rules.reply() },
    })
  }

  /** @internal */
  protected pools(): UpstreamPool[] {
    return [this.pool]
  }

  /** @internal */
  protected clientPrograms(): { options: AttachOptions; requests: RequestsOptions } {
    const key = rules.key.bytes(this.#key.offset, this.#key.length)
    return {
      options: { parser: parsers.lengthField(this.#framing), verdict: rules.hashRoute(this.pool.ring, key) },
      requests: this.requestsOptions(),
    }
  }

  /** Swaps the servers (kept servers keep their connections). */
  async reload(options: { upstreams: UpstreamSpec[] }): Promise<void> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    await this.pool.reload(options.upstreams)
  }
}
