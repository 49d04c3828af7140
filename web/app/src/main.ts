import { createApp } from 'vue'
import App from './App.vue'
import { router } from './router'
import { setUnauthorizedHandler } from './api/client'
import { clearSession } from './session'
import './styles.css'

// Any request answered 401 (session expired or ended by a login elsewhere)
// drops the local session and goes to the login page, coming back afterwards.
setUnauthorizedHandler((err) => {
  clearSession()
  const current = router.currentRoute.value
  if (current.name === 'login') return
  void router.replace({ name: 'login', query: { next: current.fullPath, reason: err.code } })
})

createApp(App).use(router).mount('#app')
