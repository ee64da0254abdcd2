/**
 * The vocabulary shared by verdicts, parsers and maps: what a verdict decides ({@link Verdict}), what a parser returns
 * besides a length ({@link Parse}), map keys, redirect options and the metadata a message carries. It names no map:
 * the message views and verdict function types, which name their redirect targets, are declared with the maps.
 * @module
 */
import { PARSE_HANDBACK, PARSE_NEED_MORE } from './binding.cjs'

/**
 * What a verdict decides for a message, as in the kernel (`SK_DROP` = 0, `SK_PASS` = 1). A redirect is made with
 * {@link StreamMessage.redirect}, which returns {@link Verdict.REDIRECT}; returning `REDIRECT` without calling it is
 * an error (the message gets the map's `onError` verdict).
 */
export const Verdict = {
  /** Discard the message, counted in stats. */
  DROP: 0,
  /** Deliver to the source socket's application (stream verdict), or transmit on it (msg verdict). */
  PASS: 1,
  /** Send to the target chosen by {@link StreamMessage.redirect}. */
  REDIRECT: 2,
} as const

/** A verdict value: {@link Verdict.PASS}, {@link Verdict.DROP} or {@link Verdict.REDIRECT}. */
export type Verdict = (typeof Verdict)[keyof typeof Verdict]

/** Special results of a TypeScript parser (besides a positive message length). */
export const Parse = {
  /** Not enough bytes yet for a whole message: call again when more arrive. */
  NEED_MORE: PARSE_NEED_MORE,
  /**
   * Hand the socket back to the application (the kernel's `-ESTRPIPE`): the socket leaves the parser and the
   * application reads the rest of the stream itself.
   */
  HANDBACK: PARSE_HANDBACK,
} as const

/** A map key: an index for a {@link SockMap}, a string, Buffer or number for a {@link SockHash}. */
export type MapKey = number | string | Uint8Array

/** Options of {@link StreamMessage.redirect}. */
export interface RedirectOptions {
  /** Deliver to the target's application (`'message'` event) instead of transmitting out of it. Default: `false`. */
  ingress?: boolean
}

/**
 * What the native RESP framer (`parsers.resp()`) found in a request: an array whose first elements are bulk strings,
 * or an inline command. Read lazily: nothing is decoded until a property is read. A reused view, valid only during
 * the verdict call, like the message.
 */
export interface RespMeta {
  /** The command name (the first element) as sent, e.g. `'SET'` or `'get'` (not case-folded). */
  readonly command: string
  /**
   * The first key (the second element), decoded as UTF-8 (what `hash.set('user:1', s)` names); `undefined` for a
   * command without one, or when its bytes end past `peekBytes`. Binary keys: {@link RespMeta.keyBytes}.
   */
  readonly key: string | undefined
  /** The first key's bytes: a view of `msg.data`, valid only during the call; `undefined` as for `key`. */
  readonly keyBytes: Buffer | undefined
}

/**
 * What the native HTTP/1 requests framer (`parsers.http1()`) found in a request head. Read lazily, decoded as
 * latin1 (as `node:http` decodes heads). A reused view, valid only during the verdict call, like the message.
 */
export interface HttpMeta {
  /** The method token, e.g. `'GET'`. */
  readonly method: string
  /** The request target, e.g. `'/index.html?q=1'`. */
  readonly path: string
  /** The `Host` header's value; `undefined` without one, or when it ends past `peekBytes`. */
  readonly host: string | undefined
  /**
   * The value of header `name` (case-insensitive; repeated headers joined with `', '`, spaces around each value
   * trimmed), read from the head in `msg.data`; `undefined` when the head has none, or the header lies past
   * `peekBytes`. E.g. `header('connection')`, `header('upgrade')`.
   */
  header(name: string): string | undefined
}

/**
 * What the source socket's TLS stream negotiated or asked for, as a verdict sees it (`msg.tls`). On a socket the
 * engine terminates or originates TLS on, what its handshake agreed (as `socket.tls`); on a plain socket whose parser
 * is `parsers.tlsRecords()` (TLS passed through), only `sni`, from the ClientHello it started with. Shared and frozen.
 */
export interface MessageTls {
  /** The server name the client asked for (lowercased for a ClientHello read by `parsers.tlsRecords()`). */
  readonly sni?: string
  /** The ALPN protocol agreed (terminated or originated TLS only). */
  readonly alpn?: string
  /** `'TLSv1.3'` or `'TLSv1.2'` (terminated or originated TLS only). */
  readonly version?: string
}

/**
 * A parser written in TypeScript: called with the buffered bytes of a socket, starting at the current message
 * (and possibly holding the messages after it). Returns the message length (> 0, may exceed `data.length`),
 * {@link Parse.NEED_MORE}, {@link Parse.HANDBACK}, or a negative errno (e.g. `-90`, `EMSGSIZE`) to abort the socket
 * with that error. A parser that throws or returns a non-integer aborts its socket with `EPROTO` and is reported on
 * the engine's `'error'` event. The library calls it again after each length over the bytes that follow, so one
 * boundary crossing frames every whole message a socket has buffered. `data` is a view valid only during the call.
 */
export type ParseFunction = (data: Buffer) => number
