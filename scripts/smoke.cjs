// A smoke test for one built binary, run by whatever Node runs it (an emulated arm64 Node, say): loads sockmap from
// dist/ with the binary SOCKMAP_NATIVE_PATH names, and routes framed messages from one client to another through an
// engine, by a native parser and a TypeScript verdict. Prints one line and exits 0 when every message arrived intact.
//
//   SOCKMAP_NATIVE_PATH=artifacts/sockmap.linux-arm64-gnu.node node scripts/smoke.cjs [MESSAGES]
'use strict'
const net = require('node:net')
const { once } = require('node:events')
const { join } = require('node:path')

const { Engine, parsers, nativeVersion } = require(join(__dirname, '..', 'dist', 'index.js'))

const COUNT = Number(process.argv[2] ?? 200)
const LIMIT_MS = Number(process.env.SMOKE_TIMEOUT_MS ?? 60_000)

function frame(i) {
  const body = Buffer.from(`message ${i} `.padEnd(32 + (i % 50), '.'))
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

async function main() {
  const engine = new Engine()
  const backend = engine.backend
  const server = await engine.listen({ host: '127.0.0.1', port: 0 })
  const accept = () => once(server, 'connection').then(([s]) => s)
  const connect = async () => {
    const accepted = accept()
    const c = net.connect({ host: '127.0.0.1', port: server.address().port })
    await once(c, 'connect')
    return { client: c, sock: await accepted }
  }
  const from = await connect()
  const to = await connect()
  const map = engine.sockMap({ maxEntries: 2 })
  let judged = 0
  map.attach({
    parser: parsers.lengthField({ lengthFieldLength: 4 }),
    verdict: (msg) => {
      judged++
      return msg.redirect(map, 1)
    },
  })
  map.set(1, to.sock)
  map.set(0, from.sock)

  const expected = Buffer.concat(Array.from({ length: COUNT }, (_, i) => frame(i)))
  const received = new Promise((resolve, reject) => {
    const chunks = []
    let n = 0
    to.client.on('data', (d) => {
      chunks.push(d)
      n += d.length
      if (n >= expected.length) resolve(Buffer.concat(chunks))
    })
    to.client.on('error', reject)
  })
  from.client.write(expected)
  const got = await received
  if (!got.equals(expected))
    throw new Error(`received ${got.length} bytes that differ from the ${expected.length} sent`)
  if (judged !== COUNT) throw new Error(`the verdict ran ${judged} times for ${COUNT} messages`)
  from.client.destroy()
  to.client.destroy()
  await engine.close()
  console.log(
    `smoke ok: ${process.arch} node ${process.version}, engine ${nativeVersion} on ${backend}, ${COUNT} messages redirected`,
  )
}

const timer = setTimeout(() => {
  console.error(`smoke: no result within ${LIMIT_MS} ms`)
  process.exit(2)
}, LIMIT_MS)
main().then(
  () => clearTimeout(timer),
  (e) => {
    console.error('smoke failed:', e)
    process.exit(1)
  },
)
