"""Sudoku generator throughput: puzzles/s per difficulty preset (9x9 and 4x4), with givens and ratings,
plus solver speed on a famous hard puzzle, augmentation throughput and (optionally) a full build of
1000 x (1 + 1000) training puzzles. Prints one line per case, then one JSON line with all figures.

    python benchmarks/bench_sudoku_generator.py [--seconds 10] [--workers 1 2] [--build] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from trm.tasks.sudoku import data as sd

INKALA = "8..........36......7..9.2...5...7.......457.....1...3...1....68..85...1..9....4.."


def bench_difficulty(name: str, size: int, workers: int, seconds: float, seed: int) -> dict:
    """Generate in growing batches until ``seconds`` have passed; report the overall rate."""
    n_done, dt, batch, ratings, givens = 0, 0.0, 4 * workers, [], []
    while dt < seconds:
        t0 = time.perf_counter()
        p, _, r = sd.generate_many(batch, seed=seed, size=size, difficulty=name, workers=workers, stream=n_done)
        dt += time.perf_counter() - t0
        n_done += batch
        ratings.append(r)
        givens.append((p > 0).sum((1, 2)))
        batch = max(batch, int(batch * min(4.0, 1.5 * seconds / max(dt, 1e-3))))
    r, g = np.concatenate(ratings), np.concatenate(givens)
    return dict(difficulty=name, size=size, workers=workers, n=n_done, seconds=round(dt, 2),
                puzzles_per_s=round(n_done / dt, 1), givens_mean=round(float(g.mean()), 2),
                givens_min=int(g.min()), rating_mean=round(float(r.mean()), 2), rating_max=int(r.max()),
                spec=sd.difficulty_preset(name, size).description)


def bench_solver(repeats: int = 20) -> dict:
    board = sd.parse_sudoku(INKALA)
    t0 = time.perf_counter()
    for _ in range(repeats):
        res = sd.solve(board)
    dt = (time.perf_counter() - t0) / repeats
    return dict(puzzle="inkala", ms_per_solve=round(1000 * dt, 2), backtracks=res.backtracks)


def bench_augment(n: int = 200_000) -> dict:
    p, s, _ = sd.generate_puzzle(0, size=9)
    ps, ss = np.repeat(p[None], n, 0), np.repeat(s[None], n, 0)
    t0 = time.perf_counter()
    sd.augment_batch(ps, ss, np.random.default_rng(0))
    dt = time.perf_counter() - t0
    return dict(boards=n, seconds=round(dt, 3), pairs_per_s=round(n / dt))


def bench_build(workers: int, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        sd.build_sudoku_dataset(os.path.join(d, "ds"), difficulty="medium", train_size=1000, num_aug=1000,
                                test_size=1000, seed=seed, workers=workers, progress=False)
        dt = time.perf_counter() - t0
    return dict(difficulty="medium", train_size=1000, num_aug=1000, test_size=1000, workers=workers,
                seconds=round(dt, 2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="time budget per case")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--sizes", type=int, nargs="+", default=[9, 4])
    ap.add_argument("--build", action="store_true", help="also time a full 1000 x 1001 build")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    solver = bench_solver()
    print(f"solver: {solver['ms_per_solve']} ms per uniqueness-proving solve of Inkala's puzzle "
          f"(rating {solver['backtracks']})", flush=True)
    aug = bench_augment()
    print(f"augmentation: {aug['pairs_per_s']} puzzle/solution pairs per s", flush=True)
    results = []
    for size in args.sizes:
        for name in sd.DIFFICULTIES:
            for workers in dict.fromkeys(args.workers):
                r = bench_difficulty(name, size, workers, args.seconds, args.seed)
                results.append(r)
                print(f"{size}x{size} {name:8s} workers {workers}: {r['puzzles_per_s']} puzzles/s "
                      f"({r['n']} in {r['seconds']} s); givens mean {r['givens_mean']} min {r['givens_min']}; "
                      f"rating mean {r['rating_mean']} max {r['rating_max']}  [{r['spec']}]", flush=True)
    build = None
    if args.build:
        build = bench_build(max(args.workers), args.seed)
        print(f"build 1000 x 1001 train + 1000 test (medium): {build['seconds']} s", flush=True)
    print(json.dumps(dict(bench="sudoku_generator", cpu_count=os.cpu_count(), solver=solver, augment=aug,
                          results=results, build=build)))


if __name__ == "__main__":
    main()
