"""Headless Chromium driven by Selenium, for the end-to-end tests that use the real UIs.

The browser and its driver come from the system (Debian's ``chromium`` and ``chromium-driver``,
installed by ``scripts/install.sh``); nothing is downloaded at run time: the driver's path is
given, so Selenium Manager never runs. ``RECSYS_CHROMIUM`` / ``RECSYS_CHROMEDRIVER`` point
elsewhere. :class:`Browser` saves a screenshot and the page source of every step it is told to
record, and of the page it was on when something failed, under one folder.

Selectors are what a person reads or what the applications name themselves: labels, visible
text, ``data-testid`` and the form's ``name="element_<param>"`` (Airflow's trigger form), never
generated CSS class names.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

CHROMIUM = os.environ.get("RECSYS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("RECSYS_CHROMEDRIVER", "/usr/bin/chromedriver")
WAIT_S = float(os.environ.get("RECSYS_BROWSER_WAIT_S", 120))  # a loaded 2-core machine is slow
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--window-size=1400,1000")


class BrowserStepFailed(AssertionError):
    """A browser step failed; the message names the folder with screenshots and page sources."""


def missing() -> str | None:
    """Why no browser can start here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return (f"{path} is missing: install {package} (scripts/install.sh does, "
                    "`apt-get install -y chromium chromium-driver`)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (requirements-dev.txt)"
    return None


class Browser:
    """One headless Chromium session; ``shot(name)`` records a step under ``evidence``."""

    def __init__(self, evidence: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.evidence = Path(evidence)
        self.evidence.mkdir(parents=True, exist_ok=True)
        self._profile = tempfile.TemporaryDirectory(prefix="chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (*FLAGS, f"--user-data-dir={self._profile.name}"):
            options.add_argument(flag)
        service = Service(executable_path=CHROMEDRIVER,
                          log_output=str(self.evidence / "chromedriver.log"))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(WAIT_S)
        # A later session on the same folder numbers its steps after the earlier ones.
        self._shots = max((int(p.name[:2]) for p in self.evidence.glob("[0-9][0-9]-*")), default=0)

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- recording ---------------------------------------------------------------------------
    def shot(self, name: str) -> Path:
        """Save ``NN-name.png`` and ``NN-name.html`` (the page as rendered now)."""
        self._shots += 1
        stem = self.evidence / f"{self._shots:02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        with contextlib.suppress(Exception):
            self.driver.save_screenshot(str(stem.with_suffix(".png")))
        with contextlib.suppress(Exception):
            stem.with_suffix(".html").write_text(self.driver.page_source)
        return stem

    @contextlib.contextmanager
    def step(self, what: str):
        """Run a step; on any failure record the page and fail naming the evidence folder."""
        try:
            yield
        except BrowserStepFailed:
            raise
        except Exception as exc:
            self.shot(f"FAILED-{what}")
            url = ""
            with contextlib.suppress(Exception):
                url = self.driver.current_url
            detail = getattr(exc, "msg", None) or str(exc)  # Selenium's, without its stack
            raise BrowserStepFailed(
                f"browser step {what!r} failed at {url}: {type(exc).__name__}: {detail}\n"
                f"screenshots and page sources: {self.evidence}") from exc

    # -- waiting and finding -----------------------------------------------------------------
    def wait(self, condition, timeout: float = WAIT_S, what: str = ""):
        """Poll ``condition(driver)``; React re-renders, so a stale or missing element retries."""
        from selenium.common.exceptions import NoSuchElementException
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.5,
                             ignored_exceptions=(NoSuchElementException, _stale()),
                             ).until(condition, what)

    def again_if_stale(self, action, tries: int = 5):
        """``action()``, again when React replaced an element it used (a re-render)."""
        for attempt in range(tries):
            try:
                return action()
            except _stale():
                if attempt == tries - 1:
                    raise
                time.sleep(0.5)

    def find(self, by: str, value: str, *, clickable: bool = False, timeout: float = WAIT_S):
        from selenium.webdriver.support import expected_conditions as ec

        cond = ec.element_to_be_clickable if clickable else ec.visibility_of_element_located
        return self.wait(cond((by, value)), timeout, f"{by}={value}")

    def by_testid(self, testid: str, **kw):
        from selenium.webdriver.common.by import By

        return self.find(By.CSS_SELECTOR, f"[data-testid='{testid}']", **kw)

    def text_appears(self, text: str, timeout: float = WAIT_S) -> None:
        """Wait until ``text`` is part of the page's visible text."""
        from selenium.webdriver.common.by import By

        self.wait(lambda d: text in d.find_element(By.TAG_NAME, "body").text, timeout,
                  f"the text {text!r} on the page")

    def scroll_to(self, element) -> None:
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)

    def type_into(self, by: str, value: str, text: str) -> None:
        """Replace a field's content the way a person does: click, select all, type."""
        from selenium.webdriver.common.keys import Keys

        def typing():
            element = self.find(by, value, clickable=True)
            self.scroll_to(element)
            element.click()
            element.send_keys(Keys.CONTROL, "a")
            element.send_keys(Keys.DELETE)
            element.send_keys(text)

        self.again_if_stale(typing)


def _stale():
    from selenium.common.exceptions import StaleElementReferenceException

    return StaleElementReferenceException


# -- Airflow ---------------------------------------------------------------------------------
def airflow_login(b: Browser, base: str, username: str, password: str) -> None:
    """SimpleAuthManager's login page: username, password, Sign in."""
    from selenium.webdriver.common.by import By

    with b.step("airflow login"):
        b.driver.get(base + "/")
        b.type_into(By.NAME, "username", username)
        b.type_into(By.NAME, "password", password)
        b.shot("airflow-login")
        b.again_if_stale(
            lambda: b.find(By.CSS_SELECTOR, "form button[type=submit]", clickable=True).click())
        b.wait(lambda d: "/auth/login" not in d.current_url, what="leaving the login page")
        b.by_testid("nav-dags-link")  # the app's side bar: logged in


def _param_field(b: Browser, param: str):
    """The form row (``role=group``) that holds parameter ``param``'s input."""
    from selenium.webdriver.common.by import By

    return b.find(By.XPATH, f"//*[@role='dialog']//*[@name='element_{param}']"
                            "/ancestor::*[@role='group'][1]")


def _pick_options(b: Browser, param: str, values: list[str]) -> None:
    """A multi-select (react-select): clear it, then type and click each value."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def chosen(d) -> list[str]:  # react-select keeps one hidden input per chosen value
        return [v for e in d.find_elements(By.NAME, f"element_{param}")
                for v in (e.get_attribute("value") or "").split(",") if v]

    def box():
        return _param_field(b, param).find_element(By.CSS_SELECTOR, "[role=combobox]")

    b.again_if_stale(lambda: (b.scroll_to(box()), box().click()))
    for _ in range(len(chosen(b.driver)) + 1):  # remove the current choices, last first
        if not chosen(b.driver):
            break
        b.again_if_stale(lambda: box().send_keys(Keys.BACKSPACE))
        time.sleep(0.3)
    for value in values:
        b.again_if_stale(lambda: box().send_keys(value))
        b.again_if_stale(lambda: b.wait(
            lambda d: next((o for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
                            if o.is_displayed() and o.text.strip() == value), None),
            what=f"the option {value!r} of {param}").click())
    b.wait(lambda d: sorted(chosen(d)) == sorted(values), what=f"{param} to be {values}")


def trigger_dag_with_form(b: Browser, base: str, dag_id: str, params: dict) -> str:
    """Open the DAG, click Trigger, fill the Run Parameters, submit; the new run's id.

    ``params``: text and number fields are typed, lists are picked in the multi-select. The
    logical date and "Unpause on trigger" keep the form's defaults, as a person would.
    """
    from selenium.webdriver.common.by import By

    with b.step(f"open {dag_id}"):
        b.driver.get(f"{base}/dags/{dag_id}")
        b.by_testid("trigger-dag-button", clickable=True).click()
        b.find(By.XPATH, "//*[@role='dialog']//h2[contains(., 'Trigger Dag')]")
        b.shot("airflow-trigger-form")
    with b.step("fill the trigger form"):
        for name, value in params.items():
            if isinstance(value, list):
                _pick_options(b, name, [str(v) for v in value])
            else:
                b.type_into(By.XPATH, f"//*[@role='dialog']//input[@name='element_{name}']",
                            str(value))
        typed = {n: str(v) for n, v in params.items() if not isinstance(v, list)}
        b.wait(lambda d: all(d.find_element(By.NAME, f"element_{n}").get_attribute("value") == v
                             for n, v in typed.items()), what=f"the typed values {typed}")
        b.again_if_stale(lambda: b.scroll_to(b.by_testid("trigger-dag-submit")))
        b.by_testid("trigger-dag-submit", clickable=True)  # disabled while a field is invalid
        b.shot("airflow-trigger-form-filled")
    with b.step("submit the trigger form"):
        b.again_if_stale(lambda: b.by_testid("trigger-dag-submit", clickable=True).click())
        # The UI opens the new run: /dags/<dag_id>/runs/<run_id>
        b.wait(lambda d: f"/dags/{dag_id}/runs/" in d.current_url, what="the new run's page")
        run_id = urllib.parse.unquote(b.driver.current_url.split("/runs/", 1)[1].split("/")[0]
                                      .split("?")[0])
        _run_page_shown(b, run_id)
        b.shot("airflow-run-triggered")
    return run_id


def _run_page_shown(b: Browser, run_id: str) -> None:
    """The run's page has rendered: its breadcrumb names the run (the URL changes first)."""
    from selenium.webdriver.common.by import By

    b.wait(lambda d: any(run_id in e.text for e in
                         d.find_elements(By.CSS_SELECTOR, "[data-testid='breadcrumb-stats']")),
           what=f"the page of run {run_id}")


def airflow_run_grid(b: Browser, base: str, dag_id: str, run_id: str) -> None:
    """Open a finished run's page (grid and task instances) and record it."""
    from selenium.webdriver.common.by import By

    with b.step("the finished run's grid"):
        b.driver.get(f"{base}/dags/{dag_id}/runs/{urllib.parse.quote(run_id)}")
        _run_page_shown(b, run_id)
        b.find(By.CSS_SELECTOR, "[data-testid='task-publish']")
        # The run's state badge next to its id, and every task's square in the grid column.
        b.text_appears("Success")
        b.shot("airflow-run-finished")


# -- MLflow ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on a free local port over the given stores, started on ``__enter__``.

    Its start (about 20 s idle, minutes on a loaded 2-core machine) overlaps whatever the
    caller does next; :meth:`wait_ready` waits for ``/health``. Stopped by process group.
    """

    def __init__(self, tracking_uri: str, artifact_root: str, log: Path):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(log)
        self.cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
                    tracking_uri, "--default-artifact-root", artifact_root,
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> MlflowServer:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}; "
                                   f"log: {self.log}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=5) as resp:
                    if resp.status == 200:
                        return self.base
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"mlflow server not healthy after {timeout:.0f} s; "
                                   f"log: {self.log}")
            time.sleep(1)

    def __exit__(self, *exc) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _mlflow_get(base: str, path: str, **query) -> dict:
    url = f"{base}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def check_champion_in_mlflow_ui(b: Browser, base: str, model_name: str,
                                artifact: str = "learning_curve.png",
                                metric: str = "holdout/ndcg_at_10") -> dict:
    """The champion version of ``model_name`` as a person finds it in the MLflow UI.

    * the experiment's runs list, opened on the saved view the pipeline writes
      (``recsys.tracking.runs_view_url``), has a ``metric`` column and the champion's run shows
      its value there;
    * the run's "Model metrics" tab opens on the learning curve: its first section is ``fit``
      and its first charts are the training loss and the validation NDCG;
    * the run's overview lists the training set (``training_set@<ds>``) under "Datasets";
    * the run lists ``artifact`` and shows it (the image loads);
    * the model version page shows the gate's decision (verdict, metric, data day, tolerance)
      and the ``champion`` alias, and the registered model's page the alias on that version.

    Returns the model version (REST).
    """
    from selenium.webdriver.common.by import By

    from recsys import tracking

    with b.step(f"the champion of {model_name} over MLflow's REST API"):
        version = _mlflow_get(base, "registered-models/alias", name=model_name,
                              alias="champion")["model_version"]
        run = _mlflow_get(base, "runs/get", run_id=version["run_id"])["run"]
    run_id, experiment_id = version["run_id"], run["info"]["experiment_id"]
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    ds = tags["ds"]
    run_page = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"

    with b.step(f"the runs list shows {metric} of run {run_id}"):
        b.driver.get(tracking.runs_view_url(base, experiment_id))
        column = f"[col-id='metrics.`{metric}`']"
        b.wait(lambda d: any(metric in h.text for h in
                             d.find_elements(By.CSS_SELECTOR, f".ag-header-cell{column}")),
               what=f"the column {metric}")

        def value_shown(d) -> str | None:
            # ag-grid draws the pinned run name and the scrolled cells as two rows, one index.
            link = d.find_element(By.CSS_SELECTOR, f"[role=row] a[href$='/runs/{run_id}']")
            index = link.find_element(By.XPATH, "./ancestor::*[@role='row'][1]") \
                .get_attribute("row-index")
            cell = d.find_element(By.CSS_SELECTOR, f"[role=row][row-index='{index}'] "
                                                   f"[role=gridcell]{column}")
            return cell.text.strip() or None

        shown = b.wait(value_shown, what=f"the {metric} of run {run_id}")
        assert abs(float(shown) - metrics[metric]) < 1e-9, (shown, metrics[metric])
        b.shot("mlflow-runs-ranking-metrics")

    with b.step(f"the run of {model_name} v{version['version']} opens on its learning curve"):
        b.driver.get(f"{run_page}/model-metrics")
        sections = "[data-testid='experiment-view-compare-runs-section-header']"
        b.wait(lambda d: d.find_elements(By.CSS_SELECTOR, sections), what="the chart sections")
        first = b.driver.find_elements(By.CSS_SELECTOR, sections)[0].text.splitlines()[0].strip()
        assert first == tracking.FIT, f"the first chart section is {first!r}, not the learning curve"

        def charts(d) -> list[str]:  # chart titles, in page order: <h4 title="fit/loss">loss</h4>
            titles = [h.get_attribute("title") for h in d.find_elements(By.CSS_SELECTOR, "h4[title]")]
            return [t for t in titles if t in metrics] or None

        learning_curve = ["fit/loss", "fit/val_ndcg_at_10"]
        b.wait(lambda d: (charts(d) or [])[:2] == learning_curve,
               what=f"the first charts to be {learning_curve}")
        b.shot("mlflow-run-learning-curve-charts")

    with b.step(f"the run of {model_name} v{version['version']} lists its training set"):
        b.driver.get(run_page)
        b.text_appears("Datasets")
        b.text_appears(f"training_set@{ds} (")  # name (digest)
        (source,) = [json.loads(i["dataset"]["source"])["uri"]
                     for i in run["inputs"]["dataset_inputs"]]
        assert source.endswith(f"/training_set/ds={ds}"), source
        b.shot("mlflow-run-dataset")

    with b.step(f"the run of {model_name} v{version['version']} lists {artifact}"):
        b.driver.get(f"{run_page}/artifacts")
        node = f"[data-testid='artifact-tree-node'][artifact-name='{artifact}']"

        def click_entry():
            entry = b.find(By.CSS_SELECTOR, node, clickable=True)
            b.scroll_to(entry)
            entry.click()  # the preview pane shows the image (a blob: URL, alt = its name)

        b.again_if_stale(click_entry)
        image = b.wait(lambda d: next(
            (i for i in d.find_elements(By.CSS_SELECTOR, f"img[alt='{artifact}']")
             if i.is_displayed()
             and d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)),
            None), what=f"the {artifact} image to load")
        with contextlib.suppress(_stale()):
            b.scroll_to(image)
        b.shot("mlflow-run-learning-curve")

    with b.step(f"{model_name} v{version['version']} shows the gate's decision"):
        b.driver.get(f"{base}/#/models/{model_name}/versions/{version['version']}")
        b.text_appears("Gate: promoted to champion.")
        gate = version["tags"] if isinstance(version.get("tags"), dict) else \
            {t["key"]: t["value"] for t in version.get("tags", [])}
        # The description's table reads "challenger v3 ds=... 0.1234" row by row.
        for text in (f"{gate['gate.metric']} on the held-out slice of ds={ds}",
                     f"tolerance {gate['gate.tolerance']}",
                     f"challenger v{version['version']} ds={ds} {gate['gate.challenger_value']}",
                     "@ champion"):
            b.text_appears(text)
        b.shot("mlflow-model-version-gate")

    with b.step(f"{model_name} shows the champion alias on v{version['version']}"):
        b.driver.get(f"{base}/#/models/{model_name}")
        b.text_appears(model_name)
        # The versions table: the row whose link opens this version shows "@ champion".
        link = f"a[href$='/models/{model_name}/versions/{version['version']}']"
        b.wait(lambda d: any(row.find_elements(By.CSS_SELECTOR, link)
                             and "@ champion" in row.text.splitlines()
                             for row in d.find_elements(By.CSS_SELECTOR, "[role=row]")),
               what=f"the row of version {version['version']} with the alias '@ champion'")
        b.shot("mlflow-registered-model")
    return version
