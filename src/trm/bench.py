"""``trm bench``: training and inference throughput of the paper configurations and the CPU presets.

For every case (configuration x precision x torch.compile) it reports, in example-steps per second
(one example going through one supervision step: T(n+1) network calls, n+1 of them with backward):

- training throughput (the real :class:`trm.train.engine.Engine` step: refill, forward, losses,
  backward, optimizer, sparse optimizer, EMA, metrics) and inference throughput (one supervision step
  under ``torch.inference_mode``, the carry fed back);
- the achieved model GFLOP/s (matrix-product FLOPs counted from the configuration, see
  :func:`step_flops`) and its fraction of the machine's measured matmul peak (square products, bf16 and
  fp32, measured at start-up). ``limit`` is the best dtype's peak divided by the FLOPs of one
  example-step: the throughput a perfect implementation would reach on this machine;
- the peak memory of the training phase (CUDA: ``max_memory_allocated``; CPU: the growth of the
  process's peak resident set, each case in a fresh process).

It starts with what ``model.forward_dtype=auto`` picks here (:mod:`trm.runtime`). A dtype that the
machine emulates (bf16 on a CPU without native bf16 runs matrix products tens of times slower than
fp32) is not timed: its matmul peak and its cases are skipped, with the measured factor printed.

    trm bench                                # every paper config and CPU preset, fp32/bf16, eager/compile
    trm bench --configs sudoku-mlp --dtypes bfloat16 --compile off --seconds 10
    trm bench --json bench.json              # also write all figures as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Paper configurations (spec section 3): the model part; everything else is the paper default.
PAPER_CONFIGS: dict[str, dict] = {
    "sudoku-mlp": dict(mixer="mlp", pos_encoding="none", vocab_size=11, seq_len=81, n=6),
    "sudoku-att": dict(mixer="attention", pos_encoding="rope", vocab_size=11, seq_len=81, n=6),
    # Maze (vocab 6) and ARC (vocab 12) share the compute: attention at sequence 900 + 16, n = 4.
    "maze-att": dict(mixer="attention", pos_encoding="rope", vocab_size=6, seq_len=900, n=4),
}
# Batch per case when --batch is not given: (CPU, CUDA). The paper's global batch is 768.
DEFAULT_BATCH = {"sudoku-mlp": (64, 768), "sudoku-att": (64, 768), "maze-att": (4, 128)}
DTYPES = ("float32", "bfloat16")


# ----------------------------------------------------------------------------------------------
# FLOPs

def _swiglu_inner(dim: int, expansion: float) -> int:
    from trm.model.layers import swiglu_inner
    return swiglu_inner(dim, expansion)


def call_flops(m) -> int:
    """Matrix-product FLOPs of one call of the network f for one example (multiply-add = 2 FLOPs)."""
    D, L = m.hidden_size, m.seq_len + m.puzzle_emb_len
    channel = 2 * L * 3 * D * _swiglu_inner(D, m.expansion)               # gate, up, down
    if m.mixer == "attention":
        mix = 2 * L * 4 * D * D + 2 * 2 * L * L * D                        # q,k,v,out + QK^T, AV
    else:
        mix = 2 * D * 3 * L * _swiglu_inner(L, m.expansion)                # along the sequence
    return m.num_layers * (channel + mix)


def step_flops(m, training: bool) -> int:
    """FLOPs of one supervision step of one example: T(n+1) calls forward, backward = 2x forward for
    the calls that keep gradients (n+1 for TRM, 2 for the 1-step gradient), plus the heads."""
    S, D = m.seq_len, m.hidden_size
    heads = 2 * S * D * m.vocab_size + 2 * D * 2
    if m.recursion == "direct":
        calls, grad_calls = 1, 1
    else:
        calls = m.T * (m.n + 1)
        grad_calls = (m.n + 1) if m.grad_scope == "last_recursion" else (1 if m.latents == "z" else 2)
    if m.halting == "qlearn" and training:
        calls *= 2                                                        # the extra target pass
    if not training:
        return call_flops(m) * calls + heads
    return call_flops(m) * (calls + 2 * grad_calls) + 3 * heads


# ----------------------------------------------------------------------------------------------
# Machine

def _sync(device) -> None:
    from trm.runtime import synchronize
    synchronize(device)


# A dtype whose matrix products run this many times slower than the best one is not timed.
SKIP_SLOWER_THAN = 4.0


def slow_dtypes(device: str) -> dict[str, str]:
    """Dtypes not worth timing on ``device``: name -> why (from the runtime's short calibration)."""
    import torch

    from trm import runtime
    dev = torch.device(device)
    if dev.type == "cuda":
        return {} if torch.cuda.is_bf16_supported() else {"bfloat16": "this GPU has no bf16"}
    cal = runtime.calibrate(dev, runtime.typical_shape(512))
    if cal.bf16_speedup < 1 / SKIP_SLOWER_THAN:
        return {"bfloat16": f"bf16 measured {1 / cal.bf16_speedup:.0f}x slower than fp32 on this "
                            f"{dev.type.upper()} (no native bf16): a step would take minutes"}
    return {}


def matmul_peak(device: str = "cpu", seconds: float = 1.0) -> tuple[dict[str, float], dict[str, float]]:
    """Best square-matmul GFLOP/s per dtype over a few sizes: (wall-clock, CPU-time based).

    The CPU-time figure is work / (process CPU seconds / threads): what the threads achieve while
    they run, which stays meaningful on a machine shared with other processes (see :func:`_timed`).
    Dtypes in :func:`slow_dtypes` are left out.
    """
    import torch
    sizes = (1024, 2048) if torch.device(device).type == "cpu" else (4096, 8192)
    wall, cpu = {}, {}
    skip = slow_dtypes(device)
    for name in (d for d in DTYPES if d not in skip):
        dt = getattr(torch, name)
        best = best_cpu = 0.0
        for s in sizes:
            a = torch.randn(s, s, device=device).to(dt)
            b = torch.randn(s, s, device=device).to(dt)
            for _ in range(2):
                a @ b
            k, dt_wall, dt_cpu = _timed(lambda: a @ b, device, seconds / len(sizes), 4)
            best = max(best, 2 * s**3 * k / dt_wall / 1e9)
            best_cpu = max(best_cpu, 2 * s**3 * k / dt_cpu / 1e9)
        wall[name], cpu[name] = round(best, 1), round(best_cpu, 1)
    return wall, cpu


def machine_info(device: str) -> dict:
    import torch
    info = {"torch": torch.__version__, "python": platform.python_version(), "device": device,
            "threads": torch.get_num_threads(), "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                           if line.startswith("model name"))
        info["cores"] = os.cpu_count()
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (OSError, StopIteration):
        pass
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["float32_matmul_precision"] = torch.get_float32_matmul_precision()
    return info


# ----------------------------------------------------------------------------------------------
# Cases

@dataclass
class Case:
    config: str          # a PAPER_CONFIGS key or a preset name
    dtype: str           # float32 | bfloat16
    compile: bool
    batch: int
    device: str
    seconds: float
    min_steps: int = 2
    overrides: tuple[str, ...] = ()
    threads: int = 0     # CPU threads (0: torch's default)
    peak_seconds: float = 0.0   # > 0: measure the matmul peak in the case's process, before and after


def _preset_model_dims(cfg) -> None:
    """vocab / seq_len of a preset whose dataset is not built: from its data.build (or leave)."""
    from trm.tasks import dims_from_build
    dims_from_build(cfg)
    cfg.model.num_puzzle_ids = cfg.model.num_puzzle_ids or 1


def case_config(case: Case):
    """The full Config of a case: a paper configuration or a preset, plus the case's choices."""
    from trm.config import Config, load_config, normalise, set_value, validate
    from trm.errors import ConfigError
    if case.config in PAPER_CONFIGS:
        cfg = Config()
        for k, v in PAPER_CONFIGS[case.config].items():
            setattr(cfg.model, k, v)
        cfg.model.num_puzzle_ids = 1
        cfg.preset = case.config
    else:
        cfg = load_config(case.config)
        _preset_model_dims(cfg)
        if not (cfg.model.vocab_size and cfg.model.seq_len):
            raise ConfigError(f"preset {case.config}: cannot tell vocab_size/seq_len without its dataset")
    set_value(cfg, "model.forward_dtype", case.dtype)
    cfg.train.global_batch_size = case.batch
    cfg.train.compile = case.compile
    cfg.train.device = case.device
    cfg.train.lr_warmup_steps = 1
    for ov in case.overrides:                      # --set key=value, parsed like the CLI's overrides
        if "=" not in ov:
            raise ConfigError(f"--set {ov!r} must look like key=value")
        k, v = ov.split("=", 1)
        set_value(cfg, k.strip(), v.strip())
    return validate(normalise(cfg))


def synthetic_set(vocab: int, seq_len: int, n: int, seed: int = 0):
    """A random training set (tokens 1..vocab-1, one puzzle and group per example, identifier 0)."""
    from trm.data.format import PuzzleSet
    rng = np.random.default_rng(seed)
    lo = 1 if vocab > 2 else 0
    return PuzzleSet(inputs=rng.integers(lo, vocab, (n, seq_len), dtype=np.uint8),
                     labels=rng.integers(lo, vocab, (n, seq_len), dtype=np.uint8),
                     puzzle_identifiers=np.zeros(n, np.int32),
                     puzzle_indices=np.arange(n + 1, dtype=np.int32),
                     group_indices=np.arange(n + 1, dtype=np.int32))


class _PeakMemory:
    """Peak memory of a phase: CUDA allocator peak, or the growth of the process's peak RSS (CPU)."""

    def __init__(self, device):
        import torch
        self.cuda = torch.device(device).type == "cuda"
        self.device = device

    def start(self) -> None:
        import torch
        if self.cuda:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = 0
        else:
            self.base = _rss_kb()
            try:                                   # reset VmHWM to the current RSS (Linux >= 4.0)
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.reset = True
            except OSError:
                self.reset = False

    def peak_mb(self) -> float:
        import torch
        if self.cuda:
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        hwm = _hwm_kb() if self.reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return max(0, hwm - self.base) / 1024


def _proc_status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    try:
        return _proc_status_kb("VmRSS:")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _hwm_kb() -> int:
    return _proc_status_kb("VmHWM:")


def _timed(fn, device, seconds: float, min_steps: int) -> tuple[int, float, float]:
    """Call fn until ``seconds`` passed and at least ``min_steps`` calls: (calls, wall seconds, CPU
    seconds per thread). On a CPU shared with other processes the wall time stretches while the
    CPU time per thread measures the work done (it is close to the wall time on an idle machine;
    threads spinning while they wait for each other count as busy)."""
    import torch
    _sync(device)
    threads = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    k, t0, c0 = 0, time.perf_counter(), time.process_time()
    while k < min_steps or time.perf_counter() - t0 < seconds:
        fn()
        k += 1
        _sync(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return k, wall, (cpu / threads if torch.device(device).type == "cpu" else wall)


def run_case(case: Case) -> dict:
    """Measure one case in this process; returns its figures (no peak fractions: see :func:`summarise`)."""
    import torch

    from trm.model.recursive import RecursiveReasoner
    from trm.train.engine import Engine
    from trm import runtime

    runtime.set_threads(case.threads)
    cfg = case_config(case)
    m = cfg.model
    device = runtime.resolve_device(case.device)  # as `trm train` does (CPU: the allocator tuning)
    peaks = [matmul_peak(case.device, case.peak_seconds)] if case.peak_seconds else []
    mem = _PeakMemory(device)
    mem.start()
    torch.manual_seed(0)
    model = RecursiveReasoner(m).to(device)
    data = synthetic_set(m.vocab_size, m.seq_len, max(4 * case.batch, 64))
    engine = Engine(cfg, model, data, None, device, total_steps=10**9)

    t0 = time.perf_counter()
    for _ in range(2 if case.compile else 1):      # warm-up (and compilation)
        engine.train_step()
    _sync(device)
    warmup_s = time.perf_counter() - t0
    steps, dt, dt_cpu = _timed(engine.train_step, device, case.seconds, case.min_steps)
    train_rate = case.batch * steps / dt
    train_mem = mem.peak_mb()

    # Inference: one supervision step per call under inference_mode, the carry fed back.
    model.eval()
    inputs = torch.from_numpy(data.inputs[:case.batch].astype(np.int32)).to(device)
    pids = torch.zeros(case.batch, dtype=torch.int32, device=device)
    state: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def infer() -> None:
        if not state:
            state["y"], state["z"] = model.initial_state(case.batch, device)
        out = engine.forward(inputs, pids, state["y"], state["z"])
        state["y"], state["z"] = out.y, out.z

    mem.start()
    for _ in range(2 if case.compile else 1):
        infer()
    isteps, idt, idt_cpu = _timed(infer, device, case.seconds, case.min_steps)
    infer_rate = case.batch * isteps / idt
    infer_mem = mem.peak_mb() if device.type == "cuda" else None   # CPU: the heap keeps training's pages
    params = model.num_params()
    if peaks:
        del engine, model, state
        peaks.append(matmul_peak(case.device, case.peak_seconds))

    tf, inf = step_flops(m, True), step_flops(m, False)
    own_peak = {}
    if peaks:   # the mean of the measurements before and after the case, in its own process
        own_peak = {"matmul_peak_gflops": {k: round((peaks[0][0][k] + peaks[1][0][k]) / 2, 1) for k in peaks[0][0]},
                    "matmul_peak_gflops_cpu_time": {k: round((peaks[0][1][k] + peaks[1][1][k]) / 2, 1)
                                                    for k in peaks[0][1]}}
    return {**own_peak,"config": case.config, "dtype": case.dtype, "compile": case.compile, "batch": case.batch,
            "device": str(device), "params": params,
            "train_steps_per_s": round(train_rate, 3), "infer_steps_per_s": round(infer_rate, 3),
            "train_steps_per_cpu_s": round(case.batch * steps / dt_cpu, 3),
            "infer_steps_per_cpu_s": round(case.batch * isteps / idt_cpu, 3),
            "train_gflops": round(train_rate * tf / 1e9, 1), "infer_gflops": round(infer_rate * inf / 1e9, 1),
            "train_gflop_per_step": round(tf / 1e9, 2), "infer_gflop_per_step": round(inf / 1e9, 2),
            "train_peak_mem_mb": round(train_mem, 1),
            "infer_peak_mem_mb": None if infer_mem is None else round(infer_mem, 1),
            "mem_kind": "cuda_max_allocated" if device.type == "cuda" else "rss_growth",
            "warmup_s": round(warmup_s, 1), "timed_train_steps": steps, "timed_infer_steps": isteps}


def worker_env(omp_wait: str = "passive") -> dict[str, str]:
    """The environment of a case's process. ``passive``: OpenMP threads sleep instead of spinning while
    they wait (OMP_WAIT_POLICY=PASSIVE, unless the variable is set already). On a CPU shared with other
    processes spinning threads waste the time slices their partners need (2.3x slower training steps
    measured on 2 shared cores); on an idle machine the difference should be small (a sleeping thread
    wakes in microseconds, the step's operations take milliseconds)."""
    env = dict(os.environ)
    if omp_wait == "passive":
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def run_case_subprocess(case: Case, omp_wait: str = "passive") -> dict:
    """Run a case in a fresh interpreter (clean memory peak, no compile caches shared)."""
    cmd = [sys.executable, "-m", "trm.bench", "--worker", json.dumps(case.__dict__)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=worker_env(omp_wait))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        return {"config": case.config, "dtype": case.dtype, "compile": case.compile, "batch": case.batch,
                "error": "\n".join(tail) or f"exit status {proc.returncode}"}
    return json.loads(lines[-1])


def summarise(res: dict, peak: dict[str, float], peak_cpu: dict[str, float] | None = None) -> dict:
    """Add the fractions of the matmul peak: of the same dtype's peak (``frac_peak``) and of the best
    (bf16) peak (``frac_limit``); the peak measured in the case's own process when there is one.
    ``frac_peak_cpu``: the same from CPU time (throughput per CPU-second the threads actually used,
    against the CPU-time peak). It leaves out time lost to other processes, but also time a thread
    sleeps waiting for its partner, so it is an upper bound of the idle-machine figure."""
    if "error" in res:
        return res
    peak = res.get("matmul_peak_gflops", peak)
    peak_cpu = res.get("matmul_peak_gflops_cpu_time", peak_cpu)
    best = max(peak.values())
    own = peak.get(res["dtype"], best)
    for phase in ("train", "infer"):
        flops = res[f"{phase}_gflop_per_step"]
        g = res[f"{phase}_gflops"]
        res[f"{phase}_frac_peak"] = round(g / own, 3)          # of the same-dtype matmul peak
        res[f"{phase}_frac_limit"] = round(g / best, 3)        # of the best dtype's matmul peak
        res[f"{phase}_limit_steps_per_s"] = round(best / flops, 2)
        if peak_cpu and f"{phase}_steps_per_cpu_s" in res:
            own_cpu = peak_cpu.get(res["dtype"], max(peak_cpu.values()))
            res[f"{phase}_frac_peak_cpu"] = round(res[f"{phase}_steps_per_cpu_s"] * flops / own_cpu, 3)
    return res


# ----------------------------------------------------------------------------------------------
# Command line

def cpu_presets() -> list[str]:
    from trm.config import list_presets
    return [name for name in list_presets() if "cpu" in name]


def _bool_list(value: str) -> list[bool]:
    table = {"off": [False], "on": [True], "both": [False, True]}
    if value not in table:
        raise argparse.ArgumentTypeError("--compile takes off, on or both")
    return table[value]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--configs", default="paper,cpu",
                   help="comma list of paper configs (" + ", ".join(PAPER_CONFIGS) + "), preset names, "
                   "'paper' (all paper configs) and 'cpu' (every *cpu* preset); default paper,cpu")
    p.add_argument("--dtypes", default="float32,bfloat16", help="comma list of float32, bfloat16 (a dtype "
                   "this machine emulates is skipped, see slow_dtypes)")
    p.add_argument("--compile", default="both", type=_bool_list, help="off | on | both (default both)")
    p.add_argument("--batch", type=int, default=0, help="batch per case (default: per config and device)")
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per phase and case (default 6)")
    p.add_argument("--min-steps", type=int, default=2, help="at least this many timed steps per phase")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's, one per core)")
    p.add_argument("--peak-seconds", type=float, default=2.0,
                   help="seconds for the matmul peak per dtype (at start; half of it before and after each case)")
    p.add_argument("--omp-wait", default="passive", choices=("passive", "default"),
                   help="OpenMP wait policy of the case processes (default passive; see worker_env)")
    p.add_argument("--in-process", action="store_true", help="run the cases in this process (faster "
                   "start; CPU memory peaks less exact)")
    p.add_argument("--json", default=None, help="also write every figure to this JSON file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every case, e.g. --set model.T=1 (repeatable)")


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="training / inference throughput, fraction of the matmul peak, memory",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)


def _expand_configs(spec: str) -> list[str]:
    out: list[str] = []
    for name in (s.strip() for s in spec.split(",") if s.strip()):
        names = list(PAPER_CONFIGS) if name == "paper" else cpu_presets() if name == "cpu" else [name]
        out += [n for n in names if n not in out]
    return out


def _default_batch(config: str, device: str) -> int:
    cuda = device.startswith("cuda")
    if config in DEFAULT_BATCH:
        return DEFAULT_BATCH[config][1 if cuda else 0]
    from trm.config import load_config
    return load_config(config).train.global_batch_size


def cases_from_args(args, skip: dict[str, str] | None = None) -> list[Case]:
    from trm.errors import ConfigError
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for d in dtypes:
        if d not in DTYPES:
            raise ConfigError(f"--dtypes: {d!r} is not one of {', '.join(DTYPES)}")
    dtypes = [d for d in dtypes if d not in (skip or {})]
    # Eager cases first: a run cut short (time limit) still has them.
    return [Case(config=c, dtype=d, compile=comp, batch=args.batch or _default_batch(c, args.device),
                 device=args.device, seconds=args.seconds, min_steps=args.min_steps,
                 overrides=tuple(args.set), threads=args.threads, peak_seconds=args.peak_seconds / 2)
            for comp in args.compile for c in _expand_configs(args.configs) for d in dtypes]


HEADER = (f"{'config':<20}{'dtype':<9}{'compile':<8}{'batch':>5} | {'train/s':>8}{'GFLOP/s':>8}{'%peak':>6}"
          f"{'%lim':>5} | {'infer/s':>8}{'GFLOP/s':>8}{'%peak':>6}{'%lim':>5} | {'peak':>5} | {'mem MB':>7}")


def format_row(r: dict) -> str:
    head = f"{r['config']:<20}{r['dtype']:<9}{'yes' if r['compile'] else 'no':<8}{r['batch']:>5} | "
    if "error" in r:
        return head + "ERROR: " + r["error"].splitlines()[-1][:100]
    pct = lambda key: f"{100 * r[key]:>4.0f}%"  # noqa: E731
    peak = r.get("matmul_peak_gflops", {}).get(r["dtype"])
    peak = f"{peak:>5.0f}" if peak else f"{'-':>5}"
    return (head + f"{r['train_steps_per_s']:>8.2f}{r['train_gflops']:>8.0f}{pct('train_frac_peak'):>6}"
            f"{pct('train_frac_limit')} | {r['infer_steps_per_s']:>8.2f}{r['infer_gflops']:>8.0f}"
            f"{pct('infer_frac_peak'):>6}{pct('infer_frac_limit')} | {peak} | "
            f"{r['train_peak_mem_mb']:>7.0f}")


def run(args) -> dict:
    from trm import runtime
    args.device = str(runtime.resolve_device(args.device))
    runtime.set_threads(args.threads)
    skip = slow_dtypes(args.device)
    cases = cases_from_args(args, skip)
    info = machine_info(args.device)
    auto = runtime.resolve_precision("auto", runtime.resolve_device(args.device))
    info["auto_precision"] = {"dtype": auto.dtype, "why": auto.reason}
    info["skipped_dtypes"] = skip
    info["omp_wait_policy"] = (os.environ.get("OMP_WAIT_POLICY", "default") if args.in_process
                               else worker_env(args.omp_wait).get("OMP_WAIT_POLICY", "default"))
    print(f"trm bench on {info.get('gpu') or info.get('cpu', '?')} ({args.device}, torch {info['torch']}, "
          f"{info['threads']} threads, load {info.get('load_avg_1m', '?')})")
    print(f"precision: {auto}  (what model.forward_dtype=auto picks here)")
    for name, why in skip.items():
        print(f"skipped {name}: {why}")
    print(f"{len(cases)} case(s), each in its own process; measuring the matmul peak ...", flush=True)
    peak, peak_cpu = matmul_peak(args.device, args.peak_seconds)
    short = {"bfloat16": "bf16", "float32": "fp32"}
    print("matmul peak: " + ", ".join(f"{short[k]} {v:.0f} GFLOP/s" for k, v in peak.items())
          + (" (CPU-time based: " + ", ".join(f"{short[k]} {v:.0f}" for k, v in peak_cpu.items()) + ")"
             if args.device == "cpu" else ""))
    limits = {}
    for name in dict.fromkeys(c.config for c in cases):
        m = case_config(Case(name, auto.dtype, False, 1, args.device, 0, overrides=tuple(args.set))).model
        tf, inf = step_flops(m, True), step_flops(m, False)
        limits[name] = {"train_gflop_per_step": round(tf / 1e9, 2), "infer_gflop_per_step": round(inf / 1e9, 2),
                        "train_limit_steps_per_s": round(max(peak.values()) * 1e9 / tf, 2),
                        "infer_limit_steps_per_s": round(max(peak.values()) * 1e9 / inf, 2)}
        print(f"  {name}: {tf / 1e9:.1f} GFLOP per training example-step ({m.T}x({m.n}+1) calls), "
              f"limit {limits[name]['train_limit_steps_per_s']:.1f}/s; inference {inf / 1e9:.1f} GFLOP, "
              f"limit {limits[name]['infer_limit_steps_per_s']:.1f}/s")
    print("example-steps/s; %peak = of the same-dtype matmul peak ('peak', GFLOP/s, measured in the case's "
          "process before and after it), %lim = of the best dtype's limit; mem = training peak"
          + (" (RSS growth)" if args.device == "cpu" else " (allocated)"))
    print(HEADER)
    report = {"machine": info, "matmul_peak_gflops": peak, "matmul_peak_gflops_cpu_time": peak_cpu,
              "limits": limits, "results": [],
              "seconds_per_phase": args.seconds, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    for case in cases:
        res = run_case(case) if args.in_process else run_case_subprocess(case, args.omp_wait)
        report["results"].append(summarise(res, peak, peak_cpu))
        print(format_row(res), flush=True)
        if args.json:                               # after every case: a cut-short run keeps its figures
            _write_json(Path(args.json), report)
    report["machine"]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        _write_json(Path(args.json), report)
        print(f"JSON written to {args.json}")
    return report


def _write_json(path: Path, report: dict) -> None:
    from trm.io import atomic_write_text
    atomic_write_text(path, json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:                  # one case, in a child process: print its JSON
        case = Case(**{**json.loads(argv[1]), "overrides": tuple(json.loads(argv[1]).get("overrides", ()))})
        print(json.dumps(run_case(case)), flush=True)
        return
    p = argparse.ArgumentParser(prog="trm bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
