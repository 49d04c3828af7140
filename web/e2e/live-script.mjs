// End-to-end check of 直播脚本 (AI live scripts) in headless Chromium (playwright-core, Debian
// chromium): trainee01 makes sure of a shop with a listed product (reusing the shop when another
// test opened it already), opens 直播脚本 from the navigation, plans a flash sale, generates with
// the built-in template (the test server has no model), sees the streaming area, the segment of
// the product and the 内置模板 label; edits the opening and saves (第 1 版), edits again and saves
// (第 2 版): the version picker lists both and shows version 1's text when picked. A trainee
// without a shop sees the empty state with the link to 我的店铺.
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node live-script.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'

import { VIEWPORTS, api, login, newContext, newPage, run, shot, test } from './harness.mjs'

/** trainee01's shop (opened when missing) and a listed product in it. */
async function ensureShopAndProduct(page, title) {
  let shop = await api(page, 'GET', '/api/v1/shops/mine')
  if (shop.status === 404) {
    const classes = await api(page, 'GET', '/api/v1/classes')
    assert.equal(classes.status, 200, JSON.stringify(classes.body))
    const classId = classes.body[0]?.id
    shop = await api(page, 'POST', '/api/v1/shops', {
      name: '长白山特产小铺',
      category: '农副产品',
      description: '吉林长白山的木耳、人参和蓝莓',
      ...(classId !== undefined ? { class_id: Number(classId) } : {}),
    })
    assert.equal(shop.status, 201, `open the shop: ${JSON.stringify(shop.body)}`)
  } else {
    assert.equal(shop.status, 200, `my shop: ${JSON.stringify(shop.body)}`)
  }
  const product = await api(page, 'POST', `/api/v1/shops/${shop.body.id}/products`, {
    title,
    description: '肉厚无沙，泡发率高，适合凉拌和炒菜',
    skus: [{ spec: '250g 袋装', price_cents: 3990, stock: 200 }],
    listed: true,
  })
  assert.ok([200, 201].includes(product.status), `add the product: ${JSON.stringify(product.body)}`)
  return { shop: shop.body, product: product.body }
}

// ---------------------------------------------------------------- the scenario
test('直播脚本: generate with the template, edit, save two versions, pick a version (PC and phone)', async () => {
  const ctx = await newContext('pc')
  try {
    const stamp = Date.now().toString(36)
    const productTitle = `脚本木耳 ${stamp}`
    const page = await newPage(ctx)
    await login(page, 'trainee01')
    await page.getByTestId('page-trainee-home').waitFor()
    const { product } = await ensureShopAndProduct(page, productTitle)

    // 直播脚本 from the navigation.
    await page.getByTestId('nav-scripts').filter({ visible: true }).click()
    await page.getByTestId('page-scripts').waitFor()
    const plan = page.getByTestId('script-plan')
    await plan.waitFor()

    // Generating with nothing picked: told so, nothing sent.
    await page.getByTestId('script-generate').click()
    await page.getByTestId('script-gen-error').filter({ hasText: '请至少选择一款商品' }).waitFor()

    await page.getByTestId('script-product').filter({ hasText: productTitle }).click()
    await page.getByTestId('script-duration').fill('30')
    await page.getByTestId('script-audience').fill('宝妈')
    // A flash sale of the picked product; a malformed price is caught in the page.
    await page.getByTestId('act-kind').selectOption('flash_sale')
    await page.getByTestId('act-add').click()
    await page.getByTestId('script-activity').getByRole('combobox').selectOption(String(product.id))
    await page.getByTestId('act-price').fill('abc')
    await page.getByTestId('script-generate').click()
    await page.getByTestId('script-gen-error').filter({ hasText: '秒杀价' }).waitFor()
    await page.getByTestId('act-price').fill('29.9')
    // The server's own Chinese message: a lucky bag without a prize.
    await page.getByTestId('act-kind').selectOption('lucky_bag')
    await page.getByTestId('act-add').click()
    await page.getByTestId('script-generate').click()
    await page.getByTestId('script-gen-error').filter({ hasText: '福袋奖品' }).waitFor()
    await page.getByTestId('act-prize').fill('长白山蓝莓干一袋')

    // Generate (template: one `done` event over SSE).
    const streamed = page.waitForResponse(
      (r) => r.url().endsWith('/api/v1/live-scripts/generate') && r.request().method() === 'POST',
    )
    await page.getByTestId('script-generate').click()
    const res = await streamed
    assert.equal(res.status(), 200)
    assert.match(res.headers()['content-type'] ?? '', /text\/event-stream/)
    const doc = page.getByTestId('script-doc')
    await doc.waitFor()
    await page.getByTestId('script-generator').filter({ hasText: '内置模板' }).waitFor()
    await page.getByTestId('script-note').filter({ hasText: '内置模板' }).waitFor()
    assert.equal(await page.getByTestId('script-segment').count(), 1)
    const seg = page.getByTestId('script-segment').first()
    assert.equal(await seg.getByTestId('segment-product').inputValue(), productTitle)
    assert.ok((await seg.getByTestId('segment-talk').inputValue()).length > 0, 'the talk is written')
    assert.match(await seg.getByTestId('segment-cue').inputValue(), /秒杀/)
    assert.match(await page.getByTestId('script-opening').inputValue(), /\S/)

    // Edit the opening, save: version 1 (a new document).
    const opening1 = `家人们晚上好！今天给宝妈们带来长白山好木耳 ${stamp}`
    await page.getByTestId('script-opening').fill(opening1)
    await page.getByTestId('script-save').filter({ hasText: '保存为新脚本' }).click()
    await page.getByTestId('app-toast').filter({ hasText: '已保存为第 1 版' }).waitFor()
    await page.getByTestId('script-list-item').filter({ hasText: '第 1 版' }).first().waitFor()

    // Edit again (opening and a selling point), save: version 2.
    const opening2 = `${opening1}，秒杀只有 30 分钟！`
    await page.getByTestId('script-opening').fill(opening2)
    const points = seg.getByTestId('segment-points')
    await points.fill(`${await points.inputValue()}\n东北黑土地种植`)
    await page.getByTestId('script-save').filter({ hasText: '保存新版本' }).click()
    await page.getByTestId('app-toast').filter({ hasText: '已保存为第 2 版' }).waitFor()

    const picker = page.getByTestId('script-version')
    await picker.waitFor()
    assert.equal(await picker.locator('option').count(), 2, 'two versions')
    assert.match(await picker.locator('option').first().textContent(), /第 2 版（最新）/)
    assert.equal(await picker.inputValue(), '2')
    await page.setViewportSize(VIEWPORTS.pc.viewport)
    await shot(page, 'script-pc.png')

    // Version 1 when picked.
    await picker.selectOption('1')
    await page.waitForFunction(
      (text) => document.querySelector('[data-testid="script-opening"]')?.value === text,
      opening1,
    )
    await page.getByText('正在查看第 1 版').waitFor()
    await picker.selectOption('2')
    await page.waitForFunction(
      (text) => document.querySelector('[data-testid="script-opening"]')?.value === text,
      opening2,
    )
    assert.match(await seg.getByTestId('segment-points').inputValue(), /东北黑土地种植/)

    // The server agrees: two versions, version 1 has the first opening.
    const list = await api(page, 'GET', '/api/v1/live-scripts')
    const mine = list.body.find((s) => s.latest_version === 2 && s.generator === 'template')
    assert.ok(mine, `the saved script in ${JSON.stringify(list.body)}`)
    const v1 = await api(page, 'GET', `/api/v1/live-scripts/${mine.id}/versions/1`)
    assert.equal(v1.body.script.opening, opening1)

    // The same page at phone width.
    await page.setViewportSize(VIEWPORTS.phone.viewport)
    await page.waitForTimeout(300)
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 1, `no sideways scrolling at 390px (overflow ${overflow}px)`)
    await shot(page, 'script-phone.png')
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

test('直播脚本 for a trainee without a shop: the empty state links to 我的店铺', async () => {
  const ctx = await newContext('phone')
  try {
    const page = await newPage(ctx)
    await login(page, 'trainee03')
    const shop = await api(page, 'GET', '/api/v1/shops/mine')
    await page.goto('/scripts')
    await page.getByTestId('page-scripts').waitFor()
    if (shop.status === 404) {
      await page.getByTestId('scripts-empty').filter({ hasText: '你还没有开店' }).waitFor()
      await page.getByTestId('scripts-go-shop').click()
      await page.getByTestId('page-shop').waitFor()
    } else {
      await page.getByTestId('scripts-empty').or(page.getByTestId('script-plan')).first().waitFor()
    }
    page.assertClean()
  } finally {
    await ctx.close()
  }
})

run()
