// Samples of a benchmark run and their markdown tables, shared by the harnesses: every sample is kept under a key
// ("scenario/row/metric"); a cell is the median with the range; a row that could not run says why (`n/a: ...`, or
// `error: ...` after a retry) instead of numbers.
import { median } from './procs.mjs'

/** A number as the tables print it: `1.23 M`, `45 k`, or with `digits` decimals (always so when `plain`). */
export function num(v, digits, plain = false) {
  if (plain) return v.toFixed(digits)
  if (Math.abs(v) >= 1e6) return `${(v / 1e6).toFixed(2)} M`
  if (Math.abs(v) >= 1e4) return `${(v / 1e3).toFixed(0)} k`
  return v.toFixed(digits)
}

/** True for a cell that gives a reason instead of a figure. */
export const isReason = (c) => /^(n\/a|error)/.test(c)

/** A markdown table; a row whose cells all give the same reason says it once, in its second cell. */
export function table(head, rows) {
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`]
  for (const r of rows) {
    const rest = r.slice(1)
    const shown = rest.every((c) => c === rest[0] && isReason(c)) ? [r[0], rest[0], ...rest.slice(1).map(() => '')] : r
    out.push(`| ${shown.join(' | ')} |`)
  }
  return out.join('\n')
}

/**
 * The samples of one run, in `results` (key -> samples; "row/missing" and "row/error" -> a reason), and the
 * functions that fill and print them.
 */
export function recorder(results = {}) {
  const note = (key, value) => {
    ;(results[key] ??= []).push(value)
  }
  const fail = (key, err) => {
    results[`${key}/error`] = String(err.message ?? err)
      .split('\n')[0]
      .slice(0, 160)
  }
  /** The median of a key's samples, or undefined. */
  const med = (key) => (results[key]?.length ? median(results[key]) : undefined)

  /** "median (min–max)" of a row's metric, its error, or its reason to be missing. */
  function cell(key, digits = 2, { plain = false } = {}) {
    const xs = results[key]
    if (!xs || xs.length === 0) {
      const rowKey = key.slice(0, key.lastIndexOf('/'))
      return results[`${rowKey}/missing`] ?? (results[`${rowKey}/error`] ? `error: ${results[`${rowKey}/error`]}` : '—')
    }
    const f = (v) => num(v, digits, plain)
    const lo = Math.min(...xs)
    const hi = Math.max(...xs)
    const m = f(median(xs))
    return xs.length > 1 && f(lo) !== f(hi) ? `${m} (${f(lo)}–${f(hi)})` : m
  }

  /**
   * Runs `body` for one row (retried once on error), recording `missing` (a reason the row cannot run) or the error
   * instead of numbers. `body` pushes the processes it starts onto `started`; all of them are stopped (with what
   * they forked) in reverse order.
   */
  async function row(key, missing, body) {
    if (missing) {
      results[`${key}/missing`] = missing
      return
    }
    const started = []
    for (let attempt = 1; attempt <= 2; attempt++) {
      try {
        await body(started)
        delete results[`${key}/error`]
        return
      } catch (e) {
        fail(key, e)
        process.stderr.write(`  ${key} (attempt ${attempt}): ${results[`${key}/error`]}\n`)
      } finally {
        for (const p of started.splice(0).reverse()) await p.stopTree()
      }
    }
  }

  return { results, note, fail, med, cell, row }
}
