import type { BindingEngine } from './binding.cjs'
import { SockmapError } from './errors'
import { hashKey, mapRef, SockMap, type MapHost, type SockHash } from './map'
import { Verdict, type MapKey, type RedirectOptions, type StreamMessage, type VerdictFunction } from './verdict'

/** Numbers per message in the descriptor array (see `binding_batch.rs`): socket, tag, offset, copied, length. */
const STRIDE = 5
/** Numbers per redirect target: map, key (or index into the key Buffers), flags. */
const TARGET_STRIDE = 3
const TARGET_INGRESS = 1
const TARGET_BYTES_KEY = 2

/** One TypeScript callback registered with the engine. */
interface Callback {
  fn: VerdictFunction
  onError: Verdict
}

/** Counters of the batch runner. */
export interface BatchCounters {
  batches: number
  messages: number
  errors: number
}

/**
 * The reused message view handed to every verdict call of every batch. `data` is re-pointed at each message's bytes
 * inside the payload buffer; nothing is allocated per message beyond that view.
 */
class MessageView implements StreamMessage {
  socket = 0
  length = 0
  data: Buffer = Buffer.alloc(0)
  readonly #runner: BatchRunner

  constructor(runner: BatchRunner) {
    this.#runner = runner
  }

  redirect(target: SockMap | SockHash, key: MapKey, opts?: RedirectOptions): Verdict {
    this.#runner.chooseTarget(target, key, opts?.ingress === true)
    return Verdict.REDIRECT
  }
}

/**
 * Runs TypeScript verdicts over the batches the engine hands off: one crossing per batch, buffers allocated once
 * and grown when needed, one reused message view, answers written into a reused `Int32Array`.
 * @internal
 */
export class BatchRunner {
  readonly counters: BatchCounters = { batches: 0, messages: 0, errors: 0 }
  readonly #host: MapHost
  readonly #callbacks: Callback[] = []
  readonly #view = new MessageView(this)
  #payload: Buffer = Buffer.allocUnsafeSlow(64 << 10)
  #descs = new Float64Array(STRIDE * 1024)
  #answers = new Int32Array(1024)
  /** Redirect targets chosen in the current batch, 3 numbers each; Buffer keys live in `#keys`. */
  #targets = new Float64Array(TARGET_STRIDE * 64)
  #targetCount = 0
  #keys: Buffer[] = []
  /** Target index by (map, ingress) and then by key, for number and string keys. */
  #targetCache = new Map<number, Map<number | string, number>>()
  #chosen = -1

  constructor(host: MapHost) {
    this.#host = host
  }

  /** Whether any TypeScript callback is registered (else batches never come). */
  get active(): boolean {
    return this.#callbacks.length > 0
  }

  /** Registers a verdict; returns its tag. */
  register(fn: VerdictFunction, onError: Verdict): number {
    this.#callbacks.push({ fn, onError })
    return this.#callbacks.length - 1
  }

  /** Called by {@link MessageView.redirect}: records the target for the message being judged. */
  chooseTarget(target: SockMap | SockHash, key: MapKey, ingress: boolean): void {
    const ref = mapRef(target)
    if (ref.host !== this.#host) throw new TypeError('redirect target belongs to another engine')
    const slot = ref.id * 2 + (ingress ? 1 : 0)
    let cache: Map<number | string, number> | undefined
    if (typeof key === 'number' || typeof key === 'string') {
      cache = this.#targetCache.get(slot)
      if (cache === undefined) this.#targetCache.set(slot, (cache = new Map()))
      const hit = cache.get(key)
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
    this.#targets[at] = ref.id
    this.#targets[at + 1] = k
    this.#targets[at + 2] = flags
    this.#chosen = t
    cache?.set(key as number | string, t)
  }

  /** Takes and answers every batch waiting; `report` gets one error per batch that had failing calls. */
  run(binding: BindingEngine, report: (err: SockmapError) => void): void {
    for (;;) {
      const n = binding.takeBatch(this.#payload, this.#descs)
      if (n === 0) return
      if (n < 0) {
        this.#grow(-n)
        continue
      }
      this.#judge(n, binding, report)
    }
  }

  #grow(payloadBytes: number): void {
    if (payloadBytes > this.#payload.length) {
      this.#payload = Buffer.allocUnsafeSlow(Math.max(payloadBytes, this.#payload.length * 2))
    }
    // The binding also says "grow" when the descriptors are short: make room for twice as many messages.
    const messages = (this.#descs.length / STRIDE) * 2
    this.#descs = new Float64Array(STRIDE * messages)
    this.#answers = new Int32Array(messages)
  }

  #judge(n: number, binding: BindingEngine, report: (err: SockmapError) => void): void {
    const descs = this.#descs
    const answers = this.#answers
    const payload = this.#payload
    const view = this.#view
    const callbacks = this.#callbacks
    let failures = 0
    let firstCause: unknown
    this.#targetCount = 0
    this.#keys = []
    for (const c of this.#targetCache.values()) c.clear()
    for (let i = 0, d = 0; i < n; i++, d += STRIDE) {
      const cb = callbacks[descs[d + 1] as number]
      if (cb === undefined) {
        answers[i] = Verdict.DROP
        continue
      }
      const offset = descs[d + 2] as number
      view.socket = descs[d] as number
      view.data = payload.subarray(offset, offset + (descs[d + 3] as number))
      view.length = descs[d + 4] as number
      this.#chosen = -1
      let answer: number
      try {
        const v: unknown = cb.fn(view)
        if (v === Verdict.PASS || v === Verdict.DROP) answer = v
        else if (v === Verdict.REDIRECT && this.#chosen >= 0) answer = 2 + this.#chosen
        else throw new TypeError(`the verdict returned ${describe(v)}, not a Verdict`)
      } catch (err) {
        failures++
        firstCause ??= err
        answer = cb.onError
      }
      answers[i] = answer
    }
    this.counters.batches++
    this.counters.messages += n
    view.data = payload.subarray(0, 0)
    binding.answerBatch(
      answers.subarray(0, n),
      this.#targets.subarray(0, this.#targetCount * TARGET_STRIDE),
      this.#keys,
    )
    if (failures > 0) {
      this.counters.errors += failures
      const detail = firstCause instanceof Error ? firstCause.message : String(firstCause)
      report(
        new SockmapError('ERR_CALLBACK', `ERR_CALLBACK: ${failures} verdict call(s) of a batch failed: ${detail}`, {
          cause: firstCause,
        }),
      )
    }
  }
}

function describe(v: unknown): string {
  if (v === Verdict.REDIRECT) return 'Verdict.REDIRECT without calling msg.redirect()'
  if (typeof v === 'string') return `the string '${v}'`
  return v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v)
}
