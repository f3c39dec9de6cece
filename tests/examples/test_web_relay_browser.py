"""
examples/web_relay.py and its page in a real browser: Debian's Chromium, headless, driven
by selenium through chromium-driver, against the example served on 127.0.0.1 in front of
a FakePostHog. Run by `nox -s browser`; screenshots go to artifacts/browser/.

The servers run in an event loop on another thread (an anyio blocking portal), since
selenium's calls block; the tests wait on conditions, with generous timeouts.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from aiohttp import web
from anyio.from_thread import BlockingPortal, start_blocking_portal

from aposthog.testing import FakePostHog

from .test_web_relay import web_relay

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    HAVE_SELENIUM = True
except ImportError:  # `nox -s browser` installs it
    HAVE_SELENIUM = False

pytestmark = pytest.mark.browser

_T = TypeVar("_T")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL = (
    "the browser tests need Debian's Chromium and its driver: "
    "`sudo apt-get install chromium chromium-driver`, then `nox -s browser`"
)
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "browser"
TIMEOUT = 30.0
"""Seconds any condition may take to come true (generous: the machine may be loaded)."""
CANCEL_WITHIN = 1.0
"""Seconds from leaving the page to PostHog's cancel (the issue's requirement)."""
SLOW = {"delay": 0.25, "token_size": 3}
"""An answer that streams for minutes: leaving always finds it running."""
LONG_ANSWER = "Pageviews by day, then by referrer, then by country. " * 80
ELSEWHERE = "<!doctype html><html lang=en><title>Elsewhere</title><p>Another site."


def _chromium_flags(profile: str) -> list[str]:
    return [
        "--headless=new",
        "--no-sandbox",  # root in CI
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1200,900",
    ]


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (its own profile), closed afterwards."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if not HAVE_SELENIUM or missing:
        reason = f"{INSTALL} (missing: {', '.join(missing) or 'the selenium package'})"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI must run the browser tests: {reason}")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    with tempfile.TemporaryDirectory(prefix="web-relay-chromium-") as profile:
        for flag in _chromium_flags(profile):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            driver.set_page_load_timeout(TIMEOUT)
            # Record what the page says and how it is shown, from before its own script
            # runs: a status may last less than a poll. Also every pageshow event.
            driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORDER})
            yield driver
        finally:
            driver.quit()


RECORDER = """
window.__said = [];
window.__pageshows = [];
addEventListener("pageshow", (e) => __pageshows.push(e.persisted));
addEventListener("DOMContentLoaded", () => {
  const status = document.getElementById("status");
  if (!status) return;
  new MutationObserver(() => __said.push([performance.now(), status.textContent]))
    .observe(status, {subtree: true, childList: true, characterData: true});
});
"""


class Site:
    """The example app in front of a FakePostHog, and another origin, on another thread."""

    def __init__(self, portal: BlockingPortal, stack: contextlib.ExitStack) -> None:
        self.portal = portal
        self.fake: FakePostHog = stack.enter_context(
            portal.wrap_async_context_manager(FakePostHog())
        )
        self.app = web_relay.make_app(self.fake.client)
        self.relay_stopped = False
        self._relay = portal.wrap_async_context_manager(web_relay.serve(self.app))
        self.url: str = self._relay.__enter__()
        stack.callback(self.stop_relay)
        elsewhere = web.Application()
        elsewhere.router.add_get("/", self._elsewhere)
        self.elsewhere: str = stack.enter_context(
            portal.wrap_async_context_manager(web_relay.serve(elsewhere))
        )

    @staticmethod
    async def _elsewhere(request: web.Request) -> web.Response:
        return web.Response(text=ELSEWHERE, content_type="text/html")

    def stop_relay(self) -> None:
        if not self.relay_stopped:
            self.relay_stopped = True
            self._relay.__exit__(None, None, None)

    def call(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run `function` in the servers' event loop (their state is not thread-safe)."""
        return self.portal.call(function, *args)

    def script(self, text: str, **options: Any) -> None:
        self.call(lambda: self.fake.script_answer(text, **options))

    def posts(self) -> list[dict[str, Any]]:
        """The bodies of the messages PostHog was sent."""
        return self.call(lambda: [r.json() for r in self.fake.requests if r.method == "POST"])

    def cancels(self) -> list[str]:
        return self.call(
            lambda: [
                r.path
                for r in self.fake.requests
                if r.method == "PATCH" and r.path.endswith("/cancel/")
            ]
        )

    def cancelled_at(self, conversation: str) -> float | None:
        """When PostHog got the cancel (time.monotonic(), as the fake records it)."""

        def read() -> float | None:
            stored = self.fake.conversations.get(conversation)
            return stored.run.cancelled_at if stored and stored.run else None

        return self.call(read)

    def relaying(self) -> int:
        return self.call(lambda: len(self.app[web_relay.RELAYS]))


@pytest.fixture
def site() -> Iterator[Site]:
    with start_blocking_portal("asyncio") as portal, contextlib.ExitStack() as stack:
        fake_site = Site(portal, stack)
        fake_site.call(lambda: setattr(fake_site.fake, "ai_burst_limit", None))
        yield fake_site


# ---------------------------------------------------------------------------- helpers


def wait_until(driver: Any, condition: Callable[[], Any], what: str) -> Any:
    """Poll `condition` until it is truthy (returns it), or fail saying `what`."""
    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.02).until(lambda _: condition())
    except TimeoutException:
        pass
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"timed-out-{time.time():.0f}.png"
    driver.save_screenshot(str(path))  # what the page showed instead
    pytest.fail(f"timed out after {TIMEOUT} s waiting for {what}; see {path}")


def shot(driver: Any, request: pytest.FixtureRequest, step: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{request.node.name}-{step}.png".replace("/", "_")
    driver.save_screenshot(str(path))
    return path


def js(driver: Any, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def the(driver: Any, css: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, css)


def turns(driver: Any) -> list[dict[str, str]]:
    """Each question with its answer and note, as shown."""
    shown: list[dict[str, str]] = js(
        driver,
        """return [...document.querySelectorAll("#log .turn")].map((t) => ({
             question: t.querySelector(".question").textContent,
             answer: t.querySelector(".answer").textContent,
             note: t.querySelector(".note")?.textContent ?? ""}));""",
    )
    return shown


def status(driver: Any) -> str:
    return cast(str, the(driver, "#status").text)


def said(driver: Any) -> list[str]:
    """Every text the status line showed, in order."""
    return [text for _, text in js(driver, "return window.__said")]


def busy(driver: Any) -> bool:
    return bool(js(driver, "return document.getElementById('log').ariaBusy === 'true'"))


def open_page(driver: Any, site: Site) -> None:
    driver.get(site.url)
    wait_until(driver, lambda: js(driver, "return document.readyState") == "complete", "load")


def ask(driver: Any, question: str) -> None:
    """Type the question and press Enter, as a keyboard user does."""
    field = the(driver, "#question")
    field.clear()
    field.send_keys(question, Keys.ENTER)


def answering(driver: Any, site: Site, turn: int = 1) -> str:
    """Wait until the answer of turn `turn` (1-based) is streaming; its conversation id."""
    wait_until(driver, lambda: len(turns(driver)) >= turn and turns(driver)[-1]["answer"], "text")
    return str(site.posts()[-1]["conversation"])


def answered(driver: Any) -> dict[str, str]:
    wait_until(driver, lambda: not busy(driver), "the answer to end")
    return turns(driver)[-1]


def focused(driver: Any) -> str:
    return str(js(driver, "return document.activeElement.id"))


# ---------------------------------------------------------------------------- tests


def test_asks_with_the_keyboard_streams_and_follows_up_in_the_same_conversation(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    first = "Yesterday /pricing had 1,204 views, then /docs (980)."
    site.script(first, delay=0.2, token_size=3)
    site.script("The day before, /docs led with 1,010 views.", delay=0.01)
    open_page(browser, site)
    assert "question" == focused(browser)  # ready to type at once
    ask(browser, "Top pages yesterday?")
    answering(browser, site)
    assert busy(browser)
    assert not the(browser, "#send").is_enabled()  # busy: no second question
    assert the(browser, "#stop").is_displayed()
    assert "answering" in status(browser)
    shot(browser, request, "1-streaming")
    assert {"question": "Top pages yesterday?", "answer": first, "note": ""} == answered(browser)
    assert the(browser, "#send").is_enabled()
    assert not the(browser, "#stop").is_displayed()
    assert "question" == focused(browser)  # focus back where the next question goes

    ask(browser, "And the day before?")
    answering(browser, site, turn=2)
    assert "The day before, /docs led with 1,010 views." == answered(browser)["answer"]
    assert ["Top pages yesterday?", "And the day before?"] == [
        t["question"] for t in turns(browser)
    ]
    shot(browser, request, "2-follow-up")
    posts = site.posts()
    assert posts[0]["conversation"] == posts[1]["conversation"]  # one conversation
    assert [] == site.cancels()


@pytest.mark.parametrize("how", ["navigate to another origin", "navigate on the same origin"])
def test_leaving_for_another_page_cancels_and_back_shows_a_working_page(
    browser: Any, site: Site, request: pytest.FixtureRequest, how: str
) -> None:
    site.script("A long analysis. " * 100, **SLOW)
    site.script("A short answer.")
    open_page(browser, site)
    ask(browser, "A long analysis?")
    conversation = answering(browser, site)
    left = time.monotonic()
    browser.get(site.elsewhere if how == "navigate to another origin" else site.url + "?again")
    cancelled = wait_until(browser, lambda: site.cancelled_at(conversation), "the cancel")
    assert cancelled - left < CANCEL_WITHIN, f"PostHog's cancel came {cancelled - left:.3f} s later"
    wait_until(browser, lambda: not site.relaying(), "the relay to stop")
    browser.back()
    # Back from the back/forward cache: the same page, shown again (pageshow persisted).
    restored = "return window.__pageshows.includes(true)"
    wait_until(browser, lambda: js(browser, restored), "a pageshow from the bf cache")
    assert [False, True] == js(browser, "return window.__pageshows")
    shot(browser, request, "back")
    assert "Stopped when you left the page." == turns(browser)[-1]["note"]
    assert the(browser, "#send").is_enabled()
    ask(browser, "Something short?")
    answering(browser, site, turn=2)
    assert "A short answer." == answered(browser)["answer"]


def _offline(driver: Any, offline: bool) -> None:
    """DevTools network emulation: what the browser does when the network goes away."""
    driver.execute_cdp_cmd("Network.enable", {})
    conditions = {"offline": offline, "latency": 0, "downloadThroughput": -1}
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions", conditions | {"uploadThroughput": -1}
    )


@pytest.mark.parametrize("how", ["close the tab", "reload", "go offline", "press Stop"])
def test_every_other_way_of_leaving_cancels_within_a_second(
    browser: Any, site: Site, request: pytest.FixtureRequest, how: str
) -> None:
    site.script("A long analysis. " * 100, **SLOW)
    site.script("A short answer.")
    first = browser.current_window_handle
    if how == "close the tab":
        browser.switch_to.new_window("tab")
    open_page(browser, site)
    ask(browser, "A long analysis?")
    conversation = answering(browser, site)
    left = time.monotonic()
    if how == "close the tab":
        browser.close()
        browser.switch_to.window(first)
    elif how == "reload":
        browser.refresh()
    elif how == "go offline":
        _offline(browser, True)
    else:
        the(browser, "#stop").click()
    cancelled = wait_until(browser, lambda: site.cancelled_at(conversation), "the cancel")
    assert cancelled - left < CANCEL_WITHIN, f"PostHog's cancel came {cancelled - left:.3f} s later"
    wait_until(browser, lambda: not site.relaying(), "the relay to stop")
    assert [f"/api/environments/1/conversations/{conversation}/cancel/"] == site.cancels()
    if how == "go offline":
        wait_until(browser, lambda: turns(browser)[-1]["note"], "a note")
        shot(browser, request, "offline")
        assert "offline" in turns(browser)[-1]["note"]
        _offline(browser, False)
        wait_until(browser, lambda: "Back online" in status(browser), "back online")
    elif how == "press Stop":
        assert "Stopped." == turns(browser)[-1]["note"]
        assert "question" == focused(browser)
    if how in ("close the tab", "reload"):
        open_page(browser, site)
        assert [] == turns(browser)  # a fresh page
    # Whatever happened, the page asks again (and the relay answers).
    ask(browser, "Something short?")
    wait_until(browser, lambda: turns(browser)[-1]["answer"] == "A short answer.", "answer")
    assert "" == answered(browser)["note"]


def test_a_blank_question_is_not_sent_and_a_second_one_waits_for_the_first(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script("The first answer, streamed slowly enough to ask again meanwhile.", **SLOW)
    site.script("The second answer.")
    open_page(browser, site)
    ask(browser, "   ")
    wait_until(browser, lambda: "type a question" in status(browser), "a hint")
    assert [] == turns(browser)
    assert [] == site.posts()
    ask(browser, "First?")
    answering(browser, site)
    # Enter again mid-answer, and a click on the disabled button: nothing is sent.
    ask(browser, "Second?")
    the(browser, "#send").click()
    shot(browser, request, "busy")
    assert 1 == len(turns(browser))
    assert 1 == len(site.posts())
    answered(browser)
    assert "Second?" == the(browser, "#question").get_attribute("value")  # kept, not lost
    the(browser, "#question").send_keys(Keys.ENTER)
    wait_until(browser, lambda: turns(browser)[-1]["answer"] == "The second answer.", "answer")
    first, second = turns(browser)
    assert first["answer"].startswith("The first answer")
    assert "" == first["note"]
    assert ("Second?", "The second answer.") == (second["question"], second["answer"])
    assert 2 == len(site.posts())


def test_errors_are_polite_and_keep_the_conversation(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script("Let me look that up", fail="Oops! Something went wrong.", delay=0.01)
    site.script("Signups came mostly from organic search.")
    open_page(browser, site)
    ask(browser, "Signups by source?")
    answering(browser, site)
    assert web_relay.FAILED == answered(browser)["note"]
    ask(browser, "Signups by source, please?")
    answering(browser, site, turn=2)
    assert "Signups came mostly from organic search." == answered(browser)["answer"]
    first, second = site.posts()
    assert first["conversation"] == second["conversation"]  # kept after the error

    site.stop_relay()  # the relay server is down
    ask(browser, "Still there?")
    wait_until(browser, lambda: turns(browser)[-1]["note"], "a note")
    shot(browser, request, "relay-down")
    assert "can't be reached" in turns(browser)[-1]["note"]
    assert not busy(browser)
    assert the(browser, "#send").is_enabled()
    assert 2 == len(site.posts())


def test_accessible_and_no_sideways_scrolling_at_380_px(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script(LONG_ANSWER + "See https://example.com/" + "a" * 200, delay=0.001)
    site.script("In short: pageviews.")
    open_page(browser, site)
    assert "en" == the(browser, "html").get_attribute("lang")
    viewport = the(browser, "meta[name=viewport]").get_attribute("content")
    assert "width=device-width" in viewport
    labels = js(browser, "return [...document.getElementById('question').labels]")
    assert ["Your question"] == [label.text for label in labels]
    assert "polite" == the(browser, "#log").get_attribute("aria-live")
    assert "status" == the(browser, "#said").get_attribute("role")
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 380, "height": 800, "deviceScaleFactor": 1, "mobile": True},
    )
    ask(browser, "A very long question about " + "pageviews " * 30 + "?" + "b" * 100)
    answered(browser)
    shot(browser, request, "380px")
    sizes = js(
        browser,
        "const e = document.scrollingElement; return [e.scrollWidth, e.clientWidth, innerWidth]",
    )
    assert 380 == sizes[2]
    assert sizes[0] <= sizes[1], sizes  # nothing wider than the screen
    # Keyboard alone: Enter asked and focus came back; Tab reaches Ask, Enter on it asks.
    assert "question" == focused(browser)
    the(browser, "#question").send_keys("And in short?", Keys.TAB)
    assert "send" == focused(browser)
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    wait_until(browser, lambda: len(turns(browser)) == 2, "the second question")
    assert "question" == focused(browser)  # not left on the disabled button
    assert "In short: pageviews." == answered(browser)["answer"]


def _shown(driver: Any) -> list[tuple[float, str]]:
    """Every text the status line showed, with its time (ms, the page's clock)."""
    return [(at, text) for at, text in js(driver, "return window.__said")]


def test_a_rate_limit_wait_is_shown_at_once_with_a_countdown(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script("The answer, after the wait.", delay=0.01)
    site.call(lambda: site.fake.throttle_next(1, wait=3, method="POST", path="/conversations/"))
    open_page(browser, site)
    ask(browser, "Top pages?")
    wait_until(browser, lambda: "Trying again in" in status(browser), "the countdown")
    shot(browser, request, "rate-limit")
    assert busy(browser)
    assert not the(browser, "#send").is_enabled()
    assert "The answer, after the wait." == answered(browser)["answer"]
    shown = _shown(browser)
    asked = next(at for at, text in shown if "answering" in text)
    told = next(at for at, text in shown if "rate limit" in text)
    assert told - asked < 1000  # ms: the page said so within a second
    left = [int(n) for _, text in shown for n in re.findall(r"again in (\d+) s…", text)]
    assert 3 <= left[0] <= 4  # PostHog named 3 s; the client spreads it by up to 20 %
    assert left == sorted(left, reverse=True)
    assert 2 <= len(set(left))  # it counted down
    assert 2 == len(site.posts())  # the refused request, then the one answered


def test_a_retry_is_shown_then_the_answer(browser: Any, site: Site) -> None:
    site.script("The answer, after a retry.", delay=0.01)
    site.call(lambda: site.fake.fail_next(1, status=503, method="POST", path="/conversations/"))
    open_page(browser, site)
    ask(browser, "Top pages?")
    assert "The answer, after a retry." == answered(browser)["answer"]
    assert any("couldn't be reached. Trying again" in text for _, text in _shown(browser))
    assert "" == turns(browser)[-1]["note"]


def test_a_wait_longer_than_the_client_accepts_is_an_answer_at_once(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script("Today's first and only answer.", delay=0.01)
    site.call(lambda: setattr(site.fake, "ai_daily_limit", 1))
    open_page(browser, site)
    ask(browser, "Top pages?")
    answering(browser, site)
    answered(browser)
    ask(browser, "And signups?")
    # Told at once: TIMEOUT is shorter than RetryPolicy.max_retry_after (60 s), the
    # longest a client waits before it gives up.
    wait_until(browser, lambda: turns(browser)[-1]["note"], "the apology")
    shot(browser, request, "daily-limit")
    assert "please try again in about 24 hours" in turns(browser)[-1]["note"]
    assert not any("Trying again" in text for _, text in _shown(browser))
    assert the(browser, "#send").is_enabled()
    assert 2 == len(site.posts())  # the refused one was not tried again


def test_two_tabs_each_get_their_own_answer_and_conversation(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    site.script("The first tab's long analysis. " * 100, **SLOW)
    site.script("The second tab's answer.", delay=0.05)
    first = browser.current_window_handle
    open_page(browser, site)
    ask(browser, "First tab?")
    answering(browser, site)
    browser.switch_to.new_window("tab")
    open_page(browser, site)
    ask(browser, "Second tab?")
    answering(browser, site)
    assert "The second tab's answer." == answered(browser)["answer"]
    browser.switch_to.window(first)
    assert busy(browser)  # still answering, untouched by the other tab
    whole = "The first tab's long analysis. The first tab's"
    wait_until(browser, lambda: whole in turns(browser)[-1]["answer"], "the first tab's text")
    shot(browser, request, "first-tab")
    the(browser, "#stop").click()
    one, two = site.posts()
    assert one["conversation"] != two["conversation"]
    wait_until(browser, lambda: site.cancels(), "the cancel")
    assert [f"/api/environments/1/conversations/{one['conversation']}/cancel/"] == site.cancels()
    assert "Stopped." == turns(browser)[-1]["note"]


def test_an_approval_is_asked_with_buttons_and_a_new_question_sets_it_aside(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    approval = {"approval": "create_feature_flag", "approval_preview": "Create new-onboarding"}
    site.script("Shall I create the flag?", **approval)
    site.script("Done: the flag is live.")
    site.script("Shall I create it again?", **approval)
    site.script("Signups came mostly from organic search.")
    open_page(browser, site)
    ask(browser, "Create a flag for the new onboarding")
    answering(browser, site)
    assert "Shall I create the flag?" == answered(browser)["answer"]
    card = the(browser, "#log .turn:last-child .approval")
    assert "PostHog AI asks to run create_feature_flag: Create new-onboarding" in card.text
    assert "PostHog AI asks for your approval." == status(browser)
    shot(browser, request, "1-asked")
    card.find_element(By.XPATH, ".//button[text()='Approve']").click()
    wait_until(browser, lambda: len(turns(browser)) == 2 and not busy(browser), "the run to go on")
    assert {
        "question": "Approved: create_feature_flag.",
        "answer": "Done: the flag is live.",
        "note": "",
    } == turns(browser)[-1]
    assert [] == card.find_elements(By.TAG_NAME, "button")  # decided: no second decision
    assert "question" == focused(browser)
    posts = site.posts()
    assert [None, "approve"] == [(p.get("resume_payload") or {}).get("action") for p in posts]
    assert posts[0]["conversation"] == posts[1]["conversation"]

    ask(browser, "Create it again")
    answering(browser, site, turn=3)
    answered(browser)
    assert 2 == len(
        the(browser, "#log .turn:last-child .approval").find_elements(By.TAG_NAME, "button")
    )
    ask(browser, "Signups by source?")  # instead of a decision: PostHog rejects the card
    answering(browser, site, turn=4)
    assert "Signups came mostly from organic search." == answered(browser)["answer"]
    assert "Not run: you asked something else instead." == turns(browser)[2]["note"]
    shot(browser, request, "2-set-aside")
    assert "Signups by source?" == site.posts()[-1]["content"]


def test_a_decision_refused_can_be_made_again(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    """Approve meets PostHog AI's rate limit (a wait longer than the client takes): the
    page says so, and the card's buttons come back, since the tool call still waits (a new
    question would reject it). Approve again: the run goes on."""
    site.script("Shall I create the flag?", approval="create_feature_flag")
    site.script("Done: the flag is live.")
    open_page(browser, site)
    ask(browser, "Create a flag for the new onboarding")
    answering(browser, site)
    answered(browser)
    site.call(lambda: site.fake.throttle_next(1, wait=3600, path="/conversations"))
    card = the(browser, "#log .turn:last-child .approval")
    card.find_element(By.XPATH, ".//button[text()='Approve']").click()
    wait_until(browser, lambda: len(turns(browser)) == 2 and turns(browser)[-1]["note"], "a note")
    assert "usage limit" in turns(browser)[-1]["note"]
    approve = card.find_element(By.XPATH, ".//button[text()='Approve']")
    wait_until(browser, lambda: approve.is_enabled(), "the decision to be offered again")
    shot(browser, request, "refused")
    approve.click()
    wait_until(browser, lambda: len(turns(browser)) == 3 and not busy(browser), "the run to go on")
    assert "Done: the flag is live." == turns(browser)[-1]["answer"]
    assert [] == card.find_elements(By.TAG_NAME, "button")
    decisions = [p["resume_payload"]["action"] for p in site.posts() if p.get("resume_payload")]
    assert ["approve", "approve"] == decisions  # the one refused, the one taken
    conversation = site.posts()[0]["conversation"]
    statuses = site.call(
        lambda: [
            c["decision_status"] for c in site.fake.conversations[conversation].pending_approvals
        ]
    )
    assert ["approved"] == statuses


def test_stop_during_a_decisions_run_does_not_offer_the_decision_again(
    browser: Any, site: Site, request: pytest.FixtureRequest
) -> None:
    """Approve, and the run PostHog resumed with it streams; the user presses Stop. The
    page's `finish()` takes any message (here "Stopped.") for a decision refused and
    enables Approve and Reject again, though PostHog took the decision (the card reads
    `approved`, the tool call ran): a second Approve resumes a card decided already, which
    PostHog fails ("Oops! Something went wrong"). Only a decision PostHog refused (no run
    streamed: a 429, say) may be offered again."""
    site.script("Shall I create the flag?", approval="create_feature_flag")
    site.script(LONG_ANSWER, **SLOW)
    open_page(browser, site)
    ask(browser, "Create a flag for the new onboarding")
    conversation = answering(browser, site)
    answered(browser)
    card = the(browser, "#log .turn:last-child .approval")
    card.find_element(By.XPATH, ".//button[text()='Approve']").click()
    answering(browser, site, turn=2)  # the decision's run streams: PostHog took it
    the(browser, "#stop").click()
    wait_until(browser, lambda: site.cancels(), "the relay to cancel the run")
    wait_until(browser, lambda: not busy(browser), "the page to stop")
    statuses = site.call(
        lambda: [
            c["decision_status"] for c in site.fake.conversations[conversation].pending_approvals
        ]
    )
    assert ["approved"] == statuses
    shot(browser, request, "stopped")
    offered = [b for b in card.find_elements(By.TAG_NAME, "button") if b.is_enabled()]
    assert [] == [b.text for b in offered]
