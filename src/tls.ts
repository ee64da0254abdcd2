/**
 * TLS options of `listen()` and `connect()`, and what a finished handshake negotiated. The engine terminates and
 * originates TLS itself (rustls, on its I/O threads): parsers, verdicts and the application only ever see plaintext.
 * @module
 */
import { clientHelloSni as nativeSni, type JsTlsInfo, type TlsClientSpec, type TlsServerSpec } from './binding.cjs'
import { assertBoolean, assertBytes, assertIntInRange, assertObject, assertString } from './validate'

/** PEM text or its bytes. */
export type Pem = string | Uint8Array

/** A certificate chain (leaf first) and its private key, in PEM. */
export interface TlsCertificate {
  /** The certificate chain. */
  cert: Pem
  /** The private key (PKCS#8, PKCS#1 or SEC1). */
  key: Pem
}

/** `listen({ tls })`: terminate TLS on every accepted connection. */
export interface TlsServerOptions extends TlsCertificate {
  /** ALPN protocols offered, in preference order (`['h2', 'http/1.1']`). */
  alpn?: string[]
  /** Certificates by server name (exact, case-insensitive, or `'*.example.com'`); others get `cert`. */
  sni?: Record<string, TlsCertificate>
  /** CA certificates: clients must present a certificate that chains to one of them. */
  ca?: Pem
  /** A handshake not finished by then closes the connection (`ETIMEDOUT`). Default: `10000`. */
  handshakeTimeoutMs?: number
}

/** `connect({ tls })`: originate TLS. */
export interface TlsConnectOptions {
  /** The name sent as SNI and verified against the certificate (a DNS name or an IP address). */
  servername: string
  /** CA certificates to trust; absent, the Mozilla root store. */
  ca?: Pem
  /** ALPN protocols offered, in preference order. */
  alpn?: string[]
  /** Accepts any certificate: no authentication at all (tests only). Default: `false`. */
  insecure?: boolean
  /** A client certificate chain, presented when the server asks (with `key`). */
  cert?: Pem
  /** The client certificate's key. */
  key?: Pem
  /** A handshake not finished by then fails the connect (`ETIMEDOUT`). Default: `10000`. */
  handshakeTimeoutMs?: number
}

/** What a TLS socket's handshake negotiated (`socket.tls`). */
export interface TlsInfo {
  /** `'TLSv1.3'` or `'TLSv1.2'`. */
  version: string
  /** The ALPN protocol agreed. */
  alpn?: string
  /** The server name the client asked for (on accepted sockets). */
  sni?: string
  /** Whether the session was resumed. */
  resumed: boolean
  /** The cipher suite (IANA name). */
  cipher: string
}

/** The engine's TLS counters (`engine.stats().tls`). */
export interface TlsStats {
  /** Handshakes finished, both sides. */
  handshakes: number
  /** Of those, resumed sessions. */
  resumed: number
  /** Failed handshakes and connections by reason. */
  failures: { certificate: number; alert: number; protocol: number; timeout: number; closed: number }
}

function pem(name: string, v: unknown): Buffer {
  if (typeof v === 'string') return Buffer.from(v)
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  throw new TypeError(`${name} must be a PEM string or Buffer`)
}

function alpn(name: string, v: unknown): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v)) throw new TypeError(`${name} must be an array of strings`)
  v.forEach((p, i) => {
    assertString(`${name}[${i}]`, p)
    if (p.length === 0 || Buffer.byteLength(p) > 255) throw new RangeError(`${name}[${i}] must be 1 to 255 bytes`)
  })
  return v as string[]
}

function timeout(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined
  assertIntInRange(name, v, 1, 2 ** 31)
  return v
}

/** Checks `listen({ tls })` and converts it for the binding. @internal */
export function serverSpec(name: string, v: unknown): TlsServerSpec {
  assertObject(name, v)
  const o = v as unknown as TlsServerOptions
  const spec: TlsServerSpec = { cert: pem(`${name}.cert`, o.cert), key: pem(`${name}.key`, o.key) }
  const a = alpn(`${name}.alpn`, o.alpn)
  if (a) spec.alpn = a
  if (o.sni !== undefined) {
    assertObject(`${name}.sni`, o.sni)
    spec.sni = Object.entries(o.sni).map(([host, c]) => {
      assertObject(`${name}.sni[${host}]`, c)
      return { host, cert: pem(`${name}.sni[${host}].cert`, c.cert), key: pem(`${name}.sni[${host}].key`, c.key) }
    })
  }
  if (o.ca !== undefined) spec.ca = pem(`${name}.ca`, o.ca)
  const t = timeout(`${name}.handshakeTimeoutMs`, o.handshakeTimeoutMs)
  if (t !== undefined) spec.handshakeTimeoutMs = t
  return spec
}

/** Checks `connect({ tls })` and converts it for the binding. @internal */
export function clientSpec(name: string, v: unknown): TlsClientSpec {
  assertObject(name, v)
  const o = v as unknown as TlsConnectOptions
  assertString(`${name}.servername`, o.servername)
  const spec: TlsClientSpec = { servername: o.servername }
  if (o.ca !== undefined) spec.ca = pem(`${name}.ca`, o.ca)
  const a = alpn(`${name}.alpn`, o.alpn)
  if (a) spec.alpn = a
  if (o.insecure !== undefined) {
    assertBoolean(`${name}.insecure`, o.insecure)
    spec.insecure = o.insecure
  }
  if ((o.cert === undefined) !== (o.key === undefined)) {
    throw new TypeError(`${name}.cert and ${name}.key must be given together`)
  }
  if (o.cert !== undefined) spec.cert = pem(`${name}.cert`, o.cert)
  if (o.key !== undefined) spec.key = pem(`${name}.key`, o.key)
  const t = timeout(`${name}.handshakeTimeoutMs`, o.handshakeTimeoutMs)
  if (t !== undefined) spec.handshakeTimeoutMs = t
  return spec
}

/** The negotiated parameters of a TLS event. @internal */
export function tlsInfo(t: JsTlsInfo): TlsInfo {
  const info: TlsInfo = { version: t.version ?? '', resumed: t.resumed, cipher: t.cipher ?? '' }
  if (t.alpn != null) info.alpn = t.alpn
  if (t.sni != null) info.sni = t.sni
  // Shared by the socket and `msg.tls`; `socket.tls` hands out copies.
  return Object.freeze(info)
}

/**
 * The server name a TLS client asks for, read from the ClientHello at the start of `data` without terminating TLS
 * (HAProxy's `req.ssl_sni`): for routing TLS connections by name and passing them through untouched. `undefined`
 * when the ClientHello sends none, `data` is not one, or it is incomplete (the first record must be whole).
 * @throws {TypeError} when `data` is not a Buffer or Uint8Array.
 */
export function clientHelloSni(data: Uint8Array): string | undefined {
  assertBytes('data', data)
  return nativeSni(data) ?? undefined
}
