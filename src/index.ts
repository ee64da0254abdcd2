/**
 * sockmap: a user-space sockmap for Node.js.
 *
 * @packageDocumentation
 */
import { engineVersion, nativeDefaults as bindingDefaults, type NativeDefaults } from './binding.cjs'

export { SgRing, type SgRingOptions } from './ring'
export { SockmapError, type SockmapErrorCode } from './errors'
export {
  Engine,
  type BatchOptions,
  type ConnectCommonOptions,
  type ConnectOptions,
  type EngineEvents,
  type EngineOptions,
  type BackendInfo,
  type BackendStats,
  type ListenOptions,
  type TcpConnectOptions,
  type TcpListenOptions,
  type UnixConnectOptions,
  type UnixListenOptions,
} from './engine'
export {
  DatagramSocket,
  type DatagramBindCommon,
  type DatagramBindOptions,
  type DatagramConnectOptions,
  type SessionsOptions,
  type UdpBindOptions,
  type UdpConnectOptions,
  type UnixDgramBindOptions,
  type UnixDgramConnectOptions,
} from './dgram'
export {
  Socket,
  Server,
  type AddressInfo,
  type OnClose,
  type PairOptions,
  type ServerEvents,
  type ServerStats,
  type SocketEvents,
} from './socket'
export {
  SockMap,
  SockHash,
  type AttachOptions,
  type MsgVerdictFunction,
  type NativeRule,
  type RedisOptions,
  type RequestsOptions,
  type SendMessage,
  type SetOptions,
  type StreamMessage,
  type UpdateFlag,
  type VerdictFunction,
} from './map'
export {
  Verdict,
  Parse,
  type MapKey,
  type ParseFunction,
  type RedirectOptions,
  type MessageTls,
  type RespMeta,
  type HttpMeta,
} from './verdict'
export {
  parsers,
  type DelimiterOptions,
  type Http1Options,
  type LengthFieldOptions,
  type LinesOptions,
  type RespOptions,
  type NativeParser,
  type ParserLimits,
} from './parsers'
export { rules, type HashRouteOptions, type HttpRouteEntry, type MessageKey } from './rules'
export type { EngineStats, MapStats, SocketStats } from './stats'
export {
  clientHelloSni,
  type Pem,
  type TlsCertificate,
  type TlsConnectOptions,
  type TlsInfo,
  type TlsServerOptions,
  type TlsStats,
} from './tls'

export type { NativeDefaults }

/** Every default of the engine, parsers and verdicts, as the native engine defines it (the TSDoc states the same). */
export function nativeDefaults(): NativeDefaults {
  return bindingDefaults()
}

/** Version of the native engine loaded. */
export const nativeVersion: string = engineVersion()

export * from './gateway/index'
