/**
 * {@link RedisGateway}: a Redis sharding gateway. Each command goes to the server its key hashes to on a ketama
 * ring (twemproxy's, honouring `{hash tags}`); multi-key commands are split across servers and their replies
 * merged; PING, ECHO, AUTH and the like are answered by the gateway; unshardable commands are refused with an error
 * reply unless allowed. Replies reach each client in the order of its requests.
 *
 * Invariant: every command of a client gets exactly one reply (from its server, the gateway, or an error reply).
 *
 * @module
 */
import type { AttachOptions, StreamMessage } from '../map'
import { parsers } from '../parsers'
import { rules } from '../rules'
import type { Verdict } from '../verdict'
import { Gateway, type GatewayOptions } from './base'
import { gatewayMessage, type GatewayMessage, type RequestsOptions } from './native'
import type { UpstreamPool, UpstreamSpec } from './pool'

/**
 * A TypeScript policy verdict: sees each command (`msg.resp`), and returns `msg.reply(...)` (answer it), a DROP
 * (an error reply), or `route()` (the default routing over the gateway's servers).
 */
export type RedisPolicy = (msg: GatewayMessage, route: () => Verdict) => Verdict

/** Options of {@link RedisGateway}. */
export interface RedisGatewayOptions extends GatewayOptions {
  /** The Redis servers. */
  upstreams: UpstreamSpec[]
  /** Clients must `AUTH` with this password. Default: none. */
  password?: string
  /** The password the gateway sends to the servers (`AUTH` on each connection). Default: none. */
  upstreamPassword?: string
  /** Commands to forward although the gateway refuses them by default (e.g. `['KEYS']`). */
  allow?: string[]
  /** The hash tag delimiters (twemproxy's `hash_tag`); `''` for none. Default: `'{}'`. */
  hashTag?: string
  /** A TypeScript policy verdict; without one, routing is all native. */
  verdict?: RedisPolicy
}

/** Options {@link RedisGateway.reload} can change. */
export interface RedisReloadOptions {
  /** The new servers (kept servers keep their connections). */
  upstreams?: UpstreamSpec[]
  /** The new allowed commands, for clients that connect from now on. */
  allow?: string[]
  /** The new policy verdict, for clients that connect from now on. */
  verdict?: RedisPolicy | null
}

function checkAllow(name: string, allow: unknown): string[] | undefined {
  if (allow === undefined) return undefined
  if (!Array.isArray(allow) || allow.some((c) => typeof c !== 'string' || c === '')) {
    throw new TypeError(`${name} must be an array of command names`)
  }
  return allow.map((c: string) => c.toUpperCase())
}

function checkPolicy(name: string, v: unknown): RedisPolicy | undefined {
  if (v === undefined || v === null) return undefined
  if (typeof v !== 'function') throw new TypeError(`${name} must be a function`)
  return v as RedisPolicy
}

/**
 * A Redis sharding gateway.
 *
 * @example
 * ```ts
 * const gw = new RedisGateway({ listen: '127.0.0.1:6380', upstreams: ['127.0.0.1:7001', '127.0.0.1:7002'] })
 * await gw.listen()
 * // redis-cli -p 6380 SET user:1 x   → stored on the server `user:1` hashes to
 * ```
 */
export class RedisGateway extends Gateway {
  /** The servers and their ring. */
  readonly pool: UpstreamPool
  readonly #options: RedisGatewayOptions
  #allow: string[] | undefined
  #policy: RedisPolicy | undefined
  readonly #hashTag: string

  constructor(options: RedisGatewayOptions) {
    super(options)
    if (options.password !== undefined && typeof options.password !== 'string') {
      throw new TypeError('options.password must be a string')
    }
    const hashTag = options.hashTag ?? '{}'
    if (typeof hashTag !== 'string' || (hashTag.length !== 0 && hashTag.length !== 2)) {
      throw new RangeError("options.hashTag must be two characters (e.g. '{}') or ''")
    }
    this.#hashTag = hashTag
    this.#allow = checkAllow('options.allow', options.allow)
    this.#policy = checkPolicy('options.verdict', options.verdict)
    this.#options = options
    this.pool = this.newPool('redis', {
      upstreams: options.upstreams,
      protocol: 'resp',
      programs: { parser: parsers.resp(), verdict: rules.reply() },
      ...(options.upstreamPassword !== undefined ? { password: options.upstreamPassword } : {}),
    })
  }

  /** @internal */
  protected pools(): UpstreamPool[] {
    return [this.pool]
  }

  /** @internal */
  protected clientPrograms(): { options: AttachOptions; requests: RequestsOptions } {
    const redis: NonNullable<RequestsOptions['redis']> = {}
    if (this.#options.password !== undefined) redis.password = this.#options.password
    if (this.#allow !== undefined) redis.allow = this.#allow
    return { options: this.#programs(), requests: { ...this.requestsOptions(), redis } }
  }

  #programs(): AttachOptions {
    const ring = this.pool.ring
    const policy = this.#policy
    if (!policy) {
      const tag = this.#hashTag === '' ? undefined : this.#hashTag
      return {
        parser: parsers.resp(),
        verdict: rules.hashRoute(ring, rules.key.resp, tag === undefined ? {} : { hashTag: tag }),
      }
    }
    return {
      parser: parsers.resp(),
      verdict: (m: StreamMessage): Verdict => {
        const msg = gatewayMessage(m)
        return policy(msg, () => msg.route(ring))
      },
    }
  }

  /**
   * Swaps servers, allowed commands or the policy without dropping a client: the servers change for everyone at
   * once; the allowed commands and the policy apply to clients that connect afterwards.
   */
  async reload(options: RedisReloadOptions): Promise<void> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const allow = options.allow !== undefined ? checkAllow('options.allow', options.allow) : this.#allow
    const policy = options.verdict !== undefined ? checkPolicy('options.verdict', options.verdict) : this.#policy
    if (options.upstreams !== undefined) await this.pool.reload(options.upstreams)
    if (options.allow !== undefined || options.verdict !== undefined) {
      this.#allow = allow
      this.#policy = policy
      this.renewPrograms()
    }
  }
}
