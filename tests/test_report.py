"""`llmspec report`: one self-contained page per spec, loaded in a real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llmspec.cli.main import main
from llmspec.cli.report import one_f_one_b

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (scripts/setup.sh installs Debian's)"
)


def chromium(*args: str) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("reports")
    out = {}
    for spec in SPECS:
        out[spec.stem] = folder / f"{spec.stem}.html"
        assert main(["report", str(spec), "-o", str(out[spec.stem])]) == 0
    return out


def test_the_page_is_self_contained_and_deterministic(pages, tmp_path):
    for name, page in pages.items():
        text = page.read_text()
        assert "<script" not in text and not re.search(r"(src|href)=['\"]https?:", text), name
        assert text.count("<svg") == 3, name
        again = tmp_path / f"{name}.html"
        assert main(["report", str(ROOT / "specs" / f"{name}.yaml"), "-o", str(again)]) == 0
        assert again.read_bytes() == page.read_bytes(), name


def test_the_page_shows_the_plans_figures(pages, capsys):
    import json

    assert main(["plan", str(ROOT / "specs" / "gpt3-175b.yaml"), "--json"]) in (0, 2)
    plan = json.loads(capsys.readouterr().out)
    text = pages["gpt3-175b"].read_text()
    assert f"{plan['performance']['tokens_per_s']:,.0f} tokens/s" in text
    assert f"{plan['performance']['mfu']:.1%}" in text
    for alternative in plan["alternatives"]:
        assert alternative["rejected_because"].replace("&", "&amp;")[:40] in text
    assert "MFU" not in pages["tiny-cpu"].read_text()  # the cpu entry's peak is no datasheet's


@needs_chromium
@pytest.mark.parametrize("name", [p.stem for p in SPECS])
def test_chromium_loads_the_page_without_console_errors_and_draws_its_figures(
    pages, name, tmp_path
):
    dom = chromium("--dump-dom", pages[name].as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "CONSOLE" not in dom.stderr and "Uncaught" not in dom.stderr
    assert dom.stdout.count("<svg") == 3
    assert len(re.findall(r"<path", dom.stdout)) > 20  # bars, schedule, markers drawn
    shot = tmp_path / "page.png"
    result = chromium(
        "--hide-scrollbars", "--window-size=1100,2400", f"--screenshot={shot}", pages[name].as_uri()
    )
    assert result.returncode == 0 and shot.stat().st_size > 20_000


def test_one_f_one_b_bubble_is_p_minus_1_over_m():
    """The schedule drawn is 1F1B: with uniform stages the step lasts (m + p − 1)·(f + b)."""
    for stages, micro in ((1, 4), (4, 8), (8, 8), (4, 1)):
        events = one_f_one_b(stages, micro, 1.0, 2.0)
        assert len(events) == 2 * stages * micro
        assert max(e[4] for e in events) == pytest.approx((micro + stages - 1) * 3.0)
