"""ARC scoring (spec section 7): crop each answer, undo its augmentation, vote across versions, pass@K,
and the ARC Prize submission file.

Voting. For each (task, test input) the voter counts identical un-augmented answers over all versions;
candidates rank by vote count, then by the mean halting probability of their votes (higher first), then
by first arrival. pass@K: a test input is solved when its true output is among the top K candidates; the
score is averaged over a task's test inputs, then over tasks.

Pooling. A voter holds the votes of ONE evaluation. Adding a second answer for the same version and test
input raises unless ``pool=True``, and :meth:`ArcVoter.start_evaluation` clears the votes (unless
``pool=True``). The public TRM evaluator instead pools votes across every evaluation of a run silently,
so its later scores mix answers of earlier checkpoints; ``pool=True`` reproduces that, on request only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from trm.tasks.arc.data import CANVAS, COLOUR_OFFSET, VOCAB_SIZE, invert_augmentation, parse_version_name
from trm.data.format import PuzzleSet, load_identifiers
from trm.errors import DatasetError

KS = (1, 2, 5, 10)


def crop(tokens: np.ndarray) -> np.ndarray | None:
    """The answer grid in a 30x30 token canvas, or None if there is none.

    The grid is the largest-area rectangle anchored at the top-left corner whose cells are all colour
    tokens (2..11): row r may extend as far right as the shortest leading colour run of rows 0..r, and
    the row count with the largest area wins (the fewest rows on a tie). EOS, PAD or an out-of-range
    token ends a run. A canvas whose top-left cell is not a colour gives None.
    """
    t = np.asarray(tokens).reshape(CANVAS, CANVAS)
    colour = (t >= COLOUR_OFFSET) & (t < VOCAB_SIZE)
    run = np.where(colour.all(1), CANVAS, np.argmin(colour, axis=1))   # leading colour cells per row
    width = np.minimum.accumulate(run)
    area = width * np.arange(1, CANVAS + 1)
    rows = int(np.argmax(area)) + 1
    if area[rows - 1] == 0:
        return None
    return (t[:rows, :width[rows - 1]] - COLOUR_OFFSET).astype(np.uint8)


def _key(g: np.ndarray) -> bytes:
    return np.array(g.shape, np.int16).tobytes() + g.astype(np.uint8).tobytes()


@dataclass
class Candidate:
    grid: np.ndarray
    votes: int
    halt_sum: float
    order: int

    @property
    def mean_halt(self) -> float:
        return self.halt_sum / self.votes


class ArcVoter:
    """Collects answers of every version of every test input and ranks the un-augmented grids."""

    def __init__(self, pool: bool = False, blank: str = "vote"):
        """``blank``: what an answer with no croppable grid does. ``vote`` (the official rule, default):
        it votes for the empty grid, which can win the vote and is never right; ``abstain`` (a named
        deviation): it casts no vote, so the versions that did give a grid decide."""
        if blank not in ("vote", "abstain"):
            raise ValueError(f"blank must be 'vote' or 'abstain', got {blank!r}")
        self.pool, self.blank = pool, blank
        self.evaluations = 0
        self.abstained = 0      # answers with no croppable grid (voted as the empty grid unless blank=abstain)
        self._votes: dict[tuple[str, int], dict[bytes, Candidate]] = {}
        self._seen: set[tuple[str, int]] = set()
        self._n = 0

    def start_evaluation(self) -> None:
        """Begin a new evaluation: clears the votes unless ``pool=True``."""
        if not self.pool:
            self._votes.clear()
            self.abstained = 0
        self._seen.clear()
        self.evaluations += 1

    def add(self, puzzle_name: str, test_index: int, pred_tokens: np.ndarray, halt_prob: float) -> bool:
        """Vote with one answer (900 tokens) of version ``puzzle_name``; False if nothing was croppable."""
        if (puzzle_name, test_index) in self._seen and not self.pool:
            raise ValueError(f"{puzzle_name} test {test_index} already has an answer in this evaluation; "
                             f"call start_evaluation() first, or use ArcVoter(pool=True) to pool votes")
        self._seen.add((puzzle_name, test_index))
        task = parse_version_name(puzzle_name)[0]
        slot = self._votes.setdefault((task, int(test_index)), {})
        grid = crop(pred_tokens)
        if grid is None:
            self.abstained += 1
            if self.blank == "abstain":
                return False
            grid = np.zeros((0, 0), np.uint8)
        else:
            grid = invert_augmentation(grid, puzzle_name)
        c = slot.get(_key(grid))
        if c is None:
            slot[_key(grid)] = Candidate(grid, 1, float(halt_prob), self._n)
        else:
            c.votes += 1
            c.halt_sum += float(halt_prob)
        self._n += 1
        return True

    def add_batch(self, names: Sequence[str], test_indices: Iterable[int], preds: np.ndarray,
                  halt_probs: Iterable[float]) -> None:
        for name, j, p, h in zip(names, test_indices, preds, halt_probs):
            self.add(name, int(j), p, float(h))

    @property
    def tasks(self) -> dict[str, int]:
        """Task -> number of test inputs that received answers (highest index + 1)."""
        out: dict[str, int] = {}
        for task, j in self._votes:
            out[task] = max(out.get(task, 0), j + 1)
        return out

    def ranked(self, task: str, test_index: int) -> list[Candidate]:
        """Candidates best first: votes, then mean halting probability, then arrival."""
        return sorted(self._votes.get((task, test_index), {}).values(),
                      key=lambda c: (-c.votes, -c.mean_halt, c.order))

    def results(self, labels: dict[str, Sequence], ks: Sequence[int] = KS) -> dict:
        """pass@K over the tasks of ``labels`` (task -> true output grid per test input).

        Returns ``{"pass@K": float, ..., "tasks": n, "per_task": {task: {"pass@K": float}}}``; test inputs
        without answers count as wrong.
        """
        per_task = {}
        for task, outs in labels.items():
            hits = np.zeros((len(outs), len(ks)))
            for j, truth in enumerate(outs):
                truth_key = _key(np.asarray(truth, np.uint8))
                keys = [_key(c.grid) for c in self.ranked(task, j)]
                rank = keys.index(truth_key) if truth_key in keys else None
                hits[j] = [rank is not None and rank < k for k in ks]
            per_task[task] = {f"pass@{k}": float(v) for k, v in zip(ks, hits.mean(0))}
        out = {f"pass@{k}": float(np.mean([p[f"pass@{k}"] for p in per_task.values()])) if per_task else 0.0
               for k in ks}
        return {**out, "tasks": len(per_task), "per_task": per_task}

    def submission(self, num_tests: dict[str, int] | None = None) -> dict[str, list[dict]]:
        """ARC Prize format: task -> [{"attempt_1": grid, "attempt_2": grid} per test input].

        ``num_tests`` (task -> test inputs) defaults to what was voted on. With one candidate both
        attempts are that grid; with none, both are [[0]]; the empty grid of blank answers is written
        as [[0]] too (the format needs a grid).
        """
        out = {}
        for task, n in sorted((num_tests or self.tasks).items()):
            entries = []
            for j in range(n):
                top = [c.grid.tolist() if c.grid.size else [[0]]          # a blank answer: the placeholder
                       for c in self.ranked(task, j)[:2]] or [[[0]]]
                entries.append({"attempt_1": top[0], "attempt_2": top[1] if len(top) > 1 else top[0]})
            out[task] = entries
        return out


def write_submission(path: str | Path, submission: dict) -> Path:
    """Write the submission JSON atomically (temporary file, then rename)."""
    from trm.io import atomic_write_text
    return atomic_write_text(path, json.dumps(submission))


# ---------------------------------------------------------------------------------------------------
# Reading a test split


def example_positions(ps: PuzzleSet) -> tuple[np.ndarray, np.ndarray]:
    """Per example: its puzzle identifier and its index within the puzzle (the test-input index)."""
    pi = np.asarray(ps.puzzle_indices, np.int64)
    sizes = np.diff(pi)
    pid = ps.example_puzzle_ids()
    within = np.arange(pi[-1]) - np.repeat(pi[:-1], sizes)
    return pid, within


def true_outputs(ps: PuzzleSet, identifiers: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """True outputs per task and test input, read from the first version (puzzle) of each group."""
    out: dict[str, list[np.ndarray]] = {}
    for g in range(ps.num_groups):
        p = int(ps.group_indices[g])
        name = identifiers[int(ps.puzzle_identifiers[p])]
        grids = []
        for i in range(int(ps.puzzle_indices[p]), int(ps.puzzle_indices[p + 1])):
            grid = crop(np.asarray(ps.labels[i]))
            if grid is None:
                raise DatasetError(f"test label of {name} example {i} holds no grid")
            grids.append(invert_augmentation(grid, name))
        out[parse_version_name(name)[0]] = grids
    return out


def is_scored(data_dir: str | Path) -> bool:
    """False for a test split built from a challenges file without solutions (nothing to score)."""
    from trm.data.format import read_metadata
    d = Path(data_dir)
    split = d if (d / "dataset.json").is_file() else d / "test"
    try:
        return bool(read_metadata(split).extra.get("scored", True))
    except Exception:  # noqa: BLE001 - no readable metadata: score as before
        return True


def _identifiers_for(data_dir: str | Path) -> list[str]:
    d = Path(data_dir)
    return load_identifiers(d if (d / "identifiers.json").is_file() else d.parent)


def vote_predictions(ps: PuzzleSet, preds: np.ndarray, halt_prob: np.ndarray, identifiers: Sequence[str],
                     voter: ArcVoter | None = None) -> ArcVoter:
    """Vote with answers for the first ``len(preds)`` examples of a test split."""
    voter = voter or ArcVoter()
    pid, within = example_positions(ps)
    n = len(preds)
    voter.add_batch([identifiers[i] for i in pid[:n]], within[:n], np.asarray(preds), np.asarray(halt_prob)[:n])
    return voter


def score_arc_predictions(ps: PuzzleSet, result, data_dir: str | Path) -> dict[str, float]:
    """pass@K of one evaluation (fresh voter: no pooling) for the engine's ``EvalResult``.

    Tasks with no answered example (an evaluation cut short by ``max_examples``) are left out;
    ``arc_tasks`` counts the tasks scored and ``arc_tasks_total`` those in the split.
    """
    identifiers = _identifiers_for(data_dir)
    voter = vote_predictions(ps, result.preds, result.halt_prob, identifiers)
    labels = true_outputs(ps, identifiers)
    answered = voter.tasks
    res = voter.results({t: v for t, v in labels.items() if t in answered})
    n = max(len(result.preds), 1)
    return {**{f"pass@{k}": res[f"pass@{k}"] for k in KS}, "arc_tasks": float(res["tasks"]),
            "arc_tasks_total": float(len(labels)), "arc_abstain": voter.abstained / n}


def arc_submission(ps: PuzzleSet, result, data_dir: str | Path) -> dict[str, list[dict]]:
    """The ARC Prize submission (two attempts per test input, ranked by votes) for an ``EvalResult``.

    Every task of the split is listed with all its test inputs; inputs without a croppable answer get
    ``[[0]]`` for both attempts.
    """
    identifiers = _identifiers_for(data_dir)
    voter = vote_predictions(ps, result.preds, result.halt_prob, identifiers)
    pid, within = example_positions(ps)
    num_tests: dict[str, int] = {}
    for i, j in zip(pid, within):
        task = parse_version_name(identifiers[int(i)])[0]
        num_tests[task] = max(num_tests.get(task, 0), int(j) + 1)
    return voter.submission(num_tests)
