// The simplest Node TCP proxy: `client.pipe(up); up.pipe(client)` per connection.
import net from 'node:net'
import { pair, proxyArgs, serve } from './cli.mjs'

const { listen, upstream } = proxyArgs('raw')

const server = net.createServer({ noDelay: true }, (client) => {
  const up = net.connect({ ...upstream, noDelay: true })
  client.pipe(up)
  up.pipe(client)
  pair(client, up)
})

serve(server, listen)
