import type { Role } from '../api/types'
import { t } from '../i18n'

const pad = (n: number) => String(n).padStart(2, '0')

/** RFC 3339 → "YYYY-MM-DD HH:mm" in the browser's time zone; unparsable input comes back as is. */
export function formatDateTime(value: string | null | undefined): string {
  if (!value) return t.common.none
  const d = new Date(value)
  if (Number.isNaN(d.getTime())) return value
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`
}

export function formatDate(value: string | null | undefined): string {
  if (!value) return t.common.none
  return value.slice(0, 10)
}

export function roleName(role: string): string {
  return (t.roles as Record<string, string>)[role] ?? role
}

export function roleNames(roles: readonly string[]): string {
  return roles.map(roleName).join('、') || t.common.none
}

export function orDash(v: string | number | null | undefined): string {
  return v === null || v === undefined || v === '' ? t.common.none : String(v)
}

/** True while `locked_until` lies in the future. */
export function isLocked(lockedUntil: string | null | undefined, now = Date.now()): boolean {
  if (!lockedUntil) return false
  const d = Date.parse(lockedUntil)
  return Number.isNaN(d) ? true : d > now
}

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && v in t.roles
}

/** Counters as shown in rooms: 9999, 1.2万, 350万. */
export function formatCount(n: number): string {
  if (!Number.isFinite(n) || n < 10_000) return String(Math.max(0, Math.floor(n || 0)))
  const w = n / 10_000
  return `${w >= 100 ? Math.floor(w) : Math.floor(w * 10) / 10}万`
}
