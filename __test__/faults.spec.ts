import { describe, expect, it } from 'vitest'

import { SockmapError, parsers, rules } from '../src/index'
import {
  clientOf,
  collect,
  deadline,
  engineScope,
  errorOf,
  frame,
  listening,
  netServer,
  portOf,
  runFixture,
} from './helpers'

const { newEngine } = engineScope()

/** The error a promise rejects with (or a call throws), to inspect its code and message. */
async function failure(f: () => Promise<unknown>): Promise<SockmapError> {
  try {
    await f()
  } catch (err) {
    expect(err).toBeInstanceOf(SockmapError)
    return err as SockmapError
  }
  throw new Error('did not fail')
}

describe('OS errors reach the application by their names, with the call that failed', () => {
  it('listen: EADDRINUSE on an address in use, EADDRNOTAVAIL on an address of another host', async () => {
    const engine = newEngine()
    const taken = await netServer(() => {})
    try {
      const inUse = await failure(() => engine.listen({ port: portOf(taken) }))
      expect(inUse.code).toBe('EADDRINUSE')
      expect(inUse.message).toMatch(/listen/)
    } finally {
      taken.close()
    }
    const elsewhere = await failure(() => engine.listen({ host: '198.51.100.1', port: 0 }))
    expect(elsewhere.code).toBe('EADDRNOTAVAIL')
  })

  it('connect: ENETUNREACH to a network without a route (a multicast address)', async () => {
    const engine = newEngine()
    const unreachable = await failure(() => engine.connect({ host: '224.0.0.1', port: 80 }))
    expect(unreachable.code).toBe('ENETUNREACH')
    expect(unreachable.message).toMatch(/connect/)
  })
})

describe('the application misbehaving', () => {
  it('a listener that throws is reported once (uncaught) and costs no later event', async () => {
    const r = await runFixture(['faults.cjs', 'throwing-listener'], 20_000)
    expect(r.code, r.stderr).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual({ uncaught: ['listener bug'], text: 'onetwo', order: ['end', 'close'] })
  })

  it('close() with sends and connects in flight settles every promise', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const { client, sock } = await clientOf(server)
    client.pause() // never reads: the sends stay queued in the engine
    const big = Buffer.alloc(4 << 20, 7)
    const sends = Array.from({ length: 8 }, () => sock.send(big))
    // A connect that cannot finish soon: to a port of a documentation network (no answer, or no route).
    const connects = [engine.connect({ host: '203.0.113.1', port: 9 })]
    const settled = Promise.allSettled([...sends, ...connects])
    await deadline(engine.close(), 10_000, 'close')
    const results = await deadline(settled, 10_000, 'every promise settles')
    expect(results).toHaveLength(9)
    client.destroy()
  })
})

describe('peers and limits', () => {
  it('a slowloris sending one byte at a time is cut off by the parser timeout; others are served meanwhile', async () => {
    const engine = newEngine()
    const server = await listening(engine)
    const map = engine.sockMap({ maxEntries: 2 })
    map.attach({ parser: parsers.lengthField({ lengthFieldLength: 4, messageTimeoutMs: 300 }), verdict: rules.pass() })
    const slow = await clientOf(server)
    const fast = await clientOf(server)
    map.set(0, slow.sock)
    map.set(1, fast.sock)
    const slowEnd = errorOf(slow.sock, 5000)
    slow.client.on('error', () => {}) // the engine's close may reach it as a reset
    // One byte every 50 ms of a 1 KiB frame: it would take 50 s to finish.
    const whole = frame(Buffer.alloc(1024, 1))
    let sent = 0
    const drip = setInterval(() => {
      if (!slow.client.destroyed) slow.client.write(whole.subarray(sent, ++sent))
    }, 50)
    try {
      const got = collect(fast.sock, 3)
      for (const p of ['one', 'two', 'three']) fast.client.write(frame(p))
      expect((await got).map((m) => m.slice(4))).toEqual(['one', 'two', 'three'])
      expect(await slowEnd).toEqual({ code: 'ETIMEDOUT', hadError: true })
      expect(sent).toBeLessThan(whole.length)
      // The fast connection still works after the slow one was cut off.
      const more = collect(fast.sock, 1)
      fast.client.write(frame('four'))
      expect((await more).map((m) => m.slice(4))).toEqual(['four'])
    } finally {
      clearInterval(drip)
      slow.client.destroy()
      fast.client.destroy()
    }
  })
})
