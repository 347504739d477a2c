"""Inference benchmark: halting modes and test-time scaling (K noisy rollouts) on a held-out set.

    python benchmarks/bench_solve.py --checkpoint runs/sudoku-cpu [--data data/sudoku-cpu] [--limit 300]
        [--ks 1,4,16,64] [--noise auto --noise-at auto --sweep-limit 200] [--out docs/img/solve]

1. Halting: exact accuracy, mean supervision steps and puzzles/s with fixed N_sup steps (the paper) and
   with adaptive halting (sigmoid(halt logit) > threshold; halted puzzles leave the batch), for a few
   thresholds, plus "adaptive+check" (Sudoku, maze: a puzzle may stop only on an answer that passes the
   rule check). The figure of merit is the step reduction at no accuracy loss.
2. Rollouts: exact accuracy against K (rollouts per puzzle, rollout 0 noiseless, the others with noise on
   z) for each selection rule (halt: highest halting probability; vote: majority), after rejecting
   rollouts whose answer breaks a rule where another passes. One run with the largest K; the point for
   K=k reads its first k rollouts per puzzle (nested samples). ``--noise auto`` picks the noise scale
   (and ``--noise-at auto`` where it is added) on tuning puzzles disjoint from the held-out ones.

Writes ``<out>_rollouts.png`` (accuracy vs K) and ``<out>.json``; prints Markdown tables and one JSON
object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch


def timed(fn):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def exact(res, labels: np.ndarray) -> float:
    return float((res.tokens == labels).all(1).mean())


def bench_halting(model, inputs, labels, thresholds, batch_size) -> list[dict]:
    """Fixed N_sup steps, adaptive halting at each threshold, and (for tasks with a rule check) adaptive
    halting that refuses to stop on an answer breaking a rule (``require_valid``)."""
    rows = []
    model.solve_tokens(inputs[:batch_size], halting="fixed", batch_size=batch_size)       # warm-up
    runs = [("fixed", 0.5, False)] + [("adaptive", t, False) for t in thresholds]
    if model.check(inputs[:1], labels[:1]) is not None:
        runs += [("adaptive+check", t, True) for t in thresholds[:1]]
    for mode, thr, check in runs:
        res, sec = timed(lambda: model.solve_tokens(inputs, halting="fixed" if mode == "fixed" else "adaptive",
                                                    halt_threshold=thr, require_valid=check, batch_size=batch_size))
        rows.append({"mode": mode, "threshold": thr if mode != "fixed" else None, "exact": exact(res, labels),
                     "valid": float(res.valid.mean()) if res.valid is not None else None,
                     "mean_steps": float(res.steps.mean()), "puzzles_per_s": len(inputs) / sec, "seconds": sec})
    return rows


def bench_rollouts(model, inputs, labels, ks, noise, noise_at, selects, halting, batch_size, seed) -> list[dict]:
    """One run with max(ks) rollouts per puzzle; the curve reads its first k rollouts for each k in ks
    (nested samples, the same noise), under each selection rule. Throughput is that of the full run."""
    from trm.solve import first_rollouts, select_rollouts
    K = max(ks)
    rows_all, sec = timed(lambda: model.run_rollouts(inputs, halting=halting, rollouts=K, noise=noise,
                                                     noise_at=noise_at, batch_size=batch_size, seed=seed))
    out = []
    checks = (True, False) if rows_all["valid"] is not None else (False,)
    for k in sorted(ks):
        rows = first_rollouts(rows_all, K, k)
        for check in checks:
            for sel in selects:
                res = select_rollouts(rows, k, sel, reject_invalid=check)
                out.append({"K": k, "select": sel, "rule_check": check, "noise": noise, "noise_at": noise_at,
                            "halting": halting, "exact": exact(res, labels),
                            "valid": float(res.valid.mean()) if res.valid is not None else None,
                            "agreement": float(res.agreement.mean()),
                            "compute_steps": float(res.compute_steps.mean()),
                            "puzzles_per_s": len(inputs) / sec if k == K else None})
                if k == 1:
                    break            # one rollout: every rule picks it
            if k == 1:
                break
    return out


def _label(r: dict) -> str:
    return f"select = {r['select']}" + ("" if r.get("rule_check") is None else
                                         (", rule check" if r["rule_check"] else ", no rule check"))


def plot(rows: list[dict], baseline: float, out_png: Path, title: str) -> None:
    from trm import viz
    fig = viz._figure((8.6, 4.4))
    ax = fig.add_subplot(1, 1, 1)
    one = [r for r in rows if r["K"] == 1]
    series: dict[str, list[dict]] = {}
    for r in rows:
        if r["K"] > 1:
            series.setdefault(_label(r), list(one)).append(r)
    for label, rs in sorted(series.items()):
        rs = sorted(rs, key=lambda r: r["K"])
        halt, check = "halt" in label, "no rule check" not in label
        shift = 0.96 if halt else 1.04          # side by side where the rules agree
        ks, acc = [r["K"] * (shift if r["K"] > 1 else 1) for r in rs], [100 * r["exact"] for r in rs]
        ax.plot(ks, acc, marker="o" if halt else "s", color="#1f60d6" if halt else "#d62728",
                linestyle="-" if check else "--", label=label, alpha=0.85, markersize=5)
        for k, a, r in zip(ks, acc, rs):
            if r["K"] > 1:                      # halt's figure left of its point, vote's right
                ax.annotate(f"{a:.1f}", (k, a), textcoords="offset points",
                            xytext=(-4 if halt else 4, 5 if check else -11), ha="right" if halt else "left",
                            fontsize=6.5, color="#1f60d6" if halt else "#d62728")
    ax.axhline(100 * baseline, color="grey", linestyle=":", linewidth=1, label="one run (K = 1)")
    ax.set_xscale("log", base=2)
    ks = sorted({r["K"] for r in rows})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("rollouts per puzzle K")
    ax.set_ylabel("exact accuracy (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # outside: never over a curve
    viz._save_fig(fig, out_png)


def _title(task: str, n: int, noise: float, noise_at: str, halting: str) -> str:
    return f"{task}: {n} held-out puzzles, noise {noise} x RMS on z ({noise_at}), {halting} halting"


def markdown(halting: list[dict], rollouts: list[dict], n: int) -> str:
    lines = [f"Held-out puzzles: {n}", "", "| halting | threshold | exact % | mean steps | puzzles/s |",
             "|---|---|---|---|---|"]
    for r in halting:
        lines.append(f"| {r['mode']} | {r['threshold'] if r['threshold'] is not None else '-'} | "
                     f"{100 * r['exact']:.1f} | {r['mean_steps']:.2f} | {r['puzzles_per_s']:.0f} |")
    if rollouts:
        lines += ["", "| K | select | rule check | noise | exact % | valid % | steps per puzzle (all rollouts) | "
                  "puzzles/s (run at the largest K) |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in rollouts:
            valid = f"{100 * r['valid']:.1f}" if r["valid"] is not None else "-"
            pps = f"{r['puzzles_per_s']:.1f}" if r["puzzles_per_s"] else "-"
            many = r["K"] > 1
            check = ("yes" if r["rule_check"] else "no") if many else "-"
            lines.append(f"| {r['K']} | {r['select'] if many else '-'} | {check} | {r['noise'] if many else '-'} | "
                         f"{100 * r['exact']:.1f} | {valid} | {r['compute_steps']:.1f} | {pps} |")
    return "\n".join(lines)


def sweep(model, inputs, labels, noises, ats, k, selects, halting, batch_size, seed) -> list[dict]:
    """Accuracy at K rollouts for every (noise, noise_at) on a tuning set (disjoint from the held-out set)."""
    rows = []
    for at in ats:
        for s in noises:
            rs = bench_rollouts(model, inputs, labels, [k], s, at, selects, halting, batch_size, seed)
            rows += rs
            print("sweep: noise %4.2f at %-5s K %d: %s" % (s, at, k, ", ".join(
                f"{r['select']}{'' if r['rule_check'] else ' (no check)'} {100 * r['exact']:5.1f}%" for r in rs)),
                flush=True)
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", help="run dir, exported model dir or .pt (required unless --replot)")
    ap.add_argument("--data", default=None, help="dataset dir (default: the checkpoint's data.path)")
    ap.add_argument("--limit", type=int, default=1000, help="held-out puzzles (the first N of the test split)")
    ap.add_argument("--thresholds", default="0.5,0.7,0.9")
    ap.add_argument("--ks", default="1,4,16,64")
    ap.add_argument("--noise", default="0.5", help="noise scale, or 'auto': the best of the sweep")
    ap.add_argument("--noise-at", default="both", help="start | every | both, or 'auto': the best of the sweep")
    ap.add_argument("--sweep-noise", default="0.1,0.25,0.5,1.0,2.0")
    ap.add_argument("--sweep-at", default="start,every,both")
    ap.add_argument("--sweep-k", type=int, default=16)
    ap.add_argument("--sweep-limit", type=int, default=300,
                    help="tuning puzzles for 'auto', taken after the held-out ones (disjoint)")
    ap.add_argument("--select", default="halt,vote")
    ap.add_argument("--rollout-halting", default="fixed", choices=("fixed", "adaptive"))
    ap.add_argument("--batch-size", type=int, default=1024, help="rows per batch (puzzles x rollouts)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/img/solve", help="prefix of the PNG and JSON written")
    ap.add_argument("--skip-rollouts", action="store_true")
    ap.add_argument("--replot", default=None, help="redraw <out>_rollouts.png from a JSON this script wrote")
    args = ap.parse_args(argv)
    if args.replot:
        res = json.loads(Path(args.replot).read_text())
        out = Path(args.out)
        plot(res["rollouts"], res["summary"]["fixed_exact"], out.with_name(out.name + "_rollouts.png"),
             _title(res["task"], res["puzzles"], res["noise"], res["noise_at"], res["rollouts"][0]["halting"]))
        return
    if not args.checkpoint:
        ap.error("--checkpoint is required")

    from trm.data.format import load_set, read_metadata
    from trm.solve import load
    from trm.io import atomic_write_text
    torch.manual_seed(0)
    model = load(args.checkpoint, device=args.device)
    data = Path(args.data or model.config.data.path)
    meta = read_metadata(data / "test")
    if meta.seq_len != model.seq_len or meta.vocab_size != model.model.cfg.vocab_size:
        sys.exit(f"error: {data} has seq_len {meta.seq_len} / vocab {meta.vocab_size}; the model expects "
                 f"{model.seq_len} / {model.model.cfg.vocab_size}")
    ps = load_set(data / "test")
    n = min(args.limit, ps.num_examples) if args.limit else ps.num_examples
    inputs, labels = np.asarray(ps.inputs[:n]), np.asarray(ps.labels[:n])
    print(f"{model}\ndata {data} ({meta.task}), {n} held-out puzzles, device {model.device}", flush=True)

    halting = bench_halting(model, inputs, labels, [float(t) for t in args.thresholds.split(",") if t],
                            args.batch_size)
    fixed = halting[0]
    for r in halting:
        print(f"halting {r['mode']:14s} thr {r['threshold'] or '-':>4}: exact {100 * r['exact']:5.1f}%  steps "
              f"{r['mean_steps']:5.2f}  {r['puzzles_per_s']:8.1f} puzzles/s", flush=True)
    no_loss = [r for r in halting[1:] if r["exact"] >= fixed["exact"]]
    best = min(no_loss, key=lambda r: r["mean_steps"]) if no_loss else None
    summary = {"fixed_exact": fixed["exact"], "fixed_steps": fixed["mean_steps"]}
    if best:
        summary.update(adaptive_mode=best["mode"], adaptive_threshold=best["threshold"], adaptive_exact=best["exact"],
                       adaptive_steps=best["mean_steps"], step_reduction=fixed["mean_steps"] / best["mean_steps"],
                       speedup=best["puzzles_per_s"] / fixed["puzzles_per_s"])
        print(f"adaptive halting at no accuracy loss ({best['mode']}, threshold {best['threshold']}): "
              f"{summary['step_reduction']:.1f}x fewer steps, {summary['speedup']:.1f}x puzzles/s", flush=True)
    else:
        print("adaptive halting lost accuracy at every threshold tried", flush=True)

    rollouts, tuning = [], []
    ks = [int(k) for k in args.ks.split(",") if k]
    selects = [s for s in args.select.split(",") if s]
    noise, noise_at = args.noise, args.noise_at
    if not args.skip_rollouts and "auto" in (noise, noise_at):
        lo, hi = n, min(ps.num_examples, n + args.sweep_limit)
        if hi <= lo:
            sys.exit("error: --noise/--noise-at auto need tuning puzzles beyond --limit in the test split")
        noises = [float(v) for v in args.sweep_noise.split(",")] if noise == "auto" else [float(noise)]
        ats = args.sweep_at.split(",") if noise_at == "auto" else [noise_at]
        print(f"tuning on test puzzles {lo}..{hi - 1} (disjoint from the held-out set)", flush=True)
        tuning = sweep(model, np.asarray(ps.inputs[lo:hi]), np.asarray(ps.labels[lo:hi]), noises, ats,
                       args.sweep_k, selects, args.rollout_halting, args.batch_size, args.seed)
        means: dict[tuple, list[float]] = {}
        for r in tuning:                 # every selection rule, with and without the rule check
            means.setdefault((r["noise"], r["noise_at"]), []).append(r["exact"])
        (noise, noise_at), accs = max(means.items(), key=lambda kv: (np.mean(kv[1]), -kv[0][0]))
        print(f"chosen: noise {noise} at {noise_at} (mean exact {100 * np.mean(accs):.1f}% over the selection "
              f"rules on the tuning set)")
    if not args.skip_rollouts:
        noise = float(noise)
        rollouts = bench_rollouts(model, inputs, labels, ks, noise, noise_at, selects, args.rollout_halting,
                                  args.batch_size, args.seed)
        for r in rollouts:
            speed = f"  {r['puzzles_per_s']:8.1f} puzzles/s" if r["puzzles_per_s"] else ""
            check = "yes" if r["rule_check"] else "no "
            print(f"rollouts K {r['K']:3d} select {r['select']} check {check}: exact {100 * r['exact']:5.1f}%  valid "
                  f"{100 * (r['valid'] or 0):5.1f}%  agree {100 * r['agreement']:5.1f}%  steps/puzzle "
                  f"{r['compute_steps']:7.1f}{speed}", flush=True)
        out = Path(args.out)
        plot(rollouts, fixed["exact"], out.with_name(out.name + "_rollouts.png"),
             _title(meta.task, n, noise, noise_at, args.rollout_halting))
        print(f"curve: {out.with_name(out.name + '_rollouts.png')}")
    print()
    print(markdown(halting, rollouts, n))
    result = {"checkpoint": str(args.checkpoint), "data": str(data), "task": meta.task, "puzzles": n,
              "device": str(model.device), "halting": halting, "summary": summary, "rollouts": rollouts,
              "tuning": tuning, "noise": noise, "noise_at": noise_at}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
