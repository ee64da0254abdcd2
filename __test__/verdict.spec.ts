import { describe, expect, it } from 'vitest'

import { SockmapError, Verdict, parsers, rules, type StreamMessage } from '../src/index'
import { acknowledged, connections, messagesN, readN, roundTrip, until, engineScope, soloMap } from './helpers'

const { newEngine, clients } = engineScope()

describe('TypeScript stream verdicts', () => {
  it('passes, sees each message through the reused view, in order', async () => {
    const engine = newEngine()
    const [a] = await connections(engine, 1, clients)
    const seen: string[] = []
    const views = new Set<StreamMessage>()
    const map = engine.sockMap({ maxEntries: 4 })
    map.attach({
      verdict: (msg) => {
        views.add(msg)
        seen.push(`${msg.socket}:${msg.length}:${msg.data.toString()}`)
        return Verdict.PASS
      },
    })
    map.set(0, a!.sock)
    const got = messagesN(a!.sock, 5)
    a!.client.write('hello')
    expect(Buffer.concat(await got).toString()).toBe('hello')
    expect(seen.join('')).toContain(`${a!.sock.id}:`)
    expect(views.size).toBe(1)
    const s = engine.stats()
    expect(s.batches).toBeGreaterThanOrEqual(1)
    expect(s.verdictMessages).toBe(seen.length)
  })

  it('redirects by content to egress and to ingress, and drops', async () => {
    const engine = newEngine()
    const [src, sinkA, sinkB] = await connections(engine, 3, clients)
    const targets = engine.sockHash({ maxEntries: 8 })
    targets.set('a', sinkA!.sock)
    targets.set('b', sinkB!.sock)
    soloMap(engine, src!.sock, {
      verdict: (msg) => {
        const c = msg.data[0]
        if (c === 0x61) return msg.redirect(targets, 'a') // 'a' → out of sink A
        if (c === 0x62) return msg.redirect(targets, Buffer.from('b'), { ingress: true }) // 'b' → sink B's app
        return Verdict.DROP
      },
    })
    const ingress = messagesN(sinkB!.sock, 4)
    src!.client.write('a123')
    expect((await readN(sinkA!.client, 4)).toString()).toBe('a123')
    src!.client.write('b456')
    expect(Buffer.concat(await ingress).toString()).toBe('b456')
    src!.client.write('zzzz')
    await until(() => src!.sock.stats().droppedVerdict === 1, 5000, 'dropped')
    await acknowledged(src!.sock)
    const st = src!.sock.stats()
    expect([st.redirectedEgress, st.redirectedIngress, st.droppedVerdict]).toEqual([1, 1, 1])
  })

  it('mixes native and TypeScript verdicts in one engine', async () => {
    const engine = newEngine()
    const [a, b, c] = await connections(engine, 3, clients)
    const native = engine.sockHash({ maxEntries: 4 })
    native.attach({ verdict: rules.redirect(native, 'out') })
    native.set('out', c!.sock)
    native.set('in', a!.sock)
    const ts = engine.sockMap({ maxEntries: 2 })
    ts.attach({ verdict: (msg) => msg.redirect(native, 'out') })
    ts.set(0, b!.sock)
    a!.client.write('native|')
    expect((await readN(c!.client, 7)).toString()).toBe('native|')
    b!.client.write('typescript')
    expect((await readN(c!.client, 10)).toString()).toBe('typescript')
    // Only b's messages, however its peer's bytes were read, went through TypeScript.
    expect(engine.stats().verdictMessages).toBe(b!.sock.stats().messagesIn)
  })

  it('batches: many messages of many sockets cross in few batches, each socket in order', async () => {
    const engine = newEngine({ batch: { maxMessages: 4096, maxDelayMicros: 20_000 } })
    const n = 8
    const conns = await connections(engine, 2 * n, clients)
    // Each source's partner is stored under the source's id; the sources carry the TypeScript verdict.
    const peers = engine.sockHash({ maxEntries: 64 })
    const sources = engine.sockMap({ maxEntries: n })
    // One message per write, whatever TCP coalesces: the counts below do not depend on timing.
    sources.attach({
      parser: parsers.delimiter({ delimiters: ['>'], stripDelimiter: false }),
      verdict: (msg) => msg.redirect(peers, msg.socket),
    })
    for (let i = 0; i < n; i++) {
      peers.set(conns[i]!.sock.id, conns[n + i]!.sock)
      sources.set(i, conns[i]!.sock)
    }
    const rounds = 40
    const expected = (i: number) =>
      Array.from({ length: rounds }, (_, r) => `<${i}:${String(r).padStart(3, '0')}>`).join('')
    const reads = conns.slice(n).map((d, i) => readN(d.client, expected(i).length, 10_000))
    // Interleave the sources' writes so that one batch holds several sockets' messages.
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < n; i++) conns[i]!.client.write(`<${i}:${String(r).padStart(3, '0')}>`)
      if (r % 8 === 7) await new Promise((res) => setImmediate(res))
    }
    const got = await Promise.all(reads)
    got.forEach((g, i) => expect(g.toString()).toBe(expected(i)))
    const s = engine.stats()
    expect(s.verdictMessages).toBeGreaterThanOrEqual(n)
    expect(s.verdictMessages).toBe(n * rounds)
    expect(s.batches * 4).toBeLessThan(s.verdictMessages)
  })

  it('counts and reports throwing verdicts, non-verdicts and redirects to deleted keys, and keeps running', async () => {
    const engine = newEngine()
    const [a, sink] = await connections(engine, 2, clients)
    const errors: SockmapError[] = []
    engine.on('error', (e) => errors.push(e))
    const targets = engine.sockHash({ maxEntries: 4 })
    targets.set('sink', sink!.sock)
    let mode = 'throw'
    soloMap(engine, a!.sock, {
      verdict: (msg): Verdict => {
        if (mode === 'throw') throw new Error('boom')
        if (mode === 'garbage') return 'pass' as unknown as Verdict
        if (mode === 'deleted') return msg.redirect(targets, 'gone')
        return msg.redirect(targets, 'sink')
      },
      onError: Verdict.DROP,
    })
    a!.client.write('1')
    await until(() => errors.length === 1, 5000, 'first error')
    expect(errors[0]!.code).toBe('ERR_CALLBACK')
    expect((errors[0]!.cause as Error).message).toBe('boom')
    mode = 'garbage'
    a!.client.write('2')
    await until(() => errors.length === 2, 5000, 'second error')
    expect(errors[1]!.message).toMatch(/the string 'pass', not a Verdict/)
    mode = 'deleted'
    a!.client.write('3')
    await until(() => a!.sock.stats().droppedNoKey === 1, 5000, 'no key')
    mode = 'ok'
    a!.client.write('4')
    expect((await readN(sink!.client, 1)).toString()).toBe('4')
    const s = engine.stats()
    expect(s.callbackErrors).toBe(2)
    expect(a!.sock.stats().droppedVerdict).toBe(2)
  })

  it('gives onError: PASS to a message whose verdict throws', async () => {
    const engine = newEngine()
    engine.on('error', () => {})
    const [a] = await connections(engine, 1, clients)
    soloMap(engine, a!.sock, {
      verdict: () => {
        throw new Error('x')
      },
      onError: Verdict.PASS,
    })
    const got = messagesN(a!.sock, 3)
    a!.client.write('abc')
    expect(Buffer.concat(await got).toString()).toBe('abc')
  })

  it('shows a verdict only the first peekBytes of a large message, and moves the whole message', async () => {
    const engine = newEngine()
    const [src, sink] = await connections(engine, 2, clients)
    const out = engine.sockHash({ maxEntries: 2 })
    out.set('sink', sink!.sock)
    const seen: Array<[number, number]> = []
    soloMap(engine, src!.sock, {
      verdict: (msg) => {
        seen.push([msg.length, msg.data.length])
        return msg.redirect(out, 'sink')
      },
      peekBytes: 8,
    })
    const big = Buffer.alloc(3000, 0x5a)
    big.write('HEADER--', 0)
    src!.client.write(big)
    expect((await readN(sink!.client, big.length)).equals(big)).toBe(true)
    expect(seen.reduce((n, [len]) => n + len, 0)).toBe(big.length)
    for (const [len, copied] of seen) expect(copied).toBe(Math.min(len, 8))
  })

  it('holds messages while paused and delivers them, in order, on resume', async () => {
    const engine = newEngine()
    const [a] = await connections(engine, 1, clients)
    const got: string[] = []
    a!.sock.on('message', (m) => got.push(m.toString()))
    a!.client.write('one')
    await until(() => got.join('') === 'one', 5000, 'first message')
    a!.sock.pause()
    expect(a!.sock.isPaused).toBe(true)
    a!.client.write('two')
    await roundTrip(a!.sock, a!.client)
    expect(got.join('')).toBe('one')
    a!.sock.resume()
    await until(() => got.join('') === 'onetwo', 5000, 'resumed message')
  })
})
