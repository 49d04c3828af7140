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
// bots empties the room. After-sale: trainee06 on a phone asks trainee05's shop for a return
// (退货退款), the merchant approves with a return address, the buyer ships it back with a
// tracking number and the merchant confirms: refunded and restocked.
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

    // 购买: the coupon is applied; submit, pay; the room hears an order notice, and the 讲解中
    // card's stock drops live on both screens (product_updated), with no reload.
    const stockBefore = Number(await pinned.getByTestId('pinned-stock').getAttribute('data-stock'))
    assert.ok(stockBefore > 0, `the pinned card shows the stock: ${stockBefore}`)
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
    for (const page of [viewer, host]) {
      await page.locator(`[data-testid="pinned-stock"][data-stock="${stockBefore - 1}"]`).waitFor()
    }
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

test('after-sale: a return (退货退款) — the buyer asks on a phone, the merchant approves, the buyer ships it back, the merchant confirms', async () => {
  const merchantCtx = await newContext('pc')
  const buyerCtx = await newContext('phone')
  try {
    // trainee05 opens a shop with one product (through the API: the shop pages are checked
    // above); trainee06 buys two, the merchant ships, the buyer confirms receipt.
    const merchant = await newPage(merchantCtx)
    await login(merchant, 'trainee05')
    let shop = await api(merchant, 'GET', '/api/v1/shops/mine')
    if (shop.status === 404) shop = await api(merchant, 'POST', '/api/v1/shops', { name: '延边米酒坊', category: '食品' })
    assert.ok(shop.status === 200 || shop.status === 201, JSON.stringify(shop.body))
    const title = `延边米酒 ${Date.now() % 100000}`
    const product = await api(merchant, 'POST', `/api/v1/shops/${shop.body.id}/products`, {
      title,
      listed: true,
      skus: [{ spec: '500ml', price_cents: 2590, stock: 20 }],
    })
    assert.equal(product.status, 201, JSON.stringify(product.body))
    const buyer = await newPage(buyerCtx)
    await login(buyer, 'trainee06')
    const placed = await api(buyer, 'POST', '/api/v1/orders', { sku_id: product.body.skus[0].id, quantity: 2, address: '延吉市' })
    assert.equal(placed.status, 201, JSON.stringify(placed.body))
    const id = placed.body.id
    for (const [page, action] of [[buyer, 'pay'], [merchant, 'ship'], [buyer, 'confirm']]) {
      const r = await api(page, 'POST', `/api/v1/orders/${id}/${action}`)
      assert.equal(r.status, 200, `${action}: ${JSON.stringify(r.body)}`)
    }

    // The buyer asks for a return; the reason is required.
    await buyer.goto(`/orders?id=${id}`)
    const detail = buyer.getByTestId('order-detail')
    await detail.getByTestId('order-detail-status').filter({ hasText: '已完成' }).waitFor()
    await detail.getByTestId('order-action-return').click()
    const dialog = buyer.getByTestId('order-action-dialog')
    await dialog.getByTestId('order-action-confirm').click()
    await dialog.getByTestId('order-action-error').filter({ hasText: '请填写退货原因' }).waitFor()
    await dialog.getByTestId('order-action-reason').fill('瓶身有裂纹')
    await dialog.getByTestId('order-action-confirm').click()
    await detail.getByTestId('order-detail-status').filter({ hasText: '退货待审核' }).waitFor()
    await detail.getByTestId('order-after-sale-hint').filter({ hasText: '商家 2 天内未处理将自动同意' }).waitFor()
    await detail.getByTestId('order-action-withdraw').waitFor()

    // The merchant approves with the return address.
    await merchant.goto(`/orders?tab=merchant&id=${id}`)
    const mDetail = merchant.getByTestId('order-detail')
    await mDetail.getByTestId('order-detail-status').filter({ hasText: '退货待审核' }).waitFor()
    await mDetail.getByTestId('order-action-reject-return').waitFor()
    await mDetail.getByTestId('order-action-approve-return').click()
    const mDialog = merchant.getByTestId('order-action-dialog')
    await mDialog.getByTestId('order-action-reason').fill('请寄回：延吉市人民路 8 号 米酒坊 收')
    await mDialog.getByTestId('order-action-confirm').click()
    await mDetail.getByTestId('order-detail-status').filter({ hasText: '待寄回' }).waitFor()

    // The buyer sees the address and ships the parcel back with a tracking number.
    await buyer.reload()
    await detail.getByTestId('order-detail-status').filter({ hasText: '待寄回' }).waitFor()
    await detail.getByTestId('order-return-instructions').filter({ hasText: '延吉市人民路 8 号' }).waitFor()
    await detail.getByTestId('order-action-ship-return').click()
    await dialog.getByTestId('order-action-tracking').fill('yt12')
    await dialog.getByTestId('order-action-confirm').click()
    await dialog.getByTestId('order-action-error').filter({ hasText: '运单号' }).waitFor()
    await dialog.getByTestId('order-action-tracking').fill('yt9876543210')
    await dialog.getByTestId('order-action-confirm').click()
    await detail.getByTestId('order-detail-status').filter({ hasText: '退货寄回中' }).waitFor()
    await detail.getByTestId('order-return-tracking').filter({ hasText: 'YT9876543210' }).waitFor()
    assert.equal(await detail.getByTestId('order-action-withdraw').count(), 0, 'no withdrawing once shipped back')
    await screen(buyer, 'commerce-return-shipped-phone.png')

    // The merchant confirms the parcel came back: refunded, and the two units are in stock again.
    await merchant.reload()
    await mDetail.getByTestId('order-detail-status').filter({ hasText: '退货寄回中' }).waitFor()
    await mDetail.getByTestId('order-return-tracking').filter({ hasText: 'YT9876543210' }).waitFor()
    await mDetail.getByTestId('order-action-confirm-return').click()
    await mDialog.getByTestId('order-action-confirm').click()
    await mDetail.getByTestId('order-detail-status').filter({ hasText: '已退款' }).waitFor()
    await mDetail.getByTestId('order-event').filter({ hasText: '商家确认收到退货' }).waitFor()
    await shot(merchant, 'commerce-return-refunded-pc.png')
    const after = await api(merchant, 'GET', `/api/v1/products/${product.body.id}`)
    assert.equal(after.body.skus[0].stock, 20, 'the returned units are back in stock')
    merchant.assertClean()
    buyer.assertClean()
  } finally {
    await merchantCtx.close()
    await buyerCtx.close()
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

// The simulated mall (商城): trainee08 on a phone opens the 商城 tab, trainee07's shop card,
// the storefront (listed products only, price range and stock), 客服 (the shop's quick replies as
// its answers), a product, picks a spec, buys two through the room's checkout sheet without a
// room, pays, and finds the order in 订单. The owner sees their storefront without a buy button
// (and the server refuses with 403). In a live room the host's quick replies are chips over the
// chat input: one tap sends one. Then a closed shop, a shop with nothing listed, and the mall
// failing to load (retry).
test('the mall on a phone: a classmate’s storefront, 客服 replies, buying without a room, the order in 订单; own shop; the host’s quick-reply chips', async () => {
  const merchantCtx = await newContext('pc')
  const buyerCtx = await newContext('phone')
  try {
    const stamp = Date.now().toString(36)
    // trainee07 (through the API: the shop pages are checked above) runs a shop with three quick
    // replies, a listed product of two specs and a draft.
    const merchant = await newPage(merchantCtx)
    await login(merchant, 'trainee07')
    let shop = await api(merchant, 'GET', '/api/v1/shops/mine')
    if (shop.status === 404) {
      shop = await api(merchant, 'POST', '/api/v1/shops', {
        name: '敦化林下山珍铺',
        category: '土特产',
        description: '长白山脚下的榛蘑、松子和林下参，产地直发',
        logo_url: '/favicon.svg',
      })
    }
    assert.ok(shop.status === 200 || shop.status === 201, JSON.stringify(shop.body))
    const shopId = shop.body.id
    const replies = [
      `发货时间：下单后 48 小时内从敦化发货 ${stamp}`,
      '支持七天无理由退换吗？支持，收到后 7 天内可申请退货退款',
      '亲，榛蘑建议温水泡发 30 分钟再下锅哦',
    ]
    const patched = await api(merchant, 'PATCH', `/api/v1/shops/${shopId}`, { quick_replies: replies, status: 'open' })
    assert.equal(patched.status, 200, JSON.stringify(patched.body))
    const title = `长白山榛蘑 ${stamp}`
    const product = await api(merchant, 'POST', `/api/v1/shops/${shopId}/products`, {
      title,
      description: '野生榛蘑，晒干无沙，煲汤炖鸡都香',
      images: ['/favicon.svg'],
      listed: true,
      skus: [
        { spec: '250g 袋装', price_cents: 2990, stock: 30 },
        { spec: '500g 礼盒', price_cents: 5590, stock: 12 },
      ],
    })
    assert.equal(product.status, 201, JSON.stringify(product.body))
    const gift = product.body.skus.find((s) => s.spec === '500g 礼盒')
    const draft = await api(merchant, 'POST', `/api/v1/shops/${shopId}/products`, {
      title: `松子（草稿）${stamp}`,
      skus: [{ spec: '1kg', price_cents: 9900, stock: 5 }],
    })
    assert.equal(draft.status, 201, JSON.stringify(draft.body))

    // ---- trainee08 on a phone: the 商城 tab, the shop's card.
    const buyer = await newPage(buyerCtx)
    await login(buyer, 'trainee08')
    await buyer.getByTestId('tab-mall').click()
    await buyer.getByTestId('page-mall').waitFor()
    const card = buyer.locator(`[data-testid="mall-shop"][data-shop-id="${shopId}"]`)
    await card.waitFor()
    assert.match(await card.innerText(), new RegExp(`${shop.body.name}[\\s\\S]*土特产|土特产[\\s\\S]*${shop.body.name}`))
    assert.match(await card.getByTestId('mall-shop-listed').innerText(), /\d+ 件在售/)
    await shot(buyer, 'mall-phone.png')

    // The storefront: the listed product with its price range and stock, not the draft.
    await card.click()
    await buyer.getByTestId('page-storefront').waitFor()
    await buyer.getByTestId('storefront-name').filter({ hasText: shop.body.name }).waitFor()
    const tile = buyer.getByTestId('storefront-product').filter({ hasText: title })
    await tile.waitFor()
    assert.match(await tile.innerText(), /¥29\.90–55\.90[\s\S]*库存 42/)
    assert.equal(await buyer.getByTestId('storefront-product').filter({ hasText: '松子（草稿）' }).count(), 0, 'no drafts for buyers')
    assert.equal(await buyer.getByTestId('storefront-own').count(), 0)
    await shot(buyer, 'mall-storefront-phone.png')

    // 客服: the shop's quick replies as its answers; "话题：回复" and "问题？回复" are split.
    await buyer.getByTestId('storefront-service').click()
    const service = buyer.getByTestId('service-sheet')
    await service.waitFor()
    const answers = service.getByTestId('service-reply')
    await answers.filter({ hasText: `下单后 48 小时内从敦化发货 ${stamp}` }).waitFor()
    assert.equal(await answers.count(), 3)
    assert.equal(await answers.nth(0).locator('strong').innerText(), '发货时间')
    assert.equal(await answers.nth(1).locator('strong').innerText(), '支持七天无理由退换吗？')
    assert.equal(await answers.nth(2).locator('strong').count(), 0)
    await screen(buyer, 'mall-service-phone.png')
    await buyer.keyboard.press('Escape')
    await service.waitFor({ state: 'detached' })

    // The product: choose 500g 礼盒, 立即购买 → the room's checkout sheet, without a room.
    await tile.click()
    await buyer.getByTestId('page-product').waitFor()
    await buyer.getByTestId('product-title').filter({ hasText: title }).waitFor()
    await buyer.getByTestId('product-price').filter({ hasText: '¥29.90' }).waitFor()
    await buyer.getByTestId('product-sku').filter({ hasText: '500g 礼盒' }).click()
    await buyer.getByTestId('product-price').filter({ hasText: '¥55.90' }).waitFor()
    await buyer.getByTestId('product-sku-line').filter({ hasText: '库存 12' }).waitFor()
    const buy = buyer.getByTestId('product-buy')
    const bar = await buyer.getByTestId('product-buy-bar').boundingBox()
    assert.ok(bar && bar.y + bar.height <= 844 - 56 + 1 && bar.y > 600, `the buy bar sits above the tab bar: ${JSON.stringify(bar)}`)
    await screen(buyer, 'mall-product-phone.png')
    await buy.click()
    const checkout = buyer.getByTestId('checkout')
    await checkout.waitFor()
    await checkout.locator('[data-testid="checkout-sku"].active').filter({ hasText: '500g 礼盒' }).waitFor()
    await buyer.getByTestId('checkout-plus').click()
    await buyer.getByTestId('checkout-total').filter({ hasText: '¥111.80' }).waitFor()
    await screen(buyer, 'mall-checkout-phone.png')
    await buyer.getByTestId('checkout-submit').click()
    await buyer.getByTestId('checkout-pay-total').filter({ hasText: '¥111.80' }).waitFor()
    const orderId = Number(await buyer.getByTestId('checkout-order').getAttribute('data-order-id'))
    await buyer.getByTestId('checkout-pay').click()
    await buyer.getByTestId('checkout-paid').waitFor()
    const placed = await api(buyer, 'GET', `/api/v1/orders/${orderId}`)
    assert.equal(placed.body.room_id, null, 'a mall order has no room')
    assert.equal(placed.body.sku_id, gift.id)
    assert.equal(placed.body.status, 'paid')

    // 订单: the paid order.
    await buyer.getByTestId('checkout-view-order').click()
    await buyer.getByTestId('page-orders').waitFor()
    const item = buyer.getByTestId('order-item').filter({ hasText: title }).first()
    await item.waitFor()
    assert.equal(await item.getAttribute('data-status'), 'paid')
    assert.match(await item.innerText(), /待发货[\s\S]*¥111\.80/)
    await shot(buyer, 'mall-order-phone.png')
    // The storefront's stock went down by the two units.
    await buyer.goto(`/mall/shops/${shopId}`)
    assert.match(await buyer.getByTestId('storefront-product').filter({ hasText: title }).innerText(), /库存 40[\s\S]*已售 2/)
    buyer.assertClean()

    // ---- the owner sees the storefront as buyers do, without a buy button; the server refuses anyway.
    await merchant.goto(`/mall/shops/${shopId}`)
    await merchant.getByTestId('storefront-own').waitFor()
    await merchant.getByTestId('storefront-product').filter({ hasText: title }).waitFor()
    await shot(merchant, 'mall-own-storefront-pc.png')
    await merchant.getByTestId('storefront-product').filter({ hasText: title }).click()
    await merchant.getByTestId('product-own-note').waitFor()
    assert.equal(await merchant.getByTestId('product-buy').count(), 0, 'no buying from one’s own shop')
    await shot(merchant, 'mall-own-product-pc.png')
    const own = await api(merchant, 'POST', '/api/v1/orders', { sku_id: gift.id, quantity: 1 })
    assert.equal(own.status, 403, JSON.stringify(own.body))

    // ---- the host's quick replies in the live room: one tap sends it as a chat message.
    const classes = await api(merchant, 'GET', '/api/v1/classes')
    const room = await api(merchant, 'POST', '/api/v1/rooms', { class_id: classes.body[0].id, kind: 'live_commerce', title: `榛蘑专场 ${stamp}` })
    assert.equal(room.status, 201, JSON.stringify(room.body))
    await merchant.goto(`/rooms/${room.body.id}`)
    await merchant.getByTestId('page-live-room').waitFor()
    await merchant.locator('[data-testid="start-live"]:not([disabled])').click()
    await merchant.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor()
    const chips = merchant.getByTestId('quick-replies-bar')
    await chips.waitFor()
    assert.equal(await chips.getByTestId('quick-reply').count(), 3)
    await chips.getByTestId('quick-reply').nth(2).click()
    await merchant.getByTestId('chat-message').filter({ hasText: '榛蘑建议温水泡发 30 分钟' }).waitFor()
    assert.equal(await merchant.getByTestId('chat-input').inputValue(), '', 'the input is left alone')
    // The buyer in the room has no chips (they are the host's), and sees the answer.
    await buyer.goto(`/rooms/${room.body.id}`)
    await buyer.getByTestId('chat-message').filter({ hasText: '榛蘑建议温水泡发 30 分钟' }).waitFor()
    assert.equal(await buyer.getByTestId('quick-replies-bar').count(), 0)
    await chips.locator('.qr-scroll').evaluate((el) => (el.scrollLeft = 0))
    await screen(merchant, 'mall-quick-replies-host-pc.png')
    await merchant.setViewportSize(VIEWPORTS.phone.viewport)
    await chips.waitFor()
    await screen(merchant, 'mall-quick-replies-host-phone.png')
    await merchant.setViewportSize(VIEWPORTS.pc.viewport)
    await merchant.locator('[data-testid="end-live"]:not([disabled])').click()
    await merchant.getByTestId('end-live-confirm').click()
    await merchant.getByTestId('live-status').filter({ hasText: '直播中' }).waitFor({ state: 'detached' })

    // ---- the other states a buyer meets: a closed shop (休息中), a shop with nothing listed,
    // and the mall failing to load (retry).
    const closed = await api(merchant, 'PATCH', `/api/v1/shops/${shopId}`, { status: 'closed' })
    assert.equal(closed.status, 200, JSON.stringify(closed.body))
    await buyer.goto('/mall')
    await buyer.locator(`[data-testid="mall-shop"][data-shop-id="${shopId}"][data-status="closed"]`).filter({ hasText: '休息中' }).waitFor()
    await buyer.goto(`/mall/shops/${shopId}`)
    await buyer.getByTestId('storefront-closed').waitFor()
    await buyer.getByTestId('storefront-service').waitFor()
    assert.equal(await buyer.getByTestId('storefront-product').count(), 0)
    await shot(buyer, 'mall-closed-phone.png')
    await api(merchant, 'PATCH', `/api/v1/shops/${shopId}`, { status: 'open' })
    await api(merchant, 'PATCH', `/api/v1/products/${product.body.id}`, { status: 'delisted' })
    const left = (await api(buyer, 'GET', `/api/v1/shops/${shopId}/products`)).body.length
    await buyer.reload()
    if (left === 0) {
      await buyer.getByTestId('storefront-empty').filter({ hasText: '店主还没有上架商品' }).waitFor()
      await shot(buyer, 'mall-empty-shop-phone.png')
    }
    assert.equal(await buyer.getByTestId('storefront-product').filter({ hasText: title }).count(), 0, 'delisted')
    await buyer.route('**/api/v1/shops', (route) =>
      route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ code: 'unavailable', message: '服务暂不可用，请稍后再试' }) }),
    )
    await buyer.goto('/mall')
    await buyer.getByTestId('error-banner').filter({ hasText: '服务暂不可用' }).waitFor()
    await buyer.unroute('**/api/v1/shops')
    await buyer.getByTestId('retry').click()
    await buyer.locator(`[data-testid="mall-shop"][data-shop-id="${shopId}"]`).waitFor()
    merchant.assertClean()
    buyer.assertClean()
  } finally {
    await merchantCtx.close()
    await buyerCtx.close()
  }
})

run()
