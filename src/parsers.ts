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
  /** Report an oversized frame as soon as its length is read. Default: `true`. */
  failFast?: boolean
}

/** Options of {@link parsers.delimiter}. */
export interface DelimiterOptions extends ParserLimits {
  /** Delimiters, tried in order. */
  delimiters: Array<string | Uint8Array>
  /** Longest message without a delimiter. Default: `65536`. */
  maxLength?: number
  /** Leave the delimiter out of the message. Default: `true`. */
  stripDelimiter?: boolean
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

function make(kind: string, name: string, o: ParserLimits, options: Record<string, unknown>): NativeParser {
  return Object.freeze({ [kParser]: { kind, ...limits(name, o), options } })
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
    return make('lengthField', 'options', options, {
      byteOrder: options.byteOrder ?? 'be',
      lengthFieldOffset: options.lengthFieldOffset ?? 0,
      lengthFieldLength: options.lengthFieldLength ?? 4,
      lengthAdjustment: options.lengthAdjustment ?? 0,
      initialBytesToStrip: options.initialBytesToStrip ?? 0,
      maxFrameLength: options.maxFrameLength ?? 8 << 20,
      failFast: options.failFast ?? true,
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
    return make('delimiter', 'options', options, {
      delimiters,
      maxLength: options.maxLength ?? 65536,
      stripDelimiter: options.stripDelimiter ?? true,
    })
  },

  /** Lines ended by `\n` or `\r\n` (delimiter stripped). */
  lines(options: ParserLimits & { maxLength?: number } = {}): NativeParser {
    assertObject('options', options)
    if (options.maxLength !== undefined) assertIntInRange('options.maxLength', options.maxLength, 1, 2 ** 32)
    return make('lines', 'options', options, { maxLength: options.maxLength ?? 65536 })
  },

  /** Messages of exactly `size` bytes. */
  fixed(size: number, options: ParserLimits = {}): NativeParser {
    assertIntInRange('size', size, 1, 2 ** 32)
    assertObject('options', options)
    return make('fixed', 'options', options, { size })
  },

  /** Redis RESP2/RESP3 commands and replies, pipelined. */
  resp(options: ParserLimits = {}): NativeParser {
    assertObject('options', options)
    return make('resp', 'options', options, {})
  },

  /** HTTP/1.1 requests or responses: content-length, chunked, pipelining. */
  http1(options: ParserLimits & { role?: 'request' | 'response' } = {}): NativeParser {
    assertObject('options', options)
    if (options.role !== undefined) assertOneOf('options.role', options.role, ['request', 'response'])
    return make('http1', 'options', options, { role: options.role ?? 'request' })
  },

  /** No framing: each chunk received is one message (a verdict without a parser). */
  none(): NativeParser {
    return make('none', 'options', {}, {})
  },
}
