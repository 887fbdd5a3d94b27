"""The page of ``rnnkit serve`` in a real browser: Debian's headless Chromium driven by Selenium (never a browser
download; ``.ci/browser`` installs it). Skips with one line where Chromium or its driver cannot be found.

The release's run folders (tests/fixtures/runs/v0.1.0: classify, generate, forecast, seq2seq) are copied and served
by a real uvicorn on a free loopback port. The test loads the page, types a name and sees the bars change, samples
names, forecasts a series, opens a run report (its metrics table and training curve), saves a screenshot of each
step under its temp folder and finds no error in the browser's console.
"""

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rnnkit.runs import load_run, predict_lines  # noqa: E402
from rnnkit.serve import serve  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0"
KINDS = ("classify", "generate", "forecast", "seq2seq")


def _browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


server_folders: list[Path] = []  # the parent folder of the served copies, once the url fixture made them


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    base = tmp_path_factory.mktemp("page")
    server_folders[:] = [base]
    folders = [shutil.copytree(FIXTURES / kind, base / kind) for kind in KINDS]
    server = serve(folders, port=0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        time.sleep(0.01)
    yield server.url + "/"
    server.shutdown()
    thread.join(10)
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    found = _browser()
    if found is None:
        pytest.skip("no chromium/chromedriver (run .ci/browser to install Debian's): browser tests skipped")
    chromium, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="rnnkit-chromium-")
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1100,1400",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _bars(card) -> list[str]:
    """The bars' texts, read in one script (the page replaces them while the name is typed)."""
    script = "return [...arguments[0].querySelectorAll('.bar')].map(b => b.innerText)"
    return card.parent.execute_script(script, card)


def test_the_page_in_a_browser(browser, url: str, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 20)
    browser.get(url)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    assert [s.get_attribute("id") for s in browser.find_elements(By.CSS_SELECTOR, "section.run")] == [
        f"run-{k}" for k in KINDS
    ]
    browser.save_screenshot(str(tmp_path / "page.png"))

    # a classifier: bars while typing, and they change with the name
    card = browser.find_element(By.ID, "run-classify")
    box = card.find_element(By.CSS_SELECTOR, ".predict-input")
    box.send_keys("nor")
    wait.until(lambda d: len(_bars(card)) == 2)
    first = _bars(card)
    box.send_keys("s")
    wait.until(lambda d: _bars(card) and _bars(card) != first)
    assert {b.splitlines()[0] for b in _bars(card)} == {"north", "south"}
    browser.save_screenshot(str(tmp_path / "classify.png"))

    # a generator: category, temperature, sample
    card = browser.find_element(By.ID, "run-generate")
    card.find_element(By.CSS_SELECTOR, ".sample-button").click()
    wait.until(lambda d: len(card.find_elements(By.CSS_SELECTOR, ".samples li")) == 10)
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "generate.png"))

    # a forecaster: the series and its forecast drawn
    card = browser.find_element(By.ID, "run-forecast")
    card.find_element(By.CSS_SELECTOR, ".predict-input").send_keys("1 2 3 4 5 6 7 8 9 10 11 12")
    card.find_element(By.CSS_SELECTOR, ".predict-button").click()
    wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, "svg.forecast path[data-series=forecast]"))
    assert "step 1:" in card.find_element(By.CSS_SELECTOR, ".lines pre").text
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "forecast.png"))

    # seq2seq: input → output, with the beam's candidates and their scores
    card = browser.find_element(By.ID, "run-seq2seq")
    card.find_element(By.CSS_SELECTOR, ".predict-input").send_keys("abc")
    beam = card.find_element(By.CSS_SELECTOR, "input.beam")
    beam.clear()
    beam.send_keys("4")
    card.find_element(By.CSS_SELECTOR, ".predict-button").click()
    wait.until(lambda d: card.find_elements(By.CSS_SELECTOR, ".transcription .beam tr.candidate"))
    run = load_run(Path(server_folders[0]) / "seq2seq")
    want = predict_lines(run, ["abc"], beam=4)[0]  # "abc: AE B K" -- what `rnnkit predict` prints
    io = card.find_element(By.CSS_SELECTOR, ".transcription .io").text
    assert io == want.replace(": ", " → ", 1)
    rows = card.find_elements(By.CSS_SELECTOR, ".transcription .beam tr.candidate")
    assert 1 <= len(rows) <= 4 and "best" in rows[0].get_attribute("class")
    texts = [r.find_element(By.CSS_SELECTOR, "td.text").text for r in rows]
    scores = [float(r.find_element(By.CSS_SELECTOR, "td.score").text) for r in rows]
    assert texts[0] == want.split(": ", 1)[1] and len(set(texts)) == len(texts)
    assert scores == sorted(scores, reverse=True) and all(x <= 0 for x in scores)
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "seq2seq.png"))

    # a run report: metrics and the training curve
    card = browser.find_element(By.ID, "run-classify")
    card.find_element(By.CSS_SELECTOR, "details.report-toggle summary").click()
    curve = card.find_element(By.CSS_SELECTOR, "svg.curve")
    wait.until(lambda d: curve.is_displayed())
    assert curve.find_elements(By.CSS_SELECTOR, "path[data-series=train_loss]")
    assert "test_accuracy" in card.find_element(By.CSS_SELECTOR, "table.metrics").text
    assert card.find_element(By.CSS_SELECTOR, "table.confusion").is_displayed()
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "report.png"))

    shots = ("page", "classify", "generate", "forecast", "seq2seq", "report")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in shots)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors


def test_the_gradient_demo_in_a_browser(browser, url: str, tmp_path: Path) -> None:
    wait = WebDriverWait(browser, 30)
    browser.get(url + "demo")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    rows = browser.find_elements(By.CSS_SELECTOR, "#tiny-table tr")
    assert len(rows) == 1 + 6 and "∂L/∂wh" in rows[0].text
    assert {p.get_attribute("data-series") for p in browser.find_elements(By.CSS_SELECTOR, "svg.flow path")} == {
        "rnn l0",
        "lstm l0",
        "gru l0",
    }
    wh = browser.find_element(By.ID, "wh")
    wh.clear()
    wh.send_keys("2")
    lengths = browser.find_element(By.ID, "lengths")
    lengths.clear()
    lengths.send_keys("1 3")
    browser.find_element(By.ID, "tiny-button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tiny-table tr")) == 3)
    # L = 3, w_h = 2: ∂L/∂h_init = 2·w_h³ = 16, ∂L/∂w_h = 2L·w_h² = 24
    assert browser.find_elements(By.CSS_SELECTOR, "#tiny-table tr")[2].text.split()[:3] == [
        "3",
        "16.000000",
        "24.000000",
    ]
    browser.save_screenshot(str(tmp_path / "demo.png"))
    assert (tmp_path / "demo.png").stat().st_size > 1000
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
