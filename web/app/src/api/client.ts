// Minimal fetch wrapper: same-origin cookies, CSRF header on unsafe methods,
// typed errors, and one hook for "the session is gone" (401).
import type { ErrorBody } from './types'
import { t } from '../i18n'

export const CSRF_COOKIE = 'livecamp_csrf'
export const CSRF_HEADER = 'X-CSRF-Token'

const UNSAFE = new Set(['POST', 'PUT', 'PATCH', 'DELETE'])

/** Thrown for every failed request; `status` 0 means the network failed. */
export class ApiError extends Error {
  readonly status: number
  readonly code: string

  constructor(status: number, code: string, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
  }
}

export function isApiError(e: unknown): e is ApiError {
  return e instanceof ApiError
}

/** Message to show for any thrown value: the server's text, else a per-status fallback. */
export function errorMessage(e: unknown): string {
  if (isApiError(e)) return e.message || statusFallback(e.status)
  return t.errors.unknown
}

export function statusFallback(status: number): string {
  const byStatus = t.errors.status as Record<string, string>
  return byStatus[String(status)] ?? (status >= 500 ? t.errors.server : t.errors.unknown)
}

let memoryCsrf: string | null = null

/** Remembers the token from the login answer in case the cookie cannot be read. */
export function setCsrfToken(token: string | null): void {
  memoryCsrf = token
}

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    if (part.slice(0, eq).trim() === name) return decodeURIComponent(part.slice(eq + 1).trim())
  }
  return null
}

export function csrfToken(): string | null {
  return readCookie(CSRF_COOKIE) ?? memoryCsrf
}

type UnauthorizedHandler = (err: ApiError) => void
let onUnauthorized: UnauthorizedHandler | null = null

/** Installed by the app: clears the session and goes to /login?next=… */
export function setUnauthorizedHandler(h: UnauthorizedHandler | null): void {
  onUnauthorized = h
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined | null>
  body?: unknown
  /**
   * 401 answers that are ordinary for this call and must not end the session
   * in the browser: 'all' (login) or a list of error codes (change password:
   * invalid_credentials means the old password was wrong).
   */
  ordinary401?: 'all' | string[]
  signal?: AbortSignal
  /** Extra request headers (e.g. `Idempotency-Key`). */
  headers?: Record<string, string>
}

export async function request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
  const m = method.toUpperCase()
  let url = path
  if (opts.query) {
    const qs = new URLSearchParams()
    for (const [k, v] of Object.entries(opts.query)) {
      if (v !== undefined && v !== null && v !== '') qs.set(k, String(v))
    }
    const s = qs.toString()
    if (s) url += (url.includes('?') ? '&' : '?') + s
  }

  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers }
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json'
  if (UNSAFE.has(m)) {
    const token = csrfToken()
    if (token) headers[CSRF_HEADER] = token
  }

  let res: Response
  try {
    res = await fetch(url, {
      method: m,
      credentials: 'same-origin',
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal,
    })
  } catch (e) {
    if (e instanceof DOMException && e.name === 'AbortError') throw e
    throw new ApiError(0, 'network_error', t.errors.network)
  }

  if (res.ok) {
    if (res.status === 204) return undefined as T
    const text = await res.text()
    return (text ? JSON.parse(text) : undefined) as T
  }

  const err = await toApiError(res)
  if (err.status === 401 && onUnauthorized && !isOrdinary401(err, opts.ordinary401)) onUnauthorized(err)
  throw err
}

function isOrdinary401(err: ApiError, ordinary: RequestOptions['ordinary401']): boolean {
  if (ordinary === 'all') return true
  return Array.isArray(ordinary) && ordinary.includes(err.code)
}

export async function toApiError(res: Response): Promise<ApiError> {
  let code = `http_${res.status}`
  let message = ''
  try {
    const body = (await res.json()) as Partial<ErrorBody>
    if (body && typeof body.code === 'string') code = body.code
    if (body && typeof body.message === 'string') message = body.message
  } catch {
    // not JSON (e.g. a proxy error page): keep the fallback
  }
  return new ApiError(res.status, code, message || statusFallback(res.status))
}
