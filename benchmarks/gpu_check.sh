#!/usr/bin/env bash
# GPU check (one CUDA device, about 6 minutes): the paper-size benchmark, then a CUDA smoke test
# (bf16 + torch.compile training through the real engine, no host sync inside the supervision step,
# a 1-process torchrun run of `trm train` with NCCL). Prints one JSON object per part, then a summary.
#
#   bash benchmarks/gpu_check.sh     # PYTHON=... interpreter; QUICK=1: sudoku-mlp only;
#                                    # DRY_RUN=1: the same steps on the CPU at toy size (tests the script)
#
# Needs torch with CUDA, numpy, pyyaml, tqdm, safetensors; trm is taken from src/ if not installed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT_DIR:-out/gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
export TRM_CHECK_DEVICE=cuda TRM_CHECK_BATCH=128 TRM_CHECK_STEPS=40
CONFIGS=paper
COMPILE=both
BENCH=(--seconds 3 --peak-seconds 1)
[ "${QUICK:-0}" = "1" ] && CONFIGS=sudoku-mlp
if [ "${DRY_RUN:-0}" = "1" ]; then
    export TRM_CHECK_DEVICE=cpu TRM_CHECK_BATCH=4 TRM_CHECK_STEPS=3
    CONFIGS=sudoku-mlp
    COMPILE=off
    BENCH=(--seconds 0.2 --peak-seconds 0.2 --batch 2 --min-steps 1 --set model.T=1 --set model.n=1)
fi
status=0

"$PY" - <<'PYEOF' || { echo '{"part": "env", "ok": false}'; exit 1; }
import json, os, torch
ok = torch.cuda.is_available() or os.environ["TRM_CHECK_DEVICE"] == "cpu"
print(json.dumps({"part": "env", "ok": ok, "torch": torch.__version__, "cuda": torch.version.cuda,
                  "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}))
raise SystemExit(0 if ok else 1)
PYEOF

echo "== 0. what model.forward_dtype=auto picks (trm.runtime) =="
timeout 60 "$PY" - <<'PYEOF' || status=1
import json, os, torch
from trm import runtime
dev = runtime.resolve_device(os.environ["TRM_CHECK_DEVICE"])
p = runtime.resolve_precision("auto", dev)
want = "bfloat16" if dev.type == "cuda" and torch.cuda.is_bf16_supported() else p.dtype
print(json.dumps({"part": "auto_precision", "ok": p.dtype == want, "device": runtime.describe_device(dev),
                  "dtype": p.dtype, "why": p.reason}))
raise SystemExit(0 if p.dtype == want else 1)
PYEOF

echo "== 1. benchmark (bf16 eager + compile, fp32 eager) =="
timeout 330 "$PY" -m trm.bench --device "$TRM_CHECK_DEVICE" --configs "$CONFIGS" --dtypes bfloat16 \
    --compile "$COMPILE" "${BENCH[@]}" --json "$OUT/bench_bf16.json" || status=1
timeout 90 "$PY" -m trm.bench --device "$TRM_CHECK_DEVICE" --configs "$CONFIGS" --dtypes float32 \
    --compile off "${BENCH[@]}" --json "$OUT/bench_fp32.json" || status=1

echo "== 2. smoke test: no host sync in a supervision step; bf16 + compile training learns =="
timeout 200 "$PY" - <<'PYEOF' || status=1
import json, os, time, torch
from trm.bench import Case, case_config, synthetic_set
from trm.model.recursive import RecursiveReasoner
from trm.train.engine import Engine
from trm.model.losses import IGNORE_INDEX, sequence_loss

dev = torch.device(os.environ["TRM_CHECK_DEVICE"])
B, STEPS, cuda = int(os.environ["TRM_CHECK_BATCH"]), int(os.environ["TRM_CHECK_STEPS"]), dev.type == "cuda"
res = {"part": "smoke", "device": str(dev)}


def sync_free(fn):
    """(True, '') if fn runs without a host-device synchronisation (CUDA sync debug mode 'error')."""
    if not cuda:
        fn()
        return True, "not checked on CPU"
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
        return True, ""
    except RuntimeError as e:
        return False, str(e).splitlines()[0][:200]
    finally:
        torch.cuda.set_sync_debug_mode("default")


# (a) one supervision step (deep recursion forward + backward) without host-device synchronisation
cfg = case_config(Case("sudoku-att", "bfloat16", False, B, str(dev), 0))
torch.manual_seed(0)
model = RecursiveReasoner(cfg.model).to(dev).train()
x = torch.randint(1, 11, (B, 81), device=dev)
ids = torch.zeros(B, dtype=torch.int32, device=dev)
y, z = model.initial_state(B, dev)
model(x, ids, y, z).logits.sum().backward()             # warm-up outside the check
model.zero_grad(set_to_none=True)
model.puzzle_emb.clear()
held = {}


def step():
    held["out"] = model(x, ids, y, z)
    held["out"].logits.float().square().mean().backward()


res["supervision_step_sync_free"], res["sync_note"] = sync_free(step)
res["loss_sync_free"], res["loss_note"] = sync_free(
    lambda: sequence_loss(held["out"].logits.detach(), x.long(), "stablemax", IGNORE_INDEX).loss.sum())

# (b) training through the engine, bf16 (+ torch.compile on CUDA): finite loss going down (copy task)
for name in ("sudoku-mlp", "sudoku-att"):
    cfg = case_config(Case(name, "bfloat16", cuda, B, str(dev), 0,
                           overrides=("model.T=2", "model.n=2", "train.lr=1e-3", "train.lr_warmup_steps=5")))
    data = synthetic_set(cfg.model.vocab_size, cfg.model.seq_len, 4 * B)
    data.labels[:] = data.inputs
    torch.manual_seed(0)
    model = RecursiveReasoner(cfg.model).to(dev)
    eng = Engine(cfg, model, data, None, dev, total_steps=1000)
    t0 = time.perf_counter()
    losses = [eng.train_step()["lm_loss"] for _ in range(STEPS)]
    res[name] = {"compile": cuda, "first_loss": round(losses[0], 4), "last_loss": round(losses[-1], 4),
                 "finite": all(v == v and abs(v) != float("inf") for v in losses),
                 "learns": losses[-1] < 0.8 * losses[0] or not cuda,
                 "seconds": round(time.perf_counter() - t0, 1),
                 "peak_mem_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None}
res["ok"] = bool(res["supervision_step_sync_free"] and all(res[k]["finite"] and res[k]["learns"]
                                                           for k in ("sudoku-mlp", "sudoku-att")))
print(json.dumps(res))
raise SystemExit(0 if res["ok"] else 1)
PYEOF

echo "== 3. torchrun (1 process, NCCL on CUDA): trm train, evaluation, checkpoint, export =="
RUN="$OUT/torchrun"
rm -rf -- "$RUN"
COMPILE_TRAIN=true
[ "$TRM_CHECK_DEVICE" = "cpu" ] && COMPILE_TRAIN=false
timeout 200 "$PY" -m torch.distributed.run --nproc-per-node 1 -m trm train sudoku-cpu \
    data.path="$OUT/data-sudoku4" data.build.size=4 data.build.train_size=200 data.build.num_aug=2 \
    data.build.test_size=64 train.device="$TRM_CHECK_DEVICE" train.compile=$COMPILE_TRAIN \
    train.max_steps="$TRM_CHECK_STEPS" train.max_minutes=0 train.log_every=10 run.out_dir="$RUN" \
    run.name=smoke eval.report_puzzles=0 --quiet > "$OUT/torchrun.log" 2>&1
rc=$?
"$PY" - "$RUN/smoke" "$rc" <<'PYEOF' || status=1
import json, sys
from pathlib import Path
run, rc = Path(sys.argv[1]), int(sys.argv[2])
ok = rc == 0 and (run / "checkpoints" / "last.pt").is_file() and (run / "model").is_dir()
lines = (run / "metrics.jsonl").read_text().splitlines() if (run / "metrics.jsonl").is_file() else []
evals = [json.loads(l) for l in lines if '"eval/' in l]
print(json.dumps({"part": "torchrun", "ok": ok, "exit": rc, "eval": evals[-1] if evals else None}))
raise SystemExit(0 if ok else 1)
PYEOF
[ "$rc" = 0 ] || tail -n 30 "$OUT/torchrun.log"

echo "== summary =="
"$PY" - "$OUT" "$status" <<'PYEOF'
import json, sys
from pathlib import Path
out, status = Path(sys.argv[1]), int(sys.argv[2])
rows, peak = [], None
for name in ("bench_bf16.json", "bench_fp32.json"):
    p = out / name
    if p.is_file():
        rep = json.loads(p.read_text())
        peak = rep["matmul_peak_gflops"]
        keys = ("config", "dtype", "compile", "batch", "train_steps_per_s", "train_frac_peak",
                "infer_steps_per_s", "infer_frac_peak", "train_peak_mem_mb", "error")
        rows += [{k: r[k] for k in keys if k in r} for r in rep["results"]]
print(json.dumps({"part": "summary", "ok": status == 0, "matmul_peak_gflops": peak, "bench": rows}))
PYEOF
exit $status
