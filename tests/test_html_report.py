"""The HTML report renders in a real browser (headless Chromium): tables and images are present and drawn."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from reports.build import write_reports
from test_runner import run, write_suite

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (.ci/run installs Debian's chromium package)")
def test_html_report_renders_in_chromium(tmp_path, tiny_world):
    run(write_suite(tmp_path, tiny_world), tmp_path / "run")
    page = write_reports(tmp_path / "run")["html"]
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([CHROMIUM, *FLAGS, *profile, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert dom.count("<table>") >= 2 and "clip_score" in dom
    assert dom.count('src="data:image/png;base64,') >= 2  # plots and grids are embedded, nothing external
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                   capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert (pixels < 200).mean() > 0.02  # text, tables and images were drawn, not a blank page
