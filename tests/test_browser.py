"""The team dashboard as a person sees it: a real ``dllm-server`` (basic auth, proxied artifacts), a small decoder
study logged to it, and the MLflow UI opened in headless Chromium. Everything is asserted from the rendered DOM.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them when missing; skipped otherwise).
``DLLM_LAB_SCREENSHOTS=docs/img python -m pytest -m browser -n 0`` also writes the README's screenshots there.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.parse
from pathlib import Path

import mlflow
import pytest

from conftest import compose_config
from servers import start_team_server, stop_server

pytestmark = [pytest.mark.browser, pytest.mark.server, pytest.mark.slow]
webdriver = pytest.importorskip("selenium.webdriver", reason="pip install -e '.[dev]' (selenium)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
if not (CHROMIUM and DRIVER):
    pytest.skip("no chromium / chromedriver: apt-get install chromium chromium-driver", allow_module_level=True)

ADMIN_PASSWORD = "admin-pass-for-browser-0123"
WAIT_S = 90  # the UI is a large single-page app; a loaded 2-core machine takes a while to render it
DECODERS = ["semi_ar", "med", "eoser"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The server, and a 3-decoder sweep of 6 problems per task logged to it as the admin: the parent run with its
    dashboard, and a child per decoder."""
    base = tmp_path_factory.mktemp("browser")
    proc, url = start_team_server(base, ADMIN_PASSWORD)
    env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        from dllm_lab.runs import run_eval

        cfg = compose_config("eval", [
            "experiment=decoding_ablation", f"logger.tracking_uri={url}", f"sweep.output_dir={base / 'sweep'}",
            "data.num_eval=6", "data.eval_batch_size=6", "temporal.enabled=false",
            f"sweep.decoders=[{','.join(DECODERS)}]",
            "~sweep.decoders_at", "data.eval_tasks={arith: synthetic, sudoku4: synthetic}"], base / "run")
        run_eval(cfg)
        client = mlflow.MlflowClient(url)
        experiment = client.get_experiment_by_name("dllm-lab/decoding_ablation")
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
        yield {"url": url, "experiment_id": experiment.experiment_id, "parent": parent, "runs": runs}
    finally:
        for key, value in old.items():
            os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        stop_server(proc)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1500,950"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})  # every request the page makes carries the admin's credentials
    token = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    yield driver
    driver.quit()


def _text_appears(driver, *texts: str) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def seen(d):
        body = d.find_element("tag name", "body").text
        return body if all(t in body for t in texts) else False

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.5).until(seen, f"never rendered: {texts}")


def _close_assistant(driver) -> None:
    """MLflow 3's assistant panel takes a third of the page; close it when it is open."""
    for button in driver.find_elements("css selector", "button[aria-label=Close]"):
        if button.is_displayed():
            button.click()


def _screenshot(driver, name: str) -> None:
    folder = os.environ.get("DLLM_LAB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def test_the_runs_table_shows_every_run_under_its_name(study, browser):
    url, eid, parent = study["url"], study["experiment_id"], study["parent"]
    browser.get(f"{url}/#/experiments/{eid}/runs?workflowType=machine_learning")
    _text_appears(browser, parent.info.run_name, f"{len(study['runs'])} matching runs")
    _close_assistant(browser)
    # the sweep's children sit under the parent: expand it
    browser.find_element("css selector", 'button[data-component-id$="runnamecellrenderer.tsx_46"]').click()
    body = _text_appears(browser, *(r.info.run_name for r in study["runs"]))
    assert parent.info.run_name.startswith("decoding_ablation data.num_eval=6"), "named by what changed"
    assert all(f"{d}-L64" in body for d in DECODERS)
    _screenshot(browser, "mlflow_experiment.png")


def test_the_compare_page_tells_the_settings_apart(study, browser):
    url, eid = study["url"], study["experiment_id"]
    children = [r for r in study["runs"] if "mlflow.parentRunId" in r.data.tags]
    ids = json.dumps([r.info.run_id for r in children])
    browser.get(f"{url}/#/compare-runs?runs={urllib.parse.quote(ids)}&experiments={urllib.parse.quote(json.dumps([eid]))}"
                "&workflowType=machine_learning")
    body = _text_appears(browser, *(r.info.run_name for r in children), "eval/arith/accuracy")
    assert "preset.decoder" in body or "decoder.scorer" in body, "the settings that differ are on the page"
    _close_assistant(browser)
    _screenshot(browser, "mlflow_compare.png")


def test_the_parent_run_shows_its_dashboard_with_the_figures(study, browser):
    from selenium.webdriver.support.ui import WebDriverWait

    url, eid, parent = study["url"], study["experiment_id"], study["parent"].info.run_id
    browser.get(f"{url}/#/experiments/{eid}/runs/{parent}/artifacts/dashboard.html?workflowType=machine_learning")
    _text_appears(browser, "dashboard.html")
    _close_assistant(browser)
    frame = WebDriverWait(browser, WAIT_S).until(lambda d: d.find_elements("tag name", "iframe"), "no artifact frame")
    browser.switch_to.frame(frame[0])
    try:
        graphs = WebDriverWait(browser, WAIT_S).until(
            lambda d: d.find_elements("css selector", "div.plotly-graph-div svg.main-svg"), "no plotly figure drawn")
        text = browser.find_element("tag name", "body").text
        assert graphs and "Accuracy against NFE, coloured by decoder preset" in text
        assert all(f"{d} L64" in text for d in DECODERS), "the results table names every setting"
        assert "95% interval" in text
    finally:
        browser.switch_to.default_content()
    _screenshot(browser, "mlflow_dashboard.png")
