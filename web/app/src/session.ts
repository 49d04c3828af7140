// Who is signed in and which of their roles the UI currently shows.
import { reactive, readonly } from 'vue'
import { api, isApiError } from './api'
import type { Me, Role } from './api/types'
import { isRole } from './utils/format'

const ROLE_KEY = 'livecamp.role'

export const ROLE_HOME: Record<Role, string> = {
  trainee: '/trainee',
  instructor: '/instructor',
  institution_admin: '/institution',
  supervisor: '/supervisor',
  platform_admin: '/admin',
}

interface State {
  me: Me | null
  role: Role | null
}

const state = reactive<State>({ me: null, role: null })
export const session = readonly(state)

function storedRoles(): Record<string, string> {
  try {
    const v: unknown = JSON.parse(localStorage.getItem(ROLE_KEY) ?? '{}')
    return v && typeof v === 'object' ? (v as Record<string, string>) : {}
  } catch {
    return {}
  }
}

function rememberRole(username: string, role: Role): void {
  try {
    const all = storedRoles()
    all[username] = role
    localStorage.setItem(ROLE_KEY, JSON.stringify(all))
  } catch {
    // storage unavailable (private mode): the choice lasts for this tab only
  }
}

export function setMe(me: Me): void {
  state.me = me
  const remembered = storedRoles()[me.username]
  if (isRole(remembered) && me.roles.includes(remembered)) state.role = remembered
  else if (!state.role || !me.roles.includes(state.role)) state.role = me.roles[0] ?? null
}

export function clearSession(): void {
  state.me = null
  state.role = null
}

export function setRole(role: Role): void {
  if (!state.me || !state.me.roles.includes(role)) return
  state.role = role
  rememberRole(state.me.username, role)
}

/** Loads /me once; null when nobody is signed in. Other errors propagate. */
let pending: Promise<Me | null> | null = null
export function ensureMe(): Promise<Me | null> {
  if (state.me) return Promise.resolve(state.me)
  pending ??= api
    .me(true)
    .then((me) => {
      setMe(me)
      return me
    })
    .catch((e: unknown) => {
      if (isApiError(e) && e.status === 401) return null
      throw e
    })
    .finally(() => {
      pending = null
    })
  return pending
}

export function homePath(role: Role | null = state.role): string {
  return role ? ROLE_HOME[role] : '/profile'
}

/** Accepts only same-site absolute paths as a post-login target. */
export function safeNext(next: unknown): string | null {
  if (typeof next !== 'string' || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return null
  if (next === '/login' || next.startsWith('/login?')) return null
  return next
}
