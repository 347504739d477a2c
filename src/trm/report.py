"""One-page run report: config, final metrics, training curves, accuracy by supervision step, a few
solved held-out puzzles and one puzzle's refinement over the supervision steps (changed cells
highlighted, halting probability shown).

    trm report RUN_DIR        # writes RUN_DIR/report.md and RUN_DIR/report.html (self-contained)

At the end of training the loop calls :func:`draw_run_pictures` and :func:`write_report`; run on its
own, :func:`write_report` draws the curves from ``metrics.jsonl`` and, when the pictures are missing,
loads the run's model and its test split to draw them.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from trm.errors import TRMError
from trm.io import atomic_write_text

PICTURES = ("solved.png", "refinement.png")
CAPTIONS = {
    "solved.png": "Held-out puzzles: the model's answer ({legend}).",
    "refinement.png": "One held-out puzzle after every supervision step: cells changed since the previous "
                      "step in yellow, the halting probability under each step.",
}


def _last_eval(metrics_path: Path) -> dict[str, float]:
    from trm.viz import read_metrics
    last: dict[str, float] = {}
    for rec in read_metrics(metrics_path):
        evals = {k: v for k, v in rec.items() if k.startswith("eval/")}
        if evals:
            last = {"step": rec.get("step", 0), **evals}
    return last


# ---------------------------------------------------------------------------------------------------
# Pictures


def draw_run_pictures(run_dir: Path, model, ps, meta, result, count: int = 4) -> list[str]:
    """solved.png (a few held-out predictions), refinement.png and refinement.gif (one held-out puzzle,
    every supervision step, changed cells highlighted, halting probability shown). Returns the names of
    the pictures written (the GIF is linked from the report, not embedded)."""
    from trm import viz
    from trm.config import Config
    from trm.solve import Solver
    from trm.tasks import get
    run_dir = Path(run_dir)
    n = min(count, len(result.preds))
    if n == 0:
        return []
    grid = tuple(meta.grid_shape) if meta.grid_shape else None
    task = get(meta.task)
    frames = []
    for i in range(n):
        ok = bool((np.asarray(result.preds[i]) == np.asarray(ps.labels[i])).all())
        frames.append(task.draw_example(ps.inputs[i], result.preds[i], ps.labels[i], shape=grid,
                                   title=f"test #{i}: {'solved' if ok else 'wrong'}, {int(result.steps[i])} steps"))
    viz.save_png(viz.refinement_strip(frames, [""] * n, max_cols=4), run_dir / "solved.png")
    names = ["solved.png"]

    device = next(model.parameters()).device
    solver = Solver(model, Config(model=model.cfg), {"task": meta.task, "grid_shape": meta.grid_shape}, device)
    m = min(len(result.preds), task.trace_rows)
    pid = ps.example_puzzle_ids()[:m]
    res = solver.solve_tokens(np.asarray(ps.inputs[:m]), puzzle_ids=pid, halting="fixed", trace=True,
                              batch_size=m)
    assert res.trace is not None and res.trace_halt is not None   # solved with trace=True
    i = _interesting(res.trace, np.asarray(ps.labels[:m]))
    strip, gif = task.refinement(np.asarray(ps.inputs[i]), res.trace[i], res.trace_halt[i],
                                 np.asarray(ps.labels[i]), grid, title=f"test #{i}, every supervision step")
    viz.save_png(strip, run_dir / "refinement.png")
    viz.refinement_gif(gif, run_dir / "refinement.gif")
    names.append("refinement.png")
    return names


def _interesting(trace: np.ndarray, labels: np.ndarray) -> int:
    """A puzzle right at the last step that took the most steps to get right, then the one whose answer
    changed most over the steps (the first puzzle when none is right)."""
    right = (trace == labels[:, None]).all(-1)            # [m, steps]
    solved = right[:, -1]
    if not solved.any():
        return 0
    first_right = np.where(right.any(1), right.argmax(1), trace.shape[1])
    changes = (trace[:, 1:] != trace[:, :-1]).sum((1, 2))
    score = np.where(solved, first_right * (changes.max() + 1) + changes, -1)
    return int(np.argmax(score))


def _draw_missing_pictures(run_dir: Path, cfg: dict, count: int) -> tuple[list[str], str]:
    """Load the run's model and test split and draw the pictures; ('', reason) when impossible."""
    from trm.data.format import load_set, read_metadata
    from trm.errors import TRMError as _E
    from trm.eval.evaluate import evaluate
    from trm.solve import load
    data = Path(cfg.get("data", {}).get("path", ""))
    if not (data / "test" / "dataset.json").is_file():
        return [], f"the run's test split ({data}/test) is not on disk"
    try:
        solver = load(run_dir)
    except _E as e:
        return [], f"no model to draw with ({e})"
    meta = read_metadata(data / "test")
    ps = load_set(data / "test")
    if meta.seq_len != solver.seq_len:
        return [], f"{data} does not match the model (seq_len {meta.seq_len} vs {solver.seq_len})"
    res = evaluate(solver.model, ps, meta.ignore_label_id, batch_size=64, max_examples=max(count, 1),
                   device=solver.device)
    return draw_run_pictures(run_dir, solver.model, ps, meta, res, count), ""


# ---------------------------------------------------------------------------------------------------
# The page


def _params(cfg: dict) -> int | None:
    try:
        import torch

        from trm.config import config_from_dict
        from trm.model.recursive import RecursiveReasoner
        c = config_from_dict(cfg)
        if not (c.model.vocab_size and c.model.seq_len):
            return None
        with torch.device("meta"):
            return RecursiveReasoner(c.model).num_params()
    except Exception:  # noqa: BLE001 - a summary figure only
        return None


def _task_of(run_dir: Path, cfg: dict) -> str:
    """The run's task: from its exported model, its dataset, or its data.build."""
    data_dir = Path((cfg.get("data") or {}).get("path", ""))
    for path in (run_dir / "model" / "config.json", data_dir / "test" / "dataset.json"):
        try:
            doc = json.loads(path.read_text())
            task = (doc.get("data") or {}).get("task") if "data" in doc else doc.get("task")
            if task:
                return str(task)
        except (OSError, ValueError, AttributeError):
            continue
    return str(((cfg.get("data") or {}).get("build") or {}).get("task", ""))


HIDDEN_METRICS = ("eval/examples", "train/finished", "eval/steps")


def plot_run_curves(metrics_path: Path, out_png: Path, title: str) -> Path:
    """Training curves without clutter: bookkeeping counters, all-zero losses and single-point metrics
    outside the loss/accuracy/lr panels are left out, and the per-step accuracies (eval/exact@k) are
    left to accuracy_by_step.png."""
    from trm import viz
    records = viz.read_metrics(metrics_path)
    keys = {k for r in records for k in r}
    zero = {k for k in keys if k.endswith("_loss") and all(not r.get(k) for r in records if k in r)}
    points = {k: sum(k in r for r in records) for k in keys}
    lone = {k for k in keys if points[k] < 2 and viz._metric_group(k) not in ("loss", "accuracy", "learning rate")}
    drop = set(HIDDEN_METRICS) | zero | lone | {k for k in keys if k.startswith("eval/exact@")}
    kept = [{k: v for k, v in r.items() if k not in drop} for r in records]
    return viz._save_fig(viz.curves_figure(kept, title=title), out_png)


def _fmt(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) >= 2:
        return f"{int(v):,}"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _blocks(run_dir: Path, cfg: dict, final: dict, exact_by_step, pictures: list[str], note: str) -> list[tuple]:
    """The page as a list of (kind, content) blocks, rendered to Markdown and HTML."""
    m, t, d = cfg.get("model", {}), cfg.get("train", {}), cfg.get("data", {})
    params = _params(cfg)
    summary = [("run", run_dir.name), ("preset", cfg.get("preset", "") or "-"),
               ("task / data", f"{_task_of(run_dir, cfg) or '?'} / {d.get('path', '?')}"),
               ("model", f"{m.get('mixer')} mixer, hidden {m.get('hidden_size')}, {m.get('num_layers')} layers, "
                         f"T={m.get('T')}, n={m.get('n')}, N_sup={m.get('N_sup')}"),
               ("parameters", f"{params:,}" if params else "-"),
               ("training", f"batch {t.get('global_batch_size')}, lr {t.get('lr')}, {t.get('optimizer')}, "
                            f"loss {t.get('loss')}, EMA {t.get('ema')}")]
    if final.get("step") is not None:
        summary.append(("evaluated at step", _fmt(final["step"])))
    blocks: list[tuple] = [("h1", f"Run report: {run_dir.name}"), ("table", (["", ""], summary))]
    if (run_dir / "curves.png").is_file():
        blocks += [("h2", "Training curves"), ("img", "curves.png"),
                   ("p", "From metrics.jsonl; eval/* lines are dashed (EMA weights).")]
    if final:
        rows = [(k.replace("eval/", ""), _fmt(v)) for k, v in final.items()
                if isinstance(v, (int, float)) and k != "step"]
        blocks += [("h2", "Final evaluation (EMA weights, held-out split)"), ("table", (["metric", "value"], rows))]
    if exact_by_step is not None and len(exact_by_step):
        blocks += [("h2", "Exact accuracy after each supervision step"), ("img", "accuracy_by_step.png"),
                   ("p", " ".join(f"{k + 1}: {v:.3f}" for k, v in enumerate(exact_by_step)))]
    elif (run_dir / "accuracy_by_step.png").is_file():
        blocks += [("h2", "Exact accuracy after each supervision step"), ("img", "accuracy_by_step.png")]
    for pic in pictures:
        title = {"solved.png": "Solved held-out puzzles", "refinement.png": "Refinement over supervision steps"}
        blocks += [("h2", title.get(pic, pic[:-4].capitalize())), ("img", pic)]
        if pic in CAPTIONS:
            from trm.tasks import REGISTRY
            task = REGISTRY.get(_task_of(run_dir, cfg))
            blocks.append(("p", CAPTIONS[pic].format(legend=task.legend if task else "mistakes marked")))
        if pic == "refinement.png" and (run_dir / "refinement.gif").is_file():
            blocks.append(("link", ("refinement.gif", "the same as an animation")))
    if note:
        blocks.append(("p", f"No puzzle pictures: {note}."))
    blocks += [("h2", "Resolved config"), ("pre", yaml.safe_dump(cfg, sort_keys=False).rstrip())]
    return blocks


def _markdown(blocks: list[tuple]) -> str:
    out = []
    for kind, c in blocks:
        if kind == "h1":
            out += [f"# {c}", ""]
        elif kind == "h2":
            out += [f"## {c}", ""]
        elif kind == "p":
            out += [c, ""]
        elif kind == "img":
            out += [f"![{c[:-4]}]({c})", ""]
        elif kind == "link":
            out += [f"[{c[1]}]({c[0]})", ""]
        elif kind == "table":
            head, rows = c
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(str(v) for v in r) + " |" for r in rows] + [""]
        elif kind == "pre":
            out += ["```yaml", c, "```", ""]
    return "\n".join(out)


def _html(blocks: list[tuple], run_dir: Path) -> str:
    e = html.escape
    out = ["<!doctype html>", '<html><head><meta charset="utf-8">',
           f"<title>{e(blocks[0][1])}</title>",
           "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
           "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
           "text-align:left}img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;"
           "overflow:auto;font-size:12px}</style></head><body>"]
    for kind, c in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(c)}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(c)}</p>")
        elif kind == "img":
            data = base64.b64encode((run_dir / c).read_bytes()).decode() if (run_dir / c).is_file() else ""
            out.append(f'<p><img alt="{e(c)}" src="data:image/png;base64,{data}"></p>')
        elif kind == "link":
            out.append(f'<p><a href="{e(c[0])}">{e(c[1])}</a></p>')
        elif kind == "table":
            head, rows = c
            out.append("<table>" + ("<tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>" if any(head) else ""))
            out += ["<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>" for r in rows]
            out.append("</table>")
        elif kind == "pre":
            out.append(f"<pre>{e(c)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(run_dir: str | Path, final_metrics: dict | None = None, exact_by_step=None,
                 pictures: list[str] | None = None, draw: bool = True) -> Path:
    """Write ``report.md`` and a self-contained ``report.html`` (images embedded) into the run directory,
    plus ``curves.png`` (and ``accuracy_by_step.png`` when ``exact_by_step`` is given). Returns the
    Markdown path. With ``draw`` and no pictures on disk, the run's model draws them first."""
    from trm import viz
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TRMError(f"{run_dir}: no such run directory")
    if not (run_dir / "config.yaml").is_file():
        raise TRMError(f"{run_dir}: not a run directory (no config.yaml)")
    try:
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    except yaml.YAMLError as e:
        raise TRMError(f"{run_dir / 'config.yaml'}: invalid YAML ({e})") from None
    metrics_path = run_dir / "metrics.jsonl"
    final = final_metrics or (_last_eval(metrics_path) if metrics_path.is_file() else {})
    if metrics_path.is_file():
        plot_run_curves(metrics_path, run_dir / "curves.png", title=f"{run_dir.name}: training curves")
    if exact_by_step is not None and len(exact_by_step):
        viz.plot_accuracy_by_step({k + 1: float(v) for k, v in enumerate(exact_by_step)},
                                  run_dir / "accuracy_by_step.png")
    note = ""
    if pictures is None:
        pictures = [p for p in PICTURES if (run_dir / p).is_file()]
        if not pictures and draw:
            count = int((cfg.get("eval") or {}).get("report_puzzles", 4) or 4)
            pictures, note = _draw_missing_pictures(run_dir, cfg, count)
    blocks = _blocks(run_dir, cfg, final, exact_by_step, pictures, note)
    atomic_write_text(run_dir / "report.html", _html(blocks, run_dir))
    out = run_dir / "report.md"
    atomic_write_text(out, _markdown(blocks))
    return out

