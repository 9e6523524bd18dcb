"""The operator's pages in a real browser (Debian's Chromium driven by Playwright) against
a real ``sauron run``: a looping synthetic camera, the real models, SQLite.

An admin logs in, enrolls obama from a photo, sees the live camera name him, sees the
alert arrive, finds him by photo search; a viewer cannot change the watchlist.
Screenshots go to artifacts/browser/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import yaml

from sauron.demo.synth import ClipTruth
from sauron.imaging import decode_jpeg, encode_jpeg

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "browser"
CHROMIUM = Path(os.environ.get("SAURON_TEST_CHROMIUM", "/usr/bin/chromium"))
PASSWORD = "browser-" + uuid.uuid4().hex[:16]
PAGES = ("live", "watchlist", "alerts", "visitors", "history", "search", "admin", "account")

playwright_api = pytest.importorskip("playwright.sync_api")


class SauronRun:
    """``sauron run`` as a child process; its web address read from what it prints."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sauron.cli",
                "run",
                "--config",
                str(config),
                "--processes",
                "1",
                "--web-port",
                "0",
            ],
            env=env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.lines: list[str] = []
        self.url: str | None = None
        self._seen = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip())
            m = re.match(r"web: (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.url = m.group(1)
                self._seen.set()

    def wait_url(self, timeout: float) -> str:
        if not self._seen.wait(timeout) or self.url is None:
            raise AssertionError(
                "sauron run printed no web address:\n" + "\n".join(self.lines[-40:])
            )
        return self.url

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@pytest.fixture
def sauron_run(clips: list[ClipTruth], tmp_path: Path) -> Iterator[SauronRun]:
    lobby = next(c for c in clips if c.camera == "lobby")
    config = tmp_path / "sauron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {"name": "lobby", "source": str(lobby.path), "loop": True, "realtime": True}
                ],
                "store": {"data_dir": str(tmp_path / "data")},
                # he leaves the 4 s loop for 2 s: each loop is a new appearance, an alert
                "alerts": {"gap_s": 1.0},
                # an appearance's clip is stored at its end, or at 4 s if it lasts longer
                "clips": {"max_s": 4, "pre_roll_s": 1, "post_roll_s": 1},
            }
        )
    )
    env = {**os.environ, "SAURON_WEB__ADMIN_PASSWORD": PASSWORD}
    run = SauronRun(config, env)
    try:
        run.wait_url(180)
        yield run
    finally:
        run.stop()


def _token(url: str, user: str, password: str) -> str:
    r = httpx.post(f"{url}/api/login", json={"username": user, "password": password})
    assert r.status_code == 200, r.text
    return str(r.json()["token"])


def _shot(page: object, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for _ in range(100):  # snapshots loaded (the page's CSP forbids wait_for_function)
        if page.evaluate(  # type: ignore[attr-defined]
            "() => [...document.images].filter(i => !i.src.includes('mjpeg'))"
            ".every(i => i.complete && i.naturalWidth > 0)"
        ):
            break
        page.wait_for_timeout(100)  # type: ignore[attr-defined]
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def side_by_side(*paths: Path) -> bytes:
    """One photo of several people: the given photos side by side, 500 px high."""
    images = [decode_jpeg(p.read_bytes()) for p in paths]
    h = 500
    resized = [cv2.resize(im, (round(im.shape[1] * h / im.shape[0]), h)) for im in images]
    return encode_jpeg(np.hstack(resized), 90)


def _login(page: object, url: str, user: str, password: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.fill("#login-form input[name=username]", user)  # type: ignore[attr-defined]
    page.fill("#login-form input[name=password]", password)  # type: ignore[attr-defined]
    page.click("#login-form button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_selector("#top:not([hidden])")  # type: ignore[attr-defined]


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)",
)
def test_operator_flow_in_a_real_browser(
    sauron_run: SauronRun, photos: dict[str, Path], tmp_path: Path
) -> None:
    url = sauron_run.url
    two_faces = tmp_path / "two-people.jpg"
    two_faces.write_bytes(side_by_side(photos["obama.jpg"], photos["biden.jpg"]))
    assert url is not None
    shutil.rmtree(SHOTS, ignore_errors=True)
    expect = playwright_api.expect
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(url)
            page.wait_for_selector("#login-form")
            _shot(page, "01-login")
            _login(page, url, "admin", PASSWORD)

            # enroll from a photo
            page.goto(f"{url}/#/watchlist")
            page.fill("#enroll-name", "obama")
            page.set_input_files("#enroll-photos", str(photos["obama.jpg"]))
            page.click("#enroll-form button[type=submit]")
            # the first enrollment loads the face models: slow on a busy machine
            expect(page.locator('.person[data-person="obama"] .photos img')).to_have_count(
                1, timeout=120_000
            )
            _shot(page, "02-watchlist")

            # the live camera names him, and the alert arrives by itself
            page.goto(f"{url}/#/camera/lobby")
            expect(page.locator(".toast").first).to_contain_text("Alert: obama", timeout=90_000)
            expect(page.locator('.tile[data-camera="lobby"] .inview')).to_contain_text(
                "obama", timeout=60_000
            )
            expect(page.locator('.tile[data-camera="lobby"] .state')).to_have_text("live")
            expect(page.locator('.tile[data-camera="lobby"] .stats')).to_contain_text("fps")
            # who is in view now, and the whole frame with its caption on one screen
            expect(page.locator('#inview-list li[data-person="obama"]')).to_contain_text(
                "obama on lobby", timeout=30_000
            )
            fit = page.evaluate("""() => {
                const img = document.querySelector('.tile.single img.stream');
                const cap = document.querySelector('.tile.single .caption');
                return { fit: getComputedStyle(img).objectFit,
                         bottom: cap.getBoundingClientRect().bottom, height: innerHeight }; }""")
            assert fit["fit"] == "contain" and fit["bottom"] <= fit["height"], fit
            _shot(page, "03-live-camera")
            page.goto(f"{url}/#/live")
            expect(page.locator(".tile")).to_have_count(1)
            expect(page.locator("#inview-list")).to_contain_text("obama on lobby", timeout=30_000)
            _shot(page, "04-live-grid")
            page.goto(f"{url}/#/alerts")
            expect(page.locator("#alert-list .alert-person").first).to_have_text("obama")
            expect(page.locator("#alert-list .alert-camera").first).to_have_text("lobby")
            expect(page.locator("#alert-list .alert").last).to_contain_text(
                re.compile(r"confidence \d+ %")
            )
            _shot(page, "05-alerts")

            # the alert's clip plays in the page (an H.264 MP4 in Chromium's <video>)
            admin = {"Authorization": "Bearer " + _token(url, "admin", PASSWORD)}
            for _ in range(120):  # bounded: the clip is stored 4 s into the appearance
                if any(a["clip_url"] for a in httpx.get(f"{url}/api/alerts", headers=admin).json()):
                    break
                page.wait_for_timeout(500)
            page.reload()
            page.locator("#alert-list .card.alert[data-clip] .clip-play").first.click()
            playing = False
            for _ in range(150):  # the page's CSP forbids wait_for_function
                playing = page.evaluate(
                    "() => { const v = document.querySelector('#alert-list .clip video');"
                    " return !!v && v.readyState >= 2 && v.currentTime > 0 && v.videoWidth > 0; }"
                )
                if playing:
                    break
                page.wait_for_timeout(100)
            assert playing, "\n".join(["the clip did not play", *sauron_run.lines[-30:]])
            _shot(page, "05b-clip")
            audit = httpx.get(f"{url}/api/audit", headers=admin).json()
            assert any(a["action"] == "clip" and a["username"] == "admin" for a in audit)

            # the looping clip raises an alert every few seconds: pop-ups collapse into
            # one "N more" line, in a strip that covers no control
            expect(page.locator("#toast-more")).to_be_visible(timeout=90_000)
            assert page.locator(".toast").count() <= 3
            overlaps = page.evaluate("""() => {
                const t = document.getElementById('toasts').getBoundingClientRect();
                return [...document.querySelectorAll('#view button, #view select, nav a')]
                  .filter(b => { const r = b.getBoundingClientRect();
                    return r.width && r.left < t.right && r.right > t.left
                        && r.top < t.bottom && r.bottom > t.top; }).length; }""")
            assert overlaps == 0
            # acknowledge one, then all shown; filter by state
            page.reload()
            first = page.locator("#alert-list .alert").first
            first.locator("button.ack-one").click()
            expect(first.locator(".acked")).to_contain_text("acknowledged by admin")
            with page.expect_response(lambda r: r.url.endswith("/api/alerts/ack")):
                page.click("#alert-ack-all")
            page.select_option("#alert-state", "acknowledged")
            expect(page.locator('#alert-list[data-state="acknowledged"]')).to_have_count(1)
            # the list is drawn again for the new state (alerts that came since stay open)
            expect(page.locator("#alert-list button.ack-one")).to_have_count(0)
            expect(page.locator("#alert-list .alert .acked").first).to_be_visible()
            assert page.locator("#alert-list .alert").count() >= 2
            page.select_option("#alert-person", "obama")
            expect(page.locator('#alert-list[data-person="obama"]')).to_have_count(1)
            assert set(page.locator("#alert-list .alert-person").all_inner_texts()) == {"obama"}
            # mute the camera's pop-ups: alerts still arrive on the list, no pop-up
            page.select_option("#alert-state", "open")
            expect(page.locator('#alert-list[data-state="open"]')).to_have_count(1)
            page.locator("#alert-list .alert button.mute-camera").first.click()
            expect(page.locator('#muted-bar [data-unmute="lobby"]')).to_be_visible()
            page.evaluate("() => document.querySelectorAll('.toast').forEach(t => t.remove())")
            known = page.locator("#alert-list .alert").count()
            expect(page.locator("#alert-list .alert")).not_to_have_count(known, timeout=60_000)
            assert page.locator(".toast").count() == 0
            page.click('#muted-bar [data-unmute="lobby"]')
            expect(page.locator("#muted-bar")).to_be_hidden()
            # from an alert to its camera and its history
            page.locator("#alert-list .alert-history").first.click()
            expect(page.locator("#appearances .appearance").first).to_be_visible(timeout=15_000)
            names = page.locator("#appearances .appearance-person").all_inner_texts()
            assert set(names) == {"obama"}, names

            # search by another photo of him
            page.goto(f"{url}/#/search")
            page.set_input_files("#search-photo", str(photos["obama2.jpg"]))
            # every sighting of his face, the earliest ones from before he was enrolled
            # (unnamed then); nearest first
            expect(page.locator("#search-results .result", has_text="obama").first).to_be_visible(
                timeout=30_000
            )
            expect(page.locator("#search-summary")).to_contain_text("sighting(s) within")
            expect(page.locator("#search-results .result").first).to_contain_text(
                re.compile(r"likeness \d+ %")
            )
            _shot(page, "06-search")
            # grouped by camera; a photo of two people searched by its largest face
            page.select_option("#search-group", "camera")
            expect(page.locator('.search-group[data-group="lobby"] .result').first).to_be_visible()
            page.set_input_files("#search-photo", str(two_faces))
            expect(page.locator("#search-error")).to_contain_text("2 faces found", timeout=30_000)
            page.click("#search-error button.largest")
            expect(page.locator("#search-summary")).to_contain_text(
                "sighting(s) within", timeout=30_000
            )

            page.goto(f"{url}/#/history")
            # by appearance: his best crop with a confidence, a timeline of the day per
            # camera, the crop shown large on a click; every sighting below
            obama = page.locator('#appearances .appearance[data-person="obama"]').first
            expect(obama).to_be_visible(timeout=15_000)
            expect(obama.locator(".confidence")).to_have_text(re.compile(r"^\d+ %$"))
            expect(
                page.locator('#timeline .lane[data-camera="lobby"] .block.named').first
            ).to_be_attached()
            obama.locator("img").click()
            shown = page.locator("#zoom img")
            expect(shown).to_be_visible()
            loaded = False
            for _ in range(100):  # bounded; the page's CSP forbids wait_for_function
                loaded = shown.evaluate("i => i.complete && i.naturalWidth > 0")
                if loaded:
                    break
                page.wait_for_timeout(100)
            assert loaded, "the picture shown large loads (the whole frame, or the crop)"
            page.click("#zoom")
            expect(page.locator("#zoom")).to_have_count(0)
            # an appearance whose best sighting a kept clip covers plays it in place
            with_clip = page.locator("#appearances .appearance[data-clip] .clip-play")
            expect(with_clip.first).to_be_visible(timeout=15_000)
            page.click("details.sightings summary")
            expect(page.locator("tbody tr").first).to_be_visible()
            _shot(page, "07-history")

            # names as written, with a reason; a photo of two people: the largest face
            page.goto(f"{url}/#/watchlist")
            page.fill("#enroll-name", "José García")
            page.fill("#enroll-reason", "barred since May")
            page.set_input_files("#enroll-photos", str(photos["biden.jpg"]))
            page.click("#enroll-form button[type=submit]")
            jose = page.locator('.person[data-person="jose-garcia"]')
            expect(jose.locator(".display-name")).to_have_text("José García", timeout=30_000)
            expect(jose.locator(".person-id")).to_have_text("id jose-garcia")
            expect(jose.locator(".reason")).to_have_text("Reason: barred since May")
            page.fill("#enroll-name", "Barack H. Obama")
            page.set_input_files("#enroll-photos", str(two_faces))
            page.click("#enroll-form button[type=submit]")
            expect(page.locator("#enroll-error")).to_contain_text("2 faces found", timeout=30_000)
            page.click("#enroll-error button.largest")
            expect(
                page.locator('.person[data-person="barack-h-obama"] .display-name')
            ).to_have_text("Barack H. Obama", timeout=30_000)
            jose.locator("button.edit").click()
            jose.locator(".edit-person textarea[name=notes]").fill("tall, grey coat")
            jose.locator(".edit-person button[type=submit]").click()
            expect(page.locator('.person[data-person="jose-garcia"] .notes')).to_have_text(
                "tall, grey coat"
            )
            _shot(page, "08-watchlist-names")

            # a viewer sees the watchlist but cannot change it
            token = httpx.post(
                f"{url}/api/login", json={"username": "admin", "password": PASSWORD}
            ).json()["token"]
            viewer_pw = "viewer-" + uuid.uuid4().hex
            r = httpx.post(
                f"{url}/api/users",
                headers={"Authorization": f"Bearer {token}"},
                json={"username": "watcher", "password": viewer_pw, "role": "viewer"},
            )
            assert r.status_code == 201, "\n".join([r.text, *sauron_run.lines[-30:]])
            viewer = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
            _login(viewer, url, "watcher", viewer_pw)
            viewer.goto(f"{url}/#/watchlist")
            expect(viewer.locator("#viewer-note")).to_be_visible()
            expect(viewer.locator('.person[data-person="obama"]')).to_be_visible()
            expect(viewer.locator("#enroll-form")).to_have_count(0)
            expect(viewer.locator(".person button.danger")).to_have_count(0)
            expect(viewer.locator('nav a[data-nav="admin"]')).to_be_hidden()
            status = viewer.evaluate("""async () => {
                const r = await fetch('/api/people/obama', {method: 'DELETE',
                    headers: {'X-Requested-With': 'sauron'}});
                return r.status; }""")
            assert status == 403
            _shot(viewer, "09-viewer-watchlist")

            # the viewer changes their own password on the account page
            viewer.goto(f"{url}/#/account")
            new_pw = "changed-" + uuid.uuid4().hex
            viewer.fill("#pw-current", "wrong password")
            viewer.fill("#pw-new", new_pw)
            viewer.fill("#pw-again", new_pw)
            viewer.click("#password-form button[type=submit]")
            expect(viewer.locator("#pw-result")).to_contain_text("current password is wrong")
            viewer.fill("#pw-current", viewer_pw)
            viewer.fill("#pw-new", new_pw)
            viewer.fill("#pw-again", new_pw)
            viewer.click("#password-form button[type=submit]")
            expect(viewer.locator("#pw-result")).to_contain_text("Password changed")
            _shot(viewer, "10-account")
            old = httpx.post(
                f"{url}/api/login", json={"username": "watcher", "password": viewer_pw}
            )
            assert old.status_code == 401
            new = httpx.post(f"{url}/api/login", json={"username": "watcher", "password": new_pw})
            assert new.status_code == 200, new.text

            # admin: a token with the lifetime chosen, listed at once; the viewer made
            # admin and back, disabled (their session ends) and enabled; the audit filtered
            page.goto(f"{url}/#/admin")
            page.fill("#token-name", "nightly export")
            page.select_option("#token-days", "30")
            page.click("#token-form button[type=submit]")
            expect(page.locator("#token-shown")).to_contain_text('Token "nightly export"')
            expect(page.locator("#token-table tr", has_text="nightly export")).to_contain_text(
                "expires"
            )
            watcher = page.locator('#user-table tr[data-user="watcher"]')
            watcher.locator("select.user-role").select_option("admin")
            expect(watcher.locator("select.user-role")).to_have_value("admin")
            page.reload()
            expect(watcher.locator("select.user-role")).to_have_value("admin")
            watcher.locator("select.user-role").select_option("viewer")
            expect(watcher.locator("select.user-role")).to_have_value("viewer")
            watcher.locator("button.user-disable").click()
            expect(watcher.locator(".user-state")).to_have_text("disabled")
            viewer.goto(f"{url}/#/alerts")
            viewer.reload()
            expect(viewer.locator("#login-form")).to_be_visible()
            page.locator('#user-table tr[data-user="watcher"] button.user-disable').click()
            expect(watcher.locator(".user-state")).to_have_text("active")
            page.select_option("#audit-user", "admin")
            page.fill("#audit-action", "change_role")
            page.click("#audit-form button[type=submit]")
            expect(page.locator("#audit-rows")).to_have_attribute(
                "data-filter", re.compile("action=change_role")
            )
            assert set(page.locator("#audit-rows .audit-action").all_inner_texts()) == {
                "change_role"
            }
            _shot(page, "12-admin")

            # phone width: every page fits 390 px, the whole menu and Log out on screen
            phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            _login(phone, url, "admin", PASSWORD)
            for name in PAGES:
                phone.goto(f"{url}/#/{name}")
                expect(phone.locator(f'nav a[data-nav="{name}"]')).to_have_class(
                    re.compile(r"\bactive\b")
                )
                expect(phone.locator("#view h2").first).to_be_visible(timeout=15_000)
                fit = phone.evaluate("""() => ({
                    page: document.documentElement.scrollWidth, width: innerWidth,
                    menu: Math.max(...[...document.querySelectorAll('nav a, #logout')]
                                   .map(a => a.getBoundingClientRect().right)) })""")
                assert fit["page"] <= fit["width"] and fit["menu"] <= fit["width"], (name, fit)
            _shot(phone, "11-phone-alerts")
        finally:
            browser.close()
    assert len(list(SHOTS.glob("*.png"))) == 13

    # the screenshot script: every page of the menu and a camera, desktop and phone
    out = tmp_path / "screens"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshots"), url, "--out", str(out)],
        env={**os.environ, "SAURON_SCREENSHOTS_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    want = {f"{w}-{p}.png" for w in ("desktop", "phone") for p in (*PAGES, "camera")}
    assert {f.name for f in out.glob("*.png")} == want
