"""Training and inference throughput of the paper configurations and the CPU presets: the same as
``trm bench`` (see ``trm bench --help``). Prints a table with example-steps/s, achieved GFLOP/s, the
fraction of the machine's measured matmul peak and peak memory; ``--json`` keeps every figure.

    python benchmarks/bench_train.py                                   # everything (long on a CPU)
    python benchmarks/bench_train.py --configs sudoku-mlp --dtypes bfloat16 --compile off --seconds 20
    python benchmarks/bench_train.py --configs paper --device cuda --json bench-cuda.json
"""

from trm.bench import main

if __name__ == "__main__":
    main()
