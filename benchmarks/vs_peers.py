"""trm against lucidrains' ``tiny-recursive-model`` (PyPI), side by side in one run, same machine.

The peer is installed into its own virtual environment (default ``build/peer-env``; it is never a
dependency of trm). That environment reuses this interpreter's torch through a ``.pth`` line, so both
run the same torch build and nothing large is downloaded. Both models are built at the paper's Sudoku
size: width 512, depth 2, n = 6, T = 3, sequence 81 + 16 prefix positions (the peer's register tokens).
The peer's MLP mixer (pre-norm LayerNorm, GELU, two matrices per MLP) gets expansion factors that give
the same matrix-product FLOPs per network call as trm's (sequence MLP 97 -> 768 -> 97 versus SwiGLU
97 -> 2x512 -> 97; channel MLP 512 -> 2304 -> 512 versus SwiGLU 512 -> 2x1536 -> 512).

Training throughput: trm's real engine step (refill, forward, losses, backward, AdamATan2, EMA, metrics)
against the peer's ``forward(seq, outputs, latents, labels)`` + backward + AdamW step, the carry fed
back. Inference: one supervision step under ``torch.inference_mode``. Peer in fp32 (its default) and
under CPU bf16 autocast; trm with its default bf16 compute (and fp32).

    python benchmarks/vs_peers.py [--batch 64] [--seconds 10] [--env build/peer-env] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import site
import subprocess
import sys
import time
import venv
from pathlib import Path

PEER = "tiny-recursive-model"
ROOT = Path(__file__).resolve().parent.parent
SIZE = dict(dim=512, depth=2, n=6, T=3, seq_len=81, prefix=16, vocab=11)


# ----------------------------------------------------------------------------------------------
# The peer, run inside its own environment (this file is executed there with --peer-worker).

def peer_worker(spec: dict) -> dict:
    import torch
    from tiny_recursive_model import MLPMixer1D, TinyRecursiveModel
    from importlib.metadata import version

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    s, batch, dev = SIZE, spec["batch"], spec["device"]
    length = s["seq_len"] + s["prefix"]
    net = MLPMixer1D(dim=s["dim"], depth=s["depth"], seq_len=length,
                     expansion_factor=1.5, expansion_factor_token=4.5)
    model = TinyRecursiveModel(dim=s["dim"], num_tokens=s["vocab"], network=net,
                               num_refinement_blocks=s["T"], num_latent_refinements=s["n"],
                               num_register_tokens=s["prefix"]).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    seq = torch.randint(1, s["vocab"], (batch, s["seq_len"]), device=dev)
    labels = torch.randint(1, s["vocab"], (batch, s["seq_len"]), device=dev)
    autocast = (torch.autocast(torch.device(dev).type, dtype=torch.bfloat16) if spec["dtype"] == "bfloat16"
                else torch.autocast(torch.device(dev).type, enabled=False))
    state = {}

    def train_step() -> None:
        outputs, latents = state.get("carry") or model.get_initial()
        with autocast:
            loss, _, outputs, latents, _, _ = model(seq, outputs, latents, labels=labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["carry"] = (outputs, latents)

    @torch.inference_mode()
    def infer_step() -> None:
        outputs, latents = state.get("icarry") or model.get_initial()
        with autocast:
            outputs, latents, _, _ = model(seq, outputs, latents)
        state["icarry"] = (outputs, latents)

    model.train()
    train_rate, train_cpu = _rate(train_step, batch, spec["seconds"], dev)
    model.eval()
    infer_rate, infer_cpu = _rate(infer_step, batch, spec["seconds"], dev)
    return {"name": f"{PEER} {version(PEER)}", "dtype": spec["dtype"], "batch": batch,
            "params": sum(p.numel() for p in model.parameters()),
            "train_steps_per_s": round(train_rate, 3), "infer_steps_per_s": round(infer_rate, 3),
            "train_steps_per_cpu_s": round(train_cpu, 3), "infer_steps_per_cpu_s": round(infer_cpu, 3)}


def _rate(fn, batch: int, seconds: float, device: str) -> tuple[float, float]:
    """Example-steps per second of ``fn`` after one warm-up call (at least 2 timed calls): per wall
    second and per CPU second of one thread (CPU time / threads; robust to other load on the machine)."""
    import torch
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fn()
    sync()
    k, t0, c0 = 0, time.perf_counter(), time.process_time()
    while k < 2 or time.perf_counter() - t0 < seconds:
        fn()
        sync()
        k += 1
    wall = time.perf_counter() - t0
    cpu = wall if cuda else (time.process_time() - c0) / torch.get_num_threads()
    return batch * k / wall, batch * k / cpu


# ----------------------------------------------------------------------------------------------
# The peer's environment

def ensure_peer_env(env: Path) -> Path:
    """Create ``env`` (a venv that sees this interpreter's torch) and pip-install the peer; its python."""
    py = env / "bin" / "python"
    if not py.exists():
        print(f"creating the peer environment {env} ...", flush=True)
        venv.EnvBuilder(with_pip=True, clear=False).create(env)
        peer_site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        # Reuse this interpreter's torch (and its other packages) instead of downloading another copy;
        # the peer env's own site-packages come first.
        Path(peer_site, "_trm_host_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    check = subprocess.run([str(py), "-c", "import tiny_recursive_model"], capture_output=True)
    if check.returncode != 0:
        print(f"installing {PEER} from PyPI into {env} ...", flush=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", PEER],
                       check=True)
    return py


def run_peer(py: Path, spec: dict) -> dict:
    from trm.bench import worker_env       # the same process environment as trm's cases
    proc = subprocess.run([str(py), __file__, "--peer-worker", json.dumps(spec)], capture_output=True, text=True,
                          env=worker_env())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"peer run failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


# ----------------------------------------------------------------------------------------------

def run_trm(spec: dict) -> dict:
    """trm's sudoku-mlp paper configuration through :func:`trm.bench.run_case` (a fresh process)."""
    from trm.bench import Case, run_case_subprocess
    case = Case("sudoku-mlp", spec["dtype"], bool(spec.get("compile")), spec["batch"], spec["device"],
                spec["seconds"], min_steps=2, threads=spec.get("threads", 0))
    res = run_case_subprocess(case)
    if "error" in res:
        raise RuntimeError(f"trm run failed: {res['error']}")
    return {"name": "trm", "dtype": spec["dtype"], "batch": spec["batch"], "params": res["params"],
            "compile": case.compile, "train_steps_per_s": res["train_steps_per_s"],
            "infer_steps_per_s": res["infer_steps_per_s"], "train_steps_per_cpu_s": res["train_steps_per_cpu_s"],
            "infer_steps_per_cpu_s": res["infer_steps_per_cpu_s"]}


def main() -> None:
    if sys.argv[1:2] == ["--peer-worker"]:
        print(json.dumps(peer_worker(json.loads(sys.argv[2]))), flush=True)
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=10.0, help="timed seconds per measurement")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both (default: torch's)")
    p.add_argument("--env", default=str(ROOT / "build" / "peer-env"), help="the peer's virtual environment")
    p.add_argument("--trm-dtypes", default="bfloat16", help="comma list; the first is compared")
    p.add_argument("--peer-dtypes", default="float32,bfloat16", help="float32 = the peer's default; "
                   "bfloat16 = under torch.autocast")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch
    py = ensure_peer_env(Path(args.env))
    base = dict(batch=args.batch, seconds=args.seconds, device=args.device, threads=args.threads)
    rows = [run_trm({**base, "dtype": d}) for d in args.trm_dtypes.split(",") if d]
    rows += [run_peer(py, {**base, "dtype": d}) for d in args.peer_dtypes.split(",") if d]
    from trm.bench import Case, case_config, step_flops
    flops = step_flops(case_config(Case("sudoku-mlp", "bfloat16", False, 1, "cpu", 0)).model, True) / 1e9
    print(f"\nSudoku MLP, width 512, depth 2, n=6, T=3, sequence 97, batch {args.batch}, {args.device}, "
          f"{args.threads or torch.get_num_threads()} thread(s), torch {torch.__version__}, "
          f"load {os.getloadavg()[0]:.1f}")
    print("example-steps/s per wall second, and per CPU second of one thread (cpu: robust to other load; "
          "the ratios use it)")
    print(f"{'implementation':<28}{'dtype':<10}{'params':>11}{'train':>9}{'(cpu)':>8}{'infer':>9}{'(cpu)':>8}")
    for r in rows:
        print(f"{r['name']:<28}{r['dtype']:<10}{r['params']:>11,}{r['train_steps_per_s']:>9.2f}"
              f"{r['train_steps_per_cpu_s']:>8.2f}{r['infer_steps_per_s']:>9.2f}{r['infer_steps_per_cpu_s']:>8.2f}")
    ours = rows[0]
    ratios = {}
    for r in rows:
        if r["name"] != "trm":
            key = f"{ours['dtype']} trm / {r['dtype']} peer"
            ratios[key] = {p: round(ours[f"{p}_steps_per_cpu_s"] / r[f"{p}_steps_per_cpu_s"], 2)
                           for p in ("train", "infer")}
            print(f"ratio {key}: training {ratios[key]['train']:.2f}x, inference {ratios[key]['infer']:.2f}x")
    print(f"({flops:.1f} GFLOP of matrix products per training example-step for both)")
    if args.json:
        out = Path(args.json)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"rows": rows, "ratios": ratios, "batch": args.batch, "threads": args.threads,
                                   "load_avg_1m": os.getloadavg()[0]}, indent=2))
        os.replace(tmp, out)


if __name__ == "__main__":
    main()
