import { describe, expect, it } from 'vitest'

import { Parse, SockmapError, Verdict, rules, type SendMessage } from '../src/index'
import {
  acknowledged,
  connections,
  errorOf,
  frame,
  readN,
  until,
  writeBytewise,
  engineScope,
  collect,
  soloMap,
} from './helpers'

const { newEngine, clients, soloSocket } = engineScope()

/** A TypeScript parser of 4-byte big-endian length-prefixed frames. */
function lengthParser(data: Buffer): number {
  if (data.length < 4) return Parse.NEED_MORE
  return 4 + data.readUInt32BE(0)
}

describe('TypeScript parsers', () => {
  it('frame many messages per crossing, across split writes', async () => {
    const engine = newEngine({ batch: { maxMessages: 1024, maxDelayMicros: 2000 } })
    const [a] = await connections(engine, 1, clients)
    const map = soloMap(engine, a!.sock, { parser: lengthParser, verdict: rules.pass() })
    const n = 2000
    const payloads = Array.from({ length: n }, (_, i) => `m${i}-${'x'.repeat(i % 13)}`)
    const wire = Buffer.concat(payloads.map((p) => frame(p)))
    const got = collect(a!.sock, n, 10_000)
    // Pieces that cut frames anywhere, including inside the length field.
    for (let at = 0; at < wire.length; at += 997) {
      a!.client.write(wire.subarray(at, at + 997))
      if ((at / 997) % 4 === 3) await new Promise((r) => setImmediate(r))
    }
    expect(await got).toEqual(payloads.map((p) => frame(p).toString('latin1')))
    const s = engine.stats()
    expect(map.stats().messagesIn).toBe(n)
    expect(s.parserCalls).toBeGreaterThanOrEqual(n)
    // One crossing answers a socket's whole buffer: far fewer crossings than messages.
    expect(s.parseRequests * 10).toBeLessThan(n)
    expect(s.batches * 10).toBeLessThan(n)
  })

  it('frame a message written one byte at a time', async () => {
    const { a } = await soloSocket({ parser: lengthParser, verdict: rules.pass() })
    const got = collect(a!.sock, 2)
    await writeBytewise(a!.client, Buffer.concat([frame('split'), frame('again')]))
    expect(await got).toEqual([frame('split').toString('latin1'), frame('again').toString('latin1')])
  })

  it('HANDBACK gives the rest of the stream to the application', async () => {
    const engine = newEngine()
    const [a] = await connections(engine, 1, clients)
    // Frames until a frame of length 0xffffffff, which starts a raw stream.
    const map = soloMap(engine, a!.sock, {
      parser: (data) => {
        if (data.length >= 4 && data.readUInt32BE(0) === 0xffffffff) return Parse.HANDBACK
        return lengthParser(data)
      },
      verdict: rules.pass(),
    })
    const got: string[] = []
    a!.sock.on('message', (m) => got.push(m.toString('latin1')))
    const raw = Buffer.from('\xff\xff\xff\xffraw bytes, no frames', 'latin1')
    a!.client.write(Buffer.concat([frame('framed'), raw]))
    await until(() => got.join('').length === frame('framed').length + raw.length, 5000, 'raw bytes')
    expect(got[0]).toBe(frame('framed').toString('latin1'))
    expect(got.slice(1).join('')).toBe(raw.toString('latin1'))
    a!.client.write('more')
    await until(() => got.join('').endsWith('raw bytes, no framesmore'), 5000, 'later bytes')
    expect(map.stats().handbacks).toBe(1)
  })

  it('a negative errno aborts the socket with that error', async () => {
    const { a, map } = await soloSocket({
      parser: (data) => (data[0] === 0x21 ? -90 /* EMSGSIZE */ : lengthParser(data)),
      verdict: rules.pass(),
    })
    const got = collect(a!.sock, 1)
    const err = errorOf(a!.sock)
    a!.client.write(Buffer.concat([frame('fine'), Buffer.from('!!!!')]))
    expect(await got).toEqual([frame('fine').toString('latin1')])
    expect(await err).toEqual({ code: 'EMSGSIZE', hadError: true })
    expect(map.stats().parserErrors).toBe(1)
  })

  it('a parser that throws or returns garbage aborts its socket with EPROTO, reported and counted', async () => {
    const engine = newEngine()
    const errors: SockmapError[] = []
    engine.on('error', (e) => errors.push(e))
    const [a, b, c] = await connections(engine, 3, clients)
    soloMap(engine, a!.sock, {
      parser: () => {
        throw new Error('bad parser')
      },
      verdict: rules.pass(),
    })
    soloMap(engine, b!.sock, { parser: () => 'ten' as unknown as number, verdict: rules.pass() })
    const errA = errorOf(a!.sock)
    const errB = errorOf(b!.sock)
    a!.client.write('x')
    b!.client.write('y')
    expect(await errA).toEqual({ code: 'EPROTO', hadError: true })
    expect(await errB).toEqual({ code: 'EPROTO', hadError: true })
    await until(() => engine.stats().callbackErrors === 2, 5000, 'errors counted')
    // One report per batch with failing calls: the two sockets' requests may share a batch.
    expect(errors.length).toBeGreaterThanOrEqual(1)
    expect(errors.every((e) => e.code === 'ERR_CALLBACK')).toBe(true)
    expect(errors[0]!.message).toMatch(/bad parser|the string 'ten', not an integer/)
    // The engine keeps running: another socket still works.
    soloMap(engine, c!.sock, { parser: lengthParser, verdict: rules.pass() })
    const got = collect(c!.sock, 1)
    c!.client.write(frame('alive'))
    expect(await got).toEqual([frame('alive').toString('latin1')])
  })

  it('feed a TypeScript verdict: parser and verdict both in TypeScript', async () => {
    const engine = newEngine()
    const [src, even, odd] = await connections(engine, 3, clients)
    const out = engine.sockMap({ maxEntries: 2 })
    out.set(0, even!.sock)
    out.set(1, odd!.sock)
    soloMap(engine, src!.sock, {
      parser: lengthParser,
      verdict: (msg) => msg.redirect(out, (msg.data[4] as number) % 2),
    })
    const msgs = Array.from({ length: 50 }, (_, i) => frame(Buffer.from([i, i, i])))
    const wantEven = Buffer.concat(msgs.filter((_, i) => i % 2 === 0))
    const wantOdd = Buffer.concat(msgs.filter((_, i) => i % 2 === 1))
    const re = readN(even!.client, wantEven.length)
    const ro = readN(odd!.client, wantOdd.length)
    src!.client.write(Buffer.concat(msgs))
    expect((await re).equals(wantEven)).toBe(true)
    expect((await ro).equals(wantOdd)).toBe(true)
  })
})

describe('TypeScript msg verdicts', () => {
  it('PASS transmits and resolves with the bytes accepted; DROP rejects with EACCES', async () => {
    const seen: string[] = []
    const { a } = await soloSocket({
      msgVerdict: (msg) => {
        seen.push(`${msg.socket}:${msg.length}:${msg.data.toString()}`)
        return msg.data.toString().startsWith('secret') ? Verdict.DROP : Verdict.PASS
      },
    })
    await expect(a!.sock.send('hello')).resolves.toBe(5)
    const err = await a!.sock.send('secret stuff').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SockmapError)
    expect((err as SockmapError).code).toBe('EACCES')
    await expect(a!.sock.send('bye')).resolves.toBe(3)
    expect((await readN(a!.client, 8)).toString()).toBe('hellobye')
    expect(seen).toEqual([`${a!.sock.id}:5:hello`, `${a!.sock.id}:12:secret stuff`, `${a!.sock.id}:3:bye`])
    expect(a!.sock.stats().sendsRefused).toBe(1)
  })

  it('push, pop and pull edit the bytes that reach the peer, and the view follows the edits', async () => {
    const views: string[] = []
    const { a } = await soloSocket({
      msgVerdict: (msg) => {
        msg.push(0, 2) // "\0\0hello world"
        msg.pop(7, 6) // "\0\0hello"
        views.push(`${msg.length}:${msg.data.toString('hex')}`)
        msg.pull(2, 4)
        views.push(`${msg.data.toString()}`)
        return Verdict.PASS
      },
    })
    await expect(a!.sock.send('hello world')).resolves.toBe(11)
    expect((await readN(a!.client, 7)).equals(Buffer.from('\0\0hello', 'latin1'))).toBe(true)
    expect(views).toEqual([`7:${Buffer.from('\0\0hello', 'latin1').toString('hex')}`, 'he'])
  })

  it('rejects bad edit bounds with RangeError code EINVAL (the message gets onError)', async () => {
    const engine = newEngine()
    const errors: SockmapError[] = []
    engine.on('error', (e) => errors.push(e))
    const [a] = await connections(engine, 1, clients)
    const map = engine.sockMap({ maxEntries: 1 })
    const thrown: Array<{ name: string; code: unknown }> = []
    const attempt = (f: () => void): void => {
      try {
        f()
      } catch (e) {
        thrown.push({ name: (e as Error).name, code: (e as { code?: unknown }).code })
      }
    }
    map.attach({
      msgVerdict: (msg: SendMessage) => {
        attempt(() => msg.pull(2, 2))
        attempt(() => msg.pull(0, 4))
        attempt(() => msg.push(4, 1))
        attempt(() => msg.pop(1, 3))
        attempt(() => msg.applyBytes(-1))
        msg.pop(3, 1) // out of range: thrown out of the verdict
        return Verdict.PASS
      },
    })
    map.set(0, a!.sock)
    const err = await a!.sock.send('abc').catch((e: unknown) => e)
    expect((err as SockmapError).code).toBe('EACCES')
    expect(thrown).toEqual(Array.from({ length: 5 }, () => ({ name: 'RangeError', code: 'EINVAL' })))
    await until(() => errors.length === 1, 5000, 'callback error reported')
    expect(errors[0]!.code).toBe('ERR_CALLBACK')
  })

  it('applyBytes judges part of a send; the verdict runs again for the rest', async () => {
    const calls: string[] = []
    const { a } = await soloSocket({
      msgVerdict: (msg) => {
        calls.push(msg.data.toString())
        if (calls.length === 1) {
          msg.applyBytes(3)
          return Verdict.PASS
        }
        return Verdict.DROP
      },
    })
    await expect(a!.sock.send('abcdef')).resolves.toBe(3)
    expect(calls).toEqual(['abcdef', 'def'])
    expect((await readN(a!.client, 3)).toString()).toBe('abc')
  })

  it('corkBytes holds sends until enough bytes are buffered, then judges them as one', async () => {
    const calls: string[] = []
    const { a } = await soloSocket({
      msgVerdict: (msg) => {
        calls.push(msg.data.toString())
        if (msg.length < 10) msg.corkBytes(10)
        return Verdict.PASS
      },
    })
    await expect(a!.sock.send('abcd')).resolves.toBe(4)
    await expect(a!.sock.send('efgh')).resolves.toBe(4)
    await expect(a!.sock.send('ijkl')).resolves.toBe(4)
    expect((await readN(a!.client, 12)).toString()).toBe('abcdefghijkl')
    expect(calls).toEqual(['abcd', 'abcdefghijkl'])
  })

  it('redirects sends by content; EPIPE when the target is gone, EACCES when its key is missing', async () => {
    const engine = newEngine()
    const [a, b] = await connections(engine, 2, clients)
    const out = engine.sockHash({ maxEntries: 4 })
    out.set('b', b!.sock)
    soloMap(engine, a!.sock, { msgVerdict: (msg) => msg.redirect(out, msg.data.subarray(0, 1)) })
    await expect(a!.sock.send('b:to b')).resolves.toBe(6)
    expect((await readN(b!.client, 6)).toString()).toBe('b:to b')
    const missing = await a!.sock.send('c:nobody').catch((e: unknown) => e)
    expect((missing as SockmapError).code).toBe('EACCES')
    b!.sock.end()
    const gone = await a!.sock.send('b:after end').catch((e: unknown) => e)
    expect((gone as SockmapError).code).toBe('EPIPE')
    await acknowledged(a!.sock)
    const st = a!.sock.stats()
    expect([st.redirectedEgress, st.droppedNoKey, st.droppedDeadTarget, st.sendsRefused]).toEqual([1, 1, 1, 2])
  })

  it('keeps the order of sends of one socket while their verdicts are awaited', async () => {
    const { a } = await soloSocket({ msgVerdict: (msg) => (msg.data[0] === 0x2d ? Verdict.DROP : Verdict.PASS) })
    const parts = Array.from({ length: 200 }, (_, i) => (i % 5 === 4 ? `-${i};` : `${i};`))
    const results = await Promise.allSettled(parts.map((p) => a!.sock.send(p)))
    const want = parts.filter((p) => !p.startsWith('-')).join('')
    expect((await readN(a!.client, want.length)).toString()).toBe(want)
    expect(results.filter((r) => r.status === 'rejected').length).toBe(40)
  })
})
