// Partners declared with engine.pair() / socket.pair(), whatever the verdict: half-closes both ways through a
// TypeScript-verdict proxy with exact bytes before each FIN, on one I/O thread and across two; a reset of one side
// destroys the other; both leave their maps on close; a pair across two maps; the errors of pair().
import { once } from 'node:events'
import net from 'node:net'

import { describe, expect, it } from 'vitest'

import { SockmapError, rules, type Engine, type PairOptions, type SockHash, type Socket } from '../src/index'
import {
  codeOf,
  connections,
  deadline,
  engineScope,
  errorOf,
  listening,
  netServer,
  portOf,
  readN,
  until,
} from './helpers'

const { newEngine, clients } = engineScope()

/** A server that answers only after the client's FIN: it reads to the end, then sends `reply` and ends. */
async function answersAfterEnd(reply: (request: Buffer) => Buffer): Promise<{ srv: net.Server; got: Buffer[] }> {
  const got: Buffer[] = []
  const srv = await netServer((s) => {
    const chunks: Buffer[] = []
    s.on('data', (d: Buffer) => chunks.push(d))
    s.on('end', () => {
      const request = Buffer.concat(chunks)
      got.push(request)
      s.end(reply(request))
    })
    s.on('error', () => {})
  })
  return { srv, got }
}

/** Everything a node:net socket reads until the peer's FIN. */
function readToEnd(sock: net.Socket, ms = 5000): Promise<Buffer> {
  const chunks: Buffer[] = []
  sock.on('data', (d: Buffer) => chunks.push(d))
  return deadline(
    once(sock, 'end').then(() => Buffer.concat(chunks)),
    ms,
    'reading to the end',
  )
}

interface Proxy {
  port: number
  pairs: Array<{ client: Socket; upstream: Socket }>
}

/**
 * A proxy in front of `upstreamPort` whose only verdict is TypeScript: each client gets its own upstream (connected
 * `near` it or not), the two are paired, and each message goes to the socket stored under its source's id. With
 * `twoMaps`, clients and upstreams sit in two maps, each redirecting into the other.
 */
async function tsProxy(
  engine: Engine,
  upstreamPort: number,
  opts: { near?: boolean; twoMaps?: boolean; pair?: PairOptions } = {},
): Promise<Proxy & { maps: SockHash[] }> {
  const a = engine.sockHash({ maxEntries: 64 })
  const b = opts.twoMaps ? engine.sockHash({ maxEntries: 64 }) : a
  a.attach({ verdict: (msg) => msg.redirect(b, msg.socket) })
  if (b !== a) b.attach({ verdict: (msg) => msg.redirect(a, msg.socket) })
  const server = await listening(engine)
  const proxy: Proxy & { maps: SockHash[] } = { port: server.address().port, pairs: [], maps: [a, b] }
  server.on('connection', (client) => {
    void engine.connect(opts.near ? { port: upstreamPort, near: client } : { port: upstreamPort }).then((upstream) => {
      client.pair(upstream, opts.pair)
      b.set(client.id, upstream)
      a.set(upstream.id, client)
      proxy.pairs.push({ client, upstream })
    })
  })
  return proxy
}

async function connectTo(port: number, allowHalfOpen = false): Promise<net.Socket> {
  const c = net.connect({ host: '127.0.0.1', port, allowHalfOpen })
  clients.push(c)
  await deadline(once(c, 'connect'), 5000, 'client connect')
  return c
}

describe('partners through a TypeScript verdict', () => {
  for (const [name, engineOpts, near] of [
    ['one I/O thread', { shards: 1 }, false],
    ['two I/O threads, upstream near its client', { shards: 2, drive: 'threads' }, true],
    ['two I/O threads, upstream on the other thread', { shards: 2, drive: 'threads' }, false],
  ] as const) {
    it(`carry half-closes both ways with exact bytes before each FIN (${name})`, async () => {
      const engine = newEngine(engineOpts)
      const { srv, got } = await answersAfterEnd((req) => Buffer.from(`got ${req.length} bytes`))
      const proxy = await tsProxy(engine, portOf(srv), { near })
      const client = await connectTo(proxy.port)
      const reply = readToEnd(client)
      const request = Buffer.alloc(100_000, 'q')
      request.write('first', 0)
      request.write('last', request.length - 4)
      client.end(request)
      expect((await reply).toString()).toBe('got 100000 bytes')
      expect(got).toHaveLength(1)
      expect(got[0]!.equals(request)).toBe(true)
      const [{ client: c, upstream: u }] = proxy.pairs as [{ client: Socket; upstream: Socket }]
      await until(() => c.closed && u.closed, 5000, 'both engine sockets closed')
      expect(proxy.maps[0]!.size + proxy.maps[1]!.size).toBe(0)
      if (engineOpts.shards === 2) {
        expect(engine.shards).toBe(2)
      }
      srv.close()
    })
  }

  it('destroys the other side when one is reset', async () => {
    const engine = newEngine({ shards: 2, drive: 'threads' })
    const upstreamClosed: Array<Promise<unknown>> = []
    const srv = await netServer((s) => {
      s.on('error', () => {})
      upstreamClosed.push(once(s, 'close'))
      s.resume()
    })
    const proxy = await tsProxy(engine, portOf(srv))
    const client = await connectTo(proxy.port)
    client.write('hello')
    await until(() => proxy.pairs.length === 1 && upstreamClosed.length === 1, 5000, 'the pair')
    const [{ client: c, upstream: u }] = proxy.pairs as [{ client: Socket; upstream: Socket }]
    const clientClose = errorOf(c)
    const upstreamClose = once(u, 'close')
    client.resetAndDestroy()
    expect(await clientClose).toEqual({ code: 'ECONNRESET', hadError: true })
    await deadline(upstreamClose, 5000, 'upstream side destroyed')
    await deadline(upstreamClosed[0]!, 5000, 'the upstream server sees the close')
    expect(proxy.maps[0]!.size).toBe(0)
    srv.close()
  })

  it('holds across two maps, and both leave them when they close', async () => {
    const engine = newEngine()
    const { srv, got } = await answersAfterEnd((req) => Buffer.concat([Buffer.from('echo:'), req]))
    const proxy = await tsProxy(engine, portOf(srv), { twoMaps: true })
    const client = await connectTo(proxy.port)
    const reply = readToEnd(client)
    client.write('part one, ')
    await until(() => proxy.pairs.length === 1, 5000, 'the pair')
    const [{ client: c, upstream: u }] = proxy.pairs as [{ client: Socket; upstream: Socket }]
    expect(c.partner).toBe(u)
    expect(u.partner).toBe(c)
    expect([proxy.maps[0]!.size, proxy.maps[1]!.size]).toEqual([1, 1])
    client.end('part two')
    expect((await reply).toString()).toBe('echo:part one, part two')
    expect(got.map((b) => b.toString())).toEqual(['part one, part two'])
    await until(() => c.closed && u.closed, 5000, 'both engine sockets closed')
    expect([proxy.maps[0]!.size, proxy.maps[1]!.size]).toEqual([0, 0])
    expect(c.partner).toBeNull()
    srv.close()
  })

  it("ends the other with a FIN, not a reset, when one is destroyed (onClose 'end')", async () => {
    const engine = newEngine()
    const srv = await netServer((s) => {
      s.on('error', () => {})
      s.write('from upstream')
    })
    const proxy = await tsProxy(engine, portOf(srv), { pair: { onClose: 'end' } })
    // Half-open: the client's FIN comes only when the test sends it.
    const client = await connectTo(proxy.port, true)
    const chunks: Buffer[] = []
    client.on('data', (d: Buffer) => chunks.push(d))
    const clientEnd = once(client, 'end')
    client.write('x')
    await until(() => Buffer.concat(chunks).toString() === 'from upstream', 5000, "the upstream's bytes")
    const [{ client: c, upstream: u }] = proxy.pairs as [{ client: Socket; upstream: Socket }]
    const upstreamEnd = once(u, 'close')
    u.destroy()
    // The client's side ends (a FIN, not a reset) and reads on.
    await deadline(clientEnd, 5000, "the client's FIN")
    expect(Buffer.concat(chunks).toString()).toBe('from upstream')
    await deadline(upstreamEnd, 5000, 'upstream closed')
    expect(c.closed).toBe(false)
    client.end()
    await until(() => c.closed, 5000, 'client side closed')
    srv.close()
  })
})

describe('changes made in one run of JavaScript', () => {
  it('reach the I/O thread together: an upstream greeting already received is not judged between two sets', async () => {
    const engine = newEngine()
    let greeted!: () => void
    const written = new Promise<void>((r) => (greeted = r))
    const srv = await netServer((s) => s.write('HELLO\n', () => greeted()))
    const [c] = await connections(engine, 1, clients)
    const upstream = await engine.connect({ host: '127.0.0.1', port: portOf(srv) })
    await deadline(written, 5000, 'the greeting')
    const peers = engine.sockHash({ maxEntries: 4 })
    peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
    c!.sock.pair(upstream)
    peers.set(c!.sock.id, upstream)
    // The greeting waits in the upstream's receive buffer. Were the first set applied alone, the I/O thread would
    // judge it now and find no socket under the upstream's id.
    const busyUntil = Date.now() + 30
    while (Date.now() < busyUntil);
    peers.set(upstream.id, c!.sock)
    expect((await readN(c!.client, 6)).toString()).toBe('HELLO\n')
    expect(peers.stats().droppedNoKey).toBe(0)
    srv.close()
  })
})

describe('pair() and its errors', () => {
  it('refuses itself, another engine, closed and paired sockets; unpair dissolves both sides', async () => {
    const engine = newEngine()
    const other = newEngine()
    const [a, b, c] = (await connections(engine, 3, clients)).map((x) => x.sock) as [Socket, Socket, Socket]
    const [foreign] = (await connections(other, 1, clients)).map((x) => x.sock) as [Socket]
    expect(codeOf(() => a.pair(a))).toBe('EINVAL')
    expect(codeOf(() => engine.pair(a, foreign))).toBe('EINVAL')
    expect(() => engine.pair(a, {} as Socket)).toThrow(TypeError)
    expect(() => a.pair(b, { onClose: 'reset' as 'end' })).toThrow(RangeError)
    expect(a.partner).toBeNull()
    engine.pair(a, b, { onClose: 'destroy' })
    expect(a.partner).toBe(b)
    expect(b.partner).toBe(a)
    expect(codeOf(() => c.pair(b))).toBe('EBUSY')
    expect(codeOf(() => a.pair(c))).toBe('EBUSY')
    expect(b.unpair()).toBe(true)
    expect(a.unpair()).toBe(false)
    expect([a.partner, b.partner]).toEqual([null, null])
    c.pair(a)
    const closed = once(c, 'close')
    c.destroy()
    await deadline(closed, 5000, 'c closed')
    expect(a.partner).toBeNull()
    expect(codeOf(() => a.pair(c))).toBe('ENOTCONN')
    const err = (() => {
      try {
        b.pair(a)
        a.pair(b)
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(err).toBeInstanceOf(SockmapError)
    expect((err as SockmapError).message).toMatch(/EBUSY: .*partner/)
  })
})
