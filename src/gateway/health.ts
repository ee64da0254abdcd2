/**
 * Active health checks: one protocol exchange with an upstream server on a connection of its own (Node `net`, never
 * an engine socket), bounded by a timeout.
 *
 * Invariant: a check settles exactly once, within `timeoutMs`, and always destroys its connection.
 *
 * @module
 */
import net from 'node:net'

/** The exchange a check makes. */
export type CheckProtocol = 'resp' | 'http1' | 'tcp'

/** What a check needs. */
export interface CheckOptions {
  host: string
  port: number
  protocol: CheckProtocol
  /** Give up after this many milliseconds. */
  timeoutMs: number
  /** HTTP: the path asked for with `GET`. */
  path?: string
  /** RESP: sent with `AUTH` before `PING`. */
  password?: string
}

/** The bytes a check sends. */
function request(o: CheckOptions): Buffer | undefined {
  if (o.protocol === 'resp') {
    const cmds = o.password === undefined ? [['PING']] : [['AUTH', o.password], ['PING']]
    return Buffer.concat(cmds.map(respCommand))
  }
  if (o.protocol === 'http1') {
    return Buffer.from(`GET ${o.path ?? '/'} HTTP/1.1\r\nHost: ${o.host}\r\nConnection: close\r\n\r\n`, 'latin1')
  }
  return undefined
}

/** A RESP array of bulk strings. */
export function respCommand(args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)]
  for (const a of args) {
    const b = typeof a === 'string' ? Buffer.from(a) : a
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'))
  }
  return Buffer.concat(parts)
}

/** Whether `got` is a complete healthy answer (`undefined`: not yet complete); throws for an unhealthy one. */
function verdictOf(o: CheckOptions, got: string): boolean | undefined {
  if (o.protocol === 'resp') {
    const lines = got.split('\r\n')
    const need = o.password === undefined ? 1 : 2
    if (lines.length <= need) return undefined
    for (const l of lines.slice(0, need)) if (l.startsWith('-')) throw new Error(`replied ${l}`)
    if (lines[need - 1] !== '+PONG') throw new Error(`replied ${JSON.stringify(lines[need - 1])} to PING`)
    return true
  }
  const eol = got.indexOf('\r\n')
  if (eol < 0) return undefined
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(got.slice(0, eol))
  if (!m) throw new Error(`answered ${JSON.stringify(got.slice(0, eol))}`)
  const status = Number(m[1])
  if (status >= 200 && status < 400) return true
  throw new Error(`answered status ${status}`)
}

/** Runs one check; resolves when the server answered healthily, rejects with the reason otherwise. */
export function check(o: CheckOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = ''
    let settled = false
    const sock = net.connect({ host: o.host, port: o.port })
    const done = (err?: Error): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err)
      else resolve()
    }
    const timer = setTimeout(() => done(new Error(`no answer within ${o.timeoutMs} ms`)), o.timeoutMs)
    sock.setNoDelay(true)
    sock.on('error', (e) => done(e))
    sock.on('close', () => done(new Error('closed before answering')))
    sock.on('connect', () => {
      const req = request(o)
      if (req === undefined) done()
      else sock.write(req)
    })
    sock.on('data', (d: Buffer) => {
      got += d.toString('latin1')
      try {
        if (verdictOf(o, got)) done()
      } catch (e) {
        done(e as Error)
      }
    })
  })
}
