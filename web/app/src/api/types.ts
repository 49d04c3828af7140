// Payload types for the identity and organisation API (docs/api-identity.md).
// Field names are exactly the JSON names the server sends.
import type { MemberRole } from './protocol'

export type Role = 'trainee' | 'instructor' | 'institution_admin' | 'supervisor' | 'platform_admin'

export const ALL_ROLES: readonly Role[] = [
  'trainee',
  'instructor',
  'institution_admin',
  'supervisor',
  'platform_admin',
] as const

/** Error body: always `{code, message}` with a 4xx/5xx status. */
export interface ErrorBody {
  code: string
  message: string
}

/** A reference to another object: `{id, name}`. */
export interface Ref {
  id: number | string
  name: string
}

export type Id = Ref['id']

// ---- Sessions ----

export interface LoginRequest {
  username: string
  password: string
}

export interface LoginUser {
  id: Id
  name: string
  roles: Role[]
}

export interface LoginResponse {
  token: string
  csrf_token: string
  user: LoginUser
}

export interface Me {
  id: Id
  username: string
  name: string
  roles: Role[]
  /** e.g. "138****1234" */
  phone_masked: string | null
  /** e.g. "2201**********1234" */
  id_number_masked: string | null
  institution: Ref | null
  region: Ref | null
  instructor_certificate_no: string | null
  /** RFC 3339 */
  created_at: string
}

export interface ChangePasswordRequest {
  old_password: string
  new_password: string
}

// ---- Organisation ----

export type ClassStatus = 'planned' | 'running' | 'finished'
export type ClassEdition = 'live' | 'ecommerce'

export interface ClassSummary {
  id: Id
  name: string
  code: string
  status: ClassStatus
  edition: ClassEdition
  /** YYYY-MM-DD */
  start_date: string
  /** YYYY-MM-DD */
  end_date: string
  institution: Ref
  instructors: Ref[]
  trainee_count: number
}

export interface ClassTrainee {
  id: Id
  username: string
  name: string
  phone_masked: string | null
}

export interface ClassInstructor {
  id: Id
  name: string
  certificate_no: string | null
}

/** ClassSummary + trainees; `instructors` carries certificate numbers here. */
export interface ClassDetail extends Omit<ClassSummary, 'instructors'> {
  trainees: ClassTrainee[]
  instructors: ClassInstructor[]
}

export interface InstitutionSummary {
  id: Id
  name: string
  region: Ref
  /** 办学许可证号; sent by the server although docs/api-identity.md does not list it. */
  license_no?: string | null
  address: string | null
  contact_phone_masked: string | null
  instructor_count: number
  class_count: number
  trainee_count: number
}

export interface Instructor {
  id: Id
  username: string
  name: string
  certificate_no: string | null
  institution: Ref
}

export interface InstitutionDetail extends InstitutionSummary {
  instructors: Instructor[]
  classes: ClassSummary[]
}

export interface Region {
  id: Id
  name: string
  code: string
  institution_count: number
}

// ---- Platform administration ----

export interface AccountRow {
  id: Id
  username: string
  name: string
  roles: Role[]
  institution: Ref | null
  phone_masked: string | null
  id_number_masked: string | null
  /** RFC 3339; set while the account is locked */
  locked_until: string | null
  created_at: string
}

export interface Page<T> {
  items: T[]
  total: number
  page: number
  per_page: number
}

export interface AccountQuery {
  q?: string
  page?: number
  per_page?: number
}

export interface CreateAccountRequest {
  username: string
  name: string
  password: string
  role: Role
  phone?: string
  id_number?: string
  institution_id?: Id
  /** For supervisors; accepted by the server although docs/api-identity.md does not list it. */
  region_id?: Id
  certificate_no?: string
}

export interface UpdateRolesRequest {
  roles: Role[]
}

/** The effective configuration; its shape is the server's, secrets are "***". */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue }
export type Settings = { [key: string]: JsonValue }

export interface AuditEntry {
  seq: number
  /** RFC 3339 */
  at: string
  actor: Ref | null
  action: string
  target: string | null
  detail: JsonValue
  /** Sent by the server although docs/api-identity.md does not list it. */
  client_ip?: string | null
  hash: string
}

export interface AuditVerifyResult {
  ok: boolean
  checked: number
  first_broken_seq: number | null
  reason: string | null
}

// ---- Live rooms (REST; the real-time side is protocol.ts) ----

export type { MemberRole }

export type RoomKind = 'live_commerce' | 'live_class' | 'proctoring'
export type RoomStatus = 'idle' | 'live' | 'ended'

export const ROOM_KINDS: readonly RoomKind[] = ['live_commerce', 'live_class', 'proctoring'] as const

export interface RoomView {
  id: number
  class: Ref
  kind: RoomKind
  title: string
  host: Ref
  status: RoomStatus
  live: boolean
  /** Stored totals: updated when a live ends (and when an idle room unloads), not while live. */
  peak_viewers: number
  likes: number
  /** The caller's role in the room. */
  my_role: MemberRole
  /** RFC 3339 */
  created_at: string
  started_at: string | null
  ended_at: string | null
}

/** A recorded live (docs/media.md): packaged into a file after the live. */
export interface Replay {
  id: number
  room_id: number
  class_id: number
  publisher_id: number
  status: 'recording' | 'packaging' | 'ready' | 'failed'
  content_type: string | null
  duration_ms: number | null
  bytes: number | null
  error: string | null
  /** Unix ms */
  started_at: number
  ended_at: number | null
  ready_at: number | null
  /** Where to play it, once ready. */
  url: string | null
}

export interface CreateRoomRequest {
  class_id: Id
  kind: RoomKind
  /** 1–64 characters. */
  title: string
}

/** mask: the word is replaced by ＊; block: the whole message is refused. */
export type WordAction = 'mask' | 'block'

export interface SensitiveWord {
  word: string
  action: WordAction
}
