"""Maze generator throughput: mazes/s and layout acceptance rate, for Maze-Hard (30x30, shortest path > 110)
and a small CPU size (10x10, path > 12). Prints one line per case, then one JSON line with all figures.

    python benchmarks/bench_maze_generator.py [--n30 200] [--n10 5000] [--workers 1 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import time

from trm.tasks.maze import data as maze


def bench(n: int, size: int, min_path: int, workers: int, seed: int, wall_density: float) -> dict:
    t0 = time.perf_counter()
    inputs, labels, tries = maze.generate_many(n, seed=seed, workers=workers, size=size, min_path=min_path,
                                               wall_density=wall_density, return_tries=True)
    dt = time.perf_counter() - t0
    lengths = (labels == maze.PATH).sum((1, 2)) + 1
    return dict(size=size, min_path=min_path, wall_density=wall_density, workers=workers, n=n,
                seconds=round(dt, 3), mazes_per_s=round(n / dt, 1), layouts_per_s=round(tries / dt, 1),
                acceptance=round(n / tries, 5), path_min=int(lengths.min()), path_mean=round(float(lengths.mean()), 1),
                path_max=int(lengths.max()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n30", type=int, default=200, help="30x30 mazes per case")
    ap.add_argument("--n10", type=int, default=5000, help="10x10 mazes per case")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--wall-density", type=float, default=maze.DEFAULT_WALL_DENSITY)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    results = []
    for size, min_path, n in ((30, 110, args.n30), (10, 12, args.n10)):
        for workers in dict.fromkeys(args.workers):
            r = bench(n, size, min_path, workers, args.seed, args.wall_density)
            results.append(r)
            print(f"{size}x{size} path>{min_path} walls {r['wall_density']} workers {workers}: "
                  f"{r['mazes_per_s']} mazes/s ({r['n']} in {r['seconds']} s), {r['layouts_per_s']} layouts/s, "
                  f"acceptance {r['acceptance']:.2%}, path length {r['path_min']}/{r['path_mean']}/{r['path_max']} "
                  "(min/mean/max)", flush=True)
    print(json.dumps(dict(bench="maze_generator", cpu_count=os.cpu_count(), results=results)))


if __name__ == "__main__":
    main()
