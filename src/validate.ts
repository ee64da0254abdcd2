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

/** Checks that `value` is a plain object (or undefined, when `optional`). */
export function assertObject(name: string, value: unknown): asserts value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`${name} must be an object, got ${value === null ? 'null' : typeof value}`)
  }
}

/** Checks that `value` is a function. */
export function assertFunction(name: string, value: unknown): asserts value is (...args: never[]) => unknown {
  if (typeof value !== 'function') throw new TypeError(`${name} must be a function, got ${typeof value}`)
}

/** Checks that `value` is a non-empty string. */
/**
 * Checks a Unix socket name: a path of 1 to 107 bytes without NUL, or an abstract name (a leading NUL, then 1 to 107
 * bytes of any value).
 */
export function assertUnixName(name: string, path: unknown): asserts path is string {
  assertString(name, path)
  const abstract = path.startsWith('\0')
  const bytes = Buffer.byteLength(path) - (abstract ? 1 : 0)
  if (bytes === 0 || bytes > 107) throw new RangeError(`${name} must be 1 to 107 bytes, got ${bytes}`)
  if (!abstract && path.includes('\0')) throw new TypeError(`${name} must not contain NUL but as its first character`)
}

export function assertString(name: string, value: unknown): asserts value is string {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${typeof value}`)
  if (value.length === 0) throw new RangeError(`${name} must not be empty`)
}

/** Checks that `value` is one of `choices`. */
export function assertOneOf<T extends string>(name: string, value: unknown, choices: readonly T[]): asserts value is T {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a string, got ${typeof value}`)
  if (!(choices as readonly string[]).includes(value)) {
    throw new RangeError(`${name} must be one of ${choices.map((c) => `'${c}'`).join(', ')}, got '${value}'`)
  }
}

/** Checks that `value` is a boolean. */
export function assertBoolean(name: string, value: unknown): asserts value is boolean {
  if (typeof value !== 'boolean') throw new TypeError(`${name} must be a boolean, got ${typeof value}`)
}
