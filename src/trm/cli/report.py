"""``trm report RUN_DIR``: write report.md (and the curves) for a run directory."""

from __future__ import annotations


def add_parser(sub) -> None:
    r = sub.add_parser("report", help="write report.md (+ curves) for a run directory")
    r.add_argument("run_dir", help="the run directory (holds metrics.jsonl and config.yaml)")


def run(args) -> None:
    from trm.report import write_report
    print(f"report written to {write_report(args.run_dir)}")
