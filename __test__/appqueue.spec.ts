import { describe, expect, it } from 'vitest'

import { rules, type Socket } from '../src/index'
import { connections, deadline, until, engineScope, soloMap } from './helpers'

const { newEngine, clients } = engineScope()

/** More than loopback's socket buffers can absorb, so that a stopped reader shows as a stalled writer. */
const TOTAL = 24 << 20
const HIGH = 64 << 10

function pattern(n: number): Buffer {
  const b = Buffer.allocUnsafe(n)
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 16)) & 0xff
  return b
}

/** Waits until `read()` stops changing for `quietMs` (bounded by `ms`), then returns its value. */
async function settled(read: () => number, quietMs: number, ms: number): Promise<number> {
  const end = Date.now() + ms
  let last = read()
  let since = Date.now()
  for (;;) {
    await new Promise((r) => setTimeout(r, 10))
    const v = read()
    if (v !== last) {
      last = v
      since = Date.now()
    } else if (Date.now() - since >= quietMs) {
      return v
    }
    if (Date.now() > end) throw new Error('deadline: value did not settle')
  }
}

describe('bounded application queues', () => {
  it('a paused consumer stops the source of its ingress redirects; nothing is lost after resume', async () => {
    const engine = newEngine({ appHighWatermark: HIGH })
    const [src, dst] = await connections(engine, 2, clients)
    const targets = engine.sockHash({ maxEntries: 2 })
    targets.set('dst', dst!.sock)
    const front = engine.sockMap({ maxEntries: 1 })
    front.attach({ verdict: rules.redirect(targets, 'dst', { ingress: true }) })
    const got: Buffer[] = []
    let have = 0
    let pausedOnce = false
    dst!.sock.on('message', (m: Buffer) => {
      got.push(m)
      have += m.length
      if (have >= 1 << 20 && !pausedOnce) {
        pausedOnce = true
        dst!.sock.pause()
      }
    })
    front.set(0, src!.sock)
    const data = pattern(TOTAL)
    src!.client.write(data)
    await until(() => dst!.sock.isPaused, 10_000, 'consumer paused')
    const readWhilePaused = await settled(() => src!.sock.stats().bytesIn, 150, 10_000)
    // Reading stopped: the source read at most the consumer's queue bound (plus one read) past what was consumed.
    expect(readWhilePaused).toBeLessThan(TOTAL / 2)
    const queued = dst!.sock.stats().appQueuedBytes
    expect(queued).toBeGreaterThanOrEqual(HIGH)
    expect(queued).toBeLessThanOrEqual(HIGH + (512 << 10))
    expect(src!.sock.stats().bytesIn - have).toBe(queued)
    dst!.sock.resume()
    await until(() => have === TOTAL, 20_000, 'every byte after resume')
    expect(Buffer.concat(got).equals(data)).toBe(true)
    await until(() => dst!.sock.stats().appQueuedBytes === 0, 5000, 'queue acknowledged')
  })

  it('a slow async iterator stops its own socket from being read; nothing is lost', async () => {
    const engine = newEngine({ appHighWatermark: HIGH })
    const [a] = await connections(engine, 1, clients)
    soloMap(engine, a!.sock, { verdict: rules.pass() })
    const data = pattern(TOTAL)
    let gate: (() => void) | undefined
    const opened = new Promise<void>((r) => (gate = r))
    let have = 0
    const got: Buffer[] = []
    const consumer = (async (sock: Socket) => {
      for await (const m of sock) {
        got.push(m)
        have += m.length
        if (got.length === 1) await opened // the consumer stalls after its first message
        if (have >= TOTAL) return
      }
    })(a!.sock)
    a!.client.write(data)
    await until(() => got.length === 1, 10_000, 'first message')
    const readWhileStalled = await settled(() => a!.sock.stats().bytesIn, 150, 10_000)
    expect(readWhileStalled).toBeLessThan(TOTAL / 2)
    expect(a!.sock.stats().appQueuedBytes).toBeLessThanOrEqual(HIGH + (512 << 10))
    gate!()
    await deadline(consumer, 20_000, 'iterator consumed everything')
    expect(Buffer.concat(got).equals(data)).toBe(true)
  })
})
