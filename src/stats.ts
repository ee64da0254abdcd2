import { statsFields } from './binding.cjs'
import type { TlsStats } from './tls'

/** Counters of one socket, or of the sockets that took one map's stream verdict. */
export interface SocketStats {
  /** Bytes read from the socket. */
  bytesIn: number
  /** Bytes written to the socket. */
  bytesOut: number
  /** Messages framed from what was read. */
  messagesIn: number
  /** Messages passed to the application. */
  passed: number
  /** Messages dropped, for any reason. */
  dropped: number
  /** Messages redirected (egress + ingress). */
  redirected: number
  /** Messages redirected to another socket's egress. */
  redirectedEgress: number
  /** Messages redirected to another socket's application. */
  redirectedIngress: number
  /** Messages dropped by a DROP verdict. */
  droppedVerdict: number
  /** Messages dropped because the redirect key was absent. */
  droppedNoKey: number
  /** Messages dropped because no route of a `rules.httpRoute` matched the request. */
  droppedNoRoute: number
  /** Messages dropped because the redirect target could not take them. */
  droppedDeadTarget: number
  /** Partial messages dropped by a parser error or a close mid-message. */
  droppedParser: number
  /**
   * Datagrams dropped because their target's send queue was full (`dgramQueueBytes`, `dgramQueueDatagrams`), a
   * session held too many before it read, or a bound socket had its `maxSessions`.
   */
  droppedOverflow: number
  /** Datagrams dropped for their size: the kernel refused one (`EMSGSIZE`), or one arrived truncated. */
  droppedTooBig: number
  /** Datagrams the kernel refused to send (`ECONNREFUSED` after an ICMP error...). */
  droppedSendError: number
  /**
   * Datagrams the kernel dropped before the engine read them, for want of room in the socket's receive buffer (a
   * datagram socket stopped by a full stream target), learnt with the next datagram read. Not in `dropped`.
   */
  kernelDrops: number
  /** Bytes of dropped messages. */
  droppedBytes: number
  /** Parser errors (each one aborted its socket). */
  parserErrors: number
  /** Frames (or pieces of frames) a parser skipped (`discardOversize`). */
  skippedFrames: number
  /** Bytes a parser skipped. */
  skippedBytes: number
  /** Times a parser handed the stream back to the application (`Parse.HANDBACK`). */
  handbacks: number
  /** Bytes delivered to the application and not yet consumed (a gauge; see `appHighWatermark`). */
  appQueuedBytes: number
  /** Queued bytes discarded because the socket closed before writing them. */
  discardedBytes: number
  /** Bytes waiting in the send ring (a gauge). */
  queuedBytes: number
  /** Bytes waiting for a TypeScript verdict or parser (a gauge). */
  pendingBytes: number
  /** Messages (and parse requests) whose batch went unanswered past `batch.verdictTimeoutMs`: each got `onError`. */
  verdictTimeouts: number
  /** Answers that came for messages after their batch had timed out (ignored). */
  verdictsLate: number
  /**
   * Bytes redirected to sockets that another I/O thread (shard) owns, not yet acknowledged by it (a gauge of each
   * socket; maps report 0): until it is back to 0, the socket's redirect and drop counters may still change.
   */
  remoteBytes: number
  /** Application sends accepted. */
  sends: number
  /** Application sends refused (`EACCES`, `EPIPE`). */
  sendsRefused: number
  /** Times reading stopped because a redirect target was full. */
  backpressureStalls: number
  /** Requests of a client in requests mode (each gets exactly one reply, in order). */
  requests: number
  /** Upstream replies delivered to clients in their request order. */
  replies: number
  /** Replies the application made (a send filling the slot of a request passed to it). */
  localReplies: number
  /** Error replies made in place of an upstream's (or clients closed, without a reply format). */
  errorReplies: number
  /** ...because the upstream did not answer in time. */
  errorTimeout: number
  /** ...because the upstream closed or failed before answering. */
  errorUpstreamClosed: number
  /** ...because no upstream could take the request. */
  errorNoUpstream: number
  /** ...because the verdict dropped the request. */
  errorDenied: number
  /** Upstream replies discarded because their client was gone (counted on the upstream). */
  orphanReplies: number
  /** Upstream messages with no request pending, passed to its application (counted on the upstream). */
  unsolicited: number
  /** Requests awaiting their reply (a gauge of each socket: a client's unanswered requests, an upstream's). */
  pendingRequests: number
}

/** Counters of one map. */
export interface MapStats extends SocketStats {
  /** The map's number within the engine. */
  map: number
  /** `'sockmap'` or `'sockhash'`. */
  kind: 'sockmap' | 'sockhash'
  /** Entries stored. */
  size: number
}

/** What the engine did so far: totals, the boundary crossings of TypeScript callbacks, and per-map counters. */
export interface EngineStats {
  /** Sockets open (listeners included). */
  sockets: number
  /** Times the I/O thread woke the JavaScript thread. */
  wakeups: number
  /** Batches of TypeScript verdicts and parsers run (one boundary crossing each). */
  batches: number
  /** Messages judged by TypeScript verdicts (stream and msg verdicts). */
  verdictMessages: number
  /** Parse requests answered by TypeScript parsers: one per socket per crossing, each framing many messages. */
  parseRequests: number
  /** Calls of TypeScript parser functions. */
  parserCalls: number
  /** Callbacks that threw or returned something that is not a verdict (each counted, each reported). */
  callbackErrors: number
  /** TLS handshakes, resumptions and failures by reason, over every TLS socket. */
  tls: TlsStats
  /** The same counters per TLS server (its accepted connections), by the server's socket id. */
  tlsServers: Array<{ server: number; tls: TlsStats }>
  /** Totals over every map. */
  totals: SocketStats
  /** Per-map counters. */
  maps: MapStats[]
}

/** The engine's counters, in the order the binding reports their values. */
const nativeKeys = statsFields() as Array<Exclude<keyof SocketStats, 'redirected'>>

/** Every counter: the engine's, and `redirected` (their sum over egress and ingress). */
const keys: Array<keyof SocketStats> = [...nativeKeys, 'redirected']

const gauges = new Set<keyof SocketStats>([
  'queuedBytes',
  'pendingBytes',
  'appQueuedBytes',
  'remoteBytes',
  'pendingRequests',
])

/** @internal */
export function zeroStats(): SocketStats {
  const s = {} as SocketStats
  for (const k of keys) s[k] = 0
  return s
}

/** The counters of the values the binding reports (in the order of `statsFields()`). @internal */
export function socketStats(raw: number[]): SocketStats {
  const s = {} as SocketStats
  for (let i = 0; i < nativeKeys.length; i++) s[nativeKeys[i] as keyof SocketStats] = raw[i] as number
  s.redirected = s.redirectedEgress + s.redirectedIngress
  return s
}

/** The counter names of {@link SocketStats}, as the engine defines them (plus `redirected`). @internal */
export function statsKeys(): ReadonlyArray<keyof SocketStats> {
  return keys
}

/** @internal */
export function addStats(into: SocketStats, s: SocketStats): void {
  for (const k of keys) into[k] += s[k]
}

function snake(k: string): string {
  return k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)
}

/** @internal Renders engine stats in the Prometheus text exposition format. */
export function toPrometheus(s: EngineStats): string {
  const out: string[] = []
  const engine: Array<[string, number, string, string]> = [
    ['sockmap_sockets', s.sockets, 'gauge', 'Sockets open.'],
    ['sockmap_js_wakeups_total', s.wakeups, 'counter', 'Times the I/O thread woke the JavaScript thread.'],
    ['sockmap_batches_total', s.batches, 'counter', 'Batches of TypeScript callbacks run.'],
    ['sockmap_verdict_messages_total', s.verdictMessages, 'counter', 'Messages judged by TypeScript verdicts.'],
    ['sockmap_parse_requests_total', s.parseRequests, 'counter', 'Parse requests answered by TypeScript parsers.'],
    ['sockmap_parser_calls_total', s.parserCalls, 'counter', 'Calls of TypeScript parsers.'],
    ['sockmap_callback_errors_total', s.callbackErrors, 'counter', 'TypeScript callbacks that failed.'],
  ]
  engine.push(
    ['sockmap_tls_handshakes_total', s.tls.handshakes, 'counter', 'TLS handshakes finished.'],
    ['sockmap_tls_resumed_total', s.tls.resumed, 'counter', 'TLS handshakes that resumed a session.'],
  )
  for (const [name, value, type, help] of engine) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${value}`)
  }
  out.push('# HELP sockmap_tls_failures_total TLS handshakes and connections that failed, by reason.')
  out.push('# TYPE sockmap_tls_failures_total counter')
  for (const [reason, n] of Object.entries(s.tls.failures))
    out.push(`sockmap_tls_failures_total{reason="${reason}"} ${n}`)
  if (s.tlsServers.length > 0) {
    const per: Array<[string, string, (t: TlsStats) => Array<[string, number]>]> = [
      ['handshakes', 'TLS handshakes finished by a server.', (t) => [['', t.handshakes]]],
      ['resumed', 'TLS handshakes of a server that resumed a session.', (t) => [['', t.resumed]]],
      [
        'failures',
        'TLS handshakes and connections of a server that failed, by reason.',
        (t) => Object.entries(t.failures).map(([r, n]) => [`,reason="${r}"`, n]),
      ],
    ]
    for (const [what, help, values] of per) {
      const name = `sockmap_server_tls_${what}_total`
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`)
      for (const l of s.tlsServers) {
        for (const [label, n] of values(l.tls)) out.push(`${name}{server="${l.server}"${label}} ${n}`)
      }
    }
  }
  for (const k of keys) {
    const gauge = gauges.has(k)
    const name = `sockmap_map_${snake(k)}${gauge ? '' : '_total'}`
    out.push(`# TYPE ${name} ${gauge ? 'gauge' : 'counter'}`)
    for (const m of s.maps) out.push(`${name}{map="${m.map}",kind="${m.kind}"} ${m[k]}`)
  }
  return out.join('\n') + '\n'
}
