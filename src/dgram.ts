import { isIP } from 'node:net'

import { EventKind, type JsEvent } from './binding.cjs'
import { Socket, eventAddress, kEvent, kSend, type AddressInfo, type SocketHost } from './socket'
import { assertBytes, assertIntInRange, assertString, assertUnixName } from './validate'

/** Sessions of a bound datagram socket: see {@link DatagramBindCommon.sessions}. */
export interface SessionsOptions {
  /** A session closes (`'close'`, out of its maps) after this long without a datagram either way. Default: `30000`. */
  idleTimeoutMs?: number
  /**
   * Sessions open at once; a new client's datagram beyond it is dropped and counted on the bound socket
   * (`droppedOverflow`). Default: `65536`.
   */
  maxSessions?: number
}

/** What every bind of a datagram socket takes. */
export interface DatagramBindCommon {
  /**
   * One session socket per client address, made on its first datagram (which it then carries) and announced as the
   * bound socket's `'session'` event, paused like an accepted connection: insert it into maps and pair it with an
   * upstream exactly as a TCP connection. The bound socket reads and writes for all its sessions; a session's
   * replies go to its client (and count in the bound socket's `bytesOut`).
   */
  sessions?: SessionsOptions
}

/** `engine.bindUdp()` on UDP, IPv4 or IPv6. */
export interface UdpBindOptions extends DatagramBindCommon {
  /** The address to bind: IPv4, IPv6 or a name. Default: `'127.0.0.1'`. */
  host?: string
  /** The port; `0` picks a free one. */
  port: number
  /** Not with `host`/`port`. */
  path?: undefined
}

/** `engine.bindUdp()` on a Unix datagram socket. */
export interface UnixDgramBindOptions extends DatagramBindCommon {
  /** The socket's path, or a Linux abstract name with a leading NUL (as `listen({ path })` takes it). */
  path: string
  /** Not with `path`. */
  host?: undefined
  /** Not with `path`. */
  port?: undefined
}

/** Options of `engine.bindUdp()`: a UDP address, or a Unix datagram socket `path`. */
export type DatagramBindOptions = UdpBindOptions | UnixDgramBindOptions

/** `engine.connectUdp()` to a UDP peer. */
export interface UdpConnectOptions {
  /** The peer: an IPv4 or IPv6 address or a name. Default: `'127.0.0.1'`. */
  host?: string
  /** The peer's port. */
  port: number
  /** The local address to bind. Left out: any address of the peer's family. */
  localHost?: string
  /** The local port to bind (`0`: any). Default: `0`. */
  localPort?: number
  /** A socket whose I/O thread the new one joins (see `connect()`'s `near`). */
  near?: Socket
  /** Not with `host`/`port`. */
  path?: undefined
}

/** `engine.connectUdp()` to a Unix datagram socket. */
export interface UnixDgramConnectOptions {
  /** The peer's path, or a Linux abstract name with a leading NUL. */
  path: string
  /** The name to bind, so that the peer can answer (without one, nothing can reach this socket). */
  localPath?: string
  /** A socket whose I/O thread the new one joins. */
  near?: Socket
  /** Not with `path`. */
  host?: undefined
  /** Not with `path`. */
  port?: undefined
}

/** Options of `engine.connectUdp()`: a UDP peer, or a Unix datagram socket `path`. */
export type DatagramConnectOptions = UdpConnectOptions | UnixDgramConnectOptions

/** The checked native form of {@link SessionsOptions}. @internal */
export function sessionsSpec(s: unknown): { idleTimeoutMs?: number; maxSessions?: number } | undefined {
  if (s === undefined) return undefined
  if (typeof s !== 'object' || s === null) throw new TypeError('options.sessions must be an object')
  const o = s as SessionsOptions
  const out: { idleTimeoutMs?: number; maxSessions?: number } = {}
  if (o.idleTimeoutMs !== undefined) {
    assertIntInRange('options.sessions.idleTimeoutMs', o.idleTimeoutMs, 1, 2 ** 31)
    out.idleTimeoutMs = o.idleTimeoutMs
  }
  if (o.maxSessions !== undefined) {
    assertIntInRange('options.sessions.maxSessions', o.maxSessions, 1, 2 ** 31)
    out.maxSessions = o.maxSessions
  }
  return out
}

/**
 * A UDP or Unix datagram socket owned by the engine (`engine.bindUdp()`, `engine.connectUdp()`). Each datagram is
 * one message to the socket's stream verdict, or with a native parser in its map the messages that parser frames in
 * it (no message spans two datagrams), and each send or redirect to it is one datagram. It goes into maps like any socket. A connected one sends to its peer; a bound one sends to the
 * address each `send()` names and passes datagrams with their sender (`'message'`'s `rinfo`); with sessions, each
 * client gets a session socket (`'session'`).
 *
 * UDP has no flow control: a datagram whose target's send queue is full (the engine's `dgramQueueBytes`,
 * `dgramQueueDatagrams`) is dropped and counted (`droppedOverflow`), and a send rejects with `ENOBUFS`.
 */
export class DatagramSocket extends Socket {
  readonly #local: AddressInfo
  readonly #hostRef: SocketHost
  readonly #makeSession: (id: number, remote: AddressInfo) => Socket

  /** @internal */
  constructor(
    host: SocketHost,
    id: number,
    local: AddressInfo,
    remote: AddressInfo | undefined,
    makeSession: (id: number, remote: AddressInfo) => Socket,
  ) {
    super(host, id, remote)
    this.#hostRef = host
    this.#local = local
    this.#makeSession = makeSession
  }

  /** The bound address (`{ address: path, port: 0, family: 'Unix' }` for a Unix socket). */
  address(): AddressInfo {
    return { ...this.#local }
  }

  /**
   * Sends one datagram: to the peer of a connected socket, or from a bound socket to `port` on `host` (an IP
   * address), or to the Unix socket `port` names when it is a path. Resolves with its length once it is queued.
   * @throws {SockmapError} `ENOBUFS` when the send queue is full, `ENOTCONN` for a bound socket's send without
   * destination, `EOPNOTSUPP` when a msg verdict is attached (msg verdicts do not run on datagram sockets), `EPIPE`
   * when the socket is closed.
   * @throws {TypeError} for a host that is not an IP address; {RangeError} for a port out of range, or a path of more
   * than 107 bytes.
   */
  override send(data: Uint8Array | string, port?: number | string, host?: string): Promise<number> {
    if (port === undefined) return super.send(data)
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    assertBytes('data', bytes)
    const binding = this.#hostRef.binding
    if (typeof port === 'string') {
      assertUnixName('path', port)
      return this[kSend]((req) => binding.sendTo(this.id, bytes, port, undefined, req))
    }
    assertIntInRange('port', port, 1, 65535)
    const ip = host ?? (this.#local.family === 'IPv6' ? '::1' : '127.0.0.1')
    assertString('host', ip)
    if (isIP(ip) === 0) throw new TypeError(`host must be an IP address, got '${ip}'`)
    return this[kSend]((req) => binding.sendTo(this.id, bytes, ip, port, req))
  }

  /** @internal */
  override [kEvent](ev: JsEvent): void {
    if (ev.kind === EventKind.Accepted) {
      this.emit('session', this.#makeSession(ev.other, eventAddress(ev)))
      return
    }
    super[kEvent](ev)
  }
}
