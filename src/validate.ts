/**
 * Argument checks shared by the public API: they throw `TypeError` / `RangeError` with a message naming the argument.
 * @internal
 */

/** Checks that `value` is a non-negative safe integer. */
export function assertLength(name: string, value: unknown): asserts value is number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`)
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`)
  }
}

/** Checks that `value` is an integer in `[min, max]`. */
export function assertIntInRange(name: string, value: unknown, min: number, max: number): asserts value is number {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number, got ${typeof value}`)
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`${name} must be an integer from ${min} to ${max}, got ${value}`)
  }
}

/** Checks that `value` is a Buffer or Uint8Array. */
export function assertBytes(name: string, value: unknown): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${name} must be a Buffer or Uint8Array, got ${value === null ? 'null' : typeof value}`)
  }
}
