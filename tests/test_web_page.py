"""The page of ``rnnkit serve`` in a real browser: Debian's headless Chromium driven by Selenium (never a browser
download; ``.ci/browser`` installs it). Skips with one line where Chromium or its driver cannot be found.

The release's run folders (tests/fixtures/runs/v0.1.0: every kind) are copied and served by a real uvicorn on a
free loopback port. The test loads the page, types a name and sees the bars change, samples names (then with a
category, prefix, top-k and temperature), forecasts a series, shows a seq2seq beam's candidates, tags a sentence,
continues a text, classifies a multichannel series typed one step per line (the bars the server answers), opens
every run's report (metrics, training curve, confusion matrix where the run has one), saves
a screenshot of each step and of the gradient demo page under its temp folder and finds no error in the browser's
console.
"""

import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from rnnkit.runs import load_run, predict_lines  # noqa: E402
from rnnkit.runs.classify_series import series_probabilities  # noqa: E402
from rnnkit.serve import serve  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures" / "runs" / "v0.1.0"
KINDS = ("classify", "generate", "forecast", "seq2seq", "tag", "lm", "classify-series")
CONFUSION = {"classify", "tag", "classify-series"}  # the runs whose folder holds a confusion matrix


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


def _texts(card, selector: str) -> list[str]:
    """The texts of ``card``'s elements matching ``selector``, read in one script (the page may replace them)."""
    script = "return [...arguments[0].querySelectorAll(arguments[1])].map(e => e.innerText)"
    return card.parent.execute_script(script, card, selector)


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

    # a generator: category, temperature, sample; then with a prefix, top-k and another category
    card = browser.find_element(By.ID, "run-generate")
    card.find_element(By.CSS_SELECTOR, ".sample-button").click()
    wait.until(lambda d: len(card.find_elements(By.CSS_SELECTOR, ".samples li")) == 10)
    first = _texts(card, ".samples li")
    card.find_element(By.CSS_SELECTOR, "select.category option[value=south]").click()
    card.find_element(By.CSS_SELECTOR, ".prefix").send_keys("S")
    card.find_element(By.CSS_SELECTOR, ".top-k").send_keys("3")
    temperature = card.find_element(By.CSS_SELECTOR, ".temperature")
    temperature.clear()
    temperature.send_keys("0.5")
    card.find_element(By.CSS_SELECTOR, ".sample-button").click()
    wait.until(lambda d: _texts(card, ".samples li") != first)
    samples = _texts(card, ".samples li")
    assert len(samples) == 10 and all(x.startswith("S") for x in samples), samples
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "generate.png"))

    # a forecaster: the series and its forecast drawn (nothing typed: a message, no request)
    card = browser.find_element(By.ID, "run-forecast")
    card.find_element(By.CSS_SELECTOR, ".predict-button").click()
    assert card.find_element(By.CSS_SELECTOR, ".error").text == "type a series of numbers"
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

    # a tagger and a language model: a sentence is one item; the lines `rnnkit predict` prints
    for kind, text, options in (("tag", "the cat", {}), ("lm", "the", {"horizon": 20})):
        card = browser.find_element(By.ID, f"run-{kind}")
        card.find_element(By.CSS_SELECTOR, ".predict-input").send_keys(text)
        if options:
            card.find_element(By.CSS_SELECTOR, ".horizon").send_keys(str(options["horizon"]))
        card.find_element(By.CSS_SELECTOR, ".predict-button").click()
        wait.until(lambda d, card=card: card.find_elements(By.CSS_SELECTOR, ".lines pre"))
        want = predict_lines(load_run(Path(server_folders[0]) / kind), [text], **options)
        assert card.find_element(By.CSS_SELECTOR, ".lines pre").text == "\n".join(want).strip()
    browser.execute_script("arguments[0].scrollIntoView()", card)
    browser.save_screenshot(str(tmp_path / "tag-lm.png"))
    # series classification: a series typed one step per line (6 channels) gets the bars the server answers for
    # it, and the series drawn; the card also says how to classify a file; a step of 5 numbers is refused in a line
    card = browser.find_element(By.ID, "run-classify-series")
    assert "--data FILE.ts" in card.find_element(By.CSS_SELECTOR, ".note").text
    assert not card.find_elements(By.CSS_SELECTOR, ".predict-input")  # the text box of items is not offered
    steps = [[round(0.1 * t + 0.01 * c, 2) for c in range(6)] for t in range(12)]
    box = card.find_element(By.CSS_SELECTOR, "textarea.series-input")
    box.send_keys("\n".join(" ".join(map(str, row)) for row in steps))
    card.find_element(By.CSS_SELECTOR, ".predict-button").click()
    wait.until(lambda d: len(_bars(card)) == 4)
    run = load_run(Path(server_folders[0]) / "classify-series")
    probs = series_probabilities(run, [np.asarray(steps).T])[0]
    want = sorted(range(len(run.classes)), key=lambda c: -probs[c])
    assert [b.splitlines()[0] for b in _bars(card)] == [run.classes[c] for c in want]
    assert [b.splitlines()[-1] for b in _bars(card)] == [f"{probs[c]:.3f}" for c in want]
    assert len(card.find_elements(By.CSS_SELECTOR, "svg.series path")) == 6  # one line per channel
    box.send_keys("\n1 2 3 4 5")
    card.find_element(By.CSS_SELECTOR, ".predict-button").click()
    wait.until(lambda d: card.find_element(By.CSS_SELECTOR, ".error").text)
    assert (
        "'series'[12] has 5 numbers; this run reads 6 channel(s) per step"
        in card.find_element(By.CSS_SELECTOR, ".error").text
    )
    browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
    browser.save_screenshot(str(tmp_path / "classify-series.png"))

    # every run's report: metrics, the training curve, and the confusion matrix where the run has one
    for kind in KINDS:
        card = browser.find_element(By.ID, f"run-{kind}")
        card.find_element(By.CSS_SELECTOR, "details.report-toggle summary").click()
        curve = card.find_element(By.CSS_SELECTOR, "svg.curve")
        wait.until(lambda d, curve=curve: curve.is_displayed())
        assert curve.find_elements(By.CSS_SELECTOR, "path[data-series=train_loss]"), kind
        grads = card.find_element(By.CSS_SELECTOR, "svg.grad-curve")
        assert grads.find_elements(By.CSS_SELECTOR, "path[data-series=grad_norm]"), kind
        assert "test_" in card.find_element(By.CSS_SELECTOR, "table.metrics").text, kind
        confusion = card.find_elements(By.CSS_SELECTOR, "table.confusion")
        assert bool(confusion) == (kind in CONFUSION), kind
        assert all(t.is_displayed() for t in confusion)
        if kind == "classify":
            assert "test_accuracy" in card.find_element(By.CSS_SELECTOR, "table.metrics").text
            browser.execute_script("arguments[0].scrollIntoView()", card)  # the card in the screenshot
            browser.save_screenshot(str(tmp_path / "report.png"))
    browser.save_screenshot(str(tmp_path / "reports.png"))

    shots = ("page", "classify", "generate", "forecast", "seq2seq", "tag-lm", "classify-series", "report", "reports")
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in shots)
    # the one 400 asked for above (a step of 5 numbers) is logged by the browser as a failed request: expected
    refused = "/runs/classify-series/predict - Failed to load resource: the server responded with a status of 400"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if refused in e["message"]] == errors[:1], errors
    assert errors[1:] == [], errors


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
    # the one 400 asked for above (a step of 5 numbers) is logged by the browser as a failed request: expected
    refused = "/runs/classify-series/predict - Failed to load resource: the server responded with a status of 400"
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert [e for e in errors if refused in e["message"]] == errors[:1], errors
    assert errors[1:] == [], errors
