"""dev/gpu_check.sh on a machine without a CUDA device (its dry run): it reports the machine, stops cleanly
with the reason and exit 0, and what it would run on a GPU is checked here as far as a CPU can: the
benchmark flags it passes are ones the scripts accept, and its Python snippets compile."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import load_bench

SCRIPT = Path(__file__).resolve().parents[2] / "dev" / "gpu_check.sh"

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout"
)


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.mark.parametrize("args", [(), ("--dry-run",)])
def test_stops_cleanly_without_a_gpu(tmp_path, args) -> None:
    done = _run(tmp_path, *args)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["env.json", "steps.log", "summary.md"]
    env = json.loads((out / "env.json").read_text())
    assert env["cuda_available"] is False and env["modules"]["torch"] == torch.__version__
    assert env["modules"]["dctq"] == "0.1.0" and env["modules"]["tensorrt"].startswith("missing")
    reason = "dry run" if args else "no CUDA device"
    assert f"gpu_check: stopped cleanly: {reason}" in done.stdout
    summary = (out / "summary.md").read_text()
    for step in ("pytest_gpu", "cuda_profile", "gpu_speed", "model_speed", "pytest_trt"):
        assert re.search(rf"\| {step} \| not run \({reason}\) \| 0 \|", summary), summary


def test_unknown_arguments_are_refused(tmp_path) -> None:
    done = _run(tmp_path, "--fast")
    assert done.returncode == 2 and "unknown argument --fast" in done.stderr


def test_what_it_would_run_is_accepted_here(tmp_path) -> None:
    text = SCRIPT.read_text().replace("\\\n", " ")
    quick = re.search(r"quick=\((.*)\)", text).group(1)
    calls = re.findall(r'"\$PY" bench/(\w+)\.py (.*)', text)
    assert sorted(name for name, _ in calls) == ["gpu_speed", "model_speed"]
    for name, args in calls:
        args = args.split("&&")[0].replace('"${quick[@]}"', quick)
        args = re.sub(r'"\$(OUT|WORK)/([^"]*)"', lambda m: str(tmp_path / m.group(2)), args)
        parsed = load_bench(name).parse_args(shlex.split(args))
        assert vars(parsed)["device" if name == "model_speed" else "size"] in ("cuda", 224)
    snippets = re.findall(r"<<'EOF'[^\n]*\n(.*?)\nEOF\n", SCRIPT.read_text(), flags=re.S)
    assert len(snippets) == 2
    for code in snippets:
        compile(code, "gpu_check snippet", "exec")


def test_the_cuda_profile_step_runs_on_the_cpu(tmp_path) -> None:
    """The cuda_profile step's Python, with "cpu" for its device argument (small batches, FP32)."""
    snippets = re.findall(r"<<'EOF'[^\n]*\n(.*?)\nEOF\n", SCRIPT.read_text(), flags=re.S)
    (code,) = [c for c in snippets if "profile_cuda" in c]
    out = tmp_path / "cuda_profile.json"
    done = subprocess.run(
        [sys.executable, "-", str(out), str(tmp_path), "cpu"],
        input=code,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert [r["batch"] for r in report["resnet20"]] == [1, 2]
    assert [r["batch"] for r in report["dctq_profile"]["rows"]] == [1, 2]
