#!/usr/bin/env bash
# The GPU check: one call on a machine lent a GPU runs every check that needs CUDA (or TensorRT), each under
# its own timeout, and leaves everything under $OUT. Made for a session with 15 minutes of device time in
# all, no internet, and perhaps neither TensorRT nor a CUDA build of torch (docs/tensorrt.md, "The GPU check").
#
#   bash dev/gpu_check.sh              # report the machine; then, with CUDA, run the checks below
#   bash dev/gpu_check.sh --dry-run    # report the machine and the plan, run nothing (any machine)
#
# Steps: env (GPU, driver, torch/CUDA, which modules import) -> turbo (build the libjpeg-turbo reader when
# the headers are there) -> pytest_gpu (pytest -m gpu) -> cuda_profile (a small DCT and RGB model through
# profile_cuda, and `dctq profile --device cuda`) -> gpu_speed (bench/gpu_speed.py at 224 px: resnet50 vs
# the DCT variants, network and end to end) -> model_speed (bench/model_speed.py, CUDA fp16) -> pytest_trt
# (pytest -m trt, only where tensorrt imports). Without a CUDA device it stops after env, with the reason,
# and exits 0: that is its CPU dry run. A failing or timed-out step is recorded and the next one runs.
#
# Files in $OUT (default ./gpu-check-out; at most 8, as the device tool returns): summary.md (environment,
# each step's status and time), env.json, steps.log (every step's output), cuda_profile.json,
# gpu_speed.md, gpu_speed.json, model_speed.json.
# Environment: PYTHON (default: .venv/bin/python when it has torch, else python3), GPU_CHECK_BUDGET
# (seconds for all steps, default 540), GPU_CHECK_QUICK=1 (smaller benchmark runs). Wheels in ./.whl
# (e.g. jpeglib's, see docs/tensorrt.md) are installed into a temporary folder first.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument $arg (use --dry-run or --help)" >&2; exit 2 ;;
  esac
done
OUT=${OUT:-$REPO/gpu-check-out}
mkdir -p "$OUT" || exit 2
SUMMARY=$OUT/summary.md
LOG=$OUT/steps.log
BUDGET=${GPU_CHECK_BUDGET:-540}
QUICK=${GPU_CHECK_QUICK:-0}
START=$SECONDS
: >"$LOG"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
  PY=.venv/bin/python
else
  PY=python3
fi

# dctq importable without installing it: wheels from ./.whl into a temporary folder, and the repository
# root (the package `dctq`) through a link on PYTHONPATH.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$WORK/site" .whl/*.whl \
    >>"$LOG" 2>&1 && export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c "import dctq" 2>/dev/null; then
  mkdir -p "$WORK/path" && ln -s "$REPO" "$WORK/path/dctq"
  export PYTHONPATH="$WORK/path${PYTHONPATH:+:$PYTHONPATH}"
fi

"$PY" - "$OUT/env.json" <<'EOF' >"$WORK/env.md" 2>>"$LOG"
import importlib, json, platform, shutil, subprocess, sys
env = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform()}
if shutil.which("nvidia-smi"):
    q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                       capture_output=True, text=True, timeout=30)
    env["nvidia_smi"] = (q.stdout or q.stderr).strip()
else:
    env["nvidia_smi"] = "not found"
modules = {}
for name in ("torch", "numpy", "PIL", "onnx", "onnxruntime", "onnxscript", "jpeglib", "typer", "rich", "pytest",
             "skimage", "tensorrt", "dctq"):
    try:
        mod = importlib.import_module(name)
        modules[name] = str(getattr(mod, "__version__", "ok"))
    except Exception as exc:  # report whatever stops the import
        modules[name] = f"missing: {type(exc).__name__}: {str(exc)[:120]}"
env["modules"] = modules
try:
    import torch
    env["torch_cuda"] = torch.version.cuda
    env["cuda_available"] = torch.cuda.is_available()
    if env["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{props.name}, compute capability {props.major}.{props.minor}, {props.total_memory >> 20} MiB"
        env["devices"] = torch.cuda.device_count()
    else:
        env["why_no_cuda"] = ("torch is a CPU build" if torch.version.cuda is None
                              else "torch has CUDA but sees no device (no GPU, or the driver does not load)")
except Exception as exc:
    env["cuda_available"] = False
    env["why_no_cuda"] = f"torch does not import: {exc}"
try:
    from dctq.deploy.backends.tensorrt.env import driver_cuda_version
    from dctq.jpeg.decoders import available_backends
    env["driver_cuda"] = driver_cuda_version()
    env["jpeg_backends"] = available_backends()
except Exception as exc:
    env["dctq_error"] = str(exc)[:300]
json.dump(env, open(sys.argv[1], "w"), indent=2)
print("| | |\n|---|---|")
for key, value in env.items():
    if key != "modules":
        print(f"| {key} | {value} |")
print("\n| module | version |\n|---|---|")
for key, value in modules.items():
    print(f"| {key} | {value} |")
EOF
CUDA=$("$PY" -c "import json,sys; print(int(json.load(open(sys.argv[1])).get('cuda_available', False)))" "$OUT/env.json" 2>/dev/null || echo 0)
TRT=$("$PY" -c "from dctq.deploy.backends.tensorrt.env import import_tensorrt; import_tensorrt()" >/dev/null 2>&1 && echo 1 || echo 0)

STEPS=(turbo pytest_gpu cuda_profile gpu_speed model_speed pytest_trt)
declare -A LIMIT=([turbo]=60 [pytest_gpu]=120 [cuda_profile]=60 [gpu_speed]=200 [model_speed]=60 [pytest_trt]=120)
declare -A STATUS SPENT

turbo() {
  if [ ! -f /usr/include/jpeglib.h ] || ! command -v cc >/dev/null; then
    echo "no libjpeg headers or no C compiler: the jpeglib reader is used"; return 0
  fi
  local suffix
  suffix=$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
  cc -O2 -shared -fPIC "-I$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['include'])")" \
    jpeg/_turbo.c -ljpeg -o "jpeg/_turbo$suffix" && "$PY" -c "from dctq.jpeg.decoders import available_backends as a; print(a())"
}
pytest_gpu() { "$PY" -m pytest -q -p no:cacheprovider -m gpu tests; }
pytest_trt() { "$PY" -m pytest -q -p no:cacheprovider -m trt tests/deploy/backends/tensorrt; }
cuda_profile() {
  "$PY" - "$OUT/cuda_profile.json" "$WORK" cuda <<'EOF' || return 1
import json, subprocess, sys
from dctq.deploy.profiling.cuda import ProfileConfig, profile_cuda
from dctq.models import create_model
from dctq.models.checkpoint import save_checkpoint
out, work, device = sys.argv[1:4]
small = device == "cpu"  # tests/dev/test_gpu_check.py runs this on the CPU, briefly
batches = (1, 2) if small else (1, 32, 256)
config = ProfileConfig(batch_sizes=batches, warmup=1 if small else 10, iters=2 if small else 30,
                       precision="fp32" if small else "fp16", device=device)
report = {}
for name in ("dct_cifar_upsampling", "resnet20"):
    rows = profile_cuda(create_model(name), config)
    report[name] = [r.to_dict() for r in rows]
    for r in rows:
        print(f"{name} batch {r.batch}: p50 {r.total.p50:.3f} ms (H2D {r.h2d.p50:.3f}, compute {r.compute.p50:.3f}), "
              f"{r.images_per_second:.0f} images/s")
ckpt = f"{work}/small.pt"
save_checkpoint(ckpt, create_model("dct_cifar_upsampling"), arch="dct_cifar_upsampling", arch_kwargs={},
                class_names=[str(i) for i in range(10)])
cli = [sys.executable, "-c", "import sys; from dctq.cli.main import app; sys.argv[0] = 'dctq'; app()"]
args = ["profile", ckpt, "--device", device, "--batch", ",".join(map(str, batches)), "--iters", str(config.iters), "--json"]
done = subprocess.run([*cli, *args], capture_output=True, text=True, timeout=120)
print(done.stderr[-2000:], file=sys.stderr)
report["dctq_profile"] = json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr[-2000:]}
json.dump(report, open(out, "w"), indent=2)
sys.exit(done.returncode)
EOF
}
gpu_speed() {
  local quick=()
  [ "$QUICK" = 1 ] && quick=(--batches 1,32 --iters 10 --warmup 3 --e2e-images 256)
  "$PY" bench/gpu_speed.py --size 224 --iters 30 --warmup 10 --e2e-images 1024 "${quick[@]}" --out "$WORK/gpu_speed" \
    && cp "$WORK/gpu_speed/gpu_speed.md" "$WORK/gpu_speed/gpu_speed.json" "$OUT/"
}
model_speed() {
  "$PY" bench/model_speed.py --device cuda --dtype fp16 --channels-last --batch 64 --rounds 20 --warmup 3 \
    --json "$OUT/model_speed.json"
}

export PY OUT WORK QUICK
export -f turbo pytest_gpu pytest_trt cuda_profile gpu_speed model_speed

skip_reason=""
if [ "$DRY" = 1 ]; then
  skip_reason="dry run: --dry-run asks for the report and the plan only"
elif [ "$CUDA" != 1 ]; then
  skip_reason="no CUDA device: $("$PY" -c "import json,sys; print(json.load(open(sys.argv[1])).get('why_no_cuda', 'see env.json'))" "$OUT/env.json" 2>/dev/null || echo "the environment report failed (see steps.log)")"
fi

for step in "${STEPS[@]}"; do
  if [ -n "$skip_reason" ]; then
    STATUS[$step]="not run (${skip_reason%%:*})"; SPENT[$step]=0; continue
  fi
  if [ "$step" = pytest_trt ] && [ "$TRT" != 1 ]; then
    STATUS[$step]="skipped: tensorrt does not import here (see env.json)"; SPENT[$step]=0; continue
  fi
  left=$((BUDGET - (SECONDS - START)))
  limit=${LIMIT[$step]}
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 15 ]; then
    STATUS[$step]="skipped: the ${BUDGET} s budget is spent"; SPENT[$step]=0; continue
  fi
  echo "== $step (limit ${limit} s) ==" | tee -a "$LOG"
  begin=$SECONDS
  # timeout signals the step's whole process group (pytest's and python's children too)
  timeout --kill-after=10 "$limit" bash -c "$step" >>"$LOG" 2>&1
  rc=$?
  SPENT[$step]=$((SECONDS - begin))
  if [ "$rc" = 0 ]; then STATUS[$step]="ok"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then STATUS[$step]="timed out after ${limit} s"
  else STATUS[$step]="failed (exit $rc)"; fi
  echo "== $step: ${STATUS[$step]} in ${SPENT[$step]} s ==" | tee -a "$LOG"
done

{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo
  [ -n "$skip_reason" ] && echo "**Stopped: ${skip_reason}.**" && echo
  cat "$WORK/env.md" 2>/dev/null || echo "(no environment report: see steps.log)"
  echo
  echo "| step | status | seconds |"
  echo "|---|---|---:|"
  for step in "${STEPS[@]}"; do echo "| $step | ${STATUS[$step]} | ${SPENT[$step]} |"; done
  echo
  echo "Total $((SECONDS - START)) s; logs in steps.log."
} >"$SUMMARY"
cat "$SUMMARY"
[ -n "$skip_reason" ] && echo "gpu_check: stopped cleanly: $skip_reason"
exit 0
