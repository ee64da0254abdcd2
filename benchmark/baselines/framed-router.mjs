// A Node router for 4-byte big-endian length-prefixed frames: it parses every frame a
// client sends, asks a verdict function where it goes and writes it to that socket
// (here the client's partner upstream connection, as the engine's `frames` mode does).
//
//   --mode coalesce  frames bound for one target are gathered and written once per tick
//                    (consecutive frames of one read stay one zero-copy slice)
//   --mode naive     one socket.write() per frame
import net from 'node:net'
import { pair, proxyArgs, serve } from './cli.mjs'

const HEADER = 4
const MAX_FRAME = 64 * 1024
const DROP = -1

const { listen, upstream, mode } = proxyArgs('coalesce')
if (mode !== 'coalesce' && mode !== 'naive') {
  throw new RangeError(`--mode must be coalesce or naive, got ${mode}`)
}

/** The routing decision for the frame at `buf[start, end)`: the index of its target, or DROP. */
function verdict(buf, start, end) {
  return end - start > HEADER ? 0 : DROP
}

/** Per target: byte ranges waiting for this tick's flush. Consecutive frames of one buffer
 * extend one open run, so a read full of frames for one target is written as one slice. */
class Outbox {
  constructor(socket, source) {
    this.socket = socket
    this.source = source
    this.slices = []
    this.bytes = 0
    this.run = null // buffer of the open run
    this.runStart = 0
    this.runEnd = 0
    this.waitingDrain = false
  }

  /** Queues `buf[start, end)`. */
  push(buf, start, end) {
    if (this.run === buf && this.runEnd === start) {
      this.runEnd = end
    } else {
      this.closeRun()
      this.run = buf
      this.runStart = start
      this.runEnd = end
    }
    this.bytes += end - start
  }

  closeRun() {
    if (this.run !== null) this.slices.push(this.run.subarray(this.runStart, this.runEnd))
    this.run = null
  }

  flush() {
    if (this.bytes === 0) return
    this.closeRun()
    const out = this.slices.length === 1 ? this.slices[0] : Buffer.concat(this.slices, this.bytes)
    this.slices = []
    this.bytes = 0
    send(this, out)
  }
}

/** Writes `data` to the outbox's socket and pauses its source while the socket is full. */
function send(box, data) {
  if (!box.socket.write(data) && !box.waitingDrain) {
    box.waitingDrain = true
    box.source.pause()
    box.socket.once('drain', () => {
      box.waitingDrain = false
      box.source.resume()
    })
  }
}

const dirty = new Set()
let flushScheduled = false
function flushAll() {
  flushScheduled = false
  for (const box of dirty) box.flush()
  dirty.clear()
}

/** Routes the whole frame `buf[start, end)` from the source whose targets are `targets`. */
function route(targets, buf, start, end) {
  const box = targets[verdict(buf, start, end)]
  if (box === undefined) return
  if (mode === 'naive') {
    send(box, buf.subarray(start, end))
    return
  }
  box.push(buf, start, end)
  dirty.add(box)
  if (!flushScheduled) {
    flushScheduled = true
    setImmediate(flushAll)
  }
}

/** Splits `source`'s byte stream into frames and routes each. */
function frameStream(source, targets) {
  let rest = null // bytes of an incomplete frame
  source.on('data', (chunk) => {
    let pos = 0
    if (rest !== null) {
      if (rest.length < HEADER) {
        const take = Math.min(HEADER - rest.length, chunk.length)
        rest = Buffer.concat([rest, chunk.subarray(0, take)])
        pos = take
        if (rest.length < HEADER) return
      }
      const total = HEADER + rest.readUInt32BE(0)
      if (total > MAX_FRAME) {
        source.destroy(new Error('frame too long'))
        return
      }
      const need = total - rest.length
      if (chunk.length - pos < need) {
        rest = Buffer.concat([rest, chunk.subarray(pos)])
        return
      }
      const frame = Buffer.concat([rest, chunk.subarray(pos, pos + need)])
      route(targets, frame, 0, frame.length)
      pos += need
      rest = null
    }
    while (chunk.length - pos >= HEADER) {
      const total = HEADER + chunk.readUInt32BE(pos)
      if (total > MAX_FRAME) {
        source.destroy(new Error('frame too long'))
        return
      }
      if (chunk.length - pos < total) break
      route(targets, chunk, pos, pos + total)
      pos += total
    }
    if (pos < chunk.length) rest = Buffer.from(chunk.subarray(pos))
  })
}

/** Ends `target` after this tick's pending frames were flushed. */
function endAfterFlush(box) {
  setImmediate(() => {
    box.flush()
    box.socket.end()
  })
}

const server = net.createServer({ noDelay: true }, (client) => {
  const up = net.connect({ ...upstream, noDelay: true })
  const toUp = new Outbox(up, client)
  const toClient = new Outbox(client, up)
  frameStream(client, [toUp])
  frameStream(up, [toClient])
  client.on('end', () => endAfterFlush(toUp))
  up.on('end', () => endAfterFlush(toClient))
  pair(client, up)
})

serve(server, listen)
