"""Interop test with an independent WebRTC implementation (aiortc, Python).

A trainee host publishes a synthetic camera and microphone into a new room over WHIP, a
classmate plays it over WHEP, and the player must decode video frames and receive audio. The
publisher then ends its session and the player's connection must be closed by the server.

    BASE_URL=http://127.0.0.1:18080 DEMO_PASSWORD=... python aiortc_whip_whep.py

Prints TAP-like "ok"/"not ok" lines and "N passed, M failed"; exits non-zero on failure.
"""

import asyncio
import json
import os
import sys
import time
import urllib.error
import urllib.request

from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:18080")
PASSWORD = os.environ["DEMO_PASSWORD"]


def http(method, path, token=None, body=None, content_type="application/json"):
    data = None
    headers = {}
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(BASE_URL + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def login(username):
    status, _, text = http("POST", "/api/v1/auth/login", body={"username": username, "password": PASSWORD})
    assert status == 200, f"login {username}: {status} {text}"
    return json.loads(text)["token"]


async def offer_to(pc, path, token):
    await pc.setLocalDescription(await pc.createOffer())
    # aiortc gathers every candidate in setLocalDescription: no trickle needed.
    status, headers, text = await asyncio.to_thread(
        http, "POST", path, token, pc.localDescription.sdp, "application/sdp"
    )
    assert status == 201, f"POST {path}: {status} {text}"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return headers.get("Location") or headers.get("location")


async def wait_for(predicate, seconds, what):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.05)


async def main():
    results = []

    async def test(name, body):
        started = time.monotonic()
        try:
            await body()
            results.append(True)
            print(f"ok - {name} ({(time.monotonic() - started) * 1000:.0f} ms)")
        except Exception as e:  # noqa: BLE001 - any failure is reported as the test's
            results.append(False)
            print(f"not ok - {name} ({(time.monotonic() - started) * 1000:.0f} ms)\n    {e!r}")

    host = login("trainee04")
    viewer = login("trainee05")
    _, _, classes = http("GET", "/api/v1/classes", host)
    status, _, room = http(
        "POST",
        "/api/v1/rooms",
        host,
        {"class_id": json.loads(classes)[0]["id"], "kind": "live_commerce", "title": "aiortc 互通测试"},
    )
    assert status == 201, f"room: {status} {room}"
    room = json.loads(room)["id"]
    print(f"# {BASE_URL} · aiortc · room {room}")

    publisher = RTCPeerConnection()
    player = RTCPeerConnection()
    state = {"location": None, "video": 0, "audio": 0, "size": None}

    async def publish():
        publisher.addTrack(VideoStreamTrack())
        publisher.addTrack(AudioStreamTrack())
        state["location"] = await offer_to(publisher, f"/whip/{room}", host)
        assert state["location"].startswith(f"/whip/{room}/"), state["location"]
        await wait_for(lambda: publisher.connectionState == "connected", 10, "the publisher to connect")
        await asyncio.sleep(0.5)  # the tracks open on their first packets

    async def play():
        async def consume(track):
            while True:
                try:
                    frame = await track.recv()
                except Exception:  # noqa: BLE001 - the track ended
                    return
                if track.kind == "video":
                    state["video"] += 1
                    state["size"] = (frame.width, frame.height)
                else:
                    state["audio"] += 1

        @player.on("track")
        def on_track(track):
            asyncio.ensure_future(consume(track))

        player.addTransceiver("video", direction="recvonly")
        player.addTransceiver("audio", direction="recvonly")
        await offer_to(player, f"/whep/{room}", viewer)
        await wait_for(lambda: state["video"] >= 10 and state["audio"] >= 10, 15, "decoded video and audio")
        assert state["size"] == (640, 480), state["size"]
        dtls = player.getTransceivers()[0].receiver.transport
        srtp = dtls._ssl.get_selected_srtp_profile()  # noqa: SLF001 - no public accessor
        print(f"    {state['video']} video frames ({state['size'][0]}x{state['size'][1]}), "
              f"{state['audio']} audio frames; SRTP {srtp.decode()}")
        assert srtp == b"SRTP_AEAD_AES_128_GCM", srtp

    async def end():
        status, _, text = await asyncio.to_thread(http, "DELETE", state["location"], host)
        assert status == 200, f"DELETE: {status} {text}"
        # The server closes the player's session with the publisher's (DTLS close_notify).
        await wait_for(lambda: player.connectionState in ("closed", "failed"), 15, "the player to be closed")

    await test("aiortc publishes a camera and microphone by WHIP", publish)
    await test("aiortc plays it by WHEP: video decoded, audio received, SRTP AES-GCM", play)
    await test("ending the publisher's session closes the player's", end)
    await publisher.close()
    await player.close()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
