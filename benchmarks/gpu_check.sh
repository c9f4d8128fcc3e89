#!/usr/bin/env bash
# The GPU check of Unity in one run, inside a fixed time budget (default 8 minutes):
#
#   bash benchmarks/gpu_check.sh [--wheels DIR] [--out DIR] [--budget SECONDS] [--only STEPS] [--dry-run]
#
#  1. install the carried wheels of DIR (benchmarks/gpu_wheels.py: what a bare PyTorch machine lacks)
#     into a temporary folder put first on PYTHONPATH (default DIR: .wheels when it exists; none: skip);
#  2. record the machine: torch, CUDA, cuDNN, the GPU, the attention kernels, the packages;
#  3. the GPU tests: python -m pytest -m gpu tests/gpu;
#  4. the H200 throughput plan of benchmarks/RESULTS.md on `base` (2 x 14,040 tokens, bf16):
#     A5 (cuDNN attention, 10 checkpointed blocks, compiled blocks: the goal configuration),
#     A4 (the same, eager), A0 (base.yaml as it is), and A4's settings on the
#     wan2.1-t2v-1.3b config when configs/model/wan2.1-t2v-1.3b.yaml exists.
#
# Most valuable first. Every step runs under a hard time limit (`timeout`), its cap or what is left
# of the budget, whichever is smaller; a step that would get under 20 s is skipped. Everything goes
# to --out DIR (default gpu_check_out): gpu_check.log (all output), summary.json (the machine, each
# step's status, time and limit, the figures of each benchmark), pytest.xml, rows.md (the benchmarks'
# RESULTS.md rows with their commands) and one JSON per benchmark (a5, a4, a0, wan). The exit status
# is 1 when a step failed or ran out of time, or the machine could not run the checks. --only
# pytest,a5 (a comma-separated list of pytest, a5, a4, a0, wan) runs those checks alone, after the
# install and the record of the machine: a rerun after a fix. The interpreter is $PYTHON (default python3).
#
# --dry-run runs the same steps on the CPU with a tiny model (CUDA hidden, each config shrunk to
# two blocks of width 64 on a 5x16x16 clip, one timed step; A5, A4 compiled, is left out): it checks
# the plumbing.

set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WHEELS="" OUT="gpu_check_out" BUDGET=480 DRY_RUN=0 ONLY="pytest,a5,a4,a0,wan"
while (($#)); do
    case $1 in
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
        --out) OUT=${2:?--out needs a folder}; shift 2 ;;
        --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
        --only) ONLY=${2:?--only needs a list such as pytest,a5}; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) echo "unknown argument $1; see: bash benchmarks/gpu_check.sh --help" >&2; exit 2 ;;
    esac
done
[[ $BUDGET =~ ^[0-9]+$ ]] || { echo "--budget takes whole seconds, got $BUDGET" >&2; exit 2; }
for name in ${ONLY//,/ }; do
    [[ $name =~ ^(pytest|a5|a4|a0|wan)$ ]] || { echo "--only takes pytest, a5, a4, a0, wan; got $name" >&2; exit 2; }
done
if [[ -z $WHEELS && -d $ROOT/.wheels ]]; then WHEELS=$ROOT/.wheels; fi
if [[ $WHEELS == none ]]; then WHEELS=""; fi
if [[ -n $WHEELS && ! -d $WHEELS ]]; then
    echo "--wheels $WHEELS is not a folder; build it with: python benchmarks/gpu_wheels.py download --dir $WHEELS" >&2
    exit 2
fi
[[ -n $WHEELS ]] && WHEELS=$(cd "$WHEELS" && pwd)
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}  # the interpreter that has PyTorch

mkdir -p "$OUT" || exit 2
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/{gpu_check.log,summary.json,pytest.xml,rows.md,a5.json,a4.json,a0.json,wan.json}  # an earlier run's
WORK=$(mktemp -d "${TMPDIR:-/tmp}/unity-gpu-check.XXXXXX")
exec > >(tee "$OUT/gpu_check.log") 2>&1
TEE=$!
trap 'exec >&- 2>&-; wait "$TEE"; rm -rf "$WORK"' EXIT  # the log is whole when the script returns
cd "$ROOT" || exit 2

START=$(date +%s)
DEADLINE=$((START + BUDGET))
MIN_STEP=20  # seconds: a step that would get less is skipped
RESERVE=5    # seconds kept for the summary
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if ((DRY_RUN)); then export CUDA_VISIBLE_DEVICES=""; fi
echo "gpu_check: $(date '+%Y-%m-%d %H:%M:%S'), budget ${BUDGET}s, out $OUT, dry run: $DRY_RUN"

# step NAME CAP COMMAND...: run COMMAND under min(CAP, what is left of the budget); record the outcome.
step() {
    local name=$1 cap=$2 limit status rc t0 took
    shift 2
    if [[ $name =~ ^(pytest|a5|a4|a0|wan)$ && ,$ONLY, != *,$name,* ]]; then
        skip "$name" "not in --only $ONLY"
        return
    fi
    limit=$((DEADLINE - $(date +%s) - RESERVE))
    ((cap < limit)) && limit=$cap
    if ((limit < MIN_STEP)); then
        echo "=== $name: skipped, ${limit}s left of the ${BUDGET}s budget"
        printf '%s\tskipped\t0\t%s\tno time left in the budget\n' "$name" "$limit" >>"$WORK/steps.tsv"
        return
    fi
    echo "=== $name (limit ${limit}s): $*"
    t0=$(date +%s)
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    took=$(($(date +%s) - t0))
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    echo "=== $name: $status (exit $rc) after ${took}s"
    printf '%s\t%s\t%s\t%s\texit %s\n' "$name" "$status" "$took" "$limit" "$rc" >>"$WORK/steps.tsv"
}

skip() {  # skip NAME WHY
    echo "=== $1: skipped, $2"
    printf '%s\tskipped\t0\t0\t%s\n' "$1" "$2" >>"$WORK/steps.tsv"
}

# 1. wheels
if [[ -n $WHEELS ]]; then
    step wheels 60 "$PYTHON" benchmarks/gpu_wheels.py install --dir "$WHEELS" --target "$WORK/site"
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
else
    skip wheels "no wheel folder (--wheels, .wheels): the machine's own packages are used"
fi

# 2. the machine
step environment 60 "$PYTHON" - "$WORK/environment.json" "$DRY_RUN" "$WORK/site" <<'PY'
import importlib, importlib.metadata, json, sys
import torch

def version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None

cuda = torch.cuda.is_available()
env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda, "cuda_available": cuda}
if cuda:
    props = torch.cuda.get_device_properties(0)
    env.update(device=props.name, capability=f"{props.major}.{props.minor}", memory_gb=round(props.total_memory / 1e9, 1),
               multiprocessors=props.multi_processor_count, cudnn=torch.backends.cudnn.version(),
               bf16=torch.cuda.is_bf16_supported())
from models.attention import flash_unavailable_reason
env["flash_attn"] = flash_unavailable_reason() or f"available {version('flash-attn')}"
names = ("deepspeed", "omegaconf", "webdataset", "diffusers", "peft", "av", "transformers", "triton", "numpy", "timm")
env["packages"] = {name: version(name) for name in names}
carried = importlib.metadata.distributions(path=[sys.argv[3]])  # installed from the wheels
env["carried"] = sorted(f"{d.metadata['Name']} {d.version}" for d in carried)
env["imports"] = {}  # what the tests and benchmarks import (seconds of imports: not in a dry run)
modules = ("deepspeed", "omegaconf", "webdataset", "diffusers", "peft", "unity.train.trainer", "unity.inference.pipeline")
for module in modules if sys.argv[2] == "0" else ():
    try:
        importlib.import_module(module)
        env["imports"][module] = "ok"
    except Exception as e:
        env["imports"][module] = f"{type(e).__name__}: {e}"
json.dump(env, open(sys.argv[1], "w"), indent=1)
print(json.dumps(env, indent=1))
if not cuda and sys.argv[2] == "0":
    sys.exit("no CUDA device is visible: this script measures a GPU (on a CPU machine, check it with --dry-run)")
PY

# 3. the GPU tests, then 4. the throughput plan
if grep -q $'^environment\tok' "$WORK/steps.tsv"; then
    step pytest 150 "$PYTHON" -m pytest -m gpu tests/gpu -v -rfEs -p no:cacheprovider -p no:hypothesispytest \
        --junitxml "$OUT/pytest.xml"

    GEOMETRY=(--batch 1 --streams 2 --frames 33 --height 480 --width 832 --channels 16 --compression 4 8 8
        --steps 6 --warmup 2)
    SHRINK=()
    if ((DRY_RUN)); then
        GEOMETRY=(--batch 1 --streams 2 --frames 5 --height 16 --width 16 --channels 16 --compression 4 8 8
            --steps 1 --warmup 1 --gemm-size 256)
        SHRINK=(model.depth=2 model.hidden=64 model.heads=2 model.text_dim=32 model.text_max_tokens=8)
    fi
    CUDNN=(--ckpt-blocks 10 --attn sdpa --sdpa-backend cudnn)
    bench() {  # bench NAME CAP CONFIG FLAGS...
        local name=$1 cap=$2 config=$3
        shift 3
        step "$name" "$cap" "$PYTHON" benchmarks/throughput.py --config "$config" "${GEOMETRY[@]}" "$@" \
            --json "$OUT/$name.json" --record --results "$OUT/rows.md" ${SHRINK[@]+"${SHRINK[@]}"}
    }
    if ((DRY_RUN)); then
        skip a5 "a dry run compiles nothing (minutes on a CPU), and without --compile A5 is A4"
    else
        bench a5 130 configs/model/base.yaml "${CUDNN[@]}" --compile
    fi
    bench a4 75 configs/model/base.yaml "${CUDNN[@]}"
    bench a0 75 configs/model/base.yaml
    WAN=configs/model/wan2.1-t2v-1.3b.yaml
    if [[ -f $WAN ]]; then
        bench wan 75 "$WAN" "${CUDNN[@]}"
    else
        skip wan "$WAN is not in this tree"
    fi
fi

# summary.json: the machine, every step, the figures of every benchmark
"$PYTHON" - "$WORK" "$OUT" "$BUDGET" "$(($(date +%s) - START))" <<'PY'
import json, sys
from pathlib import Path

work, out, budget, elapsed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, seconds, limit, note = line.split("\t")
    entry = {"step": name, "status": status, "seconds": int(seconds), "limit_s": int(limit), "note": note}
    result = out / f"{name}.json"
    if result.is_file():
        try:
            r = json.loads(result.read_text())
        except ValueError as e:  # cut short while it was written
            entry["note"] += f"; {result.name} unreadable: {e}"
            r = None
        keys = ("mfu", "hfu", "step_time_s", "tokens_per_s", "peak_mem_gb", "attention", "sdpa_backend", "compile",
                "ckpt_blocks", "dtype", "device", "command")
        if r is not None:
            entry["result"] = {k: r.get(k) for k in keys}
    steps.append(entry)
environment = work / "environment.json"
summary = {
    "budget_s": budget,
    "elapsed_s": elapsed,
    "environment": json.loads(environment.read_text()) if environment.is_file() else None,
    "steps": steps,
}
(out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
print(f"\n{'step':<12}{'status':<9}{'seconds':>8}{'limit':>7}  figures")
for s in steps:
    r = s.get("result")
    figures = (f"MFU {r['mfu']:.1%}, {r['step_time_s']:.3f} s/step, {r['peak_mem_gb']:.1f} GB, attention "
               f"{r['attention']}/{r['sdpa_backend']}, compile {r['compile']}") if r else s["note"]
    print(f"{s['step']:<12}{s['status']:<9}{s['seconds']:>8}{s['limit_s']:>7}  {figures}")
print(f"{elapsed} s of the {budget} s budget; results in {out}")
PY

if ! grep -q $'^environment\tok' "$WORK/steps.tsv"; then
    echo "gpu_check: stopped, the machine cannot run the checks (see the environment step above)"
    exit 1
fi
if grep -qE $'\t(failed|timeout)\t' "$WORK/steps.tsv"; then
    echo "gpu_check: some steps failed or ran out of time (see above)"
    exit 1
fi
echo "gpu_check: done"
