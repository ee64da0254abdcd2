import { describe, expect, it } from 'vitest'

import { SgRing, nativeVersion } from '../src/index'
import { codeOf } from './helpers'

function ringOf(...parts: string[]): SgRing {
  const ring = new SgRing()
  for (const p of parts) expect(ring.append(Buffer.from(p))).toBe(true)
  return ring
}

describe('SgRing through the native addon', () => {
  it('loads the addon', () => {
    expect(nativeVersion).toMatch(/^\d+\.\d+\.\d+$/)
  })

  it('round-trips bytes fragment by fragment', () => {
    const ring = ringOf('hello', ' ', 'world')
    expect(ring.length).toBe(11)
    expect(ring.fragCount).toBe(3)
    expect(ring.fragmentLengths()).toEqual([5, 1, 5])
    expect(ring.toBuffer().toString()).toBe('hello world')
  })

  it('advances past a partial write: whole fragments dropped, the last advanced', () => {
    const ring = ringOf('abc', 'defg', 'hi')
    expect(ring.advance(5)).toBe(5)
    expect(ring.fragmentLengths()).toEqual([2, 2])
    expect(ring.toBuffer().toString()).toBe('fghi')
    expect(ring.advance(100)).toBe(4)
    expect(ring.length).toBe(0)
  })

  it('keeps consume as the deprecated name of advance', () => {
    const ring = ringOf('abc', 'defg')
    expect(ring.consume(4)).toBe(4)
    expect(ring.toBuffer().toString()).toBe('efg')
    expect(ring.consume(9)).toBe(3)
    expect(ring.length).toBe(0)
  })

  it('pulls, pushes and pops like the kernel helpers', () => {
    const ring = ringOf('abc', 'def')
    expect(ring.pull(1, 5).toString()).toBe('bcde')
    ring.push(3, 2)
    expect([...ring.toBuffer()]).toEqual([97, 98, 99, 0, 0, 100, 101, 102])
    ring.pop(2, 4)
    expect(ring.toBuffer().toString()).toBe('abef')
    ring.trim(3)
    expect(ring.toBuffer().toString()).toBe('abe')
  })

  it('reports the kernel error codes', () => {
    const ring = ringOf('abcdef')
    expect(codeOf(() => ring.pull(3, 3))).toBe('EINVAL')
    expect(codeOf(() => ring.pull(6, 7))).toBe('EINVAL')
    expect(codeOf(() => ring.pop(6, 1))).toBe('EINVAL')
    expect(codeOf(() => ring.pop(2, 5))).toBe('EINVAL')
    expect(codeOf(() => ring.push(7, 1))).toBe('EINVAL')
    expect(ring.toBuffer().toString()).toBe('abcdef')
  })

  it('says full instead of dropping data', () => {
    const ring = new SgRing({ maxFrags: 2 })
    expect(ring.append(Buffer.from('a'))).toBe(true)
    expect(ring.append(Buffer.from('b'))).toBe(true)
    expect(ring.append(Buffer.from('c'))).toBe(false)
    expect(ring.toBuffer().toString()).toBe('ab')
  })

  it('rejects bad arguments with TypeError and RangeError naming the argument', () => {
    const ring = ringOf('abc')
    expect(() => ring.append('abc' as unknown as Buffer)).toThrow(TypeError)
    expect(() => ring.pull(-1, 2)).toThrow(/start must be a non-negative integer/)
    expect(() => ring.pop(0, 1.5)).toThrow(RangeError)
    expect(() => new SgRing({ maxFrags: 0 })).toThrow(/options.maxFrags/)
  })
})
