// Peers shared by the benchmarks: HAProxy in TCP mode with one thread, started from a generated configuration and
// awaited until it listens, and redis-server without persistence.
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Proc, freePort, waitListen } from './procs.mjs'

/** True when `cmd` is on the PATH. */
export function have(cmd) {
  try {
    execFileSync('bash', ['-c', `command -v ${cmd}`])
    return true
  } catch {
    return false
  }
}

/** HAProxy TCP mode, nbthread 1, no logging, one server. */
export function haproxyConfig(listen, upstream, maxconn) {
  return `global
    nbthread 1
    maxconn ${maxconn}
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
frontend fe
    bind 127.0.0.1:${listen}
    maxconn ${maxconn}
    default_backend be
backend be
    server s1 127.0.0.1:${upstream} maxconn ${maxconn}
`
}

let cfgSeq = 0

/** A temporary file for a generated peer configuration. */
export function configFile(name, text) {
  const file = path.join(tmpdir(), `sockmap-bench-${name}-${process.pid}-${cfgSeq++}`)
  writeFileSync(file, text)
  return file
}

/** Starts HAProxy from `listen` to `upstream` and resolves once it listens. */
export async function startHaproxy(listen, upstream, { pin = false, maxconn = 2000 } = {}) {
  const file = configFile('haproxy.cfg', haproxyConfig(listen, upstream, maxconn))
  const p = new Proc('haproxy', 'haproxy', ['-db', '-f', file], { pin })
  await waitListen(listen).catch(async (e) => {
    await p.stop()
    throw new Error(`${e.message} ${p.stderr}`)
  })
  return p
}

/** A redis-server on a free loopback port, without persistence, awaited until it listens: { port, proc }. */
export async function startRedis() {
  const port = await freePort()
  const proc = new Proc('redis-server', 'redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--protected-mode',
    'no',
    '--daemonize',
    'no',
    '--logfile',
    '',
    '--loglevel',
    'warning',
  ])
  await waitListen(port)
  return { port, proc }
}
