// Moves bytes through the engine's scatter-gather ring from TypeScript: the operations a msgVerdict applies to the
// data an application sends (the kernel's sk_msg helpers).
import { SgRing, nativeVersion } from '../src/index'

const show = (label: string, ring: SgRing): void => {
  const frags = ring.fragmentLengths().join('+')
  console.log(
    `${label.padEnd(34)} ${JSON.stringify(ring.toBuffer().toString('latin1'))} (${ring.length} B in ${frags})`,
  )
}

console.log(`sockmap native engine ${nativeVersion}`)
const ring = new SgRing({ maxFrags: 17 })
for (const part of ['GET /a HTTP/1.1\r\n', 'Host: example\r\n', '\r\n']) ring.append(Buffer.from(part))
show('three writes, three fragments', ring)

console.log(`pull(0, 20) spans fragments        ${JSON.stringify(ring.pull(0, 20).toString())}`)
show('after pull the range is one frag', ring)

ring.pop(4, 2)
show('pop(4, 2) removes "/a"', ring)
ring.push(4, 1)
show('push(4, 1) inserts one zero byte', ring)

let sent = 0
while (ring.length > 0) sent += ring.advance(7)
console.log(`advanced by 7-byte partial writes   ${sent} B, ring now ${ring.length} B`)

const small = new SgRing({ maxFrags: 2 })
const accepted = ['x', 'y', 'z'].map((s) => small.append(Buffer.from(s)))
console.log(`a 2-fragment ring accepts           ${JSON.stringify(accepted)} (full is backpressure, never a drop)`)
