import { errorCodes } from './binding.cjs'

/**
 * Error codes the engine reports. Where the Linux kernel's sockmap, sk_msg or strparser code has an errno for the same
 * situation, the code is that errno's name; an error the operating system returns keeps its errno's name (every errno
 * Linux defines is here, the engine's own codes first).
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
  | 'EPERM'
  | 'ENOSYS'
  | 'EMFILE'
  | 'ENFILE'
  | 'ENOBUFS'
  | 'EADDRINUSE'
  | 'EADDRNOTAVAIL'
  | 'ENETUNREACH'
  | 'EHOSTUNREACH'
  | 'ENETDOWN'
  | 'ECONNABORTED'
  | 'EAFNOSUPPORT'
  | 'ESRCH'
  | 'EINTR'
  | 'ENXIO'
  | 'ENOEXEC'
  | 'ECHILD'
  | 'EFAULT'
  | 'ENOTBLK'
  | 'EXDEV'
  | 'ENODEV'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'ENOTTY'
  | 'ETXTBSY'
  | 'EFBIG'
  | 'ESPIPE'
  | 'EROFS'
  | 'EMLINK'
  | 'EDOM'
  | 'ERANGE'
  | 'EDEADLK'
  | 'ENAMETOOLONG'
  | 'ENOLCK'
  | 'ENOTEMPTY'
  | 'ELOOP'
  | 'ENOMSG'
  | 'EIDRM'
  | 'ECHRNG'
  | 'EL2NSYNC'
  | 'EL3HLT'
  | 'EL3RST'
  | 'ELNRNG'
  | 'EUNATCH'
  | 'ENOCSI'
  | 'EL2HLT'
  | 'EBADE'
  | 'EBADR'
  | 'EXFULL'
  | 'ENOANO'
  | 'EBADRQC'
  | 'EBADSLT'
  | 'EBFONT'
  | 'ENOSTR'
  | 'ETIME'
  | 'ENOSR'
  | 'ENONET'
  | 'ENOPKG'
  | 'EREMOTE'
  | 'ENOLINK'
  | 'EADV'
  | 'ESRMNT'
  | 'ECOMM'
  | 'EMULTIHOP'
  | 'EDOTDOT'
  | 'EBADMSG'
  | 'EOVERFLOW'
  | 'ENOTUNIQ'
  | 'EBADFD'
  | 'EREMCHG'
  | 'ELIBACC'
  | 'ELIBBAD'
  | 'ELIBSCN'
  | 'ELIBMAX'
  | 'ELIBEXEC'
  | 'EILSEQ'
  | 'ERESTART'
  | 'EUSERS'
  | 'ENOTSOCK'
  | 'EDESTADDRREQ'
  | 'EPROTOTYPE'
  | 'ENOPROTOOPT'
  | 'EPROTONOSUPPORT'
  | 'ESOCKTNOSUPPORT'
  | 'EPFNOSUPPORT'
  | 'ENETRESET'
  | 'EISCONN'
  | 'ESHUTDOWN'
  | 'ETOOMANYREFS'
  | 'EHOSTDOWN'
  | 'EALREADY'
  | 'EINPROGRESS'
  | 'ESTALE'
  | 'EUCLEAN'
  | 'ENOTNAM'
  | 'ENAVAIL'
  | 'EISNAM'
  | 'EREMOTEIO'
  | 'EDQUOT'
  | 'ENOMEDIUM'
  | 'EMEDIUMTYPE'
  | 'ECANCELED'
  | 'ENOKEY'
  | 'EKEYEXPIRED'
  | 'EKEYREVOKED'
  | 'EKEYREJECTED'
  | 'EOWNERDEAD'
  | 'ENOTRECOVERABLE'
  | 'ERFKILL'
  | 'EHWPOISON'
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

/** The codes a binding error can carry in its `code` property. */
const bindingCodes: ReadonlySet<string> = new Set(errorCodes())

/**
 * Turns an error thrown by the native binding (its code in `err.code`) into a {@link SockmapError}; anything else is
 * returned unchanged.
 * @internal
 */
export function fromBinding(err: unknown): unknown {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code
    if (typeof code === 'string' && bindingCodes.has(code)) {
      return new SockmapError(code as SockmapErrorCode, `${code}: ${err.message}`)
    }
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
