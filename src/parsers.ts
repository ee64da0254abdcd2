import { assertBoolean, assertIntInRange, assertObject, assertOneOf } from './validate'

const kParser = Symbol('sockmap.parser')

/** Strparser limits every parser takes. */
export interface ParserLimits {
  /** A message longer than this aborts the socket with `EMSGSIZE`. Default: 8 MiB. */
  maxMessageBytes?: number
  /** A message not completed within this many milliseconds aborts the socket with `ETIMEDOUT`. Default: none. */
  messageTimeoutMs?: number
}

/** A native framer, made by one of the {@link parsers} functions. Opaque. */
export interface NativeParser {
  /** @internal */
  readonly [kParser]: ParserSpecInternal
}

/** @internal */
export interface ParserSpecInternal {
  kind: string
  maxMessageBytes?: number
  messageTimeoutMs?: number
  options: Record<string, unknown>
}

/** @internal */
export function parserSpecOf(p: unknown): ParserSpecInternal | undefined {
  return typeof p === 'object' && p !== null ? (p as Partial<NativeParser>)[kParser] : undefined
}

/** Options of {@link parsers.lengthField} (Netty's `LengthFieldBasedFrameDecoder`). */
export interface LengthFieldOptions extends ParserLimits {
  /** Byte order of the length field. Default: `'be'`. */
  byteOrder?: 'be' | 'le'
  /** Where the length field starts. Default: `0`. */
  lengthFieldOffset?: number
  /** Size of the length field: 1, 2, 3, 4 or 8 bytes. Default: `4`. */
  lengthFieldLength?: 1 | 2 | 3 | 4 | 8
  /** Added to the length field's value to get the bytes that follow the field. Default: `0`. */
  lengthAdjustment?: number
  /** Bytes stripped from the head of each message. Default: `0`. */
  initialBytesToStrip?: number
  /** A larger frame is an error (`EMSGSIZE`). Default: 8 MiB. */
  maxFrameLength?: number
  /**
   * Accepted for Netty compatibility: an oversized frame is always reported as soon as its length field is read
   * (Netty's fail-fast behaviour). Default: `true`.
   */
  failFast?: boolean
  /** Skip an oversized frame (counted in `skippedFrames`) and go on, instead of aborting with `EMSGSIZE`. Default: `false`. */
  discardOversize?: boolean
}

/** Options of {@link parsers.delimiter}. */
export interface DelimiterOptions extends ParserLimits {
  /** Delimiters, tried in order. */
  delimiters: Array<string | Uint8Array>
  /** Longest message without a delimiter. Default: `65536`. */
  maxLength?: number
  /** Leave the delimiter out of the message. Default: `true`. */
  stripDelimiter?: boolean
  /**
   * A message longer than `maxLength` is skipped up to its delimiter (counted in `skippedFrames`) when `true`; when
   * `false` it aborts the socket with `EMSGSIZE`. Default: `true`.
   */
  discardOversize?: boolean
}

/** Options of {@link parsers.lines}. */
export interface LinesOptions extends ParserLimits {
  /** Longest line, line ending excluded. Default: `65536`. */
  maxLength?: number
  /** Leave the line ending (`\n` or `\r\n`) out of the message. Default: `true`. */
  stripDelimiter?: boolean
  /** Skip an over-long line (`true`) or abort the socket with `EMSGSIZE` (`false`). Default: `true`. */
  discardOversize?: boolean
}

/** Options of {@link parsers.resp}. */
export interface RespOptions extends ParserLimits {
  /** Deepest aggregate nesting accepted (deeper is `EPROTO`). Default: `64`. */
  maxDepth?: number
  /** Longest line (inline command, simple string, header), `\r\n` excluded. Default: `65536`. */
  maxLineLength?: number
}

/** Options of {@link parsers.http1}. */
export interface Http1Options extends ParserLimits {
  /** `'request'` (a server's input) or `'response'` (a client's input). Default: `'request'`. */
  role?: 'request' | 'response'
  /** Largest head (start line, fields, blank line) in bytes; larger is `EMSGSIZE`. Default: `16384`. */
  maxHeaderBytes?: number
}

function limits(name: string, o: ParserLimits): Pick<ParserSpecInternal, 'maxMessageBytes' | 'messageTimeoutMs'> {
  const out: Pick<ParserSpecInternal, 'maxMessageBytes' | 'messageTimeoutMs'> = {}
  if (o.maxMessageBytes !== undefined) {
    assertIntInRange(`${name}.maxMessageBytes`, o.maxMessageBytes, 1, 2 ** 32)
    out.maxMessageBytes = o.maxMessageBytes
  }
  if (o.messageTimeoutMs !== undefined) {
    assertIntInRange(`${name}.messageTimeoutMs`, o.messageTimeoutMs, 1, 2 ** 31)
    out.messageTimeoutMs = o.messageTimeoutMs
  }
  return out
}

/** The options given (an absent one keeps the engine's default). */
function given(options: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(options)) if (v !== undefined) out[k] = v
  return out
}

function make(kind: string, name: string, o: ParserLimits, options: Record<string, unknown>): NativeParser {
  return Object.freeze({ [kParser]: { kind, ...limits(name, o), options: given(options) } })
}

/**
 * Native framers: messages are cut on the I/O thread, with no JavaScript per message.
 *
 * @example
 * ```ts
 * map.attach({ parser: parsers.lengthField({ lengthFieldLength: 4 }), verdict: rules.pass() })
 * ```
 */
export const parsers = {
  /** Length-prefixed frames. */
  lengthField(options: LengthFieldOptions = {}): NativeParser {
    assertObject('options', options)
    if (options.byteOrder !== undefined) assertOneOf('options.byteOrder', options.byteOrder, ['be', 'le'])
    if (options.lengthFieldLength !== undefined) {
      assertIntInRange('options.lengthFieldLength', options.lengthFieldLength, 1, 8)
      if (![1, 2, 3, 4, 8].includes(options.lengthFieldLength)) {
        throw new RangeError(`options.lengthFieldLength must be 1, 2, 3, 4 or 8, got ${options.lengthFieldLength}`)
      }
    }
    if (options.lengthFieldOffset !== undefined) {
      assertIntInRange('options.lengthFieldOffset', options.lengthFieldOffset, 0, 65535)
    }
    if (options.lengthAdjustment !== undefined) {
      assertIntInRange('options.lengthAdjustment', options.lengthAdjustment, -(2 ** 31), 2 ** 31 - 1)
    }
    if (options.initialBytesToStrip !== undefined) {
      assertIntInRange('options.initialBytesToStrip', options.initialBytesToStrip, 0, 65535)
    }
    if (options.maxFrameLength !== undefined) {
      assertIntInRange('options.maxFrameLength', options.maxFrameLength, 1, 2 ** 32)
    }
    if (options.failFast !== undefined) assertBoolean('options.failFast', options.failFast)
    if (options.discardOversize !== undefined) assertBoolean('options.discardOversize', options.discardOversize)
    return make('lengthField', 'options', options, {
      discardOversize: options.discardOversize,
      byteOrder: options.byteOrder,
      lengthFieldOffset: options.lengthFieldOffset,
      lengthFieldLength: options.lengthFieldLength,
      lengthAdjustment: options.lengthAdjustment,
      initialBytesToStrip: options.initialBytesToStrip,
      maxFrameLength: options.maxFrameLength,
      failFast: options.failFast,
    })
  },

  /** Messages ended by one of several delimiters. */
  delimiter(options: DelimiterOptions): NativeParser {
    assertObject('options', options)
    if (!Array.isArray(options.delimiters) || options.delimiters.length === 0) {
      throw new TypeError('options.delimiters must be a non-empty array of strings or Buffers')
    }
    const delimiters = options.delimiters.map((d, i) => {
      const b = typeof d === 'string' ? Buffer.from(d) : d
      if (!(b instanceof Uint8Array) || b.length === 0) {
        throw new TypeError(`options.delimiters[${i}] must be a non-empty string or Buffer`)
      }
      return Buffer.from(b)
    })
    if (options.maxLength !== undefined) assertIntInRange('options.maxLength', options.maxLength, 1, 2 ** 32)
    if (options.stripDelimiter !== undefined) assertBoolean('options.stripDelimiter', options.stripDelimiter)
    if (options.discardOversize !== undefined) assertBoolean('options.discardOversize', options.discardOversize)
    return make('delimiter', 'options', options, {
      delimiters,
      maxLength: options.maxLength,
      stripDelimiter: options.stripDelimiter,
      discardOversize: options.discardOversize,
    })
  },

  /** Lines ended by `\n` or `\r\n` (the line ending stripped unless `stripDelimiter: false`). */
  lines(options: LinesOptions = {}): NativeParser {
    assertObject('options', options)
    if (options.maxLength !== undefined) assertIntInRange('options.maxLength', options.maxLength, 1, 2 ** 32)
    if (options.stripDelimiter !== undefined) assertBoolean('options.stripDelimiter', options.stripDelimiter)
    if (options.discardOversize !== undefined) assertBoolean('options.discardOversize', options.discardOversize)
    return make('lines', 'options', options, {
      maxLength: options.maxLength,
      stripDelimiter: options.stripDelimiter,
      discardOversize: options.discardOversize,
    })
  },

  /** Messages of exactly `size` bytes. */
  fixed(size: number, options: ParserLimits = {}): NativeParser {
    assertIntInRange('size', size, 1, 2 ** 32)
    assertObject('options', options)
    return make('fixed', 'options', options, { size })
  },

  /** Redis RESP2/RESP3 commands and replies, pipelined; gives `rules.key.resp` the command's first key. */
  resp(options: RespOptions = {}): NativeParser {
    assertObject('options', options)
    if (options.maxDepth !== undefined) assertIntInRange('options.maxDepth', options.maxDepth, 1, 1 << 16)
    if (options.maxLineLength !== undefined) {
      assertIntInRange('options.maxLineLength', options.maxLineLength, 1, 2 ** 32)
    }
    return make('resp', 'options', options, {
      maxDepth: options.maxDepth,
      maxLineLength: options.maxLineLength,
    })
  },

  /**
   * HTTP/1.1 requests or responses: content-length, chunked, pipelining; gives `rules.key.httpHost` the request's
   * Host. A `'response'` parser assumes no response answers a HEAD or CONNECT request.
   */
  http1(options: Http1Options = {}): NativeParser {
    assertObject('options', options)
    if (options.role !== undefined) assertOneOf('options.role', options.role, ['request', 'response'])
    if (options.maxHeaderBytes !== undefined) {
      assertIntInRange('options.maxHeaderBytes', options.maxHeaderBytes, 64, 2 ** 30)
    }
    return make('http1', 'options', options, {
      role: options.role,
      maxHeaderBytes: options.maxHeaderBytes,
    })
  },

  /**
   * TLS records, not decrypted, each message one whole record (its 5-byte header included), for routing TLS
   * connections by server name without terminating them: the first message is the ClientHello's record, and gives
   * `rules.key.sni` (and `msg.tls.sni`) its server name for every record of the socket. A stream that is not TLS
   * (a bad record header) aborts its socket with `EPROTO`.
   */
  tlsRecords(options: ParserLimits = {}): NativeParser {
    assertObject('options', options)
    return make('tlsRecords', 'options', options, {})
  },

  /** No framing: each chunk received is one message (a verdict without a parser). */
  none(): NativeParser {
    return make('none', 'options', {}, {})
  },
}
