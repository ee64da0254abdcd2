/**
 * Addresses as the gateways take them: `'host:port'`, `'[v6]:port'`, `':port'` or `'port'` (loopback), or
 * `{ host, port }` objects.
 *
 * Invariant: every address leaves here with a host string and a port in 0..65535, or the caller gets a `TypeError` /
 * `RangeError` naming the argument.
 *
 * @module
 */

/** A TCP address. */
export interface HostPort {
  /** IPv4, IPv6 or a name. */
  host: string
  /** The port. */
  port: number
}

/** The host that `':port'` and `'port'` mean. */
export const LOOPBACK = '127.0.0.1'

/**
 * Parses `'host:port'`, `'[::1]:port'`, `':port'` or `'port'`.
 * @throws {TypeError} when `value` is not a string; {RangeError} when it is not an address.
 */
export function parseHostPort(name: string, value: unknown, minPort = 0): HostPort {
  if (typeof value !== 'string') throw new TypeError(`${name} must be a 'host:port' string, got ${typeof value}`)
  let host = LOOPBACK
  let portText = value
  const v6 = /^\[([^\]]+)\]:(\d+)$/.exec(value)
  if (v6) {
    host = v6[1] as string
    portText = v6[2] as string
  } else {
    const colon = value.lastIndexOf(':')
    if (colon >= 0) {
      if (value.indexOf(':') !== colon)
        throw new RangeError(`${name}: write an IPv6 address as [addr]:port, got '${value}'`)
      host = colon === 0 ? LOOPBACK : value.slice(0, colon)
      portText = value.slice(colon + 1)
    }
  }
  if (!/^\d{1,5}$/.test(portText)) throw new RangeError(`${name} must be 'host:port', got '${value}'`)
  const port = Number(portText)
  if (port < minPort || port > 65535) throw new RangeError(`${name}: port must be ${minPort} to 65535, got ${port}`)
  if (host.length === 0) throw new RangeError(`${name}: empty host in '${value}'`)
  return { host, port }
}

/** `host:port` as text (IPv6 in brackets). */
export function formatHostPort(a: HostPort): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
