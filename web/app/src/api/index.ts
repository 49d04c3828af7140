// One function per endpoint of docs/api-identity.md, plus the live rooms' REST side.
import { request, setCsrfToken } from './client'
import type {
  AccountQuery,
  AccountRow,
  AuditEntry,
  AuditVerifyResult,
  ChangePasswordRequest,
  ClassDetail,
  ClassSummary,
  CreateAccountRequest,
  CreateRoomRequest,
  Id,
  InstitutionDetail,
  InstitutionSummary,
  Instructor,
  LoginRequest,
  LoginResponse,
  Me,
  Page,
  Region,
  Role,
  Replay,
  RoomView,
  SensitiveWord,
  Settings,
} from './types'

export * from './types'
export { ApiError, isApiError, errorMessage, statusFallback } from './client'

const V1 = '/api/v1'
const seg = (id: Id) => encodeURIComponent(String(id))

export const api = {
  // Sessions
  async login(body: LoginRequest): Promise<LoginResponse> {
    const res = await request<LoginResponse>('POST', `${V1}/auth/login`, { body, ordinary401: 'all' })
    setCsrfToken(res.csrf_token)
    return res
  },
  async logout(): Promise<void> {
    try {
      await request<void>('POST', `${V1}/auth/logout`, { ordinary401: 'all' })
    } finally {
      setCsrfToken(null)
    }
  },
  /** `quiet`: a 401 only means "not signed in" (used when the app starts). */
  me: (quiet = false) => request<Me>('GET', `${V1}/me`, quiet ? { ordinary401: 'all' } : {}),
  changePassword: (body: ChangePasswordRequest) =>
    request<void>('PUT', `${V1}/me/password`, { body, ordinary401: ['invalid_credentials'] }),

  // Organisation
  classes: () => request<ClassSummary[]>('GET', `${V1}/classes`),
  classDetail: (id: Id) => request<ClassDetail>('GET', `${V1}/classes/${seg(id)}`),
  institutions: () => request<InstitutionSummary[]>('GET', `${V1}/institutions`),
  institution: (id: Id) => request<InstitutionDetail>('GET', `${V1}/institutions/${seg(id)}`),
  instructors: () => request<Instructor[]>('GET', `${V1}/instructors`),
  regions: () => request<Region[]>('GET', `${V1}/regions`),

  // Live rooms (their real-time channel is the WebSocket in src/live/hub.ts)
  rooms: (live?: boolean) => request<RoomView[]>('GET', `${V1}/rooms`, { query: { live: live === undefined ? undefined : String(live) } }),
  room: (id: Id) => request<RoomView>('GET', `${V1}/rooms/${seg(id)}`),
  createRoom: (body: CreateRoomRequest) => request<RoomView>('POST', `${V1}/rooms`, { body }),
  roomReplays: (id: Id) => request<Replay[]>('GET', `${V1}/rooms/${seg(id)}/replays`),

  // Platform administration
  accounts: (q: AccountQuery = {}) =>
    request<Page<AccountRow>>('GET', `${V1}/admin/accounts`, {
      query: { q: q.q, page: q.page ?? 1, per_page: q.per_page ?? 20 },
    }),
  createAccount: (body: CreateAccountRequest) => request<AccountRow>('POST', `${V1}/admin/accounts`, { body }),
  setRoles: (id: Id, roles: Role[]) =>
    request<AccountRow>('PUT', `${V1}/admin/accounts/${seg(id)}/roles`, { body: { roles } }),
  unlock: (id: Id) => request<void>('POST', `${V1}/admin/accounts/${seg(id)}/unlock`),
  settings: () => request<Settings>('GET', `${V1}/admin/settings`),
  audit: (limit = 50) => request<AuditEntry[]>('GET', `${V1}/admin/audit`, { query: { limit } }),
  verifyAudit: () => request<AuditVerifyResult>('POST', `${V1}/admin/audit/verify`),
  sensitiveWords: () => request<SensitiveWord[]>('GET', `${V1}/admin/sensitive-words`),
  saveSensitiveWords: (words: SensitiveWord[]) =>
    request<SensitiveWord[]>('PUT', `${V1}/admin/sensitive-words`, { body: words }),
}
