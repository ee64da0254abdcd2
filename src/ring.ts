import { BindingRing } from './binding.cjs'
import { callBinding } from './errors'
import { assertBytes, assertIntInRange, assertLength } from './validate'

/** Options of {@link SgRing}. */
export interface SgRingOptions {
  /** Most fragments the ring holds. Default: `256` (the kernel's `sk_msg` holds 17). */
  maxFrags?: number
}

/**
 * The engine's scatter-gather ring (the kernel's `struct sk_msg`): one message's data as an ordered list of
 * fragments. The engine uses it for every socket's send queue and for the messages a `msgVerdict` edits; this class
 * exposes the same ring to JavaScript so that its helpers can be tried and tested directly.
 *
 * Bytes appended are copied once into the ring; every other operation moves no payload except {@link SgRing.pull}
 * across fragments and {@link SgRing.push} into a full ring, exactly as in the kernel.
 *
 * @example
 * ```ts
 * const ring = new SgRing()
 * ring.append(Buffer.from('hello '))
 * ring.append(Buffer.from('world'))
 * ring.pop(0, 6)
 * ring.toBuffer().toString() // 'world'
 * ```
 */
export class SgRing {
  readonly #inner: BindingRing

  constructor(options: SgRingOptions = {}) {
    const maxFrags = options.maxFrags ?? 256
    assertIntInRange('options.maxFrags', maxFrags, 1, 1 << 20)
    this.#inner = new BindingRing(maxFrags)
  }

  /** Total bytes held. */
  get length(): number {
    return this.#inner.length
  }

  /** Number of fragments held. */
  get fragCount(): number {
    return this.#inner.fragCount
  }

  /** Most fragments the ring holds. */
  get maxFrags(): number {
    return this.#inner.maxFrags
  }

  /** Lengths of the fragments, in order. */
  fragmentLengths(): number[] {
    return this.#inner.fragmentLengths()
  }

  /**
   * Appends `data` as one fragment. Returns `false`, and holds nothing of `data`, when the ring is full: a full ring
   * is backpressure, never a silent drop. An empty `data` uses no fragment.
   */
  append(data: Uint8Array): boolean {
    assertBytes('data', data)
    return this.#inner.append(data)
  }

  /**
   * Drops `n` bytes from the head (as after a partial write of `n` bytes); returns how many were dropped (`n`, or
   * {@link SgRing.length} if that is less). The name is that of `bytes::Buf::advance`, which the engine's ring
   * implements.
   */
  advance(n: number): number {
    assertLength('n', n)
    return this.#inner.advance(n)
  }

  /**
   * The former name of {@link SgRing.advance}, which it calls.
   * @deprecated Use {@link SgRing.advance}.
   */
  consume(n: number): number {
    return this.advance(n)
  }

  /** Keeps only the first `len` bytes. */
  trim(len: number): void {
    assertLength('len', len)
    this.#inner.trim(len)
  }

  /**
   * Makes bytes `[start, end)` contiguous (copying only when they span fragments) and returns a copy of them.
   * @throws {SockmapError} `EINVAL` when `end <= start` or `start` is past the data.
   */
  pull(start: number, end: number): Buffer {
    assertLength('start', start)
    assertLength('end', end)
    return callBinding(() => this.#inner.pull(start, end))
  }

  /**
   * Inserts `len` zero bytes at `start` (the kernel's `bpf_msg_push_data`).
   * @throws {SockmapError} `EINVAL` when `start` is past the data.
   */
  push(start: number, len: number): void {
    assertLength('start', start)
    assertLength('len', len)
    callBinding(() => this.#inner.push(start, len))
  }

  /**
   * Removes `len` bytes at `start` (the kernel's `bpf_msg_pop_data`).
   * @throws {SockmapError} `EINVAL` when the range is not inside the data.
   */
  pop(start: number, len: number): void {
    assertLength('start', start)
    assertLength('len', len)
    callBinding(() => this.#inner.pop(start, len))
  }

  /** Copies every byte held into one Buffer. */
  toBuffer(): Buffer {
    return this.#inner.toBuffer()
  }
}
