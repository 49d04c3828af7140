// Money is integer cents on the wire: shown as ¥12.34, typed in as yuan ("12.34", "12", "0.5")
// and turned into cents without floating-point arithmetic.

/** 1234 → "¥12.34"; negative amounts as "-¥12.34"; thousands separated: ¥10,000.00. */
export function yuan(cents: number | null | undefined): string {
  if (cents === null || cents === undefined || !Number.isFinite(cents)) return '¥0.00'
  const neg = cents < 0
  const abs = Math.abs(Math.round(cents))
  const whole = Math.floor(abs / 100)
  const frac = String(abs % 100).padStart(2, '0')
  const grouped = String(whole).replace(/\B(?=(\d{3})+(?!\d))/g, ',')
  return `${neg ? '-' : ''}¥${grouped}.${frac}`
}

/** 1234 → "12.34" (for editing). */
export function yuanPlain(cents: number): string {
  const abs = Math.abs(Math.round(cents))
  return `${cents < 0 ? '-' : ''}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, '0')}`
}

/** Signed amount for ledgers: +¥1.00 / -¥1.00. */
export function yuanSigned(cents: number): string {
  return cents > 0 ? `+${yuan(cents)}` : yuan(cents)
}

/**
 * "12.34" → 1234; "12" → 1200; "0.5" → 50; "" or malformed or more than 2 decimals → null.
 * Accepts a leading ¥ and surrounding spaces.
 */
export function parseYuan(input: string | number | null | undefined): number | null {
  if (input === null || input === undefined) return null
  const s = String(input).trim().replace(/^[¥￥]\s*/, '')
  const m = /^(\d{1,9})(?:\.(\d{0,2}))?$/.exec(s) ?? /^()\.(\d{1,2})$/.exec(s)
  if (!m) return null
  const whole = m[1] ? Number(m[1]) : 0
  const frac = Number((m[2] ?? '').padEnd(2, '0') || '0')
  return whole * 100 + frac
}

/** A whole number typed in a field ("12", " 3 "), else null. `signed` accepts a leading - or +. */
export function parseIntStrict(input: string | number | null | undefined, signed = false): number | null {
  if (input === null || input === undefined) return null
  const s = String(input).trim()
  const re = signed ? /^[+-]?\d{1,9}$/ : /^\d{1,9}$/
  return re.test(s) ? Number(s) : null
}

const pad = (n: number) => String(n).padStart(2, '0')

/** Milliseconds left → "mm:ss", or "h:mm:ss" from an hour up; never negative. */
export function countdown(ms: number): string {
  const total = Math.max(0, Math.ceil(ms / 1000))
  const h = Math.floor(total / 3600)
  const m = Math.floor((total % 3600) / 60)
  const s = total % 60
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${pad(m)}:${pad(s)}`
}

/** Unix ms → "YYYY-MM-DD HH:mm:ss" in the browser's zone. */
export function formatMillis(ms: number | null | undefined, seconds = false): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  const d = new Date(ms)
  const base = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
  return seconds ? `${base}:${pad(d.getSeconds())}` : base
}

/** Unix ms → "HH:mm" (today) or "MM-DD HH:mm". */
export function shortTime(ms: number): string {
  const d = new Date(ms)
  const now = new Date()
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`
  return d.toDateString() === now.toDateString() ? hm : `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hm}`
}
