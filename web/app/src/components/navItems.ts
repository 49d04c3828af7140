import type { Role } from '../api/types'
import { t } from '../i18n'
import { ROLE_HOME } from '../session'

export interface NavItem {
  key: string
  label: string
  to?: string
  /** Shown disabled with 「即将上线」 and this hint. */
  soon?: string
  icon: IconName
}

export type IconName =
  | 'home'
  | 'user'
  | 'live'
  | 'shop'
  | 'mall'
  | 'order'
  | 'book'
  | 'exam'
  | 'task'
  | 'apply'
  | 'import'
  | 'eye'
  | 'chart'
  | 'admin'

const soonIcons: Record<Role, IconName[]> = {
  trainee: ['book', 'exam'],
  instructor: ['task', 'exam'],
  institution_admin: ['apply', 'import'],
  supervisor: ['eye', 'chart'],
  platform_admin: [],
}

export function navFor(role: Role | null): NavItem[] {
  if (!role) return [{ key: 'profile', label: t.shell.profile, to: '/profile', icon: 'user' }]
  const n = t.nav[role]
  const items: NavItem[] = [
    { key: 'home', label: n.home, to: ROLE_HOME[role], icon: role === 'platform_admin' ? 'admin' : 'home' },
    { key: 'rooms', label: n.rooms, to: '/rooms', icon: 'live' },
  ]
  if (role === 'trainee') {
    items.push(
      { key: 'mall', label: t.mall.nav, to: '/mall', icon: 'mall' },
      { key: 'shop', label: t.nav.trainee.shop, to: '/shop', icon: 'shop' },
      { key: 'scripts', label: t.nav.trainee.scripts, to: '/scripts', icon: 'task' },
      { key: 'orders', label: t.nav.trainee.orders, to: '/orders', icon: 'order' },
    )
  }
  n.soon.forEach((s, i) => {
    items.push({ key: `soon-${i}`, label: s.label, soon: s.hint, icon: soonIcons[role][i] ?? 'book' })
  })
  items.push({ key: 'profile', label: t.shell.profile, to: '/profile', icon: 'user' })
  return items
}
