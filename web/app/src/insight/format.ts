// Formatting of the dashboard's and reports' numbers.
import { t } from '../i18n'

/** 45_000 → "45秒"; 725_000 → "12分05秒"; 3_720_000 → "1小时02分". */
export function formatDuration(ms: number | null | undefined): string {
  const total = Math.max(0, Math.floor((ms ?? 0) / 1000))
  const d = t.insight.duration
  if (total < 60) return d.seconds(total)
  if (total < 3600) return d.minutes(Math.floor(total / 60), total % 60)
  return d.hours(Math.floor(total / 3600), Math.floor((total % 3600) / 60))
}

/** 0.1234 → "12.3%"; 0 → "0%"; 1 → "100%". */
export function formatPercent(x: number | null | undefined): string {
  const v = Number.isFinite(x) ? Math.max(0, x as number) : 0
  if (v === 0) return '0%'
  const p = v * 100
  return `${p >= 100 ? Math.round(p) : p.toFixed(1)}%`
}

/** Sums `values` into groups of `size` (the last may be shorter). */
export function groupSums(values: readonly number[], size: number): number[] {
  if (size <= 1) return values.slice()
  const out: number[] = []
  for (let i = 0; i < values.length; i += size) {
    let sum = 0
    for (let j = i; j < Math.min(values.length, i + size); j++) sum += values[j] ?? 0
    out.push(sum)
  }
  return out
}
