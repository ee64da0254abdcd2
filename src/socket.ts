import { EventEmitter } from 'node:events'

import { EventKind, type BindingEngine, type JsEvent } from './binding.cjs'
import { SockmapError, callBinding, type SockmapErrorCode } from './errors'
import { socketStats, zeroStats, type SocketStats } from './stats'
import { serverSpec, type TlsInfo, type TlsServerOptions, type TlsStats } from './tls'
import { assertBytes } from './validate'

/** Event kinds of the binding, as the native side defines them. @internal */
export { EventKind }

/** What sockets and servers need from their engine. @internal */
export interface SocketHost {
  readonly binding: BindingEngine
  nextRequest(): number
  forget(id: number): void
  /** Acknowledges `bytes` of messages the application consumed (grouped, sent soon). */
  ack(id: number, bytes: number): void
  /** Pairs two sockets (see {@link Engine.pair}). */
  pair(a: unknown, b: unknown, options: PairOptions | undefined): void
  /** The socket of this engine with id `id`, if open. */
  socketById(id: number): Socket | undefined
}

/** What a close of one partner does to the other: see {@link PairOptions.onClose}. */
export type OnClose = 'end' | 'destroy'

/** Options of `engine.pair()` and {@link Socket.pair}. */
export interface PairOptions {
  /**
   * What a close of one partner does to the other when it closes before both its directions finished and without an
   * error (`destroy()`, the engine's close): `'end'` writes out everything queued for the other's peer, then sends it
   * a FIN; `'destroy'` closes the other at once, discarding what is queued for it. A close on an error (a reset by the
   * peer, a failed connect, an I/O error) always destroys the other, so that its peer never takes a broken exchange
   * for a complete one. Default: `'end'`.
   */
  onClose?: OnClose
}

/** @internal */
export const kEvent = Symbol('sockmap.event')
/** @internal */
export const kClose = Symbol('sockmap.close')
/** @internal */
const kListening = Symbol('sockmap.listening')
/** @internal */
export const kTls = Symbol('sockmap.tls')
/** The TLS parameters, uncopied. @internal */
export const kTlsInfo = Symbol('sockmap.tlsInfo')
/** @internal */
export const kTlsError = Symbol('sockmap.tlsError')
/** Starts a send whose outcome a `SendDone` event reports. @internal */
export const kSend = Symbol('sockmap.send')

/** A datagram a bound socket passed while paused, with its sender. */
interface HeldDatagram {
  data: Buffer
  from: AddressInfo
}

function isDatagram(m: Buffer | HeldDatagram): m is HeldDatagram {
  return !(m instanceof Uint8Array)
}

/** The address an event carries: an IP and port, or a Unix name (no port). @internal */
export function eventAddress(ev: JsEvent): AddressInfo {
  const address = ev.detail ?? ''
  const family = ev.port === undefined || ev.port === null ? 'Unix' : address.includes(':') ? 'IPv6' : 'IPv4'
  return { address, port: ev.port ?? 0, family }
}

/** An address, as `server.address()` and `socket.remoteAddress` give it. */
export interface AddressInfo {
  /** The IP address; for a Unix socket its path (`'\0name'` for an abstract name, `''` for an unnamed client). */
  address: string
  /** The port (`0` for a Unix socket). */
  port: number
  /** `'IPv4'`, `'IPv6'` or `'Unix'`. */
  family: string
}

/** Events of a {@link Socket}. */
export interface SocketEvents {
  /**
   * A message: passed by the socket's verdict, redirected here with `{ ingress: true }`, or read without programs.
   * On a datagram socket each message is one datagram; a bound one (`engine.bindUdp()` without sessions) gives the
   * sender of each datagram it passed as `rinfo`, as `node:dgram` does.
   */
  message: [data: Buffer, rinfo?: AddressInfo]
  /** A bound datagram socket with sessions: a new client's first datagram made its session socket (paused). */
  session: [socket: Socket]
  /** The peer shut down its write side: no more messages will come. */
  end: []
  /** The send ring drained below its low watermark after being above the high one. */
  drain: []
  /** An error concerning this socket. */
  error: [err: SockmapError]
  /** The socket closed and left every map; `hadError` when an error closed it. */
  close: [hadError: boolean]
}

/** Events of a {@link Server}. */
export interface ServerEvents {
  /** A connection was accepted: the new socket starts paused. */
  connection: [socket: Socket]
  /** The server stopped listening. */
  close: []
  /** An error concerning the listener. */
  error: [err: SockmapError]
  /**
   * A TLS connection failed before it was announced (a bad handshake, a timeout, a peer gone): its code (`EPROTO`,
   * `ETIMEDOUT`, `ECONNRESET`) and reason. The server goes on; unlike `'error'`, nothing is thrown without a listener.
   */
  tlsClientError: [err: SockmapError]
}

function sockError(code: string | undefined, what: string): SockmapError {
  const c = (code ?? 'EIO') as SockmapErrorCode
  return new SockmapError(c, `${c}: ${what}`)
}

/** A send awaiting its outcome. */
interface PendingSend {
  resolve: (n: number) => void
  reject: (e: unknown) => void
}

/** The engine of a socket (set once the class is defined: it reads a private field). */
let hostOfSocket: (sock: object) => SocketHost | undefined

/** The engine a socket belongs to. @internal */
export function hostOf(sock: unknown): SocketHost | undefined {
  return typeof sock === 'object' && sock !== null ? hostOfSocket(sock) : undefined
}

/**
 * `EventEmitter` without its constructor: its methods create the listener table with the first listener (as they do
 * for emitters made with `util.inherits`), so a socket no one listens to carries none.
 */
function LazyEmitter(): void {}
LazyEmitter.prototype = Object.create(EventEmitter.prototype, {
  constructor: { value: LazyEmitter, writable: true, configurable: true },
})
Object.setPrototypeOf(LazyEmitter, EventEmitter)
const SocketBase = LazyEmitter as unknown as new () => EventEmitter<SocketEvents>

/**
 * A TCP socket owned by the engine. It starts paused: it reads nothing until it is inserted into a map with
 * programs, or a `'message'` listener is added, it is iterated, or {@link Socket.resume} is called.
 *
 * Messages for the application are bounded: the engine counts the bytes it delivered to this socket's application
 * and stops reading the sockets feeding it (itself for PASS, the sources of ingress redirects) above the engine's
 * `appHighWatermark`. Bytes count as consumed when a `'message'` event is emitted, or, while the socket is iterated,
 * when the iterator hands the message out; so a paused socket or a slow iterator stops its sources instead of
 * growing memory, and nothing is lost when it goes on.
 *
 * @example
 * ```ts
 * const sock = await engine.connect({ host: '127.0.0.1', port: 6379 })
 * sock.on('message', (buf) => console.log(buf.toString()))
 * await sock.send('PING\r\n')
 * ```
 */
export class Socket extends SocketBase {
  // An idle proxied socket costs little: no closure per socket, and what only some sockets use (held messages,
  // sends in flight, the last counters) is allocated when first needed.
  /** Stable number, unique within the engine. */
  readonly id: number
  /** The peer's address, when known (accepted sockets). */
  readonly remoteAddress: AddressInfo | undefined
  readonly #host: SocketHost
  #paused = true
  #resumedOnce = false
  #closed = false
  #ended = false
  /** Messages that arrived while paused. */
  #held: Array<Buffer | HeldDatagram> | undefined
  /** Async iterators running: while any is, a message counts as consumed when an iterator hands it out. */
  #iterators = 0
  #sends: Map<number, PendingSend> | undefined
  #lastStats: SocketStats | undefined
  #tls: TlsInfo | undefined

  static {
    hostOfSocket = (sock) => (#host in sock ? (sock as Socket).#host : undefined)
  }

  /** @internal */
  constructor(host: SocketHost, id: number, remote?: AddressInfo) {
    super()
    this.#host = host
    this.id = id
    this.remoteAddress = remote
  }

  /** A `'message'` listener is being added: the first one resumes the socket. @internal */
  [kListening](event: string | symbol): void {
    if (event === 'message' && !this.#resumedOnce) queueMicrotask(() => this.resume())
  }

  /** Whether the socket is closed. */
  get closed(): boolean {
    return this.#closed
  }

  /** What the TLS handshake negotiated (sockets a TLS server accepted or a TLS connect made); else `undefined`. */
  get tls(): TlsInfo | undefined {
    const t = this.#tls
    return t && { ...t }
  }

  /** What the handshake negotiated, not copied (frozen). @internal */
  get [kTlsInfo](): TlsInfo | undefined {
    return this.#tls
  }

  /** Records what the handshake negotiated. @internal */
  [kTls](info: TlsInfo): void {
    this.#tls = info
  }

  /**
   * Declares `other` this socket's partner, whatever the verdicts of their maps (see `engine.pair()`).
   * @throws {SockmapError} `EBUSY`, `EINVAL`, `ENOTCONN` as `engine.pair()`.
   */
  pair(other: Socket, options?: PairOptions): this {
    this.#host.pair(this, other, options)
    return this
  }

  /** Dissolves the socket's pair (both sides); `false` when it had no partner. */
  unpair(): boolean {
    if (this.#closed) return false
    return callBinding(() => this.#host.binding.unpair(this.id))
  }

  /** The socket's partner (see {@link Socket.pair}), or `null`; a close of either dissolves the pair. */
  get partner(): Socket | null {
    if (this.#closed) return null
    const id = callBinding(() => this.#host.binding.partner(this.id))
    return id === null || id === undefined ? null : (this.#host.socketById(id) ?? null)
  }

  /** Whether message delivery is paused. */
  get isPaused(): boolean {
    return this.#paused
  }

  /**
   * Sends `data` on the sk_msg path: the attached msg verdict runs, then the data is transmitted, redirected or
   * dropped. Resolves with the bytes accepted once they are queued below the send ring's high watermark (so a caller
   * that awaits each send never makes memory grow without bound).
   * @throws {SockmapError} `EACCES` when the msg verdict drops it, `EPIPE` when the socket or redirect target is gone.
   */
  send(data: Uint8Array | string): Promise<number> {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    assertBytes('data', bytes)
    return this[kSend]((req) => this.#host.binding.send(this.id, bytes, req))
  }

  /** Starts a send through `start` (given its request number); resolves or rejects on its `SendDone`. @internal */
  [kSend](start: (req: number) => void): Promise<number> {
    if (this.#closed || this.#ended) return Promise.reject(sockError('EPIPE', 'the socket is closed or ended'))
    const req = this.#host.nextRequest()
    return new Promise<number>((resolve, reject) => {
      ;(this.#sends ??= new Map()).set(req, { resolve, reject })
      try {
        callBinding(() => start(req))
      } catch (e) {
        this.#sends?.delete(req)
        reject(e)
      }
    })
  }

  /** Stops delivering messages and stops reading (`strp_pause`). */
  pause(): this {
    this.#paused = true
    if (!this.#closed) callBinding(() => this.#host.binding.pause(this.id))
    return this
  }

  /** Delivers messages again and reads (`strp_unpause`). */
  resume(): this {
    this.#resumedOnce = true
    this.#paused = false
    if (!this.#closed) callBinding(() => this.#host.binding.resume(this.id))
    const held = this.#held
    this.#held = undefined
    for (const m of held ?? []) {
      if (this.#paused) {
        ;(this.#held ??= []).push(m)
      } else {
        this.#deliver(m)
      }
    }
    return this
  }

  /** Emits a message and counts it as consumed (unless an iterator will). */
  #deliver(held: Buffer | HeldDatagram): void {
    const m = isDatagram(held) ? held.data : held
    if (isDatagram(held)) this.emit('message', m, held.from)
    else this.emit('message', m)
    if (this.#iterators === 0 && !this.#closed) this.#host.ack(this.id, m.length)
  }

  /** Half-closes: writes everything queued, then shuts down the write side. */
  end(): void {
    if (this.#closed || this.#ended) return
    this.#ended = true
    callBinding(() => this.#host.binding.end(this.id))
  }

  /** Closes at once; queued bytes are discarded. */
  destroy(): void {
    if (this.#closed) return
    callBinding(() => this.#host.binding.destroy(this.id))
  }

  /** The socket's counters (the last ones seen, once it is closed). */
  stats(): SocketStats {
    if (!this.#closed) {
      const raw = callBinding(() => this.#host.binding.sockStats(this.id))
      if (raw) this.#lastStats = socketStats(raw)
    }
    return { ...(this.#lastStats ?? zeroStats()) }
  }

  /** Iterates over the messages; ends when the peer ends or the socket closes, throws on a socket error. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer, void, undefined> {
    const queue: Buffer[] = []
    let done = false
    let failure: unknown
    let wake: (() => void) | undefined
    const poke = (): void => {
      const w = wake
      wake = undefined
      w?.()
    }
    const onMessage = (m: Buffer): void => {
      queue.push(m)
      poke()
    }
    const onEnd = (): void => {
      done = true
      poke()
    }
    const onError = (e: unknown): void => {
      failure = e
      poke()
    }
    this.on('message', onMessage)
    this.on('end', onEnd)
    this.on('close', onEnd)
    this.on('error', onError)
    this.#iterators++
    this.resume()
    try {
      for (;;) {
        const m = queue.shift()
        if (m !== undefined) {
          // Handed out: consumed. Sources stopped by this socket's bounded queue go on.
          if (!this.#closed) this.#host.ack(this.id, m.length)
          yield m
          continue
        }
        if (failure !== undefined) throw failure
        if (done || this.#closed) return
        await new Promise<void>((resolve) => {
          wake = resolve
        })
      }
    } finally {
      this.#iterators--
      // Messages the loop left unread are dropped with the iterator: count them as consumed.
      let left = 0
      for (const m of queue) left += m.length
      if (left > 0 && !this.#closed) this.#host.ack(this.id, left)
      this.off('message', onMessage)
      this.off('end', onEnd)
      this.off('close', onEnd)
      this.off('error', onError)
    }
  }

  /** Handles one engine event for this socket. @internal */
  [kEvent](ev: JsEvent): void {
    switch (ev.kind) {
      case EventKind.Message:
      case EventKind.Datagram: {
        const m: Buffer | HeldDatagram =
          ev.kind === EventKind.Message ? (ev.data as Buffer) : { data: ev.data as Buffer, from: eventAddress(ev) }
        if (this.#paused) (this.#held ??= []).push(m)
        else this.#deliver(m)
        return
      }
      case EventKind.ReadEnd:
        this.emit('end')
        return
      case EventKind.SendDone: {
        const p = this.#sends?.get(ev.other)
        if (!p) return
        this.#sends?.delete(ev.other)
        if (ev.code) p.reject(sockError(ev.code, 'send failed'))
        else p.resolve(ev.bytes)
        return
      }
      case EventKind.Drained:
        this.emit('drain')
        return
      case EventKind.Error:
        this.emit('error', sockError(ev.code, ev.detail ?? 'socket error'))
        return
      case EventKind.Closed:
        this[kClose](ev.code)
        return
    }
  }

  /** Marks the socket closed (an engine event or the engine's close). @internal */
  [kClose](code: string | undefined): void {
    if (this.#closed) return
    this.stats()
    this.#closed = true
    this.#host.forget(this.id)
    for (const p of this.#sends?.values() ?? []) p.reject(sockError('EPIPE', 'the socket closed'))
    this.#sends = undefined
    // Messages held by a pause are still the application's: deliver them before 'close'.
    const held = this.#held
    this.#held = undefined
    for (const m of held ?? []) {
      if (isDatagram(m)) this.emit('message', m.data, m.from)
      else this.emit('message', m)
    }
    if (code && this.listenerCount('error') > 0) this.emit('error', sockError(code, 'the socket closed on an error'))
    this.emit('close', code !== undefined)
  }
}

// The first 'message' listener resumes a socket. Hooked into the prototype's listener methods (`once`,
// `prependOnceListener` and `events.on/once` go through them) rather than a 'newListener' closure per socket.
for (const name of ['on', 'addListener', 'prependListener'] as const) {
  const base = EventEmitter.prototype[name] as (this: EventEmitter, e: string | symbol, l: never) => EventEmitter
  Object.defineProperty(Socket.prototype, name, {
    value: function (this: Socket, event: string | symbol, listener: never) {
      this[kListening](event)
      return base.call(this, event, listener)
    },
    writable: true,
    configurable: true,
  })
}

/**
 * A listening socket owned by the engine. Create one with `engine.listen()`.
 */
/** A server's counters ({@link Server.stats}). */
export interface ServerStats {
  /** TLS handshakes, resumptions and failures of its connections; `undefined` for a server without TLS. */
  tls: TlsStats | undefined
}

export class Server extends EventEmitter<ServerEvents> {
  /** The listener's socket id. */
  readonly id: number
  readonly #host: SocketHost
  readonly #address: AddressInfo
  /** Makes the socket of an accepted connection, or (`later`) records it to make when first asked for. */
  readonly #make: (id: number, remote: AddressInfo, later: boolean) => Socket | undefined
  #closed = false
  #onClosed: Array<() => void> = []

  /** @internal */
  constructor(
    host: SocketHost,
    id: number,
    address: AddressInfo,
    make: (id: number, remote: AddressInfo, later: boolean) => Socket | undefined,
  ) {
    super()
    this.#host = host
    this.id = id
    this.#address = address
    this.#make = make
  }

  /** The bound address. */
  address(): AddressInfo {
    return { ...this.#address }
  }

  /** Whether the server stopped listening. */
  get closed(): boolean {
    return this.#closed
  }

  /**
   * The server's counters: `tls`, the handshakes, resumptions and failures (by reason) of the connections it accepted
   * (across `setSecureContext` reloads; `engine.stats().tls` counts every TLS socket); `undefined` without TLS or once
   * closed.
   */
  stats(): ServerStats {
    const tls = this.#closed ? null : callBinding(() => this.#host.binding.listenerTlsStats(this.id))
    return { tls: tls === null ? undefined : (tls as TlsStats) }
  }

  /**
   * Replaces a TLS server's certificates (and ALPN, SNI names, client CA): connections accepted from now on use them,
   * those open keep theirs, and sessions resume across the change.
   * @throws {SockmapError} `EINVAL` for a server without TLS, or a certificate or key that does not parse or match.
   */
  setSecureContext(tls: TlsServerOptions): void {
    const spec = serverSpec('tls', tls)
    callBinding(() => this.#host.binding.setSecureContext(this.id, spec))
  }

  /** A TLS connection failed before it was announced. @internal */
  [kTlsError](err: SockmapError): void {
    if (this.listenerCount('tlsClientError') > 0) this.emit('tlsClientError', err)
  }

  /** Stops listening; resolves once the listener is closed. Accepted sockets stay open. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve()
    return new Promise((resolve) => {
      this.#onClosed.push(resolve)
      callBinding(() => this.#host.binding.destroy(this.id))
    })
  }

  /** Handles one engine event for this listener. @internal */
  [kEvent](ev: JsEvent): void {
    if (ev.kind === EventKind.Accepted) {
      const remote = eventAddress(ev)
      // With no 'connection' listener, the socket is made only when the application reaches it.
      if (this.listenerCount('connection') === 0) {
        this.#make(ev.other, remote, true)
        return
      }
      this.emit('connection', this.#make(ev.other, remote, false) as Socket)
    } else if (ev.kind === EventKind.Error) {
      this.emit('error', sockError(ev.code, ev.detail ?? 'listener error'))
    } else if (ev.kind === EventKind.Closed) {
      this[kClose](ev.code)
    }
  }

  /** @internal */
  [kClose](_code: string | undefined): void {
    if (this.#closed) return
    this.#closed = true
    this.#host.forget(this.id)
    for (const f of this.#onClosed) f()
    this.#onClosed = []
    this.emit('close')
  }
}
