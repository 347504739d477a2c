"""ARC scoring: crop, voting across versions, pass@K, pooling rules, the submission file."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from trm.data.arc import EOS_ID, augment_grid, encode_grid, version_name
from trm.eval.arc import ArcVoter, arc_submission, crop, score_arc_predictions, true_outputs, write_submission

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
