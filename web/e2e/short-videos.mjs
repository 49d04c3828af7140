// Short videos (短视频) in headless Chromium: trainee21 on a PC uploads a clip made by the ffmpeg
// CLI (VP8/Vorbis WebM) on the shop page (我的店铺), sees it transcoding and then its cover, plays
// it (the <video> learns its 3 s duration and plays), and gets the refusal of a file that is not
// a video in Chinese; trainee22 on a phone opens the room's cart (小黄车) and plays the product's
// video there. The shop and the room are set up through the API (commerce.mjs covers their UI).
//
//   DEMO_PASSWORD=... [BASE_URL=http://127.0.0.1:18080] [SCREENSHOT_DIR=...] [CHROMIUM=/usr/bin/chromium] node short-videos.mjs
//
// Prints "N passed, N failed" last; exits non-zero on any failure.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { SCREENSHOT_DIR, api, login, newContext, newPage, run, shot, test } from './harness.mjs'

const appToast = (page, text) => page.getByTestId('app-toast').filter({ hasText: text })

async function screen(page, name) {
  await page.evaluate(() => document.fonts?.ready)
  await page.screenshot({ path: path.join(SCREENSHOT_DIR, name), animations: 'disabled' })
}

/** Waits until the player knows its duration, plays a moment (muted, as autoplay rules want) and
 * returns [duration, currentTime] in seconds. */
async function playBriefly(video) {
  return video.evaluate(
    (v) =>
      new Promise((resolve, reject) => {
        const fail = () => reject(new Error(`the video failed: code ${v.error?.code} ${v.error?.message ?? ''}`))
        if (v.error) return fail()
        v.addEventListener('error', fail)
        const go = async () => {
          v.muted = true
          try {
            await v.play()
          } catch (e) {
            return reject(e)
          }
          setTimeout(() => {
            v.pause()
            resolve([v.duration, v.currentTime])
          }, 700)
        }
        if (v.readyState >= 1) void go()
        else v.addEventListener('loadedmetadata', () => void go(), { once: true })
      }),
  )
}

test('short videos: upload with progress on the shop page, transcoding, playing in the shop and in the room cart on a phone', async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'livecamp-videos-'))
  const clip = path.join(tmp, 'blueberries.webm')
  execFileSync('ffmpeg', [
    '-v', 'error', '-y',
    '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=25',
    '-f', 'lavfi', '-i', 'sine=frequency=440',
    '-t', '3', '-c:v', 'libvpx', '-b:v', '400k', '-c:a', 'libvorbis', clip,
  ])
  const hostCtx = await newContext('pc')
  const viewerCtx = await newContext('phone')
  try {
    const stamp = Date.now().toString(36)
    const title = `野生蓝莓干 ${stamp}`
    const host = await newPage(hostCtx)
    await login(host, 'trainee21')
    let shop = await api(host, 'GET', '/api/v1/shops/mine')
    if (shop.status === 404) {
      shop = await api(host, 'POST', '/api/v1/shops', { name: '长白山蓝莓小铺', category: '农副产品' })
    }
    assert.ok(shop.body?.id, JSON.stringify(shop))
    const created = await api(host, 'POST', `/api/v1/shops/${shop.body.id}/products`, {
      title,
      description: '长白山野生蓝莓，自然晾晒',
      listed: true,
      skus: [{ spec: '250g', price_cents: 3990, stock: 20 }],
    })
    assert.equal(created.status, 201, JSON.stringify(created))
    const productId = created.body.id

    // ---- 我的店铺: upload through the page.
    await host.goto('/shop')
    const item = host.getByTestId('product-item').filter({ hasText: title })
    await item.waitFor()
    const videos = item.getByTestId('product-videos')
    await videos.getByTestId('video-upload').waitFor()
    await videos.getByTestId('video-file').setInputFiles(clip)
    await appToast(host, '视频已上传，正在转码').waitFor()
    await videos.locator('[data-testid="video-item"][data-status="processing"], [data-testid="video-item"][data-status="ready"]').first().waitFor()
    await videos.locator('[data-testid="video-item"][data-status="ready"]').waitFor({ timeout: 90_000 })
    await appToast(host, '视频处理完成').waitFor()
    await shot(host, 'videos-shop-pc.png')

    await videos.getByTestId('video-play').click()
    const dialog = host.getByTestId('video-dialog')
    await dialog.waitFor()
    const [duration, played] = await playBriefly(dialog.getByTestId('product-video'))
    assert.ok(Math.abs(duration - 3) < 0.25, `duration ${duration}`)
    assert.ok(played > 0, `the video did not play (currentTime ${played})`)
    await screen(host, 'videos-player-pc.png')
    await host.keyboard.press('Escape')
    await dialog.waitFor({ state: 'detached' })

    // A file that is not a video: the server's refusal, in Chinese; nothing is added.
    const junk = path.join(tmp, 'not-a-video.mp4')
    fs.writeFileSync(junk, crypto.randomBytes(64 * 1024))
    await videos.getByTestId('video-file').setInputFiles(junk)
    await appToast(host, '无法识别这个视频文件').waitFor()
    assert.equal(await videos.getByTestId('video-item').count(), 1)
    host.assertClean()

    // ---- the room: the product on the shelf; a classmate on a phone plays it from the cart.
    const classes = await api(host, 'GET', '/api/v1/classes')
    const room = await api(host, 'POST', '/api/v1/rooms', {
      class_id: classes.body[0].id,
      kind: 'live_commerce',
      title: `蓝莓干专场 ${stamp}`,
    })
    assert.equal(room.status, 201, JSON.stringify(room))
    const shelf = await api(host, 'POST', `/api/v1/rooms/${room.body.id}/products`, { product_id: productId })
    assert.equal(shelf.status, 201, JSON.stringify(shelf))

    const viewer = await newPage(viewerCtx)
    await login(viewer, 'trainee22')
    await viewer.goto(`/rooms/${room.body.id}`)
    await viewer.getByTestId('page-live-room').waitFor()
    await viewer.getByTestId('cart-open').click()
    const cartItem = viewer.getByTestId('cart-item').filter({ hasText: title })
    await cartItem.getByTestId('cart-video').waitFor()
    await screen(viewer, 'videos-cart-phone.png')
    await cartItem.getByTestId('cart-video').click()
    const sheet = viewer.getByTestId('video-dialog')
    await sheet.waitFor()
    const [phoneDuration, phonePlayed] = await playBriefly(sheet.getByTestId('product-video'))
    assert.ok(Math.abs(phoneDuration - 3) < 0.25, `duration ${phoneDuration}`)
    assert.ok(phonePlayed > 0, 'the video did not play on the phone')
    await screen(viewer, 'videos-room-phone.png')
    viewer.assertClean()

    // The shop page at phone width: the video tiles fit, nothing scrolls sideways.
    const phoneShop = await newPage(viewerCtx)
    await login(phoneShop, 'trainee21')
    await phoneShop.goto('/shop')
    const phoneItem = phoneShop.getByTestId('product-item').filter({ hasText: title })
    await phoneItem.locator('[data-testid="video-item"][data-status="ready"]').waitFor()
    const overflow = await phoneShop.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
    assert.ok(overflow <= 0, `the shop page scrolls sideways by ${overflow}px on a phone`)
    await phoneItem.scrollIntoViewIfNeeded()
    await screen(phoneShop, 'videos-shop-phone.png')
    phoneShop.assertClean()
  } finally {
    await hostCtx.close()
    await viewerCtx.close()
    fs.rmSync(tmp, { recursive: true, force: true })
  }
})

run()
