// End-to-end check of live commerce in headless Chromium (playwright-core, Debian chromium):
// trainee01 on a PC opens a shop (我的店铺), publishes a listed product with a SKU, adjusts its
// stock, creates a live room and goes live, puts the product on the room's cart and pins it
// (讲解中), offers a coupon; trainee02 on a phone in the room claims the coupon, sees the 讲解中
// card, buys with the coupon and pays, and finds the order in 订单; the host starts a flash sale
// and the viewer grabs it (抢到了 → pays); the host sends a red packet and the viewer grabs an
// amount; the host launches a lucky bag, the viewer sends the keyword from the card and sees
// the draw with the revealed seed checked against the commitment; a second bag asks to watch a
// minute (观看时长) and the viewer's card shows the task and their progress; the merchant ships the order
// in 店铺订单 and the buyer confirms receipt. The host's 数据看板 tab shows the two paid orders and
// the GMV; the host ends the live and reads its 直播复盘 (numbers, charts, diagnosis), also from the
// rooms list; instructor01 sees the session in the class's 直播数据 table, sorts it and opens it.
// Then trainee01 practises alone: in a new live room the 模拟买家 tab adds 12 bot buyers, the
// viewer count rises to 12, their comments scroll by as danmaku and in the chat, the tab is
// usable at phone width, the 数据看板 says how much of the traffic is simulated, and removing the
// bots empties the room.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node commerce.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'
import path from 'node:path'

import { SCREENSHOT_DIR, VIEWPORTS, api, login, newContext, newPage, run, shot, test } from './harness.mjs'

/** ¥1,234.56 → 123456 */
const cents = (text) => {
  const m = /¥([\d,]+)\.(\d\d)/.exec(text)
  assert.ok(m, `an amount in: ${text}`)
  return Number(m[1].replaceAll(',', '')) * 100 + Number(m[2])
}

/** A screenshot of what is on the screen now (dialogs and the phone's fixed layout as seen). */
async function screen(page, name) {
  await page.evaluate(() => document.fonts?.ready)
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, name), animations: 'disabled' })
}

/** The app toast with this text (the shop and orders pages). */
const appToast = (page, text) => page.getByTestId('app-toast').filter({ hasText: text })

// ---------------------------------------------------------------- the scenario
test('live commerce: shop, cart and 讲解中, coupon, buy and pay, flash sale, red packet, lucky bag, orders', async () => {
  const hostCtx = await newContext('pc')
  const viewerCtx = await newContext('phone')
  try {
    const stamp = Date.now().toString(36)
    const productTitle = `长白山黑木耳 ${stamp}`
    const roomTitle = `木耳带货专场 ${stamp}`

    // ---- trainee01 (PC): 我的店铺 from the navigation; open the shop unless it exists already.
    const host = await newPage(hostCtx)
    await login(host, 'trainee01')
    await host.getByTestId('page-trainee-home').waitFor()
    await host.getByTestId('nav-shop').filter({ visible: true }).click()
    await host.getByTestId('page-shop').waitFor()
    await host.getByTestId('open-shop').or(host.getByTestId('shop-info')).first().waitFor()
    if (await host.getByTestId('open-shop').isVisible()) {
      // The server's validation message is shown as sent.
      await host.getByTestId('shop-name').fill('铺')
      await host.getByTestId('shop-category').fill('农副产品')
      await host.getByTestId('open-shop-submit').click()
      await host.getByTestId('open-shop-error').filter({ hasText: '店铺名称' }).waitFor()
      await host.getByTestId('shop-name').fill(`长白山特产小铺`)
      await host.getByTestId('shop-description').fill('吉林长白山的木耳、人参和蓝莓')
      await host.getByTestId('shop-logo').fill('/favicon.svg')
      await host.getByTestId('open-shop-submit').click()
      await appToast(host, '店铺已开设').waitFor()
    }
    await host.getByTestId('shop-info').waitFor()
    await host.getByTestId('shop-status').filter({ hasText: '营业中' }).waitFor()

    // Quick replies: add one and save.
    await host.getByTestId('reply-add').click()
    await host.getByTestId('reply-input').last().fill(`亲，下单后 48 小时内发货哦 ${stamp}`)
    await host.getByTestId('replies-save').click()
    await appToast(host, '快捷回复已保存').waitFor()

    // A product with one SKU, listed at once.
    await host.getByTestId('product-create').click()
    const editor = host.getByTestId('product-editor')
    await editor.waitFor()
    await host.getByTestId('product-title-input').fill(productTitle)
    await host.getByTestId('product-description-input').fill('秋耳，肉厚无根，泡发率高')
    await host.getByTestId('sku-spec-input').fill('500g 礼盒装')
    await host.getByTestId('sku-price-input').fill('39.9')
    await host.getByTestId('sku-stock-input').fill('50')
    assert.equal(await host.getByTestId('product-list-now').isChecked(), true, 'list at once by default')
    await host.getByTestId('product-save').click()
    await editor.waitFor({ state: 'detached' })
    const product = host.getByTestId('product-item').filter({ hasText: productTitle })
    await product.waitFor()
    assert.equal(await product.getAttribute('data-status'), 'listed')
    assert.match(await product.innerText(), /¥39\.90/)

    // Stock: add 5 with a note; the history shows it.
    await product.getByTestId('sku-stock-btn').click()
    const stock = host.getByTestId('stock-dialog')
    await stock.waitFor()
    await stock.getByTestId('stock-change').first().waitFor()
    await host.getByTestId('stock-amount').fill('5')
    await host.getByTestId('stock-note').fill('新到货')
    await host.getByTestId('stock-submit').click()
    await host.getByTestId('stock-current').filter({ hasText: /^55$/ }).waitFor()
    await stock.getByTestId('stock-change').filter({ hasText: '新到货' }).waitFor()
    assert.match(await stock.getByTestId('stock-change').first().innerText(), /\+5[\s\S]*55[\s\S]*手动调整/)
    await host.keyboard.press('Escape')
    await stock.waitFor({ state: 'detached' })
    await product.getByTestId('sku-stock').filter({ hasText: /^55$/ }).waitFor()
    await shot(host, 'commerce-shop-pc.png')

    // ---- a live-commerce room, through the UI; go live.
    await host.getByTestId('nav-rooms').filter({ visible: true }).click()
    await host.getByTestId('page-rooms').waitFor()
    await host.getByTestId('create-room').click()
    await host.getByTestId('create-room-dialog').waitFor()
    await host.waitForFunction(() => document.querySelector('[data-testid="room-class"]')?.value)
    await host.getByTestId('room-title').fill(roomTitle)
    await host.getByTestId('create-room-submit').click()
    await host.getByTestId('page-live-room').waitFor()
    const roomPath = new URL(host.url()).pathname
    assert.match(roomPath, /^\/rooms\/\d+$/)
    await host.locator('[data-testid="start-live"]:not([disabled])').click()
    await host.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()

    // 带货工具: put the product on the cart, pin it.
    const tools = host.getByTestId('host-tools')
    await tools.waitFor()
    await tools.getByTestId('tool-tab-shelf').click()
    await tools.getByTestId('shop-product').filter({ hasText: productTitle }).getByTestId('shelf-add').click()
    const shelfItem = tools.getByTestId('shelf-item').filter({ hasText: productTitle })
    await shelfItem.waitFor()
    await shelfItem.getByTestId('shelf-pin').click()
    await shelfItem.getByTestId('shelf-unpin').waitFor()
    await host.getByTestId('pinned-product').filter({ hasText: productTitle }).waitFor()
    assert.equal(await host.getByTestId('pinned-buy').count(), 0, 'the host does not buy from their own room')

    // ---- trainee02 (phone) enters the room and sees 讲解中.
    const viewer = await newPage(viewerCtx)
    await login(viewer, 'trainee02')
    await viewer.goto(roomPath)
    await viewer.getByTestId('page-live-room').waitFor()
    await viewer.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()
    const pinned = viewer.getByTestId('pinned-product').filter({ hasText: productTitle })
    await pinned.waitFor()
    assert.match(await pinned.innerText(), /讲解中[\s\S]*¥39\.90/)
    assert.equal(await viewer.getByTestId('host-tools').count(), 0, 'viewers have no selling tools')

    // The host offers a coupon; the viewer claims it.
    await tools.getByTestId('tool-tab-coupon').click()
    await tools.getByTestId('coupon-title').fill('直播间专享券')
    await tools.getByTestId('coupon-threshold').fill('30')
    await tools.getByTestId('coupon-discount').fill('5')
    await tools.getByTestId('coupon-submit').click()
    await tools.getByTestId('host-coupon').filter({ hasText: '满 ¥30.00 减 ¥5.00' }).waitFor()
    const coupon = viewer.getByTestId('coupon-card').filter({ hasText: '直播间专享券' })
    await coupon.waitFor()
    await coupon.getByTestId('coupon-claim').click()
    await coupon.getByTestId('coupon-claim').filter({ hasText: '已领 1 张' }).waitFor()

    // 购买: the coupon is applied; submit, pay; the room hears an order notice.
    const notice = host.getByTestId('order-notice').filter({ hasText: '刚刚下单' }).waitFor({ timeout: 20000 })
    await pinned.getByTestId('pinned-buy').click()
    const checkout = viewer.getByTestId('checkout')
    await checkout.waitFor()
    await viewer.getByTestId('checkout-total').filter({ hasText: '¥34.90' }).waitFor()
    await screen(viewer, 'commerce-viewer-checkout-phone.png')
    await viewer.getByTestId('checkout-submit').click()
    await viewer.getByTestId('checkout-pay-total').filter({ hasText: '¥34.90' }).waitFor()
    await viewer.getByTestId('checkout-pay-left').waitFor()
    await viewer.getByTestId('checkout-pay').click()
    await viewer.getByTestId('checkout-paid').waitFor()
    await notice
    await viewer.getByTestId('checkout-done').click()
    await checkout.waitFor({ state: 'detached' })

    // 订单 (a second tab of the same session): the paid order, with its history.
    const orders = await newPage(viewerCtx)
    await orders.goto('/orders')
    await orders.getByTestId('page-orders').waitFor()
    const balance = cents(await orders.getByTestId('wallet-balance').filter({ hasText: '¥' }).innerText())
    assert.ok(balance <= 1_000_000 - 3490, `the payment left the wallet, balance ${balance}`)
    const myOrder = orders.getByTestId('order-item').filter({ hasText: productTitle }).first()
    await myOrder.waitFor()
    assert.equal(await myOrder.getAttribute('data-status'), 'paid')
    assert.match(await myOrder.innerText(), /待发货[\s\S]*¥34\.90/)
    await shot(orders, 'commerce-orders-phone.png')
    await orders.close()

    // ---- flash sale: starts at once; the viewer grabs one and pays.
    await tools.getByTestId('tool-tab-flash').click()
    await tools.getByTestId('flash-price').fill('19.9')
    await tools.getByTestId('flash-stock').fill('5')
    await tools.getByTestId('flash-limit').fill('1')
    await tools.getByTestId('flash-starts-in').fill('0')
    await tools.getByTestId('flash-duration').fill('300')
    await tools.getByTestId('flash-submit').click()
    await tools.getByTestId('host-flash-sale').filter({ hasText: '¥19.90' }).waitFor()
    const sale = viewer.getByTestId('flash-sale').filter({ hasText: productTitle })
    await sale.and(viewer.locator('[data-phase="running"]')).waitFor()
    await sale.getByTestId('flash-grab').click()
    await sale.locator('[data-testid="flash-result"][data-result="won"]').waitFor()
    // The payment sheet opens on the order just won.
    await viewer.getByTestId('checkout-pay-total').filter({ hasText: '¥19.90' }).waitFor()
    await screen(viewer, 'commerce-viewer-flash-phone.png')
    await viewer.getByTestId('checkout-pay').click()
    await viewer.getByTestId('checkout-paid').waitFor()
    await viewer.getByTestId('checkout-done').click()
    await sale.getByTestId('flash-remaining').filter({ hasText: '剩 4/5' }).waitFor()
    await tools.getByTestId('host-flash-sale').filter({ hasText: '剩 4/5' }).waitFor()

    // ---- red packet: the viewer's popup, 抢, an amount.
    await tools.getByTestId('tool-tab-packet').click()
    await tools.getByTestId('packet-total').fill('6.66')
    await tools.getByTestId('packet-count').fill('3')
    await tools.getByTestId('packet-greeting').fill('感谢大家捧场')
    await tools.getByTestId('packet-submit').click()
    const packet = viewer.getByTestId('red-packet')
    await packet.filter({ hasText: '感谢大家捧场' }).waitFor()
    await viewer.getByTestId('red-packet-grab').click()
    const amount = await viewer.getByTestId('red-packet-amount').innerText()
    const got = cents(amount)
    assert.ok(got >= 1 && got <= 666, `a share of ¥6.66, got ${amount}`)
    await screen(viewer, 'commerce-viewer-redpacket-phone.png')
    await viewer.getByTestId('red-packet-close').click()
    await packet.waitFor({ state: 'detached' })

    // ---- lucky bag: the viewer sends the keyword from the card; the draw names them and its
    // seed matches the commitment (checked in the browser).
    await tools.getByTestId('tool-tab-bag').click()
    await tools.getByTestId('bag-prize').fill('长白山蓝莓干一袋')
    await tools.getByTestId('bag-keyword').fill(`木耳${stamp}`)
    await tools.getByTestId('bag-winners-input').fill('1')
    await tools.getByTestId('bag-duration').fill('10')
    await tools.getByTestId('bag-submit').click()
    const bag = viewer.getByTestId('lucky-bag').filter({ hasText: '长白山蓝莓干一袋' })
    await bag.waitFor()
    await bag.getByTestId('bag-join').click()
    await bag.getByTestId('bag-join').filter({ hasText: '已参与' }).waitFor()
    await viewer.getByTestId('chat-message').filter({ hasText: `木耳${stamp}` }).waitFor()
    await shot(host, 'commerce-host-pc.png')
    await bag.and(viewer.locator('[data-state="drawn"]')).waitFor({ timeout: 30000 })
    await bag.getByTestId('bag-my-result').filter({ hasText: '恭喜你中奖了' }).waitFor()
    assert.match(await bag.getByTestId('bag-winners').innerText(), /中奖名单/)
    await bag.getByTestId('bag-verify').locator('summary').click()
    await bag.getByText('本机已校验').waitFor()
    assert.match(await bag.getByTestId('bag-seed').innerText(), /^[0-9a-f]{64}$/)
    await tools.getByTestId('host-bag').filter({ hasText: '已开奖' }).waitFor()
    await shot(viewer, 'commerce-viewer-phone.png')
    await shot(host, 'commerce-host-drawn-pc.png')

    // ---- a watch lucky bag (观看时长): no keyword to send; the viewer's card says how long to
    // watch and shows their progress from the server.
    await tools.getByTestId('bag-task-watch').click()
    await tools.getByTestId('bag-prize').fill('东北黑木耳一袋')
    await tools.getByTestId('bag-watch-minutes').fill('1')
    await tools.getByTestId('bag-duration').fill('30')
    await tools.getByTestId('bag-submit').click()
    await tools.getByTestId('bag-error').filter({ hasText: '至少 60 秒' }).waitFor()
    await tools.getByTestId('bag-duration').fill('60')
    await tools.getByTestId('bag-submit').click()
    await tools.getByTestId('host-bag').filter({ hasText: '观看满 1 分钟即可参与' }).waitFor()
    const watchBag = viewer.getByTestId('lucky-bag').filter({ hasText: '东北黑木耳一袋' })
    await watchBag.getByTestId('bag-task-text').filter({ hasText: '观看满 1 分钟即可参与' }).waitFor()
    assert.equal(await watchBag.getByTestId('bag-join').count(), 0, 'a watch bag has nothing to send')
    await watchBag.getByTestId('bag-watch').filter({ hasText: /已观看 \d\d:\d\d \/ 01:00/ }).waitFor()
    await screen(viewer, 'commerce-viewer-watch-bag-phone.png')
    await shot(host, 'commerce-host-watch-bag-pc.png')
    await tools.getByTestId('bag-task-comment').click()

    // ---- after-sale: the merchant ships in 店铺订单; the buyer confirms receipt.
    const merchant = await newPage(hostCtx)
    await merchant.goto('/orders?tab=merchant')
    await merchant.getByTestId('page-orders').waitFor()
    await merchant.getByTestId('orders-filter-paid').click()
    const toShip = merchant.getByTestId('order-item').filter({ hasText: productTitle }).first()
    await toShip.waitFor()
    const orderId = await toShip.getAttribute('data-order-id')
    await toShip.getByTestId('order-action-ship').click()
    await merchant.getByTestId('order-action-confirm').click()
    await appToast(merchant, '已发货').waitFor()
    await merchant.getByTestId('orders-filter-shipped').click()
    await merchant.locator(`[data-testid="order-item"][data-order-id="${orderId}"]`).waitFor()
    await shot(merchant, 'commerce-merchant-orders-pc.png')

    const buyer = await newPage(viewerCtx)
    await buyer.goto(`/orders?id=${orderId}`)
    const detail = buyer.getByTestId('order-detail')
    await detail.waitFor()
    await detail.getByTestId('order-detail-status').filter({ hasText: '已发货' }).waitFor()
    await detail.getByTestId('order-tracking').filter({ hasText: /^SIM\d+$/ }).waitFor()
    assert.ok((await detail.getByTestId('order-event').count()) >= 3, 'placed, paid and shipped are in the history')
    await detail.getByTestId('order-action-confirm').click()
    await buyer.getByTestId('order-action-dialog').getByTestId('order-action-confirm').click()
    await detail.getByTestId('order-detail-status').filter({ hasText: '已完成' }).waitFor()
    await detail.getByTestId('order-event').filter({ hasText: '确认收货' }).waitFor()
    await screen(buyer, 'commerce-order-detail-phone.png')

    // ---- 数据看板: the host's live numbers show both paid orders (¥34.90 + ¥19.90), the product
    // in the sales ranking and the tools' results; it refreshes every 2 s.
    await tools.getByTestId('tool-tab-dash').click()
    const dash = tools.getByTestId('dashboard')
    await dash.scrollIntoViewIfNeeded()
    await dash.and(host.locator('[data-live="true"]')).waitFor()
    await dash.getByTestId('kpi-gmv').filter({ hasText: '¥54.80' }).waitFor()
    await dash.getByTestId('kpi-orders').filter({ hasText: /^\s*订单 \/ 已付款\s*2 \/ 2/ }).waitFor()
    assert.ok(Number(await dash.getByTestId('kpi-unique').getAttribute('data-value')) >= 1, 'trainee02 watched')
    assert.ok(Number(await dash.getByTestId('kpi-conversion').getAttribute('data-value')) > 0, 'a viewer bought')
    await dash.getByTestId('product-sales-row').filter({ hasText: productTitle }).filter({ hasText: '2 件' }).waitFor()
    await dash.getByTestId('result-flash-sale').filter({ hasText: '售出 1/5' }).waitFor()
    assert.match(await dash.getByTestId('result-packets').innerText(), /发出 1 个，共 ¥6\.66/)
    assert.match(await dash.getByTestId('result-coupons').innerText(), /领取 1 张，下单使用 1 张/)
    assert.ok(Number(await dash.getByTestId('chart-gmv').getAttribute('data-max')) >= 1990, 'the GMV chart has a bar')
    const at0 = Number(await dash.getAttribute('data-at'))
    await host.waitForFunction(
      (at) => Number(document.querySelector('[data-testid="dashboard"]')?.getAttribute('data-at')) > at,
      at0,
      { timeout: 8000 },
    )
    await shot(host, 'dashboard-host-pc.png')

    // End the live.
    await host.getByTestId('end-live').click()
    await host.getByTestId('end-live-confirm').click()
    await host.getByTestId('live-status').filter({ hasText: '已结束' }).waitFor()
    // Refreshed while on the screen: scrolled back to it, it shows the final numbers.
    await dash.scrollIntoViewIfNeeded()
    await dash.getByTestId('dashboard-report-link').waitFor()

    for (const p of [host, viewer, merchant, buyer]) p.assertClean()

    // ---- 直播复盘: from the room page; written a few seconds after the end (the page waits).
    const roomId = Number(roomPath.split('/').pop())
    await host.getByTestId('report-cta').getByTestId('report-link').click()
    await host.getByTestId('page-report').waitFor()
    assert.equal(new URL(host.url()).pathname, `${roomPath}/reports`)
    const diagnosis = host.getByTestId('diagnosis')
    await diagnosis.waitFor({ timeout: 30000 })
    await host.getByTestId('report-title').filter({ hasText: roomTitle }).waitFor()
    const diagItems = diagnosis.locator('[data-testid^="diagnosis-"] li')
    assert.ok((await diagItems.count()) >= 1, 'the diagnosis names at least one point')
    await host.getByTestId('kpi-gmv').filter({ hasText: '¥54.80' }).waitFor()
    await host.getByTestId('product-sales-row').filter({ hasText: productTitle }).waitFor()
    assert.ok(Number(await host.getByTestId('report-chart-orders').getAttribute('data-max')) >= 1)
    assert.ok(Number(await host.getByTestId('report-chart-comments').getAttribute('data-max')) >= 1, 'the keyword was a comment')
    assert.equal(await host.getByTestId('report-pending').count(), 0)
    await shot(host, 'report-pc.png')
    await host.setViewportSize(VIEWPORTS.phone.viewport)
    await host.getByTestId('diagnosis').waitFor()
    await shot(host, 'report-phone.png')
    await host.setViewportSize(VIEWPORTS.pc.viewport)

    // The rooms list leads the host to the same report.
    await host.goto('/rooms')
    await host.getByTestId('page-rooms').waitFor()
    const cell = host.locator('.room-cell').filter({ has: host.getByTestId('room-card').filter({ hasText: roomTitle }) })
    await cell.getByTestId('room-report-link').click()
    await host.getByTestId('page-report').waitFor()
    await host.getByTestId('diagnosis').waitFor()
    const room = await host.evaluate(async (id) => (await fetch(`/api/v1/rooms/${id}`)).json(), roomId)
    host.assertClean()

    // ---- instructor01 (own browser): the class's sessions side by side, sortable, with the report.
    const teacherCtx = await newContext('pc')
    try {
      const teacher = await newPage(teacherCtx)
      await login(teacher, 'instructor01')
      await teacher.getByTestId('page-instructor-home').waitFor()
      await teacher.getByTestId('class-card').filter({ hasText: room.class.name }).first().click()
      await teacher.getByTestId('page-class-detail').waitFor()
      const table = teacher.getByTestId('class-reports-table')
      await table.waitFor()
      const row = table.getByTestId('class-report-row').filter({ hasText: roomTitle })
      await row.waitFor()
      assert.match(await row.innerText(), /¥54\.80/)
      assert.match(await row.innerText(), /2/)
      // Sorted by GMV, the biggest first.
      await table.getByTestId('sort-gmv').click()
      await table.locator('th[aria-sort="descending"]').filter({ hasText: 'GMV' }).waitFor()
      const gmvs = (await table.getByTestId('class-report-gmv').allInnerTexts()).map(cents)
      assert.deepEqual(gmvs, gmvs.slice().sort((a, b) => b - a), `GMV column sorted: ${gmvs}`)
      await table.getByTestId('sort-gmv').click()
      await table.locator('th[aria-sort="ascending"]').filter({ hasText: 'GMV' }).waitFor()
      await table.getByTestId('sort-started').click()
      await shot(teacher, 'class-reports-pc.png')
      await row.getByTestId('class-report-open').click()
      await teacher.getByTestId('page-report').waitFor()
      await teacher.getByTestId('report-title').filter({ hasText: roomTitle }).waitFor()
      await teacher.getByTestId('diagnosis').waitFor()
      teacher.assertClean()
    } finally {
      await teacherCtx.close()
    }
  } finally {
    await hostCtx.close()
    await viewerCtx.close()
  }
})

test('buyer bots: the host adds 模拟买家, the viewer count and the danmaku rise, the dashboard tells them apart', async () => {
  const pc = await newContext('pc')
  try {
    const host = await newPage(pc)
    await login(host, 'trainee01')
    const classes = await api(host, 'GET', '/api/v1/classes')
    const created = await api(host, 'POST', '/api/v1/rooms', {
      class_id: classes.body[0].id,
      kind: 'live_commerce',
      title: `模拟买家练习 ${Date.now().toString(36)}`,
    })
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const roomPath = `/rooms/${created.body.id}`
    await host.goto(roomPath)
    await host.getByTestId('page-live-room').waitFor()
    const tools = host.getByTestId('host-tools')
    await tools.getByTestId('tool-tab-bots').click()
    const bots = tools.getByTestId('tool-bots')
    // Not live yet: the tab says so and cannot start.
    await bots.getByTestId('bots-not-live').waitFor()
    assert.equal(await bots.getByTestId('bots-submit').isDisabled(), true)
    await host.locator('[data-testid="start-live"]:not([disabled])').click()
    await host.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()
    await bots.getByTestId('bots-not-live').waitFor({ state: 'detached' })

    // 12 bots, fast, all chatty.
    await bots.getByTestId('bots-count').fill('12')
    await bots.getByTestId('bots-arrivals').fill('120')
    await bots.getByTestId('bots-comment').fill('100')
    await bots.getByTestId('bots-like').fill('100')
    await bots.getByTestId('bots-submit').click()
    await host.getByText('模拟买家已开始进场').first().waitFor()
    await host.locator('[data-testid="tool-bots"][data-running="true"]').waitFor()
    // The room's viewer count rises to the 12 bots; their comments scroll by as danmaku.
    await host.waitForFunction(() => Number(document.querySelector('[data-testid="viewer-count"]')?.textContent) >= 12, null, { timeout: 30000 })
    await host.getByTestId('danmaku-item').filter({ hasText: /./ }).first().waitFor({ timeout: 45000 })
    await host.getByTestId('chat-message').filter({ hasText: '买家·' }).first().waitFor({ timeout: 45000 })
    await bots.getByTestId('bots-present').filter({ hasText: /^12/ }).waitFor({ timeout: 10000 })
    await shot(host, 'commerce-bots-pc.png')

    // At phone width (the same session: a second login would end this one), the tab is usable.
    await host.setViewportSize(VIEWPORTS.phone.viewport)
    if (!(await bots.isVisible())) await host.getByTestId('host-tools-toggle').click()
    await bots.getByTestId('bots-present').filter({ hasText: /^12/ }).waitFor()
    await bots.getByTestId('bots-submit').scrollIntoViewIfNeeded()
    await screen(host, 'commerce-bots-phone.png')
    const box = await bots.getByTestId('bots-count-range').boundingBox()
    assert.ok(box && box.width > 150 && box.x >= 0 && box.x + box.width <= 390, `the slider fits: ${JSON.stringify(box)}`)
    await host.setViewportSize(VIEWPORTS.pc.viewport)

    // The dashboard says how much of the traffic is simulated.
    await tools.getByTestId('tool-tab-dash').click()
    const share = host.getByTestId('bot-share')
    await share.waitFor({ timeout: 15000 })
    await host.waitForFunction(() => Number(document.querySelector('[data-testid="bot-share"]')?.dataset.botViewers) >= 12, null, { timeout: 15000 })
    assert.match(await share.innerText(), /模拟买家/)
    await share.scrollIntoViewIfNeeded()
    await screen(host, 'commerce-bots-dashboard-pc.png')

    // Removed: they leave.
    await tools.getByTestId('tool-tab-bots').click()
    await bots.getByTestId('bots-stop').click()
    await host.getByText('模拟买家已全部离开').first().waitFor()
    await host.waitForFunction(() => Number(document.querySelector('[data-testid="viewer-count"]')?.textContent) <= 1, null, { timeout: 15000 })
    await host.locator('[data-testid="end-live"]:not([disabled])').click()
    await host.getByTestId('end-live-confirm').click()
    await host.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor({ state: 'detached' })
    host.assertClean()
  } finally {
    await pc.close()
  }
})

test('shop page on a phone and the orders page for a trainee without a shop', async () => {
  const ctx = await newContext('phone')
  try {
    const page = await newPage(ctx)
    await login(page, 'trainee03')
    await page.goto('/orders?tab=merchant')
    await page.getByTestId('page-orders').waitFor()
    await page.getByTestId('wallet-balance').filter({ hasText: '¥' }).waitFor()
    await page.getByTestId('empty-state').filter({ hasText: '店铺还没有收到订单' }).waitFor()
    await page.getByText('你还没有开店').waitFor()
    await page.goto('/shop')
    await page.getByTestId('page-shop').waitFor()
    await page.getByTestId('open-shop').waitFor()
    await shot(page, 'commerce-open-shop-phone.png')
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

run()
