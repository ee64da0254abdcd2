// An embedded RESP backend for the demo when redis-server is not installed: GET, SET, DEL, EXISTS, MGET, MSET, DBSIZE,
// FLUSHALL, PING and ECHO over node:net, keys in a Map. Enough to show the gateway's job, not a Redis.
import net from 'node:net'

import RedisParser from 'redis-parser'

function bulk(v: string | undefined): string {
  return v === undefined ? '$-1\r\n' : `$${Buffer.byteLength(v)}\r\n${v}\r\n`
}

/** Starts a backend on a free loopback port. */
export async function respBackend(): Promise<{ port: number; keys: Map<string, string>; close: () => void }> {
  const keys = new Map<string, string>()
  const answer = (args: string[]): string => {
    const [cmd = '', ...rest] = args
    switch (cmd.toUpperCase()) {
      case 'PING':
        return '+PONG\r\n'
      case 'ECHO':
        return bulk(rest[0])
      case 'GET':
        return bulk(keys.get(rest[0] ?? ''))
      case 'SET':
        keys.set(rest[0] ?? '', rest[1] ?? '')
        return '+OK\r\n'
      case 'MSET':
        for (let i = 0; i + 1 < rest.length; i += 2) keys.set(rest[i] as string, rest[i + 1] as string)
        return '+OK\r\n'
      case 'MGET':
        return `*${rest.length}\r\n${rest.map((k) => bulk(keys.get(k))).join('')}`
      case 'DEL':
      case 'UNLINK':
        return `:${rest.filter((k) => keys.delete(k)).length}\r\n`
      case 'EXISTS':
        return `:${rest.filter((k) => keys.has(k)).length}\r\n`
      case 'DBSIZE':
        return `:${keys.size}\r\n`
      case 'FLUSHALL':
        keys.clear()
        return '+OK\r\n'
      default:
        return `-ERR unknown command '${cmd}'\r\n`
    }
  }
  const server = net.createServer((sock) => {
    sock.setNoDelay(true)
    const parser = new RedisParser({
      returnReply: (r: unknown) => sock.write(answer((r as unknown[]).map(String))),
      returnError: () => sock.destroy(),
      returnFatalError: () => sock.destroy(),
    })
    sock.on('data', (d) => parser.execute(d))
    sock.on('error', () => {})
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { port: (server.address() as net.AddressInfo).port, keys, close: () => server.close() }
}
