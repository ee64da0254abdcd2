// The binding's boundary: host names resolved by TypeScript, IP literals only below it, error codes in `err.code`,
// and answers the binding cannot read handed to the engine as invalid.
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'

import { describe, expect, it } from 'vitest'

import {
  AnswerCode,
  BindingEngine,
  DESC_STRIDE,
  META_STRIDE,
  EventKind,
  errorCodes,
  statsFields,
  type JsEvent,
} from '../src/binding.cjs'
import { SockmapError, type Socket } from '../src/index'
import { deadline, engineScope, until } from './helpers'

describe('host names', () => {
  const { newEngine } = engineScope()

  it("listens on and connects to 'localhost' (resolved with dns.lookup) and carries the exact bytes", async () => {
    const engine = newEngine()
    const server = await engine.listen({ host: 'localhost', port: 0 })
    const accepted = once(server, 'connection')
    const up = await deadline(engine.connect({ host: 'localhost', port: server.address().port }), 5000, 'connect')
    const [sock] = (await deadline(accepted, 5000, 'accept')) as [Socket]
    const got: Buffer[] = []
    sock.on('message', (m: Buffer) => got.push(Buffer.from(m)))
    expect(await up.send('ping over localhost')).toBe(19)
    await until(() => Buffer.concat(got).length === 19, 5000, '19 bytes')
    expect(Buffer.concat(got).toString()).toBe('ping over localhost')
    expect(['127.0.0.1', '::1']).toContain(server.address().address)
  })

  it('rejects with the dns.lookup error, unchanged, when a name does not resolve', async () => {
    const engine = newEngine()
    const err = (await deadline(
      engine.connect({ host: 'no-such-host.invalid', port: 9 }).catch((e: unknown) => e),
      10000,
      'lookup failure',
    )) as NodeJS.ErrnoException & { hostname?: string }
    expect(err).toBeInstanceOf(Error)
    expect(err).not.toBeInstanceOf(SockmapError)
    expect(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL']).toContain(err.code)
    expect(err.hostname).toBe('no-such-host.invalid')
    await expect(engine.listen({ host: 'no-such-host.invalid', port: 0 })).rejects.not.toBeInstanceOf(SockmapError)
    expect(engine.stats().sockets).toBe(0)
  })
})

/** A raw binding engine, its events and its batches, polled with deadlines. */
function rawEngine(): { b: BindingEngine; events: JsEvent[]; wakes: () => number } {
  let wakes = 0
  const events: JsEvent[] = []
  const b = new BindingEngine({}, () => {
    wakes++
    events.push(...b.drain())
  })
  return { b, events, wakes: () => wakes }
}

function codeOf(fn: () => unknown): { code: unknown; message: string } {
  try {
    fn()
  } catch (err) {
    return { code: (err as { code?: unknown }).code, message: (err as Error).message }
  }
  throw new Error('did not throw')
}

describe('the binding', () => {
  it('names every code it throws in SockmapErrorCode (which adds the TypeScript-only ERR_CALLBACK)', () => {
    const text = readFileSync(join(__dirname, '..', 'src', 'errors.ts'), 'utf8')
    const union = /export type SockmapErrorCode =([^/]*?)\n\n/.exec(text)?.[1] ?? ''
    const names = [...union.matchAll(/'([A-Z0-9_]+)'/g)].map((m) => m[1])
    expect(names.sort()).toEqual([...errorCodes(), 'ERR_CALLBACK'].sort())
  })

  it('takes IP literals only, and throws errors whose code is the errno name', async () => {
    const { b } = rawEngine()
    try {
      expect(codeOf(() => b.listen('localhost', 0))).toEqual({
        code: 'EINVAL',
        message: "not an IP address: 'localhost'",
      })
      expect(codeOf(() => b.connect('example.com', 80))).toEqual({
        code: 'EINVAL',
        message: "not an IP address: 'example.com'",
      })
      expect(codeOf(() => b.createMap('bogus', 1))).toEqual({ code: 'EINVAL', message: 'unknown map kind' })
      // Map numbers are the engine's ids: one it never created is EBADF.
      expect(codeOf(() => b.mapLen(7)).code).toBe('EBADF')
      expect(b.createMap('sockmap', 1)).toBe(0)
      expect(b.createMap('sockhash', 1)).toBe(1)
      expect(b.mapLen(1)).toBe(0)
    } finally {
      await b.close()
    }
  })

  it('gives the error verdict (DROP) to answers it cannot read, and goes on', async () => {
    const { b, events } = rawEngine()
    const clients: net.Socket[] = []
    try {
      const map = b.createMap('sockhash', 4)
      b.attach(map, { verdict: { kind: 'external', tag: 0 } })
      const l = b.listen('127.0.0.1', 0)
      const client = net.connect({ host: '127.0.0.1', port: l.port })
      clients.push(client)
      await deadline(once(client, 'connect'), 5000, 'connect')
      await until(() => events.some((e) => e.kind === EventKind.Accepted), 5000, 'accepted')
      const sock = (events.find((e) => e.kind === EventKind.Accepted) as JsEvent).other
      b.mapUpdate(map, Buffer.from('a'), sock, 'any')

      const fields = statsFields()
      const stat = (name: string): number => (b.sockStats(sock) as number[])[fields.indexOf(name)] as number
      const payload = new Uint8Array(1024)
      const descs = new Float64Array(DESC_STRIDE * 16)
      const meta = new Int32Array(META_STRIDE * 16)
      /** Sends `data`, waits for its batch, answers it with `code` (no targets). */
      const judge = async (data: string, code: number): Promise<void> => {
        client.write(data)
        let n = 0
        await until(() => (n = b.takeBatch(payload, descs, meta)) > 0, 5000, `batch of '${data}'`)
        expect(n).toBe(1)
        b.answerBatch(Int32Array.of(code), new Float64Array(0), [], new Float64Array(0), [], new Float64Array(0))
      }

      await judge('abc', 99) // an unknown code
      await until(() => stat('dropped') === 1, 5000, 'first drop')
      await judge('defg', AnswerCode.Redirect + 3) // a target that is not in the table
      await until(() => stat('dropped') === 2, 5000, 'second drop')
      expect([stat('droppedVerdict'), stat('droppedBytes'), stat('passed')]).toEqual([2, 7, 0])

      await judge('hi', AnswerCode.Pass)
      await until(() => events.some((e) => e.kind === EventKind.Message), 5000, 'passed message')
      const msg = events.find((e) => e.kind === EventKind.Message) as JsEvent
      expect([msg.sock, msg.data?.toString()]).toEqual([sock, 'hi'])
      expect([stat('passed'), stat('dropped')]).toEqual([1, 2])
    } finally {
      for (const c of clients) c.destroy()
      await b.close()
    }
  })
})
