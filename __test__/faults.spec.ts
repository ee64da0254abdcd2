import { describe, expect, it } from 'vitest'

import { SockmapError } from '../src/index'
import { netServer, portOf, engineScope } from './helpers'

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
