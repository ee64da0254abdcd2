#!/usr/bin/env bash
# Compares two checkouts of sockmap on the same machine in one sitting: runs the engine benchmark
# (benchmark/engine/run.sh --only framed,latency) and the TypeScript-verdict benchmark
# (benchmark/verdict-e2e.mjs) alternately on OLD and NEW for ROUNDS rounds, keeps every run's output,
# then prints for every row the median over all of OLD's samples, the median over all of NEW's, and
# NEW/OLD with the direction that is better.
#
#   benchmark/interleave.sh [options] OLD_DIR NEW_DIR [ROUNDS]      (ROUNDS defaults to 3)
#
#   --quick             short runs: run.sh --quick, E2E_SECONDS=1 E2E_WARMUP=0.5 (a smoke test, not a result)
#   --only LIST         benchmarks to run, of engine,e2e (default both)
#   --engine-args STR   more arguments for run.sh (default none; e.g. "--reps 1")
#   --same-harness      drive both checkouts with OLD's benchmark scripts and load generators; NEW
#                       contributes only its engine proxy example and its built dist/ (default: each
#                       checkout runs its own scripts)
#   --no-build          skip building (both checkouts must already be built)
#   --out DIR           results directory (default benchmark/results/interleave-TIMESTAMP here)
#   --threshold PCT     a row is flagged when NEW is worse than OLD by more than PCT % (default 5)
#   --quiet PCT         before each run, wait until the machine's CPUs are less than PCT % busy over
#                       2 s (others' load: nothing of this script runs then), at most QUIET_WAIT seconds
#                       (default 600), then run anyway; the busy % before every run is kept in runs.tsv
#   --summarize DIR     only print the summary of an earlier results directory
#
# Building (unless --no-build), in each checkout: `npm ci` when node_modules is missing, `npm run build`
# (release addon and dist/), the load generators (crates/sockmap-bench) and the engine's proxy example,
# each checkout into its own target/ (CARGO_TARGET_DIR=DIR/target, which is where run.mjs looks).
# E2E_* variables in the environment (E2E_SECONDS, E2E_CONNS, ...) reach verdict-e2e.mjs unchanged.
#
# Order: round r runs engine on OLD, engine on NEW, e2e on OLD, e2e on NEW. Every run is bounded by
# `timeout` (ENGINE_TIMEOUT, E2E_TIMEOUT seconds); a run that fails or times out is kept and counted,
# and the rounds go on. Samples: the engine's raw samples from its --json file (each run.sh run
# repeats every cell --reps times, 3 by default, 2 with --quick), the verdict rows from the table
# verdict-e2e.mjs prints (one sample per run). Results: OUT/<round>-<bench>-<old|new>.{out,err,json},
# OUT/runs.tsv (one line per run: round, bench, side, exit code, seconds, CPU busy % before it),
# OUT/summary.md.
#
# Giving the same checkout twice (OLD_DIR = NEW_DIR) shows the noise of the machine: on a 2-core
# machine, p99, p99.9 and the unpinned latencies, and single-run throughput, move by more than 5 %
# between runs of the same code; more rounds narrow the medians.
set -euo pipefail

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

HERE=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
ONLY=engine,e2e
ENGINE_ARGS=
SAME_HARNESS=0
BUILD=1
OUT=
THRESHOLD=5
SUMMARIZE=
QUIET=
pos=()
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --engine-args) ENGINE_ARGS=$2; shift ;;
    --same-harness) SAME_HARNESS=1 ;;
    --no-build) BUILD=0 ;;
    --out) OUT=$2; shift ;;
    --threshold) THRESHOLD=$2; shift ;;
    --summarize) SUMMARIZE=$2; shift ;;
    --quiet) QUIET=$2; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) pos+=("$1") ;;
  esac
  shift
done

# ------------------------------------------------------------------ summary (node: medians, ratios)

summarize() {
  local dir=$1
  node --input-type=module - "$dir" "$THRESHOLD" <<'EOF' | tee "$dir/summary.md"
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'

const [dir, thresholdArg] = process.argv.slice(2)
const threshold = Number(thresholdArg) / 100
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const samples = { old: new Map(), new: new Map() } // row id -> numbers
const order = [] // row ids, first seen first
const add = (side, id, v) => {
  if (typeof v !== 'number' || !Number.isFinite(v)) return
  if (!samples.old.has(id) && !samples.new.has(id)) order.push(id)
  const m = samples[side]
  if (!m.has(id)) m.set(id, [])
  m.get(id).push(v)
}

// Row labels and the better direction of every metric the two benchmarks print.
const ENGINE_ROWS = {
  direct: 'direct (load generators)',
  engine: 'engine proxy',
  coalesce: 'Node router, coalescing',
  naive: 'Node router, write per frame',
  haproxy: 'HAProxy',
  pipe: 'Node pipe proxy',
  sockperf: 'direct, sockperf',
}
const ENGINE_METRICS = {
  fps: ['frames/s', 'higher'],
  cpuPerM: ['proxy CPU-s per M frames', 'lower'],
  errors: ['seq/len errors', 'zero'],
  lost: ['frames sent - received', 'zero'],
  p50_us: ['p50 µs', 'lower'],
  p99_us: ['p99 µs', 'lower'],
  p999_us: ['p99.9 µs', 'lower'],
}
const E2E_METRICS = {
  'msgs/s': 'higher',
  'CPU-s per M msgs': 'lower',
  'router CPU %': 'info',
  'load CPU %': 'info',
  'sink bytes/read': 'info',
  'p50 µs': 'lower',
  'p99 µs': 'lower',
  'avg batch': 'info',
  'wakeups/s': 'info',
}
const meta = new Map() // row id -> { bench, row, metric, better, subject }

/** Rows of a console.table printout: objects keyed by the header cells. */
function parseConsoleTable(text) {
  const lines = text.split('\n').filter((l) => l.startsWith('│'))
  const cells = (l) => l.split('│').slice(1, -1).map((c) => c.trim())
  if (lines.length < 2) return []
  const head = cells(lines[0])
  return lines.slice(1).map((l) => Object.fromEntries(cells(l).map((c, i) => [head[i], c.replace(/^'(.*)'$/, '$1')])))
}

const runs = existsSync(path.join(dir, 'runs.tsv'))
  ? readFileSync(path.join(dir, 'runs.tsv'), 'utf8').trim().split('\n').slice(1).map((l) => l.split('\t'))
  : []
const failed = runs.filter((r) => r[3] !== '0')
// Engine rows first, then the verdict rows; runs in round order.
const files = readdirSync(dir).sort()
for (const file of [...files.filter((f) => f.includes('-engine-')), ...files.filter((f) => f.includes('-e2e-'))]) {
  let m = /^\d+-engine-(old|new)\.json$/.exec(file)
  if (m) {
    const side = m[1]
    let j
    try {
      j = JSON.parse(readFileSync(path.join(dir, file), 'utf8'))
    } catch {
      continue
    }
    for (const [key, xs] of Object.entries(j.results ?? {})) {
      if (!Array.isArray(xs)) continue // "row/error", "row/missing"
      const parts = key.split('/')
      const metric = parts.pop()
      const [scen, ...rest] = parts
      const name = rest.at(-1)
      const [mlabel, better] = ENGINE_METRICS[metric] ?? [metric, 'info']
      const where = scen === 'lat' ? `latency ${rest[0]}` : scen === 'framed' ? 'framed' : scen
      const id = `engine|${key}`
      meta.set(id, {
        bench: `engine ${where}`,
        row: ENGINE_ROWS[name] ?? name,
        metric: mlabel,
        better,
        subject: name === 'engine',
      })
      for (const v of xs) add(side, id, v)
    }
    continue
  }
  m = /^\d+-e2e-(old|new)\.out$/.exec(file)
  if (m) {
    const side = m[1]
    for (const r of parseConsoleTable(readFileSync(path.join(dir, file), 'utf8'))) {
      for (const [col, v] of Object.entries(r)) {
        if (col === '(index)' || col === 'router' || v === '' || v === '-') continue
        const id = `e2e|${r.router}|${col}`
        meta.set(id, {
          bench: 'verdict-e2e',
          row: r.router,
          metric: col,
          better: E2E_METRICS[col] ?? 'info',
          subject: r.router.startsWith('sockmap'),
        })
        add(side, id, Number(v))
      }
    }
  }
}

const fmt = (v) => {
  if (v === undefined) return '—'
  const a = Math.abs(v)
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)} M`
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)} k`
  if (a >= 100) return v.toFixed(0)
  if (a >= 1) return v.toFixed(2)
  return v.toPrecision(3)
}
/** "median (min–max)" of one side's samples. */
const cellOf = (xs) => {
  if (!xs.length) return '—'
  const lo = fmt(Math.min(...xs))
  const hi = fmt(Math.max(...xs))
  return xs.length > 1 && lo !== hi ? `${fmt(median(xs))} (${lo}–${hi})` : fmt(median(xs))
}
const out = []
const info = (f) => (existsSync(path.join(dir, f)) ? readFileSync(path.join(dir, f), 'utf8').trim() : '')
out.push(`# OLD vs NEW, ${dir}`)
out.push('')
out.push(info('checkouts.txt').split('\n').map((l) => `${l}  `).join('\n'))
out.push('')
out.push(
  `Cells: median (min–max) over every sample of all rounds (engine: every repetition of every run; verdict-e2e: one per run). ` +
    `NEW/OLD > 1 is better for "higher", < 1 for "lower"; "worse" when NEW is worse by more than ${thresholdArg} %. ` +
    `Rows marked * run the code under test; the others (peers, load generators) show the noise of the sitting.`,
)
out.push('')
out.push('| benchmark | row | metric | better | OLD median (min–max) | NEW median (min–max) | NEW/OLD | verdict | samples OLD/NEW |')
out.push('|---|---|---|---|---:|---:|---:|---|---:|')
const worse = []
for (const id of order) {
  const { bench, row, metric, better, subject } = meta.get(id)
  const o = samples.old.get(id) ?? []
  const n = samples.new.get(id) ?? []
  const mo = o.length ? median(o) : undefined
  const mn = n.length ? median(n) : undefined
  let ratio = '—'
  let verdict = ''
  if (mo !== undefined && mn !== undefined) {
    if (better === 'zero') {
      verdict = mo === 0 && mn === 0 ? 'ok' : mn > mo ? 'worse' : 'ok'
    } else if (mo !== 0) {
      const r = mn / mo
      ratio = r.toFixed(3)
      if (better === 'higher') verdict = r < 1 - threshold ? 'worse' : r > 1 + threshold ? 'better' : 'ok'
      if (better === 'lower') verdict = r > 1 + threshold ? 'worse' : r < 1 - threshold ? 'better' : 'ok'
    }
  } else {
    verdict = 'missing'
  }
  if (verdict === 'worse' && subject) worse.push(`${bench} / ${row} / ${metric}: ${ratio}`)
  out.push(
    `| ${bench} | ${row}${subject ? ' *' : ''} | ${metric} | ${better} | ${cellOf(o)} | ${cellOf(n)} | ${ratio} | ${verdict} | ${o.length}/${n.length} |`,
  )
}
out.push('')
const busyOf = (side) => runs.filter((r) => r[2] === side && r[5] !== undefined).map((r) => Number(r[5]))
const busyText = (side) => (busyOf(side).length ? `${median(busyOf(side))} % (${Math.min(...busyOf(side))}–${Math.max(...busyOf(side))})` : '—')
out.push(`Runs: ${runs.length}, failed or timed out: ${failed.length}${failed.map((r) => ` (${r.slice(0, 3).join(' ')}: exit ${r[3]})`).join('')}`)
out.push(`CPUs busy (others' load) just before a run, median (min–max): OLD ${busyText('old')}, NEW ${busyText('new')}`)
out.push(
  worse.length
    ? `Rows of the code under test worse by more than ${thresholdArg} %: ${worse.length}\n${worse.map((w) => `- ${w}`).join('\n')}`
    : `Rows of the code under test worse by more than ${thresholdArg} %: none`,
)
console.log(out.join('\n'))
EOF
}

if [[ -n $SUMMARIZE ]]; then
  summarize "$SUMMARIZE"
  exit 0
fi

((${#pos[@]} == 2 || ${#pos[@]} == 3)) || { usage >&2; exit 2; }
OLD=$(cd "${pos[0]}" && pwd)
NEW=$(cd "${pos[1]}" && pwd)
ROUNDS=${pos[2]:-3}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
for d in "$OLD" "$NEW"; do
  [[ -f $d/benchmark/engine/run.sh && -f $d/benchmark/verdict-e2e.mjs ]] || {
    echo "$d is not a sockmap checkout with the benchmarks" >&2
    exit 2
  }
done
OUT=${OUT:-$HERE/benchmark/results/interleave-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ENGINE_TIMEOUT=${ENGINE_TIMEOUT:-$((QUICK ? 300 : 1800))}
E2E_TIMEOUT=${E2E_TIMEOUT:-300}
QUIET_WAIT=${QUIET_WAIT:-600}
if ((QUICK)); then
  export E2E_SECONDS=${E2E_SECONDS:-1} E2E_WARMUP=${E2E_WARMUP:-0.5}
fi
# Each checkout loads its own addon (dist/), never one named by the environment.
unset NAPI_RS_NATIVE_LIBRARY_PATH
log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

{
  for side in OLD NEW; do
    d=${!side}
    printf '%s: %s at %s%s\n' "$side" "$d" "$(git -C "$d" rev-parse --short HEAD 2>/dev/null || echo '?')" \
      "$([[ -n $(git -C "$d" status --porcelain --untracked-files=no 2>/dev/null) ]] && echo ' (with uncommitted changes)')"
  done
  echo "rounds: $ROUNDS$( ((QUICK)) && echo ', --quick'); harness: $( ((SAME_HARNESS)) && echo "OLD's scripts for both" || echo 'each checkout its own')"
  [[ -n $QUIET ]] && echo "each run waits for CPUs less than $QUIET % busy (at most $QUIET_WAIT s)"
  echo "engine: run.sh --only framed,latency $( ((QUICK)) && echo '--quick ')$ENGINE_ARGS; e2e: E2E_SECONDS=${E2E_SECONDS:-3} E2E_WARMUP=${E2E_WARMUP:-1}"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/checkouts.txt"
cat "$OUT/checkouts.txt" >&2

# The benchmark scripts and load generators should be the same in both checkouts, or the
# comparison measures them too.
harness=(benchmark/engine benchmark/baselines benchmark/verdict-e2e.mjs benchmark/verdict-load.mjs crates/sockmap-bench)
if ! ((SAME_HARNESS)); then
  differs=()
  for h in "${harness[@]}"; do
    diff -rq "$OLD/$h" "$NEW/$h" >/dev/null 2>&1 || differs+=("$h")
  done
  if ((${#differs[@]})); then
    log "warning: the benchmark scripts differ between the checkouts (${differs[*]}); --same-harness drives both with OLD's"
    echo "harness differs: ${differs[*]}" >>"$OUT/checkouts.txt"
  fi
fi

# ------------------------------------------------------------------ build

build() { # dir side
  local d=$1 blog=$OUT/build-$2.log
  log "building $d"
  (
    cd "$d"
    export CARGO_TARGET_DIR=$d/target
    [[ -d node_modules ]] || npm ci --no-audit --no-fund
    npm run build
    cargo build --release -q -p sockmap-bench
    cargo build --release -q -p sockmap-core --example proxy
  ) >"$blog" 2>&1 || {
    log "build of $d failed: $blog"
    tail -20 "$blog" >&2
    exit 1
  }
}
if ((BUILD)); then
  build "$OLD" old
  [[ $NEW == "$OLD" ]] || build "$NEW" new
fi

# With --same-harness, NEW's verdict benchmark is OLD's script next to a link to NEW's dist/.
if ((SAME_HARNESS)); then
  stage=$OUT/harness-new
  mkdir -p "$stage/benchmark"
  cp "$OLD/benchmark/verdict-e2e.mjs" "$OLD/benchmark/verdict-load.mjs" "$stage/benchmark/"
  ln -sfn "$NEW/dist" "$stage/dist"
fi

# ------------------------------------------------------------------ rounds

printf 'round\tbench\tside\texit\tseconds\tbusy%%\n' >"$OUT/runs.tsv"

# Percent of all CPUs busy over the next 2 s, from /proc/stat.
busy() {
  local a b
  read -ra a < <(grep '^cpu ' /proc/stat)
  sleep 2
  read -ra b < <(grep '^cpu ' /proc/stat)
  local idle=$((b[4] + b[5] - a[4] - a[5])) total=0 i
  for ((i = 1; i < ${#a[@]}; i++)); do total=$((total + b[i] - a[i])); done
  echo $((total > 0 ? 100 - 100 * idle / total : 0))
}
one() { # round bench side
  local r=$1 bench=$2 side=$3 d base t0 rc=0
  [[ $side == old ]] && d=$OLD || d=$NEW
  base=$OUT/$(printf '%02d' "$r")-$bench-$side
  local load waited=0
  load=$(busy)
  if [[ -n $QUIET ]]; then
    while ((load >= QUIET && waited < QUIET_WAIT)); do
      ((waited == 0)) && log "  CPUs $load % busy, waiting for less than $QUIET %"
      sleep 3
      waited=$((waited + 5))
      load=$(busy)
    done
  fi
  t0=$(date +%s%N)
  log "round $r/$ROUNDS: $bench on ${side^^} ($d), CPUs $load % busy before"
  if [[ $bench == engine ]]; then
    local harness_dir=$d extra=()
    if ((SAME_HARNESS)); then
      harness_dir=$OLD
      [[ $side == new ]] && extra=(--proxy "$NEW/target/release/examples/proxy")
    fi
    # shellcheck disable=SC2086 # ENGINE_ARGS is a list of words
    (cd "$harness_dir" && CARGO_TARGET_DIR=$harness_dir/target timeout -k 15 "$ENGINE_TIMEOUT" \
      bash benchmark/engine/run.sh --only framed,latency $( ((QUICK)) && echo --quick) $ENGINE_ARGS \
      "${extra[@]}" --json "$base.json") >"$base.out" 2>"$base.err" || rc=$?
  else
    local script=$d/benchmark/verdict-e2e.mjs
    if ((SAME_HARNESS)); then
      [[ $side == new ]] && script=$stage/benchmark/verdict-e2e.mjs || script=$OLD/benchmark/verdict-e2e.mjs
    fi
    (cd "$d" && timeout -k 15 "$E2E_TIMEOUT" node "$script") >"$base.out" 2>"$base.err" || rc=$?
  fi
  local ds=$((($(date +%s%N) - t0) / 100000000))
  printf '%s\t%s\t%s\t%s\t%d.%d\t%s\n' "$r" "$bench" "$side" "$rc" $((ds / 10)) $((ds % 10)) "$load" >>"$OUT/runs.tsv"
  ((rc == 0)) || log "  exit $rc$( ((rc == 124)) && echo ' (timed out)'), see $base.err"
}

t_start=$(date +%s)
for ((r = 1; r <= ROUNDS; r++)); do
  for bench in engine e2e; do
    [[ ,$ONLY, == *,$bench,* ]] || continue
    one "$r" "$bench" old
    one "$r" "$bench" new
  done
  log "round $r done after $(($(date +%s) - t_start)) s"
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - t_start)) s for $ROUNDS round(s)" >>"$OUT/checkouts.txt"

summarize "$OUT"
log "every run's output: $OUT"
