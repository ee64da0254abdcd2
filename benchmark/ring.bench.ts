// The scatter-gather ring driven from TypeScript: the cost of one boundary crossing per ring operation.
// The ring's own speed (no JavaScript) is measured by `cargo bench -p sockmap-core --bench ring`.
import { Bench } from 'tinybench'

import { SgRing } from '../src/index'

const payload = Buffer.alloc(64, 7)
const ring = new SgRing({ maxFrags: 1024 })
const bench = new Bench({ time: 500, warmup: true })

bench
  .add('append 64 B + consume 64 B', () => {
    ring.append(payload)
    ring.consume(64)
  })
  .add('append 4 × 64 B + pull across fragments + consume', () => {
    for (let i = 0; i < 4; i++) ring.append(payload)
    ring.pull(32, 160)
    ring.consume(256)
  })
  .add('append 64 B + push 4 + pop 4 + consume', () => {
    ring.append(payload)
    ring.push(0, 4)
    ring.pop(0, 4)
    ring.consume(64)
  })

async function main(): Promise<void> {
  await bench.run()
  console.table(bench.table())
}

void main()
