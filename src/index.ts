/**
 * sockmap: a user-space sockmap for Node.js.
 *
 * @packageDocumentation
 */
import { engineVersion } from './binding.cjs'

export { SgRing, type SgRingOptions } from './ring'
export { SockmapError, type SockmapErrorCode } from './errors'

/** Version of the native engine loaded. */
export const nativeVersion: string = engineVersion()
