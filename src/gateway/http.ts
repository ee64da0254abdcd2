/**
 * {@link HttpRouter}: an HTTP/1 router. Each request goes to the pool of the first route whose `Host` (without
 * port, case-insensitively) and path prefix match, and within the pool to one connection per client (so a client's
 * requests stay on one upstream connection); keep-alive on both sides, pipelined requests answered in order,
 * chunked bodies framed natively. A request no route matches, or whose pool has no server up, gets an error
 * response; an upstream that fails answers its requests with `502` (`504` past `timeoutMs`).
 *
 * `X-Forwarded-For` is not added: the engine forwards requests byte for byte and has no header rewriting yet.
 *
 * Invariant: every request of a client gets exactly one response, in order; an `Upgrade` or `CONNECT` request is
 * either forwarded like any other (the default) or, with `upgrades: true`, handed to the application
 * (`'upgrade'` event) with the rest of the client's stream.
 *
 * @module
 */
import type { AttachOptions, StreamMessage } from '../map'
import { parsers } from '../parsers'
import type { Socket } from '../socket'
import { Verdict } from '../verdict'
import { Gateway, type GatewayOptions } from './base'
import { rules } from '../rules'
import type { RequestsOptions } from './native'
import { parseUpstreams, type UpstreamPool, type UpstreamSpec } from './pool'

/** One route. */
export interface HttpRoute {
  /** The `Host` to match (without port, case-insensitive); absent: any host. */
  host?: string
  /** The path prefix to match; absent: any path. */
  pathPrefix?: string
  /** The servers of the route's pool (routes with the same servers share one pool). */
  upstreams: UpstreamSpec[]
}

/** Options of {@link HttpRouter}. */
export interface HttpRouterOptions extends GatewayOptions {
  /** The routes, tried in order. */
  routes: HttpRoute[]
  /** The path of health checks. Default: `'/'`. */
  healthPath?: string
  /** Hand `Upgrade` and `CONNECT` requests to the application (`'upgrade'` event). Default: `false`. */
  upgrades?: boolean
}

/** A members key no connection ever has (connection keys hold '#'). */
const NO_CONNECTION = 'none'

interface Compiled {
  host: string | undefined
  pathPrefix: string | undefined
  pool: UpstreamPool
}

/** Checks routes. @throws {TypeError}/{RangeError} naming the bad route. */
export function checkRoutes(name: string, routes: unknown): HttpRoute[] {
  if (!Array.isArray(routes) || routes.length === 0) throw new TypeError(`${name} must be a non-empty array`)
  return routes.map((r, i) => {
    const n = `${name}[${i}]`
    if (typeof r !== 'object' || r === null) throw new TypeError(`${n} must be an object`)
    const route = r as HttpRoute
    if (route.host !== undefined && (typeof route.host !== 'string' || route.host === '')) {
      throw new TypeError(`${n}.host must be a non-empty string`)
    }
    if (route.pathPrefix !== undefined && (typeof route.pathPrefix !== 'string' || !route.pathPrefix.startsWith('/'))) {
      throw new RangeError(`${n}.pathPrefix must start with '/'`)
    }
    parseUpstreams(`${n}.upstreams`, route.upstreams)
    return route
  })
}

function poolKey(upstreams: UpstreamSpec[]): string {
  return parseUpstreams('upstreams', upstreams)
    .map((u) => `${u.name}=${u.host}:${u.port}*${u.weight}`)
    .join(',')
}

function isUpgrade(msg: StreamMessage): boolean {
  const h = msg.http
  if (!h) return false
  if (h.method === 'CONNECT') return true
  return h.header('upgrade') !== undefined && /\bupgrade\b/i.test(h.header('connection') ?? '')
}

/**
 * An HTTP/1 router.
 *
 * @example
 * ```ts
 * const router = new HttpRouter({
 *   listen: '127.0.0.1:8080',
 *   routes: [{ pathPrefix: '/api', upstreams: ['127.0.0.1:9001'] }, { upstreams: ['127.0.0.1:9002'] }],
 * })
 * await router.listen()
 * ```
 */
export class HttpRouter extends Gateway {
  readonly #pools = new Map<string, UpstreamPool>()
  #routes: Compiled[] = []
  readonly #upgrades: boolean
  readonly #healthPath: string

  constructor(options: HttpRouterOptions) {
    super(options)
    const healthPath = options.healthPath ?? '/'
    if (typeof healthPath !== 'string' || !healthPath.startsWith('/')) {
      throw new RangeError("options.healthPath must start with '/'")
    }
    if (options.upgrades !== undefined && typeof options.upgrades !== 'boolean') {
      throw new TypeError('options.upgrades must be a boolean')
    }
    this.#healthPath = healthPath
    this.#upgrades = options.upgrades ?? false
    this.#routes = this.#compile(checkRoutes('options.routes', options.routes))
    if (this.#upgrades) this.on('connection', (sock) => this.#watchUpgrade(sock))
  }

  #compile(routes: HttpRoute[]): Compiled[] {
    return routes.map((r) => {
      const key = poolKey(r.upstreams)
      let pool = this.#pools.get(key)
      if (!pool) {
        pool = this.newPool(`http${this.#pools.size}`, {
          upstreams: r.upstreams,
          protocol: 'http1',
          programs: { parser: parsers.http1({ role: 'response' }), verdict: rules.reply() },
          healthCheck:
            this.common.healthCheck === false ? false : { path: this.#healthPath, ...this.common.healthCheck },
        })
        this.#pools.set(key, pool)
      }
      return { host: r.host?.toLowerCase(), pathPrefix: r.pathPrefix, pool }
    })
  }

  /** @internal */
  protected pools(): UpstreamPool[] {
    return [...this.#pools.values()]
  }

  /** @internal */
  protected clientPrograms(): { options: AttachOptions; requests: RequestsOptions } {
    const routes = this.#routes
    const parser = parsers.http1({ role: 'request' })
    const native = this.#upgrades
      ? undefined
      : rules.httpRoute(
          routes.map((r) => ({
            pool: r.pool.ring,
            ...(r.host !== undefined ? { host: r.host } : {}),
            ...(r.pathPrefix !== undefined ? { pathPrefix: r.pathPrefix } : {}),
          })),
        )
    const upgrades = this.#upgrades
    const verdict =
      native ??
      ((msg: StreamMessage): Verdict => {
        if (upgrades && isUpgrade(msg)) return Verdict.PASS
        const route = match(routes, msg)
        if (!route) return Verdict.DROP
        // No server up: routed to nothing (a key no connection has), which the engine answers with a 503.
        return msg.redirect(route.pool.members, route.pool.connectionFor(msg.socket) ?? NO_CONNECTION)
      })
    return { options: { parser, verdict }, requests: this.requestsOptions() }
  }

  /** The first message a client's application gets is its Upgrade request: hand it and the socket over. */
  #watchUpgrade(sock: Socket): void {
    const onMessage = (head: Buffer): void => {
      sock.off('message', onMessage)
      this.emit('upgrade', sock, Buffer.from(head))
    }
    sock.on('message', onMessage)
  }

  /** Swaps the routes for clients that connect from now on (pools of kept upstream sets are kept, others close). */
  async reload(options: { routes: HttpRoute[] }): Promise<void> {
    if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object')
    const routes = checkRoutes('options.routes', options.routes)
    const before = new Set(this.#pools.values())
    this.#routes = this.#compile(routes)
    const used = new Set(this.#routes.map((r) => r.pool))
    for (const p of [...used].filter((x) => !before.has(x))) await p.ready()
    this.renewPrograms()
    for (const [key, p] of this.#pools) {
      if (!used.has(p)) {
        this.#pools.delete(key)
        setTimeout(() => void p.close(), 1000).unref()
      }
    }
  }
}

function match(routes: Compiled[], msg: StreamMessage): Compiled | undefined {
  const h = msg.http
  if (!h) return undefined
  const host = h.host?.replace(/:\d+$/, '').toLowerCase()
  return routes.find(
    (r) => (r.host === undefined || r.host === host) && (r.pathPrefix === undefined || h.path.startsWith(r.pathPrefix)),
  )
}
