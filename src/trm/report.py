"""One-page run report (Markdown): config, final metrics, curves, accuracy by supervision step, and a
few solved held-out puzzles with their refinement strip.

    trm report RUN_DIR
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from trm.errors import TRMError
from trm.train.checkpoint import atomic_write_text


def _last_eval(metrics_path: Path) -> dict[str, float]:
    from trm.viz import read_metrics
    last: dict[str, float] = {}
    for rec in read_metrics(metrics_path):
        evals = {k: v for k, v in rec.items() if k.startswith("eval/")}
        if evals:
            last = {"step": rec.get("step", 0), **evals}
    return last


def draw_run_pictures(run_dir: Path, model, ps, meta, result, count: int = 4) -> list[str]:
    """solved.png (a few held-out predictions) and refinement.png (one puzzle, every step)."""
    from trm import viz
    from trm.eval.evaluate import evaluate
    from trm.tasks import draw_example
    names = []
    n = min(count, len(result.preds))
    if n == 0:
        return names
    grid = tuple(meta.grid_shape) if meta.grid_shape else None
    frames = [draw_example(meta.task, ps.inputs[i], result.preds[i], ps.labels[i],
                           title=f"test #{i}: {'solved' if (result.preds[i] == ps.labels[i]).all() else 'wrong'}"
                           f", {int(result.steps[i])} steps", grid=grid) for i in range(n)]
    viz.save_png(viz.refinement_strip(frames, [""] * n, max_cols=4), run_dir / "solved.png")
    names.append("solved.png")
    one = type(ps)(ps.inputs[:1], ps.labels[:1], ps.puzzle_identifiers[:1], np.array([0, 1], np.int32),
                   np.array([0, 1], np.int32))
    tr = evaluate(model, one, meta.ignore_label_id, batch_size=1, device=next(model.parameters()).device,
                  keep_trace=True)
    steps = [tr.trace[0, k] for k in range(tr.trace.shape[1])]
    pics = [draw_example(meta.task, ps.inputs[0], s, ps.labels[0], grid=grid) for s in steps]
    captions = [f"step {k + 1}" for k in range(len(pics))]
    viz.save_png(viz.refinement_strip(pics, captions, max_cols=8), run_dir / "refinement.png")
    names.append("refinement.png")
    return names


def write_report(run_dir: str | Path, final_metrics: dict | None = None, exact_by_step=None,
                 pictures: list[str] | None = None) -> Path:
    """Write ``report.md`` and ``curves.png`` into the run directory."""
    from trm import viz
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise TRMError(f"{run_dir}: not a run directory (no config.yaml)")
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    metrics_path = run_dir / "metrics.jsonl"
    final = final_metrics or (_last_eval(metrics_path) if metrics_path.is_file() else {})
    lines = [f"# Run report: {run_dir.name}", ""]
    if metrics_path.is_file():
        viz.plot_curves(metrics_path, run_dir / "curves.png")
        lines += ["## Training curves", "", "![curves](curves.png)", ""]
    if final:
        lines += ["## Final evaluation (EMA weights)", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k.replace('eval/', '')} | {v:.4f} |" for k, v in final.items() if isinstance(v, (int, float))]
        lines.append("")
    if exact_by_step is not None and len(exact_by_step):
        viz.plot_accuracy_by_step({k + 1: float(v) for k, v in enumerate(exact_by_step)},
                                  run_dir / "accuracy_by_step.png")
        lines += ["## Exact accuracy after each supervision step", "",
                  "![accuracy by step](accuracy_by_step.png)", "",
                  " ".join(f"{k + 1}: {v:.3f}" for k, v in enumerate(exact_by_step)), ""]
    for pic in pictures or [p for p in ("solved.png", "refinement.png") if (run_dir / p).is_file()]:
        lines += [f"## {pic[:-4].capitalize()}", "", f"![{pic}]({pic})", ""]
    lines += ["## Resolved config", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).rstrip(), "```", ""]
    out = run_dir / "report.md"
    atomic_write_text(out, "\n".join(lines))
    return out


def report_json(run_dir: Path) -> str:
    return json.dumps(_last_eval(Path(run_dir) / "metrics.jsonl"), indent=2)
