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

/** How long the counts must stay the same to show that the source is no longer read. */
const SETTLED_MS = 200

/**
 * Waits until the source is no longer read: every byte it read is either consumed or in the consumer's queue (none on
 * its way there), that queue is above half its bound (where reading would go on again), and the counts stayed so for
 * `SETTLED_MS`. Returns both counts as seen together.
 *
 * The queue may settle below its bound itself: reading stops once it is above, and the acknowledgement of what was
 * consumed before the consumer stalled can arrive after that.
 */
async function sourceStopped(
  source: Socket,
  consumer: Socket,
  consumed: () => number,
): Promise<{ read: number; queued: number }> {
  let seen = { read: -1, queued: 0 }
  let since = 0
  await until(
    () => {
      const now = { read: source.stats().bytesIn, queued: consumer.stats().appQueuedBytes }
      const held = now.queued > HIGH / 2 && now.read - consumed() === now.queued
      if (!held || now.read !== seen.read || now.queued !== seen.queued) since = Date.now()
      seen = now
      return held && Date.now() - since >= SETTLED_MS
    },
    10_000,
    'the source no longer read, every byte it read accounted for',
  ).catch((e: Error) => {
    throw new Error(`${e.message}: last seen ${JSON.stringify({ ...seen, consumed: consumed() })}`)
  })
  return seen
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
    // A socket is paused until it has a 'message' listener: the consumer's own pause is the one to wait for.
    await until(() => pausedOnce && dst!.sock.isPaused, 10_000, 'consumer paused')
    const { read, queued } = await sourceStopped(src!.sock, dst!.sock, () => have)
    // Reading stopped: the source read at most the consumer's queue bound (plus one read) past what was consumed.
    expect(read).toBeLessThan(TOTAL / 2)
    expect(queued).toBeLessThanOrEqual(HIGH + (512 << 10))
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
    const { read, queued } = await sourceStopped(a!.sock, a!.sock, () => have)
    expect(read).toBeLessThan(TOTAL / 2)
    expect(queued).toBeLessThanOrEqual(HIGH + (512 << 10))
    gate!()
    await deadline(consumer, 20_000, 'iterator consumed everything')
    expect(Buffer.concat(got).equals(data)).toBe(true)
  })
})
