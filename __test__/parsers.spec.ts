import { describe, expect, it } from 'vitest'

import { parsers, rules, type AttachOptions } from '../src/index'
import {
  acknowledged,
  connections,
  errorOf,
  frame,
  messagesN,
  readN,
  respCommand,
  until,
  writeBytewise,
  engineScope,
  collect,
  soloMap,
} from './helpers'

const { newEngine, clients, soloSocket } = engineScope()

/**
 * A router: a new engine whose source socket (`src`, in a one-entry map `front` framed by `parser`) redirects every
 * message by `key` to a SockHash holding one target connection under each of `keys`.
 */
async function router(
  parser: NonNullable<AttachOptions['parser']>,
  key: Parameters<typeof rules.redirect>[1],
  keys: string[],
) {
  const engine = newEngine()
  const [src, ...targets] = await connections(engine, 1 + keys.length, clients)
  const hash = engine.sockHash({ maxEntries: 8 })
  keys.forEach((k, i) => hash.set(k, targets[i]!.sock))
  const front = soloMap(engine, src!.sock, { parser, verdict: rules.redirect(hash, key) })
  return { src, targets, front }
}

describe('native framers', () => {
  it('lengthField frames messages written one byte at a time', async () => {
    const { a, map } = await soloSocket({
      parser: parsers.lengthField({ lengthFieldLength: 4, initialBytesToStrip: 4 }),
      verdict: rules.pass(),
    })
    const got = collect(a!.sock, 4)
    // An empty frame is delivered as an empty message (as Netty's decoder emits an empty frame).
    await writeBytewise(a!.client, Buffer.concat([frame('alpha'), frame(''), frame('gamma-delta')]))
    a!.client.write(frame('z'))
    expect(await got).toEqual(['alpha', '', 'gamma-delta', 'z'])
    const st = map.stats()
    expect(st.messagesIn).toBe(4)
    expect(st.bytesIn).toBe(4 * 4 + 5 + 11 + 1)
  })

  it('lengthField takes every Netty option (offset, width, byte order, adjustment, strip)', async () => {
    const engine = newEngine()
    const [a] = await connections(engine, 1, clients)
    // Netty's example: HDR1 | LEN (2 bytes) | HDR2 | content; LEN counts the content only.
    soloMap(engine, a!.sock, {
      parser: parsers.lengthField({
        byteOrder: 'le',
        lengthFieldOffset: 1,
        lengthFieldLength: 2,
        lengthAdjustment: 1,
        initialBytesToStrip: 3,
      }),
      verdict: rules.pass(),
    })
    const msg = (content: string): Buffer => {
      const b = Buffer.alloc(4 + content.length)
      b[0] = 0xca
      b.writeUInt16LE(content.length, 1)
      b[3] = 0xfe
      b.write(content, 4, 'latin1')
      return b
    }
    const got = collect(a!.sock, 2)
    a!.client.write(Buffer.concat([msg('HELLO, WORLD'), msg('x')]))
    expect(await got).toEqual(['\xfeHELLO, WORLD', '\xfex'])
  })

  it('lengthField frames 100 messages sent in one write, in order', async () => {
    const { a, map } = await soloSocket({ parser: parsers.lengthField(), verdict: rules.pass() })
    const payloads = Array.from({ length: 100 }, (_, i) => `message-${i}`.repeat((i % 7) + 1))
    const got = collect(a!.sock, 100)
    a!.client.write(Buffer.concat(payloads.map((p) => frame(p))))
    const want = payloads.map((p) => frame(p).toString('latin1'))
    expect(await got).toEqual(want)
    expect(map.stats().messagesIn).toBe(100)
  })

  it('delimiter and lines cut on their delimiters; stripDelimiter keeps or drops them', async () => {
    const engine = newEngine()
    const [a, b, c, d] = await connections(engine, 4, clients)
    soloMap(engine, a!.sock, {
      parser: parsers.delimiter({ delimiters: ['||', ';'], stripDelimiter: false }),
      verdict: rules.pass(),
    })
    soloMap(engine, b!.sock, { parser: parsers.lines(), verdict: rules.pass() })
    soloMap(engine, c!.sock, { parser: parsers.delimiter({ delimiters: [Buffer.from([0])] }), verdict: rules.pass() })
    soloMap(engine, d!.sock, { parser: parsers.lines({ stripDelimiter: false }), verdict: rules.pass() })
    const gotA = collect(a!.sock, 3)
    const gotB = collect(b!.sock, 3)
    const gotC = collect(c!.sock, 2)
    const gotD = collect(d!.sock, 3)
    await writeBytewise(a!.client, Buffer.from('one||two;three;'))
    b!.client.write('first\r\nsecond\nthird\r\nunfinished')
    c!.client.write(Buffer.from('x\0yy\0z'))
    d!.client.write('first\r\nsecond\nthird\r\nunfinished')
    expect(await gotA).toEqual(['one||', 'two;', 'three;'])
    expect(await gotB).toEqual(['first', 'second', 'third'])
    expect(await gotC).toEqual(['x', 'yy'])
    expect(await gotD).toEqual(['first\r\n', 'second\n', 'third\r\n'])
  })

  it('fixed cuts messages of one size', async () => {
    const { a } = await soloSocket({ parser: parsers.fixed(3), verdict: rules.pass() })
    const got = collect(a!.sock, 3)
    await writeBytewise(a!.client, Buffer.from('abcdefghij'))
    expect(await got).toEqual(['abc', 'def', 'ghi'])
  })

  it('none: each chunk received is one message', async () => {
    const { a } = await soloSocket({ parser: parsers.none(), verdict: rules.pass() })
    const got = messagesN(a!.sock, 5)
    a!.client.write('hello')
    expect(Buffer.concat(await got).toString()).toBe('hello')
  })

  it('resp: routes pipelined commands by their first key with rules.key.resp', async () => {
    const { src, targets, front } = await router(parsers.resp(), rules.key.resp, ['user:1', 'user:2'])
    const [s1, s2] = targets
    const cmd = respCommand
    const one = cmd('SET', 'user:1', 'alice') + cmd('GET', 'user:1')
    const two = cmd('GET', 'user:2')
    const gone = cmd('GET', 'user:3')
    const r1 = readN(s1!.client, one.length)
    const r2 = readN(s2!.client, two.length)
    await writeBytewise(src!.client, Buffer.from(cmd('SET', 'user:1', 'alice') + two + gone))
    src!.client.write(cmd('GET', 'user:1'))
    expect((await r1).toString()).toBe(one)
    expect((await r2).toString()).toBe(two)
    await until(() => front.stats().droppedNoKey === 1, 5000, 'unknown key dropped')
    await acknowledged(src!.sock)
    const st = front.stats()
    expect([st.messagesIn, st.redirectedEgress, st.droppedNoKey]).toEqual([4, 3, 1])
  })

  it('http1: routes pipelined requests by Host with rules.key.httpHost', async () => {
    const { src, targets, front } = await router(parsers.http1(), rules.key.httpHost, ['a.test', 'b.test:8080'])
    const [a, b] = targets
    const get = (host: string, path: string): string => `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`
    const post = (host: string, body: string): string =>
      `POST /submit HTTP/1.1\r\nHost: ${host}\r\nContent-Length: ${body.length}\r\n\r\n${body}`
    const chunked = `POST /c HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`
    const toA = get('a.test', '/1') + post('a.test', 'hello=1') + chunked
    const toB = get('b.test:8080', '/2')
    const ra = readN(a!.client, toA.length)
    const rb = readN(b!.client, toB.length)
    src!.client.write(get('a.test', '/1') + toB + post('a.test', 'hello=1'))
    await writeBytewise(src!.client, Buffer.from(chunked))
    expect((await ra).toString()).toBe(toA)
    expect((await rb).toString()).toBe(toB)
    await acknowledged(src!.sock)
    expect(front.stats().redirectedEgress).toBe(4)
  })

  it('a frame above maxFrameLength aborts the socket with EMSGSIZE, counted', async () => {
    const { a, map } = await soloSocket({ parser: parsers.lengthField({ maxFrameLength: 64 }), verdict: rules.pass() })
    const got: string[] = []
    a!.sock.on('message', (m) => got.push(m.toString('latin1')))
    const err = errorOf(a!.sock)
    a!.client.write(Buffer.concat([frame('ok'), frame(Buffer.alloc(100, 1))]))
    expect(await err).toEqual({ code: 'EMSGSIZE', hadError: true })
    expect(got).toEqual([frame('ok').toString('latin1')])
    expect(map.stats().parserErrors).toBe(1)
  })

  it('a frame shorter than its own header aborts the socket with EPROTO, counted', async () => {
    const { a, map } = await soloSocket({
      parser: parsers.lengthField({ lengthAdjustment: -8 }),
      verdict: rules.pass(),
    })
    const err = errorOf(a!.sock)
    a!.client.write(Buffer.from([0, 0, 0, 1, 0xaa]))
    expect(await err).toEqual({ code: 'EPROTO', hadError: true })
    expect(map.stats().parserErrors).toBe(1)
  })

  it('maxMessageBytes aborts with EMSGSIZE and messageTimeoutMs with ETIMEDOUT', async () => {
    const engine = newEngine()
    const [a, b] = await connections(engine, 2, clients)
    soloMap(engine, a!.sock, {
      parser: parsers.lines({ maxMessageBytes: 16, discardOversize: false }),
      verdict: rules.pass(),
    })
    soloMap(engine, b!.sock, { parser: parsers.fixed(10, { messageTimeoutMs: 50 }), verdict: rules.pass() })
    const errA = errorOf(a!.sock)
    const errB = errorOf(b!.sock)
    a!.client.write('this line is longer than sixteen bytes')
    b!.client.write('12345')
    expect(await errA).toEqual({ code: 'EMSGSIZE', hadError: true })
    expect(await errB).toEqual({ code: 'ETIMEDOUT', hadError: true })
  })

  it('discardOversize skips an oversized frame, counts it, and goes on', async () => {
    const { a, map } = await soloSocket({
      parser: parsers.lengthField({ maxFrameLength: 16, initialBytesToStrip: 4, discardOversize: true }),
      verdict: rules.pass(),
    })
    const got = collect(a!.sock, 2)
    a!.client.write(Buffer.concat([frame('one'), frame(Buffer.alloc(40, 0x41)), frame('two')]))
    expect(await got).toEqual(['one', 'two'])
    const st = map.stats()
    expect(st.skippedBytes).toBe(44)
    expect(st.skippedFrames).toBeGreaterThanOrEqual(1)
  })

  it('validates framer options, naming them', () => {
    expect(() => parsers.lengthField({ lengthFieldLength: 5 as 4 })).toThrow(RangeError)
    expect(() => parsers.lengthField({ lengthFieldLength: 5 as 4 })).toThrow(/lengthFieldLength/)
    expect(() => parsers.lengthField({ byteOrder: 'xx' as 'be' })).toThrow(/byteOrder/)
    expect(() => parsers.lengthField({ discardOversize: 1 as unknown as boolean })).toThrow(TypeError)
    expect(() => parsers.lengthField({ maxMessageBytes: 0 })).toThrow(/maxMessageBytes/)
    expect(() => parsers.delimiter({ delimiters: [] })).toThrow(/delimiters/)
    expect(() => parsers.delimiter({ delimiters: [''] })).toThrow(/delimiters\[0\]/)
    expect(() => parsers.lines({ maxLength: -1 })).toThrow(/maxLength/)
    expect(() => parsers.lines({ stripDelimiter: 'no' as unknown as boolean })).toThrow(/stripDelimiter/)
    expect(() => parsers.fixed(0)).toThrow(RangeError)
    expect(() => parsers.fixed(1.5)).toThrow(/size/)
    expect(() => parsers.resp({ maxDepth: 0 })).toThrow(/maxDepth/)
    expect(() => parsers.http1({ role: 'proxy' as 'request' })).toThrow(/role/)
    expect(() => parsers.http1({ messageTimeoutMs: 1.5 })).toThrow(/messageTimeoutMs/)
  })
})
