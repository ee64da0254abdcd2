// Datagram sockets beyond the redirect matrix: a UDP gateway with sessions carrying 1,000 node:dgram clients to two
// upstream echo servers (hash by session) and every reply back to its own client, idle sessions and their upstreams
// closing, counters exact; a flood into a slow upstream whose drop counter equals the datagrams that did not arrive;
// a connected UDP source into a slow stream, the kernel's drops counted; Unix datagram sessions answering clients by
// name; a stream into a datagram socket, a message above the datagram limit counted (EMSGSIZE); a bound socket's
// 'message' with its sender and its send(data, port, host); a native parser splitting each datagram into messages
// (lines routed one by one, a record cut by the datagram's end dropped and counted); argument errors.
import dgram from 'node:dgram'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import net from 'node:net'
import { describe, expect, it } from 'vitest'

import { parsers, rules, Verdict, type DatagramSocket, type Engine, type Socket } from '../src/index'
import { clientOn, dgramFamilies, unixName } from './families'
import { deadline, engineScope, frame, until } from './helpers'

const { newEngine, clients } = engineScope()

/** A node:dgram socket bound on the IPv4 loopback. */
async function udp4(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4')
  s.bind(0, '127.0.0.1')
  await deadline(once(s, 'listening'), 5000, 'dgram bind')
  return s
}

/** An engine socket connected to a node:net peer that reads nothing until resumed. */
async function slowUpstream(engine: Engine): Promise<{ up: Socket; peer: net.Socket; srv: net.Server }> {
  let peer: net.Socket | undefined
  const srv = net.createServer((s) => {
    peer = s
    clients.push(s)
    s.pause()
  })
  srv.listen(0, '127.0.0.1')
  await deadline(once(srv, 'listening'), 5000, 'listen')
  const up = await engine.connect({ port: (srv.address() as net.AddressInfo).port })
  await until(() => peer !== undefined, 5000, 'accepted')
  return { up, peer: peer!, srv }
}

describe.skipIf(dgramFamilies.length === 0)('UDP sessions', () => {
  it('carry 1,000 clients to two upstreams and every reply to its own client; idle sessions close', async () => {
    const engine = newEngine()
    const gw = await engine.bindUdp({ port: 0, sessions: { idleTimeoutMs: 400, maxSessions: 2000 } })
    const map = engine.sockHash({ maxEntries: 4096 })
    map.attach({ verdict: rules.redirect(map, rules.key.socket) })
    // Two echo servers, each prefixing its name.
    const upstreams = await Promise.all([udp4(), udp4()])
    const served = [0, 0]
    upstreams.forEach((u, k) =>
      u.on('message', (m, r) => {
        served[k]!++
        u.send(Buffer.concat([Buffer.from(`u${k}:`), m]), r.port, r.address)
      }),
    )
    // Hash by session: its client's port picks the upstream.
    const upstreamOf = (s: Socket): number => ((s.remoteAddress!.port * 2654435761) % 2 ** 32) % 2
    const sessions: Socket[] = []
    const ups: DatagramSocket[] = []
    gw.on('session', (s) => {
      sessions.push(s)
      const k = upstreamOf(s)
      void engine.connectUdp({ port: upstreams[k]!.address().port, near: s }).then((u) => {
        ups.push(u)
        map.set(s.id, u).set(u.id, s)
        engine.pair(s, u)
      })
    })
    const n = 1000
    const cs = await Promise.all(Array.from({ length: n }, () => udp4()))
    const replies: Buffer[][] = cs.map(() => [])
    cs.forEach((c, i) => c.on('message', (m) => replies[i]!.push(m)))
    // In waves, so that no socket buffer overflows on a loaded machine.
    for (let i = 0; i < n; i += 100) {
      for (const [j, c] of cs.slice(i, i + 100).entries()) c.send(`client ${i + j}`, gw.address().port, '127.0.0.1')
      await until(() => replies.slice(i, i + 100).every((r) => r.length === 1), 10000, `replies ${i}..${i + 99}`)
    }
    expect(sessions.length).toBe(n)
    // Each client got exactly its reply, from the upstream its session hashed to.
    for (const [i, r] of replies.entries()) {
      const k = upstreamOf(sessions.find((s) => s.remoteAddress?.port === cs[i]!.address().port)!)
      expect(r.map(String)).toEqual([`u${k}:client ${i}`])
    }
    expect(served[0]! + served[1]!).toBe(n)
    expect(served[0]).toBeGreaterThan(0)
    expect(served[1]).toBeGreaterThan(0)
    const sent = cs.reduce((sum, _, i) => sum + `client ${i}`.length, 0)
    // A datagram is counted out once the kernel took it, which can be after its client read it.
    await until(() => gw.stats().bytesOut === sent + 3 * n, 5000, 'every reply counted out')
    const st = gw.stats()
    expect([st.bytesIn, st.bytesOut, st.dropped]).toEqual([sent, sent + 3 * n, 0])
    // Idle: every session closes, and its partner upstream with it.
    await until(() => sessions.every((s) => s.closed) && ups.every((u) => u.closed), 10000, 'idle sessions closed')
    expect(map.size).toBe(0)
    for (const c of cs) c.close()
    for (const u of upstreams) u.close()
  }, 60000)

  it('drop a flood into a slow upstream by counted overflow: every datagram arrives or is counted', async () => {
    const engine = newEngine({ sendHighWatermark: 4096, sendLowWatermark: 1024, dgramQueueDatagrams: 16 })
    const gw = await engine.bindUdp({ port: 0, sessions: {} })
    const map = engine.sockHash({ maxEntries: 4 })
    map.attach({ verdict: rules.redirect(map, 'up') })
    // The slow upstream: a TCP peer that reads nothing during the flood.
    const { up, peer, srv } = await slowUpstream(engine)
    map.set('up', up)
    let session: Socket | undefined
    gw.on('session', (s) => {
      session = s
      map.set('client', s)
    })
    const c = await udp4()
    const size = 1000
    const total = 4000
    const burst = 32
    for (let i = 0; i < total; i += burst) {
      for (let j = i; j < i + burst; j++) c.send(Buffer.alloc(size, j % 251), gw.address().port, '127.0.0.1')
      // Paced: the gateway read each burst before the next (no datagram lost in the kernel before the engine).
      await until(() => gw.stats().bytesIn === (i + burst) * size, 10000, `burst at ${i}`)
    }
    // The gateway counts a datagram read before its session takes or drops it: the drops are counted once every
    // datagram not dropped has arrived (the arrived bytes cannot catch up with a count still short).
    let arrived = 0
    peer.on('data', (d: Buffer) => (arrived += d.length))
    peer.resume()
    await until(() => arrived === (total - session!.stats().droppedOverflow) * size, 10000, 'the rest arrives')
    const st = session!.stats()
    expect(st.droppedOverflow).toBeGreaterThan(0)
    expect(st.dropped).toBe(st.droppedOverflow)
    expect(arrived).toBe((total - st.droppedOverflow) * size)
    expect(gw.stats().dropped).toBe(0)
    c.close()
    srv.close()
  }, 60000)
})

describe.skipIf(dgramFamilies.length === 0)('a connected UDP source into a slow stream', () => {
  it("stops being read, and the kernel's drops are counted: every datagram arrives or is counted", async () => {
    const engine = newEngine({ sendHighWatermark: 4096, sendLowWatermark: 1024 })
    const map = engine.sockHash({ maxEntries: 4 })
    map.attach({ verdict: rules.redirect(map, 'up') })
    const { up, peer, srv } = await slowUpstream(engine)
    const p = await udp4()
    const src = await engine.connectUdp({ port: p.address().port })
    map.set('up', up).set('src', src)
    const size = 1000
    const total = 3000
    const send = (i: number) =>
      new Promise<void>((resolve, reject) =>
        p.send(Buffer.alloc(size, i % 251), src.address().port, '127.0.0.1', (e) => (e ? reject(e) : resolve())),
      )
    for (let i = 0; i < total; i += 100) await Promise.all(Array.from({ length: 100 }, (_, j) => send(i + j)))
    let arrived = 0
    peer.on('data', (d: Buffer) => (arrived += d.length))
    peer.resume()
    // The kernel tells its drop count with the next datagram read, so markers follow until one arrives after the
    // last drop (one may find the receive buffer still full, and be dropped too): then every datagram sent arrived
    // or is counted.
    let sent = total
    const settled = () => arrived === (sent - src.stats().kernelDrops) * size
    for (let m = 0; m < 50 && !settled(); m++) {
      await send(sent++)
      await until(settled, 200, 'arrived or counted').catch(() => {})
    }
    expect(arrived).toBe((sent - src.stats().kernelDrops) * size)
    expect(src.stats().kernelDrops).toBeGreaterThan(0)
    expect(src.stats().dropped).toBe(0)
    expect(src.stats().backpressureStalls).toBeGreaterThan(0)
    p.close()
    srv.close()
  }, 60000)
})

describe.skipIf(dgramFamilies.length === 0)('a stream into a datagram socket', () => {
  it('sends each message as one datagram and counts one above the datagram limit (EMSGSIZE)', async () => {
    const engine = newEngine()
    const { client, sock, server } = await clientOn(engine, 'tcp4', clients)
    const peer = await udp4()
    const got: Buffer[] = []
    peer.on('message', (m) => got.push(m))
    const dst = await engine.connectUdp({ port: peer.address().port, near: sock })
    const map = engine.sockHash({ maxEntries: 4 })
    map.attach({ parser: parsers.lengthField(), verdict: rules.redirect(map, 'dst') })
    map.set('dst', dst).set('src', sock)
    const small = [frame('before'), frame(Buffer.alloc(1200, 1)), frame('after')]
    client.write(Buffer.concat([small[0]!, small[1]!, frame(Buffer.alloc(70_000, 2)), small[2]!]))
    await until(() => got.length === 3, 5000, 'three datagrams')
    expect(got).toEqual(small)
    await until(() => dst.stats().droppedTooBig === 1, 5000, 'the large one counted')
    expect(dst.stats().dropped).toBe(1)
    expect(dst.stats().droppedBytes).toBe(70_004)
    expect(sock.stats().redirectedEgress).toBe(4)
    peer.close()
    await server.close()
  })
})

describe.skipIf(dgramFamilies.length === 0)('a parser on a datagram socket', () => {
  it('routes each line of a datagram on its own, and a record cut by its end is dropped and counted', async () => {
    const engine = newEngine()
    // A statsd-style router: several metrics per datagram, the last line ended by the datagram's end.
    const gw = await engine.bindUdp({ host: '127.0.0.1', port: 0 })
    const [api, rest, client] = await Promise.all([udp4(), udp4(), udp4()])
    const got = { api: [] as string[], rest: [] as string[] }
    api.on('message', (m) => got.api.push(m.toString()))
    rest.on('message', (m) => got.rest.push(m.toString()))
    const [toApi, toRest] = await Promise.all([
      engine.connectUdp({ port: api.address().port, near: gw }),
      engine.connectUdp({ port: rest.address().port, near: gw }),
    ])
    const map = engine.sockHash({ maxEntries: 4 })
    map.attach({
      parser: parsers.lines(),
      verdict: (msg) => {
        const line = msg.data.toString()
        if (!line.includes(':')) return Verdict.DROP
        return msg.redirect(map, line.startsWith('api.') ? 'api' : 'rest')
      },
    })
    map.set('gw', gw).set('api', toApi).set('rest', toRest)
    const port = gw.address().port
    client.send('api.hits:1|c\nweb.load:0.5|g\njunk\napi.ms:12|ms', port, '127.0.0.1')
    client.send('web.users:3|s\n', port, '127.0.0.1')
    await until(() => got.api.length === 2 && got.rest.length === 2, 5000, 'four metrics')
    expect(got).toEqual({ api: ['api.hits:1|c', 'api.ms:12|ms'], rest: ['web.load:0.5|g', 'web.users:3|s'] })
    await until(() => gw.stats().messagesIn === 5, 5000, 'five lines judged')
    expect([gw.stats().redirectedEgress, gw.stats().droppedVerdict]).toEqual([4, 1])

    // Length-prefixed records: each one a message; one cut by the datagram's end is dropped (droppedParser).
    const rec = engine.sockHash({ maxEntries: 2 })
    const bound = await engine.bindUdp({ host: '127.0.0.1', port: 0 })
    const records: Buffer[] = []
    bound.on('message', (m) => records.push(Buffer.from(m)))
    rec.attach({ parser: parsers.lengthField({ lengthFieldLength: 4 }) })
    rec.set('bound', bound)
    client.send(
      Buffer.concat([frame('one'), frame('two'), frame('three').subarray(0, 6)]),
      bound.address().port,
      '127.0.0.1',
    )
    client.send(frame('four'), bound.address().port, '127.0.0.1')
    await until(() => records.length === 3, 5000, 'three records')
    expect(records).toEqual([frame('one'), frame('two'), frame('four')])
    await until(() => bound.stats().droppedParser === 1, 5000, 'the cut record counted')
    expect(bound.stats().droppedBytes).toBe(6)
    for (const s of [api, rest, client]) s.close()
  })
})

describe.skipIf(dgramFamilies.length === 0)('Unix datagram sessions', () => {
  it('answer each bound client by its name, and leave nothing behind', async () => {
    const engine = newEngine()
    const clientsEngine = newEngine()
    const path = unixName('unix')
    const gw = await engine.bindUdp({ path, sessions: { idleTimeoutMs: 200 } })
    expect(gw.address()).toEqual({ address: path, port: 0, family: 'Unix' })
    const seen: string[] = []
    gw.on('session', (s) => {
      seen.push(s.remoteAddress!.address)
      s.on('message', (m) => void s.send(Buffer.concat([Buffer.from('re:'), m])))
    })
    const names = [unixName('abstract'), unixName('unix')]
    for (const [i, localPath] of names.entries()) {
      const c = await clientsEngine.connectUdp({ path, localPath })
      const reply = deadline(once(c, 'message'), 5000, 'reply') as Promise<[Buffer]>
      await c.send(`hello ${i}`)
      expect((await reply)[0].toString()).toBe(`re:hello ${i}`)
    }
    expect(seen).toEqual(names)
    gw.destroy()
    await until(() => gw.closed, 5000, 'closed')
    expect(existsSync(path)).toBe(false)
  })
})

describe.skipIf(dgramFamilies.length === 0)('a bound UDP socket', () => {
  it("gives each datagram's sender and sends to any address", async () => {
    const engine = newEngine()
    const b = await engine.bindUdp({ host: '127.0.0.1', port: 0 })
    const [x, y] = await Promise.all([udp4(), udp4()])
    const got: Array<[string, number]> = []
    b.on('message', (m, r) => {
      got.push([m.toString(), r!.port])
      void b.send(`re:${m.toString()}`, r!.port, r!.address)
    })
    const back = (s: dgram.Socket) => deadline(once(s, 'message'), 5000, 'reply') as Promise<[Buffer, dgram.RemoteInfo]>
    const bx = back(x)
    x.send('x', b.address().port, '127.0.0.1')
    const [mx, rx] = await bx
    const by = back(y)
    y.send('y', b.address().port, '127.0.0.1')
    const [my] = await by
    expect(got).toEqual([
      ['x', x.address().port],
      ['y', y.address().port],
    ])
    expect([mx.toString(), my.toString()]).toEqual(['re:x', 're:y'])
    expect(rx.port).toBe(b.address().port)
    // A bound socket has no peer: a send without destination is refused.
    await expect(b.send('nowhere')).rejects.toMatchObject({ code: 'ENOTCONN' })
    x.close()
    y.close()
  })

  it('checks its arguments', async () => {
    const engine = newEngine()
    await expect(engine.bindUdp({ port: 70000 })).rejects.toThrow(RangeError)
    await expect(engine.bindUdp({ port: 0, sessions: { idleTimeoutMs: 0 } })).rejects.toThrow(RangeError)
    await expect(engine.connectUdp({ port: 0 })).rejects.toThrow(RangeError)
    await expect(
      engine.connectUdp({ path: '/tmp/x', port: 1 } as unknown as Parameters<typeof engine.connectUdp>[0]),
    ).rejects.toThrow(TypeError)
    const b = await engine.bindUdp({ port: 0 })
    await expect(engine.bindUdp({ port: b.address().port })).rejects.toMatchObject({ code: 'EADDRINUSE' })
    expect(() => b.send('x', 0)).toThrow(RangeError)
    expect(() => b.send('x', 53, 'not-an-ip')).toThrow(TypeError)
  })
})
