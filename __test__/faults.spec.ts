import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import { SockmapError, Verdict, parsers, rules, type Engine, type SockMap, type StreamMessage } from '../src/index'
import {
  acknowledged,
  clientOf,
  collect,
  connections,
  deadline,
  engineScope,
  errorOf,
  frame,
  listening,
  netServer,
  portOf,
  programPath,
  readN,
  runFixture,
  soloMap,
  until,
} from './helpers'

const { newEngine, clients } = engineScope()

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

  it('errors the engine makes nothing of keep their names too: ENOTDIR and ELOOP (listen and connect)', async () => {
    const engine = newEngine()
    const dir = mkdtempSync(join(tmpdir(), 'sockmap-errno-'))
    try {
      const file = join(dir, 'file')
      writeFileSync(file, '')
      const loop = join(dir, 'loop')
      symlinkSync(loop, loop)
      const notDir = await failure(() => engine.listen({ path: join(file, 'sock') }))
      expect([notDir.code, notDir.message]).toEqual(['ENOTDIR', expect.stringMatching(/listen failed/)])
      const looped = await failure(() => engine.connect({ path: join(loop, 'sock') }))
      expect([looped.code, looped.message]).toEqual(['ELOOP', expect.stringMatching(/connect failed/)])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  /** Root can run a child as nobody (setpriv), for whom binding port 1 is privileged. */
  const unprivileged =
    process.getuid?.() === 0 &&
    programPath('setpriv') !== undefined &&
    Number(readFileSync('/proc/sys/net/ipv4/ip_unprivileged_port_start', 'utf8')) > 1
  if (!unprivileged) console.warn('skipping the EACCES test: needs root, setpriv and a privileged port 1')

  it.skipIf(!unprivileged)('listen: EACCES binding a privileged port as an unprivileged user', async () => {
    const dist = join(__dirname, '..', 'dist', 'index.js')
    const script = `const { Engine } = require(${JSON.stringify(dist)})
      const e = new Engine()
      e.listen({ port: 1 }).then(() => console.log('listening'), (err) => console.log(err.code, err.message))
        .finally(() => e.close())`
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        programPath('setpriv')!,
        ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '-e', script],
        { timeout: 20_000 },
        (err, stdout, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout.trim())),
      )
    })
    expect(out).toBe('EACCES EACCES: listen failed')
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

  it.each(['threads', 'inline'])(
    'a worker terminated while its engine proxies traffic (%s): peers see the end, descriptors come back',
    async (drive) => {
      const r = await runFixture(['worker-proxy.cjs', drive], 60_000)
      expect(r.code, r.stdout + r.stderr).toBe(0)
      const out = JSON.parse(r.stdout) as {
        fdsBefore: number
        first: Record<string, number | boolean>
        second: { echoed: number; exact: boolean; ioThreadsAfter: number }
      }
      // The worker's engine held descriptors (4 clients, 4 upstreams, a listener, its backend's own); all closed.
      expect(out.first.fdsDuring as number).toBeGreaterThan(out.fdsBefore + 8)
      if (drive === 'threads') expect(out.first.ioThreadsDuring as number).toBeGreaterThan(0)
      expect(out.first).toEqual({
        // One I/O thread per shard (SOCKMAP_SHARDS may ask for several); an inline engine has none.
        ioThreadsDuring: drive === 'inline' ? 0 : out.first.ioThreadsDuring,
        fdsDuring: out.first.fdsDuring,
        ioThreadsAfter: 0,
        inFlight: true,
        exact: true,
        clientsClosed: 4,
        upstreams: 4,
        upstreamsClosed: 4,
      })
      expect(out.second).toEqual({ echoed: 1 << 20, exact: true, ioThreadsAfter: 0 })
    },
  )

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

describe('a verdict slower than the batch deadline', () => {
  const TIMEOUT_MS = 200
  /** A verdict that busy-waits `busyMs` on the message `slow` and sends every message to `sink`. */
  function slowVerdict(sink: SockMap, busyMs: number, calls: string[]) {
    return (msg: StreamMessage): Verdict => {
      const text = msg.data.subarray(4).toString()
      calls.push(text)
      if (text === 'slow') {
        const end = Date.now() + busyMs
        while (Date.now() < end) calls.length += 0
      }
      return msg.redirect(sink, 0)
    }
  }

  async function proxied(engine: Engine, busyMs: number, calls: string[]) {
    const [a, b] = await connections(engine, 2, clients)
    const sink = engine.sockMap({ maxEntries: 1 })
    sink.set(0, b!.sock)
    soloMap(engine, a!.sock, {
      parser: parsers.lengthField({ lengthFieldLength: 4 }),
      verdict: slowVerdict(sink, busyMs, calls),
      onError: Verdict.PASS,
    })
    return { src: a!, dst: b! }
  }

  it('threads: the late batch gets onError, its answer is ignored and counted, the socket goes on', async () => {
    const engine = newEngine({ drive: 'threads', batch: { verdictTimeoutMs: TIMEOUT_MS } })
    const errors: SockmapError[] = []
    engine.on('error', (e) => errors.push(e))
    const calls: string[] = []
    const { src, dst } = await proxied(engine, 5 * TIMEOUT_MS, calls)
    const passed = collect(src.sock, 1)
    src.client.write(frame('slow'))
    // PASS is the map's onError: the message reaches the application instead of the sink.
    expect(await passed).toEqual([frame('slow').toString('latin1')])
    await until(() => src.sock.stats().verdictsLate === 1, 5000, 'the late answer counted')
    expect(errors.map((e) => e.code)).toEqual(['ETIMEDOUT'])
    expect(errors[0]!.message).toMatch(/no answer within 200 ms; its 1 items got the error verdict/)
    const later = Buffer.concat([frame('two'), frame('three')])
    src.client.write(later)
    expect((await readN(dst.client, later.length)).equals(later)).toBe(true)
    await acknowledged(src.sock)
    const s = src.sock.stats()
    expect([s.messagesIn, s.passed, s.redirectedEgress, s.dropped, s.verdictTimeouts, s.verdictsLate]).toEqual([
      3, 1, 2, 0, 1, 1,
    ])
    expect(engine.stats().totals.verdictTimeouts).toBe(1)
    expect(calls).toEqual(['slow', 'two', 'three'])
  })

  it('inline: the verdict runs on the loop, so its answer is applied however long it took', async () => {
    const engine = newEngine({ drive: 'inline', backend: 'auto', batch: { verdictTimeoutMs: TIMEOUT_MS } })
    const errors: SockmapError[] = []
    engine.on('error', (e) => errors.push(e))
    const calls: string[] = []
    const { src, dst } = await proxied(engine, 2 * TIMEOUT_MS, calls)
    const all = Buffer.concat([frame('slow'), frame('two')])
    src.client.write(frame('slow'))
    await until(() => calls.length === 1, 5000, 'the slow verdict')
    src.client.write(frame('two'))
    expect((await readN(dst.client, all.length)).equals(all)).toBe(true)
    await acknowledged(src.sock)
    const s = src.sock.stats()
    expect([s.redirectedEgress, s.passed, s.verdictTimeouts, s.verdictsLate]).toEqual([2, 0, 0, 0])
    expect(errors).toEqual([])
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
