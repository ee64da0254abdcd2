/**
 * Ready-made gateways over the engine: pools of upstream connections with health checks and ejection, a Redis
 * sharding gateway, an HTTP/1 router and a length-prefixed RPC router.
 *
 * Dependencies point one way: `address`, `health` and `native` know nothing of the rest; `pool` builds on them;
 * `base` on `pool`; each gateway on `base`.
 *
 * @module
 */
export { formatHostPort, parseHostPort, type HostPort } from './address'
export { check as healthCheck, type CheckOptions, type CheckProtocol } from './health'
export { type GatewayMessage, type RequestsOptions as GatewayRequestsOptions } from './native'
export {
  UpstreamPool,
  parseUpstreams,
  type HealthCheckOptions,
  type ReconnectOptions,
  type UpstreamPoolEvents,
  type UpstreamPoolOptions,
  type UpstreamServer,
  type UpstreamSpec,
  type UpstreamStats,
} from './pool'
export { Gateway, type CloseOptions, type GatewayEvents, type GatewayOptions, type GatewayStats } from './base'
export { RedisGateway, type RedisGatewayOptions, type RedisPolicy, type RedisReloadOptions } from './redis'
export { HttpRouter, checkRoutes, type HttpRoute, type HttpRouterOptions } from './http'
export { RpcRouter, type RpcRouterOptions } from './rpc'
export { TcpProxy, type ProxyPolicy, type ProxyProtocol, type ProxyRoute, type TcpProxyOptions } from './proxy'
