import { createRouter, createWebHistory, type RouteRecordRaw } from 'vue-router'
import type { Role } from './api/types'
import { errorMessage } from './api'
import { ensureMe, homePath, session, setRole } from './session'
import { t } from './i18n'
import LoginPage from './pages/LoginPage.vue'

declare module 'vue-router' {
  interface RouteMeta {
    /** Reachable without signing in. */
    public?: boolean
    /** Only for users holding this role; visiting it makes it the current role. */
    role?: Role
    /** Rendered inside the app shell (top bar + navigation). */
    shell?: boolean
    /** Phone: the page fills the screen under the top bar (no tab bar, no padding). */
    immersive?: boolean
    title?: string
  }
}

const routes: RouteRecordRaw[] = [
  { path: '/login', name: 'login', component: LoginPage, meta: { public: true, title: t.login.title } },
  // Not a plain redirect: redirects resolve before the guard has loaded the user.
  { path: '/', name: 'root', component: { render: () => null }, beforeEnter: () => homePath() },
  {
    path: '/trainee',
    name: 'trainee-home',
    component: () => import('./pages/TraineeHome.vue'),
    meta: { role: 'trainee', shell: true, title: t.trainee.title },
  },
  {
    path: '/instructor',
    name: 'instructor-home',
    component: () => import('./pages/InstructorHome.vue'),
    meta: { role: 'instructor', shell: true, title: t.instructor.title },
  },
  {
    path: '/institution',
    name: 'institution-home',
    component: () => import('./pages/InstitutionHome.vue'),
    meta: { role: 'institution_admin', shell: true, title: t.institution.title },
  },
  {
    path: '/supervisor',
    name: 'supervisor-home',
    component: () => import('./pages/SupervisorHome.vue'),
    meta: { role: 'supervisor', shell: true, title: t.supervisor.title },
  },
  {
    path: '/admin',
    name: 'admin',
    component: () => import('./pages/admin/AdminPage.vue'),
    meta: { role: 'platform_admin', shell: true, title: t.admin.title },
  },
  {
    path: '/classes/:id',
    name: 'class-detail',
    component: () => import('./pages/ClassDetail.vue'),
    props: true,
    meta: { shell: true, title: t.classDetail.title },
  },
  {
    path: '/rooms',
    name: 'rooms',
    component: () => import('./pages/RoomsPage.vue'),
    meta: { shell: true, title: t.rooms.title },
  },
  {
    path: '/rooms/:id(\\d+)',
    name: 'live-room',
    component: () => import('./pages/LiveRoom.vue'),
    props: true,
    meta: { shell: true, immersive: true, title: t.live.title },
  },
  {
    path: '/rooms/:id(\\d+)/reports',
    name: 'room-reports',
    component: () => import('./pages/RoomReports.vue'),
    props: true,
    meta: { shell: true, title: t.insight.report.title },
  },
  {
    path: '/shop',
    name: 'shop',
    component: () => import('./pages/shop/ShopPage.vue'),
    meta: { role: 'trainee', shell: true, title: t.shop.title },
  },
  {
    path: '/mall',
    name: 'mall',
    component: () => import('./pages/mall/MallPage.vue'),
    meta: { shell: true, title: t.mall.title },
  },
  {
    path: '/mall/shops/:id(\\d+)',
    name: 'storefront',
    component: () => import('./pages/mall/StorefrontPage.vue'),
    props: true,
    meta: { shell: true, title: t.mall.title },
  },
  {
    path: '/mall/products/:id(\\d+)',
    name: 'mall-product',
    component: () => import('./pages/mall/ProductPage.vue'),
    props: true,
    meta: { shell: true, title: t.mall.product.title },
  },
  {
    path: '/scripts',
    name: 'live-scripts',
    component: () => import('./pages/scripts/LiveScriptPage.vue'),
    meta: { role: 'trainee', shell: true, title: t.liveScript.title },
  },
  {
    path: '/orders',
    name: 'orders',
    component: () => import('./pages/orders/OrdersPage.vue'),
    meta: { shell: true, title: t.orders.title },
  },
  {
    path: '/profile',
    name: 'profile',
    component: () => import('./pages/ProfilePage.vue'),
    meta: { shell: true, title: t.profile.title },
  },
  {
    path: '/:pathMatch(.*)*',
    name: 'not-found',
    component: () => import('./pages/NotFound.vue'),
    meta: { public: true, title: t.notFound.title },
  },
]

export const router = createRouter({
  history: createWebHistory(),
  routes,
  scrollBehavior: (_to, _from, saved) => saved ?? { top: 0 },
})

router.beforeEach(async (to) => {
  if (to.meta.public) {
    // Signed in already (in this tab): the login page has nothing to offer.
    if (to.name === 'login' && session.me) return homePath()
    return true
  }
  let signedIn = !!session.me
  if (!signedIn) {
    try {
      signedIn = !!(await ensureMe())
    } catch (e) {
      return { name: 'login', query: { next: to.fullPath, error: errorMessage(e) } }
    }
  }
  if (!signedIn) return { name: 'login', query: { next: to.fullPath } }

  const role = to.meta.role
  if (role) {
    if (!session.me?.roles.includes(role)) return homePath()
    setRole(role)
  }
  return true
})

router.afterEach((to) => {
  document.title = to.meta.title ? `${to.meta.title} - ${t.app.name}` : t.app.name
})
