#!/usr/bin/python3
"""A thin bridge from a test to headless Chromium: one JSON command per line on stdin, one
JSON answer per line on stdout. The test (tests/tests/suite/cockpit.rs) holds every step and
assertion; this only drives the browser through chromedriver with Debian's Selenium bindings
(python3-selenium, chromium, chromium-driver).

Commands: get(url), click(css), text(css), texts(css), attr(css, name),
wait(css, regex, timeout): until an element matching css has text matching regex (its text),
type(css, value), upload(css, path), select(css, value), confirm(): accepts the open dialog,
screenshot(path), js(script), download(name, timeout): the text of the file the page downloaded
under that name (Chromium saves downloads in a directory of this driver's own), quit().
"""
import os
import json
import re
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select


DOWNLOADS = tempfile.mkdtemp(prefix="migrated-downloads-")


def start():
    options = webdriver.ChromeOptions()
    options.add_experimental_option("prefs", {
        "download.default_directory": DOWNLOADS,
        "download.prompt_for_download": False,
        "download.directory_upgrade": True,
    })
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1440,1000", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-sync", "--disable-component-update",
                "--user-data-dir=" + tempfile.mkdtemp(prefix="migrated-chromium-")):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    # Headless Chromium saves downloads only when told where, over DevTools.
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": DOWNLOADS})
    return driver


def download(name, timeout):
    """The text of DOWNLOADS/name once Chromium has finished writing it (and removes it)."""
    path = os.path.join(DOWNLOADS, name)
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) or os.path.exists(path + ".crdownload"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no download {name} within {timeout} s; the directory has {os.listdir(DOWNLOADS)!r}")
        time.sleep(0.1)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    os.remove(path)
    return text


def one(driver, css):
    return driver.find_element(By.CSS_SELECTOR, css)


def wait(driver, css, regex, timeout):
    pattern = re.compile(regex, re.S)
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        try:
            seen = [e.text for e in driver.find_elements(By.CSS_SELECTOR, css)]
        except StaleElementReferenceException:
            # The page redrew between finding and reading: look again.
            continue
        for text in seen:
            if pattern.search(text):
                return text
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {css} matching {regex!r} within {timeout} s; seen {seen!r}")
        time.sleep(0.1)


def run(driver, cmd):
    # The page redraws as figures arrive: an element found may be gone when used.
    for _ in range(50):
        try:
            return run_once(driver, cmd)
        except StaleElementReferenceException:
            time.sleep(0.05)
    return run_once(driver, cmd)


def run_once(driver, cmd):
    op = cmd["op"]
    if op == "get":
        driver.get(cmd["url"])
        return None
    if op == "click":
        one(driver, cmd["css"]).click()
        return None
    if op == "text":
        return one(driver, cmd["css"]).text
    if op == "texts":
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, cmd["css"])]
    if op == "attr":
        return one(driver, cmd["css"]).get_attribute(cmd["name"])
    if op == "wait":
        return wait(driver, cmd["css"], cmd.get("regex", ""), cmd.get("timeout", 60))
    if op == "type":
        e = one(driver, cmd["css"])
        e.clear()
        e.send_keys(cmd["value"])
        return None
    if op == "upload":
        one(driver, cmd["css"]).send_keys(cmd["path"])
        return None
    if op == "select":
        Select(one(driver, cmd["css"])).select_by_value(cmd["value"])
        return None
    if op == "confirm":
        one(driver, "#confirm-yes").click()
        return None
    if op == "screenshot":
        driver.save_screenshot(cmd["path"])
        return None
    if op == "js":
        return driver.execute_script(cmd["script"])
    if op == "download":
        return download(cmd["name"], cmd.get("timeout", 60))
    raise ValueError(f"unknown op {op!r}")


def main():
    driver = start()
    try:
        print(json.dumps({"ok": True, "value": "ready"}), flush=True)
        for line in sys.stdin:
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            try:
                print(json.dumps({"ok": True, "value": run(driver, cmd)}), flush=True)
            except Exception as e:  # every failure goes back to the test, named
                # The first line: Selenium appends chromedriver's stack of addresses.
                words = str(e).strip().splitlines()[0] if str(e).strip() else ""
                print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {words}"}), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
