"""The chat page in a real headless Chromium against a real uvicorn server: a streamed reply
per message, greedy then beam search (the request the page sends is recorded in the browser),
a new conversation, a phone-width layout, readable errors (401, 400) with the API key
entered in the page and remembered, and a busy server (429) asked again after its
Retry-After. Skipped where Chromium or chromedriver is not installed."""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from chatbot.bot import Chatbot
from serve.app import create_app

from .conftest import make_settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Chromium and chromedriver on PATH (Debian: apt-get install chromium "
    "chromium-driver)",
)

if CHROMIUM and CHROMEDRIVER:  # selenium is only needed where the tests can run
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

WAIT_S = 30.0
# Startup warms the model up (compiles its decoding programs), which a busy 2-core machine can
# stretch past half a minute; a failure to start is still caught, only later.
STARTUP_WAIT_S = 120.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Wraps window.fetch so a test can read the exact requests the page sent.
RECORD_FETCH = """
window.__sent = [];
window.__realFetch = window.fetch.bind(window);
window.fetch = (url, init) => {
  window.__sent.push({url: String(url), headers: init.headers, body: init.body});
  return window.__realFetch(url, init);
};
"""


@contextmanager
def live_server(app: FastAPI) -> Iterator[str]:
    """`app` under uvicorn in a thread on a free loopback port (the socket is bound here, so no
    other process can take the port in between); yields the page's URL once started."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + STARTUP_WAIT_S
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped during startup"
            assert time.monotonic() < deadline, "uvicorn did not start in time"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # tests may run as root in a container
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-extensions",
        "--window-size=1024,768",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page_url(tiny_bundle: Path, bot: Chatbot) -> Iterator[str]:
    """The page of a server that requires no API key."""
    with live_server(create_app(make_settings(tiny_bundle), bot=bot)) as url:
        yield url


def open_page(browser: WebDriver, url: str) -> None:
    browser.get(url)
    wait(browser).until(lambda b: b.execute_script("return document.documentElement.dataset.ready"))
    browser.execute_script(RECORD_FETCH)


def wait(browser: WebDriver) -> WebDriverWait:
    return WebDriverWait(browser, WAIT_S, poll_frequency=0.1)


def send(browser: WebDriver, text: str, *, enter: bool = False) -> None:
    """Type `text` and send it with the button (or the Enter key)."""
    box = browser.find_element(By.ID, "message")
    box.clear()
    box.send_keys(text)
    if enter:
        box.send_keys(Keys.ENTER)
    else:
        browser.find_element(By.ID, "send").click()


def wait_for_replies(browser: WebDriver, count: int) -> list[str]:
    """The texts of the assistant replies once `count` are marked finished (a tiny model's
    reply may be empty, so the `data-done` mark is awaited, not text)."""
    done = '.msg.assistant[data-done="true"]'
    wait(browser).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, done)) == count)
    assert not browser.find_element(By.ID, "error").is_displayed()
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, f"{done} .text")]


def wait_for_error(browser: WebDriver) -> str:
    box = browser.find_element(By.ID, "error")
    wait(browser).until(lambda _: box.is_displayed() and box.text.strip())
    return box.text


def sent_requests(browser: WebDriver) -> list[dict[str, Any]]:
    sent = browser.execute_script("return window.__sent")
    return [{**r, "body": json.loads(r["body"])} for r in sent]


def open_settings(browser: WebDriver) -> None:
    if not browser.find_element(By.ID, "settings").get_attribute("open"):
        browser.find_element(By.CSS_SELECTOR, "#settings summary").click()


def screenshot(browser: WebDriver, path: Path) -> None:
    assert browser.save_screenshot(str(path))
    data = path.read_bytes()
    assert len(data) > 1000 and data.startswith(PNG_MAGIC)


def test_chat_streams_replies_greedy_then_beam(
    browser: WebDriver, page_url: str, tmp_path: Path
) -> None:
    browser.set_window_size(1024, 768)
    open_page(browser, page_url)

    send(browser, "Hello")
    [first] = wait_for_replies(browser, 1)
    users = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user .text")]
    assert users == ["Hello"]

    open_settings(browser)
    Select(browser.find_element(By.ID, "strategy")).select_by_value("beam")
    width = browser.find_element(By.ID, "beam-width")
    assert width.is_displayed()
    width.clear()
    width.send_keys("3")
    send(browser, "How are you?", enter=True)
    replies = wait_for_replies(browser, 2)
    assert replies[0] == first
    screenshot(browser, tmp_path / "chat-desktop.png")

    greedy, beam = sent_requests(browser)
    assert greedy["url"] == "v1/chat/completions"  # relative: works under a path prefix
    assert "Authorization" not in greedy["headers"]
    assert greedy["body"] == {
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
        "decoding": {"strategy": "greedy"},
    }
    assert beam["body"]["decoding"] == {"strategy": "beam", "beam_width": 3}
    assert beam["body"]["messages"] == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": first},
        {"role": "user", "content": "How are you?"},
    ]

    # A new conversation clears the log and the history sent with the next message.
    browser.find_element(By.ID, "new-conversation").click()
    assert browser.find_elements(By.CSS_SELECTOR, "#log .msg") == []
    browser.set_window_size(390, 844)  # a phone
    send(browser, "Hi")
    wait_for_replies(browser, 1)
    assert sent_requests(browser)[-1]["body"]["messages"] == [{"role": "user", "content": "Hi"}]
    overflow = "return document.documentElement.scrollWidth - window.innerWidth"
    assert browser.execute_script(overflow) <= 0, "the page scrolls sideways on a phone"
    screenshot(browser, tmp_path / "chat-phone.png")


def test_errors_are_shown_and_the_api_key_is_remembered(
    browser: WebDriver, tiny_bundle: Path, bot: Chatbot, tmp_path: Path
) -> None:
    app = create_app(make_settings(tiny_bundle, api_keys=["secret"]), bot=bot)
    with live_server(app) as url:
        browser.set_window_size(1024, 768)
        open_page(browser, url)  # the page itself needs no key

        send(browser, "Hello")
        error = wait_for_error(browser)
        assert "401" in error and "missing or invalid API key" in error
        assert "API key under Settings" in error
        assert browser.find_elements(By.CSS_SELECTOR, "#log .msg") == []
        assert browser.find_element(By.ID, "message").get_attribute("value") == "Hello"
        screenshot(browser, tmp_path / "chat-error.png")

        key = browser.find_element(By.ID, "api-key")
        assert key.is_displayed()  # the 401 opened the settings
        key.send_keys("secret")
        send(browser, "x" * 60)  # over the server's 50-character limit
        wait(browser).until(lambda b: "400" in b.find_element(By.ID, "error").text)
        assert "messages: at most 50 characters" in wait_for_error(browser)

        send(browser, "Hello")
        wait_for_replies(browser, 1)
        assert sent_requests(browser)[-1]["headers"]["Authorization"] == "Bearer secret"

        open_page(browser, url)  # the key survives a reload
        assert browser.find_element(By.ID, "api-key").get_attribute("value") == "secret"


# A stream served by the page's own fetch: split mid-JSON, mid-UTF-8 character and across a
# CRLF, with markup in the text, and held after its first chunks until window.__release().
FAKE_STREAM = r"""
const encoder = new TextEncoder();
const event = (delta, finish = null) =>
  "data: " + JSON.stringify({choices: [{index: 0, delta: delta, finish_reason: finish}]});
const first = encoder.encode(
  event({role: "assistant"}) + "\r\n\r\n" + event({content: "<b>Hello</b> caf\u00e9"}) + "\n\n");
const cut = first.indexOf(0xc3) + 1;  // inside the JSON, between the two bytes of the e-acute
const rest = encoder.encode(
  event({content: " & bye"}) + "\n\n" + event({}, "stop") + "\n\ndata: [DONE]\n\n");
let release;
const gate = new Promise((resolve) => { release = resolve; });
window.__release = () => release();
window.__sent = [];
window.fetch = async (url, init) => {
  window.__sent.push({url: String(url), headers: init.headers, body: init.body});
  const endEarly = window.__sent.length > 1;
  const body = new ReadableStream({
    async start(controller) {
      controller.enqueue(first.slice(0, cut));
      controller.enqueue(first.slice(cut));
      if (endEarly) { controller.close(); return; }
      await gate;
      controller.enqueue(rest);
      controller.close();
    },
  });
  return new Response(body, {status: 200, headers: {"Content-Type": "text/event-stream"}});
};
"""


def test_reply_streams_in_as_plain_text(browser: WebDriver, page_url: str) -> None:
    browser.set_window_size(1024, 768)
    open_page(browser, page_url)
    browser.execute_script(FAKE_STREAM)
    send(browser, "Hi")
    reply = browser.find_element(By.CSS_SELECTOR, ".msg.assistant")
    text = reply.find_element(By.CSS_SELECTOR, ".text")
    wait(browser).until(lambda _: text.text == "<b>Hello</b> café")
    assert reply.get_attribute("data-done") is None  # shown before the reply has finished
    assert browser.find_elements(By.CSS_SELECTOR, "#log b") == []  # markup stays text
    browser.execute_script("window.__release()")
    assert wait_for_replies(browser, 1) == ["<b>Hello</b> café & bye"]

    # The next request carries the reply; a stream cut before [DONE] is reported, not kept.
    send(browser, "And?")
    assert "closed before the reply finished" in wait_for_error(browser)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#log .msg")) == 2
    assert sent_requests(browser)[-1]["body"]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<b>Hello</b> café & bye"},
        {"role": "user", "content": "And?"},
    ]


# The first `window.__busy` requests are answered 429 with `Retry-After: window.__retryAfter`
# (as the server does while its queue is full); later ones reach the real server.
BUSY_SERVER = """
window.__sent = [];
window.fetch = (url, init) => {
  window.__sent.push({url: String(url), headers: init.headers, body: init.body});
  if (window.__sent.length > window.__busy) return window.__realFetch(url, init);
  const body = JSON.stringify({error: {message: "the server is busy", type: "overloaded"}});
  const headers = {"Content-Type": "application/json", "Retry-After": window.__retryAfter};
  return Promise.resolve(new Response(body, {status: 429, headers: headers}));
};
"""


def test_a_busy_server_is_asked_again_after_its_retry_after(
    browser: WebDriver, page_url: str
) -> None:
    browser.set_window_size(1024, 768)
    open_page(browser, page_url)
    browser.execute_script("window.__busy = 1; window.__retryAfter = '1';" + BUSY_SERVER)
    send(browser, "Hi")
    status = browser.find_element(By.ID, "status")
    wait(browser).until(lambda _: "busy; asking again in 1 s" in status.text)
    assert wait_for_replies(browser, 1)  # answered by the second request, no error shown
    assert len(sent_requests(browser)) == 2

    # A server that stays busy: three more tries, then its error is shown.
    browser.execute_script("window.__busy = 100; window.__retryAfter = '0';" + BUSY_SERVER)
    send(browser, "Again")
    assert "429" in wait_for_error(browser) and "busy" in wait_for_error(browser)
    assert len(sent_requests(browser)) == 4
