import { once } from 'node:events'
import type net from 'node:net'

import { describe, expect, it } from 'vitest'

import { Engine, Verdict, parsers, rules } from '../src/index'
import {
  acknowledged,
  clientOf,
  codeOf,
  deadline,
  frame,
  listening,
  messagesN,
  netServer,
  portOf,
  readN,
  roundTrip,
  until,
  engineScope,
} from './helpers'

const { newEngine, clients } = engineScope()

async function pair(engine: Engine) {
  const server = await listening(engine)
  const a = await clientOf(server)
  const b = await clientOf(server)
  clients.push(a.client, b.client)
  return { server, a, b }
}

describe('Engine sockets', () => {
  it('connects, receives in order after resume, sends, and reports ECONNREFUSED', async () => {
    const engine = newEngine()
    let peer: net.Socket | undefined
    const srv = await netServer((s) => (peer = s))
    const sock = await deadline(engine.connect({ port: portOf(srv) }), 5000, 'connect')
    await until(() => peer !== undefined, 5000, 'peer accepted')
    peer!.write('before-')
    // Sends work at once; reading waits until someone reads.
    await roundTrip(sock, peer!)
    expect(sock.stats().bytesIn).toBe(0)
    const got = messagesN(sock, 12)
    peer!.write('after')
    expect(Buffer.concat(await got).toString()).toBe('before-after')
    await expect(sock.send('pong')).resolves.toBe(4)
    expect((await readN(peer!, 4)).toString()).toBe('pong')
    // The peer's FIN half-closes; ending our side completes the close.
    sock.once('end', () => sock.end())
    const closedPort = portOf(srv)
    peer!.destroy()
    srv.close()
    await deadline(once(sock, 'close'), 5000, 'close')
    expect(sock.closed).toBe(true)
    const refused = engine.connect({ port: closedPort })
    await expect(refused).rejects.toMatchObject({ code: 'ECONNREFUSED' })
  })

  it('iterates messages and ends on FIN', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    clients.push(client)
    client.end('one-two-three')
    const parts: string[] = []
    await deadline(
      (async () => {
        for await (const m of sock) parts.push(m.toString())
      })(),
      5000,
      'iterate',
    )
    expect(parts.join('')).toBe('one-two-three')
  })

  it('adopts a node:net socket; bytes Node had buffered go through the map first, in order', async () => {
    const engine = newEngine()
    let adopted: ReturnType<Engine['adopt']> | undefined
    // Adopt once Node holds bytes nobody consumed: a frame and a half.
    const srv = await netServer((s) => s.once('readable', () => (adopted = engine.adopt(s))))
    const { connect } = await import('node:net')
    const client = connect({ host: '127.0.0.1', port: portOf(srv) })
    clients.push(client)
    const wire = Buffer.concat([frame('hello'), frame('hi'), frame('there')])
    client.write(wire.subarray(0, 11))
    await until(() => adopted !== undefined, 5000, 'adopted')
    const sock = adopted!
    client.write(wire.subarray(11))
    const seen: string[] = []
    const frames = engine.sockHash({ maxEntries: 4 })
    frames.attach({
      parser: parsers.lengthField({ lengthFieldLength: 4, initialBytesToStrip: 4 }),
      verdict: (msg) => {
        seen.push(msg.data.toString())
        return Verdict.PASS
      },
    })
    const got = messagesN(sock, 12)
    frames.set('client', sock)
    expect((await got).map((m) => m.toString())).toEqual(['hello', 'hi', 'there'])
    expect(seen).toEqual(['hello', 'hi', 'there'])
    const st = sock.stats()
    expect([st.bytesIn, st.messagesIn, st.passed]).toEqual([wire.length, 3, 3])
    await sock.send('back')
    expect((await readN(client, 4)).toString()).toBe('back')
    srv.close()
  })
})

describe('Maps and native rules', () => {
  it('redirects egress between paired sockets (rules.key.socket)', async () => {
    const engine = newEngine()
    const { a, b } = await pair(engine)
    const peers = engine.sockHash({ maxEntries: 16 })
    peers.attach({ verdict: rules.redirect(peers, rules.key.socket) })
    a.client.write('early')
    peers.set(a.sock.id, b.sock).set(b.sock.id, a.sock)
    expect((await readN(b.client, 5)).toString()).toBe('early')
    b.client.write('pong!')
    expect((await readN(a.client, 5)).toString()).toBe('pong!')
    await acknowledged(a.sock)
    const st = a.sock.stats()
    // However the 5 bytes were read, every message went to b.
    expect([st.bytesIn, st.passed, st.redirectedEgress]).toEqual([5, 0, st.messagesIn])
    expect(peers.size).toBe(2)
  })

  it('redirects ingress to the target application', async () => {
    const engine = newEngine()
    const { a, b } = await pair(engine)
    const apps = engine.sockHash({ maxEntries: 4 })
    apps.attach({ verdict: rules.redirect(apps, 'app', { ingress: true }) })
    apps.set('app', b.sock)
    apps.set('src', a.sock)
    const got = messagesN(b.sock, 10)
    a.client.write('to-b-s-app')
    expect(Buffer.concat(await got).toString()).toBe('to-b-s-app')
  })

  it('drops and counts; a missing key drops', async () => {
    const engine = newEngine()
    const { a, b } = await pair(engine)
    const drops = engine.sockMap({ maxEntries: 4 })
    drops.attach({ verdict: rules.drop() })
    drops.set(0, a.sock)
    a.client.write('gone')
    await until(() => a.sock.stats().droppedVerdict >= 1, 5000, 'dropped')
    const nokey = engine.sockHash({ maxEntries: 4 })
    nokey.attach({ verdict: rules.redirect(nokey, 'absent') })
    nokey.set('b', b.sock)
    b.client.write('x')
    // A socket counts before its map does: the engine-wide totals are the maps' counters.
    await until(() => engine.stats().totals.dropped === 2, 5000, 'drops in the map totals')
    expect([a.sock.stats().droppedVerdict, b.sock.stats().droppedNoKey]).toEqual([1, 1])
    expect(engine.metrics()).toContain('sockmap_map_dropped_total{map="0",kind="sockmap"} 1')
  })

  it('reports the kernel error codes', async () => {
    const engine = newEngine()
    const { a, b } = await pair(engine)
    const map = engine.sockMap({ maxEntries: 2 })
    const hash = engine.sockHash({ maxEntries: 1 })
    expect(codeOf(() => map.set(2, a.sock))).toBe('E2BIG')
    map.set(0, a.sock)
    expect(codeOf(() => map.set(0, b.sock, { flag: 'noexist' }))).toBe('EEXIST')
    expect(codeOf(() => map.set(1, b.sock, { flag: 'exist' }))).toBe('ENOENT')
    hash.set('k', a.sock)
    expect(codeOf(() => hash.set('other', b.sock))).toBe('E2BIG')
    expect(codeOf(() => hash.delete('absent'))).toBe('ENOENT')
    const m1 = engine.sockHash({ maxEntries: 4 })
    const m2 = engine.sockHash({ maxEntries: 4 })
    m1.attach({ verdict: rules.pass() })
    m2.attach({ verdict: rules.drop() })
    m1.set('x', b.sock)
    expect(codeOf(() => m2.set('x', b.sock))).toBe('EBUSY')
    expect(map.get(0)).toBe(a.sock)
    expect(map.has(1)).toBe(false)
    expect(map.keys()).toEqual([0])
    expect(hash.keys().map((k) => k.toString())).toEqual(['k'])
    b.sock.destroy()
    await deadline(once(b.sock, 'close'), 5000, 'close')
    expect(codeOf(() => m2.set('y', b.sock))).toBe('EOPNOTSUPP')
  })

  it('removes a closed socket from every map', async () => {
    const engine = newEngine()
    const { a } = await pair(engine)
    const map = engine.sockMap({ maxEntries: 4 })
    const hash = engine.sockHash({ maxEntries: 4 })
    map.set(1, a.sock)
    hash.set('a', a.sock)
    const closed = once(a.sock, 'close')
    a.sock.once('end', () => a.sock.end())
    a.client.destroy()
    a.sock.resume()
    await deadline(closed, 5000, 'close')
    expect(map.size).toBe(0)
    expect(hash.size).toBe(0)
    expect(map.has(1)).toBe(false)
  })

  it('rejects bad arguments with TypeError / RangeError naming them', async () => {
    const engine = newEngine()
    const map = engine.sockMap({ maxEntries: 2 })
    expect(() => new Engine({ shards: 0 })).toThrow(/options.shards/)
    expect(() => new Engine({ backend: 'x' as 'epoll' })).toThrow(RangeError)
    expect(() => map.set(-1, {} as never)).toThrow(/key must be/)
    expect(() => map.get('a' as unknown as number)).toThrow(TypeError)
    expect(() => engine.sockHash({ maxEntries: 0 })).toThrow(/options.maxEntries/)
    expect(() => map.attach({ onError: 7 as Verdict })).toThrow(/options.onError/)
    expect(() => new Engine({ maxPendingBytes: 0 })).toThrow(RangeError)
    expect(() => new Engine({ maxPendingBytes: 1.5 })).toThrow(/options.maxPendingBytes/)
    expect(() => new Engine({ readBudget: -1 })).toThrow(RangeError)
    expect(() => new Engine({ readBudget: '1' as unknown as number })).toThrow(/options.readBudget/)
    await expect(engine.listen({ port: 70000 })).rejects.toThrow(/options.port/)
  })
})

describe('Backpressure', () => {
  it('maxPendingBytes bounds the bytes waiting for TypeScript verdicts; nothing is lost', async () => {
    const bound = 16 << 10
    const engine = newEngine({ maxPendingBytes: bound, readBudget: 16 << 10 })
    const { a, b } = await pair(engine)
    const out = engine.sockHash({ maxEntries: 4 })
    out.set('b', b.sock)
    const front = engine.sockHash({ maxEntries: 4 })
    let peak = 0
    front.attach({
      verdict: (msg) => {
        peak = Math.max(peak, a.sock.stats().pendingBytes)
        return msg.redirect(out, 'b')
      },
    })
    front.set('a', a.sock)
    const data = Buffer.alloc(1 << 20)
    for (let i = 0; i < data.length; i++) data[i] = i % 251
    const got = readN(b.client, data.length, 10000)
    a.client.write(data)
    expect((await got).equals(data)).toBe(true)
    // At most one read (the engine's 64 KiB read buffer) past the bound.
    expect(peak).toBeGreaterThan(0)
    expect(peak).toBeLessThanOrEqual(bound + (64 << 10))
    await acknowledged(a.sock)
    expect(a.sock.stats().dropped).toBe(0)
  })

  it('send() resolves only once the ring is below its high watermark', async () => {
    const engine = newEngine({ sendHighWatermark: 64 << 10, sendLowWatermark: 16 << 10 })
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    clients.push(client)
    client.pause() // the peer stops reading: kernel buffers fill, then the engine's ring
    const high = 64 << 10
    const chunk = Buffer.alloc(64 << 10, 7)
    let sent = 0
    let pending: Promise<number> | undefined
    let queued = 0
    // One send at a time: each resolves, or is seen unresolved with the ring above the high watermark. The ring only
    // shrinks between sends, so that reading is this send's: it waits until the ring drains.
    for (let i = 0; i < 1024 && !pending; i++) {
      let resolved = false
      const p = sock.send(chunk)
      void p.then(() => (resolved = true))
      await until(
        () => {
          queued = sock.stats().queuedBytes
          return resolved || queued > high
        },
        10_000,
        `send ${i} resolved or held`,
      )
      if (resolved) sent += chunk.length
      else pending = p
    }
    expect(pending).toBeDefined()
    expect(queued).toBeGreaterThan(high)
    let received = 0
    client.on('data', (d: Buffer) => (received += d.length))
    client.resume()
    await expect(deadline(pending!, 10_000, 'pending send')).resolves.toBe(chunk.length)
    await until(() => received === sent + chunk.length, 10_000, 'all bytes received')
  })
})
