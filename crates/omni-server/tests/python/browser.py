#!/usr/bin/env python3
"""End-to-end test of the page `omni serve` serves at /, driven by Playwright and Debian's Chromium.

    python browser.py --url http://127.0.0.1:18181/ --query "a cup of coffee" \
        --expect coffee.png --image photo.jpg --screenshot page.png

Searches for --query and expects a result named --expect among the top 3; then attaches
--image in the chat, asks about it and checks that the answer streams in (the assistant
bubble's text grows over at least two observations before it is marked done). Exits
non-zero on failure; the screenshot is taken either way.
"""

import argparse
import json
import os
import sys
import time

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Installed in the page before sending: records (text length, done) at every change of the
# last assistant bubble, so streaming is observed however fast the chunks come.
OBSERVE = """() => {
  window.__obs = [];
  const t0 = performance.now();
  const record = () => {
    const b = [...document.querySelectorAll('#messages .assistant')].pop();
    if (!b) return;
    const last = window.__obs[window.__obs.length - 1];
    const o = {len: b.textContent.length, done: b.dataset.done === '1', t: performance.now() - t0};
    if (!last || last.len !== o.len || last.done !== o.done) window.__obs.push(o);
  };
  new MutationObserver(record).observe(document.getElementById('messages'),
    {subtree: true, childList: true, characterData: true, attributes: true});
}"""


class Failure(Exception):
    pass


def visible_errors(page):
    return [e.inner_text().strip() for e in page.locator(".error").all() if e.is_visible()]


def run(page, args, report):
    page.goto(args.url, wait_until="domcontentloaded")

    # ---- search ----
    t0 = time.time()
    page.fill("#search-input", args.query)
    page.click("#search-button")
    try:
        page.wait_for_selector("#results .result", timeout=30_000)
    except Exception:
        raise Failure(f"no search results within 30 s; errors shown: {visible_errors(page)}")
    paths = page.eval_on_selector_all("#results .result", "els => els.map(e => e.dataset.path)")
    report.append(f"search {args.query!r}: {len(paths)} results in {time.time() - t0:.1f}s")
    for i, p in enumerate(paths[:3]):
        report.append(f"  {i + 1}. {p}")
    names = [os.path.basename(p.replace("\\", "/")) for p in paths[:3]]
    if args.expect not in names and not any(p.endswith(args.expect) for p in paths[:3]):
        raise Failure(f"{args.expect!r} not among the top 3 results {names}")
    report.append(f"ok   {args.expect!r} in the top 3")

    # ---- chat with an image, streamed, the reply spoken ----
    page.wait_for_selector("#speak-box:not([hidden])", timeout=10_000)
    page.check("#chat-speak")
    page.set_input_files("#chat-attach", args.image)
    page.fill("#chat-input", "What is in this picture?")
    page.evaluate(OBSERVE)
    t0 = time.time()
    page.click("#chat-send")
    try:
        page.wait_for_selector('#messages .assistant[data-done="1"]', timeout=120_000)
    except Exception:
        raise Failure(f"the answer was not done within 120 s; errors shown: {visible_errors(page)}")
    obs = page.evaluate("window.__obs")
    answer = page.locator("#messages .assistant").last.inner_text().strip()
    user_imgs = page.locator("#messages .user").last.locator("img").count()
    report.append(f"chat answered in {time.time() - t0:.1f}s: {answer[:120]!r}")

    errors = visible_errors(page)
    if errors:
        raise Failure(f"error shown: {errors}")
    if not answer:
        raise Failure("the assistant bubble is empty")
    if user_imgs < 1:
        raise Failure("the user bubble shows no thumbnail of the attached image")
    if page.locator("#messages .assistant").last.locator("audio").count() < 1:
        raise Failure("'Speak replies' is on but the reply has no audio player")
    report.append("ok   the reply was spoken (an audio player under it)")
    growth, prev = [], 0
    for o in obs:
        if o["done"]:
            break
        if o["len"] > prev:
            growth.append(o)
            prev = o["len"]
    first = f", first text after {growth[0]['t'] / 1000:.1f}s" if growth else ""
    report.append(f"streaming: text grew over {len(growth)} observations before done{first}")
    if len(growth) < 2:
        raise Failure(f"the answer did not stream (grew over {len(growth)} observation(s) before done: {obs})")
    report.append("ok   streamed, no error shown")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:18181/")
    ap.add_argument("--query", required=True)
    ap.add_argument("--expect", required=True, help="file name expected among the top 3 results")
    ap.add_argument("--image", required=True, help="image to attach in the chat")
    ap.add_argument("--screenshot", required=True, help="PNG to write")
    ap.add_argument("--api-key", default=None, help="stored in the page's localStorage before loading")
    args = ap.parse_args()

    report, ok = [], False
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("pageerror", lambda e: report.append(f"page error: {e}"))
            page.on("console", lambda m: m.type == "error" and report.append(f"console error: {m.text}"))
            if args.api_key:
                page.add_init_script(f"localStorage.setItem('omni-api-key', {json.dumps(args.api_key)});")
            try:
                run(page, args, report)
                ok = True
            except Failure as e:
                report.append(f"FAIL {e}")
            except Exception as e:  # Playwright errors, timeouts
                report.append(f"FAIL {type(e).__name__}: {e}")
            try:
                page.screenshot(path=args.screenshot, full_page=True)
                report.append(f"screenshot {args.screenshot}")
            except Exception as e:
                report.append(f"screenshot failed: {e}")
        finally:
            browser.close()
    print("\n".join(report), flush=True)
    print("PASS" if ok else "FAILED", flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
