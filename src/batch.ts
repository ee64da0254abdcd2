import {
  AnswerCode,
  BatchItemKind,
  DESC_STRIDE,
  DescField,
  EDIT_STRIDE,
  EditOp,
  META_STRIDE,
  MetaField,
  MetaKind,
  PARSE_FAILED_ERRNO,
  TARGET_STRIDE,
  TargetField,
  TargetFlag,
  type BindingEngine,
} from './binding.cjs'
import { SockmapError, callBinding } from './errors'
import {
  hashKey,
  mapRef,
  SockHash,
  SockMap,
  type MapHost,
  type MsgVerdictFunction,
  type SendMessage,
  type StreamMessage,
  type VerdictFunction,
} from './map'
import {
  Parse,
  Verdict,
  type MapKey,
  type ParseFunction,
  type RedirectOptions,
  type HttpMeta,
  type MessageTls,
  type RespMeta,
} from './verdict'

/**
 * The batch ABI (descriptor layout, item kinds, answer codes, targets) is defined by the binding (`binding_batch.rs`).
 * The hot loop reads it as literals, which V8 folds into the code; {@link checkAbi} proves them equal to the binding's
 * values when the module loads, so a change on one side fails at once instead of drifting.
 */
const STRIDE = 6
const D_SOCK = 0
const D_TAG = 1
const D_KIND = 2
const D_OFFSET = 3
const D_COPIED = 4
const D_LEN = 5
const KIND_VERDICT = 0
const KIND_PARSE = 1
const KIND_MSG = 2
const TARGET_INGRESS = 1
const TARGET_BYTES_KEY = 2
const A_DROP = 0
const A_PASS = 1
const A_REDIRECT = 2
const A_REPLY = 1 << 29
const A_ROUTE = 1 << 30
const T_MAP = 0
const T_KEY = 1
const T_FLAGS = 2
const M_STRIDE = 7
const M_KIND = 0
const M_A = 1
const M_B = 3
const M_C = 5
const META_RESP = 1
const META_HTTP = 2
const META_TLS = 3

/** Throws when the literals above disagree with the binding's definitions. @internal */
export function checkAbi(): void {
  const pairs: Array<[string, number, number]> = [
    ['DESC_STRIDE', STRIDE, DESC_STRIDE],
    ['DescField.Sock', D_SOCK, DescField.Sock],
    ['DescField.Tag', D_TAG, DescField.Tag],
    ['DescField.Kind', D_KIND, DescField.Kind],
    ['DescField.Offset', D_OFFSET, DescField.Offset],
    ['DescField.Copied', D_COPIED, DescField.Copied],
    ['DescField.Len', D_LEN, DescField.Len],
    ['BatchItemKind.StreamVerdict', KIND_VERDICT, BatchItemKind.StreamVerdict],
    ['BatchItemKind.Parse', KIND_PARSE, BatchItemKind.Parse],
    ['BatchItemKind.MsgVerdict', KIND_MSG, BatchItemKind.MsgVerdict],
    ['TargetFlag.Ingress', TARGET_INGRESS, TargetFlag.Ingress],
    ['TargetFlag.BytesKey', TARGET_BYTES_KEY, TargetFlag.BytesKey],
    ['AnswerCode.Drop', A_DROP, AnswerCode.Drop],
    ['AnswerCode.Pass', A_PASS, AnswerCode.Pass],
    ['AnswerCode.Redirect', A_REDIRECT, AnswerCode.Redirect],
    ['AnswerCode.Reply', A_REPLY, AnswerCode.Reply],
    ['AnswerCode.Route', A_ROUTE, AnswerCode.Route],
    ['TargetField.Map', T_MAP, TargetField.Map],
    ['TargetField.Key', T_KEY, TargetField.Key],
    ['TargetField.Flags', T_FLAGS, TargetField.Flags],
    ['META_STRIDE', M_STRIDE, META_STRIDE],
    ['MetaField.Kind', M_KIND, MetaField.Kind],
    ['MetaField.AStart', M_A, MetaField.AStart],
    ['MetaField.ALen', M_A + 1, MetaField.ALen],
    ['MetaField.BStart', M_B, MetaField.BStart],
    ['MetaField.BLen', M_B + 1, MetaField.BLen],
    ['MetaField.CStart', M_C, MetaField.CStart],
    ['MetaField.CLen', M_C + 1, MetaField.CLen],
    ['MetaKind.Resp', META_RESP, MetaKind.Resp],
    ['MetaKind.Http', META_HTTP, MetaKind.Http],
    ['MetaKind.Tls', META_TLS, MetaKind.Tls],
  ]
  for (const [name, local, native] of pairs) {
    if (local !== native)
      throw new Error(`sockmap: batch ABI mismatch: ${name} is ${native} in the binding, ${local} here`)
  }
}
checkAbi()

/** The answer code of each verdict value. */
const answerOf = (v: Verdict): number => (v === Verdict.PASS ? A_PASS : A_DROP)
const U32_MAX = 2 ** 32 - 1

/** Number keys below this are cached in an array rather than a Map. */
const SMALL_KEYS = 64

/** Target indexes chosen in the current batch for one (map, ingress): small integer keys by index, others by value. */
class TargetCache {
  readonly small = new Int32Array(SMALL_KEYS).fill(-1)
  readonly keys = new Map<number | string, number>()

  clear(): void {
    this.small.fill(-1)
    this.keys.clear()
  }
}

/** One TypeScript callback registered with the engine; its index is the tag the engine returns. */
type Callback =
  | { type: 'verdict'; fn: VerdictFunction; onError: Verdict }
  | { type: 'msgVerdict'; fn: MsgVerdictFunction; onError: Verdict }
  | { type: 'parser'; fn: ParseFunction }

/** Counters of the batch runner. */
export interface BatchCounters {
  /** Batches taken (one boundary crossing each). */
  batches: number
  /** Stream and msg verdict calls. */
  messages: number
  /** Parse requests answered (one per socket per crossing). */
  parseRequests: number
  /** Parser function calls. */
  parserCalls: number
  /** Callbacks that threw or returned garbage. */
  errors: number
}

/**
 * The fields of one item's metadata: `meta[at + M_A..]` (start, length pairs into `data`; start -1 when absent). The
 * reused base of the RESP and HTTP views; pointed at the current message when `msg.resp`/`msg.http` is read.
 */
class MetaView {
  data: Buffer = Buffer.alloc(0)
  meta: Int32Array<ArrayBufferLike> = new Int32Array(M_STRIDE)
  at = 0

  point(data: Buffer, meta: Int32Array, at: number): this {
    this.data = data
    this.meta = meta
    this.at = at
    return this
  }

  /** Field `f` (M_A, M_B, M_C) decoded with `encoding`, or undefined. */
  protected text(f: number, encoding: 'latin1' | 'utf8'): string | undefined {
    const start = this.meta[this.at + f] as number
    return start < 0 ? undefined : this.data.toString(encoding, start, start + (this.meta[this.at + f + 1] as number))
  }
}

class RespView extends MetaView implements RespMeta {
  get command(): string {
    return this.text(M_A, 'latin1') ?? ''
  }

  get key(): string | undefined {
    return this.text(M_B, 'utf8')
  }

  get keyBytes(): Buffer | undefined {
    const start = this.meta[this.at + M_B] as number
    return start < 0 ? undefined : this.data.subarray(start, start + (this.meta[this.at + M_B + 1] as number))
  }
}

const CRLF = Buffer.from('\r\n')

class HttpView extends MetaView implements HttpMeta {
  get method(): string {
    return this.text(M_A, 'latin1') ?? ''
  }

  get path(): string {
    return this.text(M_B, 'latin1') ?? ''
  }

  get host(): string | undefined {
    return this.text(M_C, 'latin1')
  }

  header(name: string): string | undefined {
    if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`)
    const d = this.data
    const want = name.toLowerCase()
    let out: string | undefined
    // The header lines follow the start line, which begins at the method, up to the blank line ending the head.
    let at = d.indexOf(CRLF, this.meta[this.at + M_A] as number)
    if (at < 0) return undefined
    for (at += 2; at < d.length;) {
      const end = d.indexOf(CRLF, at)
      if (end <= at) break // the blank line, or a line cut by peekBytes
      const colon = d.indexOf(0x3a, at)
      if (colon - at === want.length && colon < end && d.toString('latin1', at, colon).toLowerCase() === want) {
        const v = d.toString('latin1', colon + 1, end).trim()
        out = out === undefined ? v : `${out}, ${v}`
      }
      at = end + 2
    }
    return out
  }
}

/**
 * The reused message view handed to every stream verdict call of every batch. `data` is re-pointed at each message's
 * bytes inside the payload buffer and `index` at its item; nothing is allocated per message beyond that view, and
 * the metadata views are pointed at the message only when `resp` or `http` is read.
 */
class MessageView implements StreamMessage {
  socket = 0
  length = 0
  data: Buffer = Buffer.alloc(0)
  /** The item's index in the batch (its metadata's slot). */
  index = 0
  protected readonly runner: BatchRunner
  readonly #resp = new RespView()
  readonly #http = new HttpView()

  constructor(runner: BatchRunner) {
    this.runner = runner
  }

  get resp(): RespMeta | undefined {
    const meta = this.runner.meta
    const at = this.index * M_STRIDE
    if (meta[at + M_KIND] !== META_RESP || (meta[at + M_A] as number) < 0) return undefined
    return this.#resp.point(this.data, meta, at)
  }

  get http(): HttpMeta | undefined {
    const meta = this.runner.meta
    const at = this.index * M_STRIDE
    if (meta[at + M_KIND] !== META_HTTP || (meta[at + M_A] as number) < 0 || (meta[at + M_B] as number) < 0) {
      return undefined
    }
    return this.#http.point(this.data, meta, at)
  }

  get tls(): MessageTls | undefined {
    return this.runner.tlsOf(this.socket)
  }

  redirect(target: SockMap | SockHash, key: MapKey, opts?: RedirectOptions): Verdict {
    this.runner.chooseTarget(target, key, opts?.ingress === true)
    return Verdict.REDIRECT
  }

  reply(data: Uint8Array | string): Verdict {
    this.runner.chooseReply(data)
    return Verdict.REDIRECT
  }

  route(pool: SockHash): Verdict {
    this.runner.chooseRoute(pool, this.resp?.keyBytes)
    return Verdict.REDIRECT
  }
}

function rangeError(message: string): RangeError {
  return Object.assign(new RangeError(message), { code: 'EINVAL' })
}

function u32(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v}`)
  if (!Number.isInteger(v) || v < 0 || v > U32_MAX) {
    throw rangeError(`${name} must be an integer from 0 to ${U32_MAX}, got ${v}`)
  }
  return v
}

/**
 * The reused view of a send judged by a msg verdict. The `bpf_msg_*` helpers are checked here with the kernel's
 * rules and recorded as edits the engine applies in order; `data` and `length` follow the edits (on the bytes the
 * view holds: the first `peekBytes` of the send).
 */
class SendView extends MessageView implements SendMessage {
  /** Edits recorded for the current message: op, a, b. */
  edits: number[] = []
  /** The bytes known of the message as edited so far (a view of the payload until the first push/pop). */
  #known: Buffer = Buffer.alloc(0)

  reset(socket: number, length: number, data: Buffer): void {
    this.socket = socket
    this.length = length
    this.data = data
    this.#known = data
    this.edits.length = 0
  }

  applyBytes(n: number): void {
    this.edits.push(EditOp.Apply, u32('n', n), 0)
  }

  corkBytes(n: number): void {
    this.edits.push(EditOp.Cork, u32('n', n), 0)
  }

  pull(start: number, end: number): void {
    u32('start', start)
    u32('end', end)
    if (end <= start || start >= this.length || end > this.length) {
      throw rangeError(`pull(${start}, ${end}): bad range for a ${this.length}-byte message`)
    }
    this.edits.push(EditOp.Pull, start, end)
    const k = this.#known
    this.data = k.subarray(Math.min(start, k.length), Math.min(end, k.length))
  }

  push(start: number, len: number): void {
    u32('start', start)
    u32('len', len)
    if (len === 0) return
    if (start > this.length) throw rangeError(`push(${start}, ${len}): start beyond the ${this.length}-byte message`)
    this.edits.push(EditOp.Push, start, len)
    this.length += len
    const k = this.#known
    if (start <= k.length) {
      this.#known = Buffer.concat([k.subarray(0, start), Buffer.alloc(len), k.subarray(start)])
    }
    this.data = this.#known
  }

  pop(start: number, len: number): void {
    u32('start', start)
    u32('len', len)
    if (len === 0) return
    if (start >= this.length || start + len > this.length) {
      throw rangeError(`pop(${start}, ${len}): bad range for a ${this.length}-byte message`)
    }
    this.edits.push(EditOp.Pop, start, len)
    this.length -= len
    const k = this.#known
    if (start < k.length) {
      // Bytes past the view that the pop brings into it are unknown here: the view ends at `start` then.
      this.#known =
        start + len <= k.length ? Buffer.concat([k.subarray(0, start), k.subarray(start + len)]) : k.subarray(0, start)
    }
    this.data = this.#known
  }
}

/**
 * Runs TypeScript verdicts, msg verdicts and parsers over the batches the engine hands off: one crossing per batch,
 * buffers allocated once and grown when needed, one reused view per kind, answers written into reused typed arrays.
 * A parse request carries every byte a socket has buffered from its current message on, and the parser is called
 * over them repeatedly, so one crossing frames every whole message they hold.
 * @internal
 */
export class BatchRunner {
  readonly counters: BatchCounters = { batches: 0, messages: 0, parseRequests: 0, parserCalls: 0, errors: 0 }
  readonly #host: MapHost
  readonly #callbacks: Callback[] = []
  readonly #view = new MessageView(this)
  readonly #sendView = new SendView(this)
  #payload: Buffer = Buffer.allocUnsafeSlow(64 << 10)
  #descs = new Float64Array(STRIDE * 1024)
  /** The framers' metadata of each item, `META_STRIDE` numbers each (see `MetaField`). @internal */
  meta = new Int32Array(M_STRIDE * 1024)
  #answers = new Int32Array(1024)
  /** Parse results and msg edits: per parse or msg item, its index, a count, the entries (see `answerBatch`). */
  #extras = new Float64Array(4096)
  /** Redirect targets chosen in the current batch, 3 numbers each; Buffer keys live in `#keys`. */
  #targets = new Float64Array(TARGET_STRIDE * 64)
  #targetCount = 0
  #keys: Buffer[] = []
  /** Target index by (map, ingress) and then by key, for number and string keys. */
  #targetCache = new Map<number, TargetCache>()
  /** The last map redirected to (and whether to ingress), its id and its cache: a batch mostly names the same map. */
  #lastTarget: SockMap | SockHash | undefined
  #lastIngress = false
  #lastId = 0
  #lastCache: TargetCache | undefined
  #chosen = -1
  /** The answer code of a `msg.reply()` or `msg.route()` of the message being judged, else -1. */
  #special = -1
  /** Replies of the current batch (`msg.reply`). */
  #replies: Buffer[] = []
  /** Ring routes of the current batch (`msg.route`), as target rows. */
  #routes = new Float64Array(TARGET_STRIDE * 16)
  #routeCount = 0
  /**
   * `data` views of the payload by item index, reused from batch to batch while the item's offset and length are the
   * same (always, for messages of one size): no view is created per message.
   */
  #views: Buffer[] = []

  constructor(host: MapHost) {
    this.#host = host
  }

  /** The TLS parameters of socket `id` (`msg.tls`). @internal */
  tlsOf(id: number): MessageTls | undefined {
    return this.#host.tlsOf(id)
  }

  /** Whether any TypeScript callback is registered (else batches never come). */
  get active(): boolean {
    return this.#callbacks.length > 0
  }

  /** Registers a stream verdict; returns its tag. */
  register(fn: VerdictFunction, onError: Verdict): number {
    return this.#callbacks.push({ type: 'verdict', fn, onError }) - 1
  }

  /** Registers a msg verdict; returns its tag. */
  registerMsg(fn: MsgVerdictFunction, onError: Verdict): number {
    return this.#callbacks.push({ type: 'msgVerdict', fn, onError }) - 1
  }

  /** Registers a parser; returns its tag. */
  registerParser(fn: ParseFunction): number {
    return this.#callbacks.push({ type: 'parser', fn }) - 1
  }

  /** Called by {@link MessageView.reply}: the message is answered with `data` (copied). */
  chooseReply(data: unknown): void {
    let b: Buffer
    if (typeof data === 'string') b = Buffer.from(data)
    else if (data instanceof Uint8Array) b = Buffer.from(data)
    else throw new TypeError(`msg.reply() data must be a Buffer or string, got ${describe(data)}`)
    this.#replies.push(b)
    this.#special = A_REPLY + this.#replies.length - 1
  }

  /** Called by {@link MessageView.route}: the message goes where `pool`'s ring puts `key` (none: no route). */
  chooseRoute(pool: unknown, key: Buffer | undefined): void {
    if (!(pool instanceof SockHash)) throw new TypeError('msg.route() pool must be a SockHash')
    const ref = mapRef(pool)
    if (ref.host !== this.#host) throw new TypeError('route pool belongs to another engine')
    this.#keys.push(key === undefined ? Buffer.alloc(0) : Buffer.from(key))
    const r = this.#routeCount++
    if ((r + 1) * TARGET_STRIDE > this.#routes.length) {
      const grown = new Float64Array(this.#routes.length * 2)
      grown.set(this.#routes)
      this.#routes = grown
    }
    const at = r * TARGET_STRIDE
    this.#routes[at + T_MAP] = ref.id
    this.#routes[at + T_KEY] = this.#keys.length - 1
    this.#routes[at + T_FLAGS] = TARGET_BYTES_KEY
    this.#special = A_ROUTE + r
  }

  /** Called by {@link MessageView.redirect}: records the target for the message being judged. */
  chooseTarget(target: SockMap | SockHash, key: MapKey, ingress: boolean): void {
    this.#special = -1
    let cache = this.#lastCache
    if (target !== this.#lastTarget || ingress !== this.#lastIngress || cache === undefined) {
      const ref = mapRef(target)
      if (ref.host !== this.#host) throw new TypeError('redirect target belongs to another engine')
      const slot = ref.id * 2 + (ingress ? 1 : 0)
      cache = this.#targetCache.get(slot)
      if (cache === undefined) this.#targetCache.set(slot, (cache = new TargetCache()))
      this.#lastTarget = target
      this.#lastIngress = ingress
      this.#lastId = ref.id
      this.#lastCache = cache
    }
    if (typeof key === 'number') {
      const hit = key >= 0 && key < SMALL_KEYS && (key | 0) === key ? cache.small[key] : cache.keys.get(key)
      if (hit !== undefined && hit >= 0) {
        this.#chosen = hit
        return
      }
    } else if (typeof key === 'string') {
      const hit = cache.keys.get(key)
      if (hit !== undefined) {
        this.#chosen = hit
        return
      }
    }
    let flags = ingress ? TARGET_INGRESS : 0
    let k: number
    if (target instanceof SockMap) {
      if (typeof key !== 'number' || !Number.isInteger(key) || key < 0) {
        throw new TypeError('a SockMap key must be a non-negative integer')
      }
      k = key
    } else {
      const h = hashKey('key', key)
      if (typeof h === 'number') {
        k = h
      } else {
        // The message view is reused: a Buffer key (perhaps a slice of msg.data) is copied.
        this.#keys.push(typeof key === 'string' ? h : Buffer.from(h))
        k = this.#keys.length - 1
        flags |= TARGET_BYTES_KEY
      }
    }
    const t = this.#targetCount++
    if ((t + 1) * TARGET_STRIDE > this.#targets.length) {
      const grown = new Float64Array(this.#targets.length * 2)
      grown.set(this.#targets)
      this.#targets = grown
    }
    const at = t * TARGET_STRIDE
    this.#targets[at + T_MAP] = this.#lastId
    this.#targets[at + T_KEY] = k
    this.#targets[at + T_FLAGS] = flags
    this.#chosen = t
    if (typeof key === 'number' && key >= 0 && key < SMALL_KEYS && (key | 0) === key) cache.small[key] = t
    else if (typeof key === 'number' || typeof key === 'string') cache.keys.set(key, t)
  }

  /** Takes and answers every batch waiting; `report` gets one error per batch that had failing calls. */
  run(binding: BindingEngine, report: (err: SockmapError) => void): void {
    for (;;) {
      const n = callBinding(() => binding.takeBatch(this.#payload, this.#descs, this.meta))
      if (n === 0) return
      if (n < 0) {
        this.#grow(-n)
        continue
      }
      // The answer says how many batches still wait: none, and the round is over without asking again.
      if (this.#answer(n, binding, report) === 0) return
    }
  }

  #grow(payloadBytes: number): void {
    if (payloadBytes > this.#payload.length) {
      this.#payload = Buffer.allocUnsafeSlow(Math.max(payloadBytes, this.#payload.length * 2))
      this.#views = [] // views of the old payload
    }
    // The binding also says "grow" when the descriptors are short: make room for twice as many items.
    const items = (this.#descs.length / STRIDE) * 2
    this.#descs = new Float64Array(STRIDE * items)
    this.meta = new Int32Array(M_STRIDE * items)
    this.#answers = new Int32Array(items)
  }

  /** Makes room for `more` numbers at `at` in the extras array. */
  #reserve(at: number, more: number): Float64Array {
    if (at + more > this.#extras.length) {
      const grown = new Float64Array(Math.max(this.#extras.length * 2, at + more + 1024))
      grown.set(this.#extras.subarray(0, at))
      this.#extras = grown
    }
    return this.#extras
  }

  /** Runs a verdict; returns its answer code (`AnswerCode.Redirect + target` for a redirect). Throws what the verdict threw. */
  #verdictCode(v: unknown): number {
    if (v === Verdict.PASS) return A_PASS
    if (v === Verdict.DROP) return A_DROP
    if (v === Verdict.REDIRECT && this.#special >= 0) return this.#special
    if (v === Verdict.REDIRECT && this.#chosen >= 0) return A_REDIRECT + this.#chosen
    throw new TypeError(`the verdict returned ${describe(v)}, not a Verdict`)
  }

  /** Runs the callbacks of the batch just taken and answers it; returns the batches still waiting. */
  #answer(n: number, binding: BindingEngine, report: (err: SockmapError) => void): number {
    const descs = this.#descs
    const answers = this.#answers
    const payload = this.#payload
    const view = this.#view
    const callbacks = this.#callbacks
    const counters = this.counters
    let failures = 0
    let firstCause: unknown
    let e = 0
    this.#targetCount = 0
    this.#routeCount = 0
    this.#keys = []
    this.#replies = []
    for (const c of this.#targetCache.values()) c.clear()
    const views = this.#views
    for (let i = 0, d = 0; i < n; i++, d += STRIDE) {
      const cb = callbacks[descs[d + D_TAG] as number]
      const kind = descs[d + D_KIND] as number
      const offset = descs[d + D_OFFSET] as number
      const copied = descs[d + D_COPIED] as number
      if (kind === KIND_VERDICT) {
        counters.messages++
        if (cb === undefined || cb.type !== 'verdict') {
          answers[i] = A_DROP
          continue
        }
        view.socket = descs[d + D_SOCK] as number
        let data = views[i]
        if (data === undefined || data.byteOffset !== offset || data.length !== copied) {
          data = views[i] = payload.subarray(offset, offset + copied)
        }
        view.data = data
        view.index = i
        view.length = descs[d + D_LEN] as number
        const m = i * M_STRIDE
        if (this.meta[m + M_KIND] === META_TLS && (this.meta[m + M_A] as number) >= 0) {
          // A passed-through ClientHello (once per connection): its name holds for every later record.
          const start = this.meta[m + M_A] as number
          const name = data.toString('latin1', start, start + (this.meta[m + M_A + 1] as number))
          this.#host.rememberSni(view.socket, name.toLowerCase())
        }
        this.#chosen = -1
        this.#special = -1
        try {
          answers[i] = this.#verdictCode(cb.fn(view))
        } catch (err) {
          failures++
          firstCause ??= err
          answers[i] = answerOf(cb.onError)
        }
      } else if (kind === KIND_PARSE) {
        counters.parseRequests++
        answers[i] = A_DROP
        const fn = cb?.type === 'parser' ? cb.fn : undefined
        let extras = this.#reserve(e, 3)
        extras[e++] = i
        const countAt = e++
        let count = 0
        let off = 0
        for (;;) {
          let r: number
          if (fn === undefined) {
            r = -PARSE_FAILED_ERRNO
          } else {
            counters.parserCalls++
            try {
              const v: unknown = fn(payload.subarray(offset + off, offset + copied))
              if (typeof v !== 'number' || !Number.isInteger(v)) {
                throw new TypeError(`the parser returned ${describe(v)}, not an integer`)
              }
              r = v
            } catch (err) {
              failures++
              firstCause ??= err
              r = -PARSE_FAILED_ERRNO
            }
          }
          extras = this.#reserve(e, 2)
          extras[e++] = r
          count++
          if (r <= 0) break // need more, hand back or error: nothing after it counts
          off += r
          if (off >= copied) break
        }
        extras[countAt] = count
      } else if (kind === KIND_MSG) {
        counters.messages++
        const sv = this.#sendView
        sv.reset(descs[d + D_SOCK] as number, descs[d + D_LEN] as number, payload.subarray(offset, offset + copied))
        sv.index = i // a msg item has no metadata
        this.#chosen = -1
        this.#special = -1
        let code: number
        if (cb === undefined || cb.type !== 'msgVerdict') {
          code = A_DROP
        } else {
          try {
            code = this.#verdictCode(cb.fn(sv))
          } catch (err) {
            failures++
            firstCause ??= err
            code = answerOf(cb.onError)
            sv.edits.length = 0
          }
        }
        answers[i] = code
        const edits = sv.edits
        const extras = this.#reserve(e, edits.length + 2)
        extras[e++] = i
        extras[e++] = edits.length / EDIT_STRIDE
        for (let j = 0; j < edits.length; j++) extras[e++] = edits[j] as number
      } else {
        answers[i] = A_DROP
      }
    }
    counters.batches++
    view.data = payload.subarray(0, 0)
    this.#sendView.reset(0, 0, view.data)
    // Map changes the callbacks made go first: an answer may name an entry one of them set.
    this.#host.releaseChanges()
    const waiting = callBinding(() =>
      binding.answerBatch(
        answers.subarray(0, n),
        this.#targets.subarray(0, this.#targetCount * TARGET_STRIDE),
        this.#keys,
        this.#extras.subarray(0, e),
        this.#replies,
        this.#routes.subarray(0, this.#routeCount * TARGET_STRIDE),
      ),
    )
    if (failures > 0) {
      counters.errors += failures
      const detail = firstCause instanceof Error ? firstCause.message : String(firstCause)
      report(
        new SockmapError('ERR_CALLBACK', `ERR_CALLBACK: ${failures} callback call(s) of a batch failed: ${detail}`, {
          cause: firstCause,
        }),
      )
    }
    return waiting
  }
}

function describe(v: unknown): string {
  if (v === Verdict.REDIRECT) return 'Verdict.REDIRECT without calling msg.redirect()'
  if (v === Parse.HANDBACK) return 'Parse.HANDBACK'
  if (typeof v === 'string') return `the string '${v}'`
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v)
}
