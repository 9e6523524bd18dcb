"""The Visitors page and a "not this person" correction in a real browser (Debian's
Chromium driven by Playwright) against a real ``sauron run`` whose camera is a folder of
real face photos, looping: nobody is enrolled at first, so every face is a stranger.

An admin sees the strangers grouped into visitors, merges two visitors that are the same
man, adds him to the watchlist from his best crops, and, as the loose tolerance of this
run then takes another man for him, says "not this person" on that sighting: that face
is not given the name again. Screenshots go to artifacts/browser-visitors/.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .test_browser import CHROMIUM, ROOT, SauronRun, _login

pytestmark = pytest.mark.slow

SHOTS = ROOT / "artifacts" / "browser-visitors"
PASSWORD = "visitors-" + uuid.uuid4().hex[:16]

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def photo_run(photos: dict[str, Path], tmp_path: Path) -> Iterator[SauronRun]:
    folder = tmp_path / "door"
    folder.mkdir()
    for i, name in enumerate(("biden.jpg", "obama2.jpg", "obama3.jpg")):
        shutil.copy(photos[name], folder / f"{i}-{name}")
    config = tmp_path / "sauron.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [
                    {
                        "name": "door",
                        "source": str(folder),
                        "loop": True,
                        "realtime": True,
                        "max_fps": 1,
                    }
                ],
                "store": {"data_dir": str(tmp_path / "data")},
                # a tolerance loose enough to take Biden (0.84 from Obama) for Obama once
                # Obama is enrolled; a grouping threshold tight enough to keep two photos
                # of Obama apart, for the operator to merge
                "match": {"tolerance": 0.9, "confirm_above": 0.9},
                "visitors": {"threshold": 0.2},
            }
        )
    )
    run = SauronRun(config, {**os.environ, "SAURON_WEB__ADMIN_PASSWORD": PASSWORD})
    try:
        run.wait_url(180)
        yield run
    finally:
        run.stop()


def _search(url: str, token: dict[str, str], photo: Path, tolerance: float) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/api/search",
        headers=token,
        data={"tolerance": str(tolerance), "limit": "1000"},
        files={"photo": (photo.name, photo.read_bytes())},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _until(what: str, check: Any, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"no Chromium at {CHROMIUM} (scripts/test installs Debian's chromium)",
)
def test_visitors_page_merge_promote_and_not_this_person(
    photo_run: SauronRun, photos: dict[str, Path]
) -> None:
    url = photo_run.url
    assert url is not None
    shutil.rmtree(SHOTS, ignore_errors=True)
    expect = playwright_api.expect
    login = httpx.post(f"{url}/api/login", json={"username": "admin", "password": PASSWORD})
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    # the two photos of Obama are two visitors (threshold 0.2), Biden a third
    obamas = _until(
        "two visitors of Obama",
        lambda: (
            [v["visitor_id"] for v in _search(url, token, photos["obama.jpg"], 0.6)["visitors"]]
            if len(_search(url, token, photos["obama.jpg"], 0.6)["visitors"]) == 2
            else None
        ),
    )
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            _login(page, url, "admin", PASSWORD)
            page.goto(f"{url}/#/visitors")
            cards = page.locator("#visitor-list .visitor")
            expect(cards).to_have_count(3, timeout=30_000)
            for vid in obamas:
                card = page.locator(f'.visitor[data-visitor="{vid}"]')
                expect(card.locator(".photos img").first).to_be_visible()
            _shot(page, "01-visitors")

            # merge the two visitors of Obama
            for vid in obamas:
                page.check(f'.visitor-pick[data-visitor="{vid}"]')
            page.click("#merge-visitors")
            # the other visitor is gone into the kept one (the looping folder may start a
            # new visitor later: a photo farther than the threshold from the new centroid)
            gone = page.locator(f'.visitor[data-visitor="{max(obamas)}"]')
            expect(gone).to_have_count(0, timeout=30_000)
            kept = min(obamas)
            merged = page.locator(f'.visitor[data-visitor="{kept}"]')
            expect(merged).to_be_visible()
            _shot(page, "02-merged")

            # his sightings across cameras
            page.click(f'.visitor[data-visitor="{kept}"] .visitor-label')
            expect(page.locator("#visit-list tbody tr").first).to_be_visible(timeout=15_000)
            _shot(page, "03-visitor")

            # add him to the watchlist from his best crops
            page.goto(f"{url}/#/visitors")
            merged.locator(".promote-name").fill("barack")
            merged.locator(".promote button[type=submit]").click()
            expect(page.locator('.person[data-person="barack"] .photos img').first).to_be_visible(
                timeout=30_000
            )
            _shot(page, "04-promoted")

            # the loose tolerance now takes Biden for him: "not this person" on that sighting
            def wrong_one() -> int | None:
                hits = _search(url, token, photos["biden.jpg"], 0.15)["items"]
                named = [h["id"] for h in hits if h["person"] == "barack"]
                return max(named) if named else None

            wrong = _until("Biden taken for barack", wrong_one)
            page.goto(f"{url}/#/history")
            page.click("details.sightings summary")  # every sighting, below the appearances
            row = page.locator(f'tr[data-sighting="{wrong}"]')
            expect(row).to_be_visible(timeout=15_000)
            _shot(page, "05-history-wrong-name")
            row.locator("button.not-this-person").click()
            expect(page.locator(f'tr[data-sighting="{wrong}"] td').nth(3)).to_have_text(
                "unknown", timeout=15_000
            )
            _shot(page, "06-corrected")
        finally:
            browser.close()

    # from then on Biden's face is not given that name, and Obama's still is
    def later(photo: str) -> list[dict[str, Any]]:
        hits = _search(url, token, photos[photo], 0.15)["items"]
        return [h for h in hits if h["id"] > wrong]

    biden_after = _until("Biden seen again", lambda: later("biden.jpg"))
    assert {h["person"] for h in biden_after} == {None}
    obama_after = _until("Obama seen again", lambda: later("obama2.jpg"))
    assert {h["person"] for h in obama_after} == {"barack"}
    assert len(list(SHOTS.glob("*.png"))) == 6
