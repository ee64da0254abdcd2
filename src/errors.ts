/**
 * Error codes the engine reports. Where the Linux kernel's sockmap, sk_msg or strparser code has an errno for the same
 * situation, the code is that errno's name.
 */
export type SockmapErrorCode =
  | 'EINVAL'
  | 'ENOSPC'
  | 'E2BIG'
  | 'EEXIST'
  | 'ENOENT'
  | 'EBUSY'
  | 'EOPNOTSUPP'
  | 'EMSGSIZE'
  | 'EPROTO'
  | 'ETIMEDOUT'
  | 'EPIPE'
  | 'EACCES'
  | 'ECONNRESET'
  | 'ECONNREFUSED'
  | 'ENODATA'
  | 'ESTRPIPE'
  | 'ENOMEM'
  | 'EBADF'
  | 'EIO'
  | 'EAGAIN'
  | 'ENOTCONN'
  | 'ERR_ENGINE_PANIC'
  | 'ERR_CALLBACK'

const kSockmapError = Symbol.for('sockmap.error')

/** Every error the engine reports: a plain `Error` with a stable {@link SockmapErrorCode} in `code`. */
export class SockmapError extends Error {
  /** The error code, e.g. `'EINVAL'`. */
  readonly code: SockmapErrorCode

  constructor(code: SockmapErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'SockmapError'
    this.code = code
    Object.defineProperty(this, kSockmapError, { value: true })
  }

  /** `instanceof` works across duplicate installs of the package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[kSockmapError] === true
  }
}

const bindingCode = /^\[([A-Z0-9_]+)\] ([\s\S]*)$/

/**
 * Turns an error thrown by the native binding (`"[CODE] message"`) into a {@link SockmapError}; anything else is
 * returned unchanged.
 * @internal
 */
export function fromBinding(err: unknown): unknown {
  if (err instanceof Error) {
    const m = bindingCode.exec(err.message)
    if (m) return new SockmapError(m[1] as SockmapErrorCode, `${m[1]}: ${m[2]}`)
  }
  return err
}

/**
 * Runs a binding call and rethrows its error as a {@link SockmapError}.
 * @internal
 */
export function callBinding<T>(fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    throw fromBinding(err)
  }
}
