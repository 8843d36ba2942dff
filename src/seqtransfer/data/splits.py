"""Seeded case splits of the protocol (METHOD sections 6-7).

For a target task the cases are permuted once by the seed. The first
``n_draws * n_train`` cases form the training reservoir: draw ``d`` takes cases
``[d * n_train, (d + 1) * n_train)``. Test sets are ``n_test_sets`` seeded random subsets of
``test_size`` cases from the rest, so every test case is disjoint from the training cases of
every draw, and the sets are the same for every method and every draw.

A target with fewer cases than the protocol needs is a user's few-label target (``seqtransfer
adapt``): it has no draws and no test sets; every labelled case trains, and up to
``target_cases`` of them (seeded, :func:`sample_cases`) stand for it in the affinity.

For a source task, up to ``max_train`` cases train the zoo model and the rest are held out
to measure its own Dice (O of METHOD section 4).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from seqtransfer.core.errors import ConfigError


def _rng(seed: int, *names: str) -> np.random.Generator:
    """A generator seeded by ``seed`` and stable names (never Python's salted ``hash``)."""
    digest = hashlib.sha256("\x1f".join(names).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


@dataclass(frozen=True)
class TargetSplit:
    """Training draws and test sets of a target task.

    Attributes:
        draws: training cases of each draw.
        test_sets: the test sets, each disjoint from every draw's training cases.
    """

    draws: tuple[tuple[str, ...], ...]
    test_sets: tuple[tuple[str, ...], ...]


def protocol_cases_needed(n_train: int = 3, n_draws: int = 3, test_size: int = 10) -> int:
    """Labelled cases a target needs for the evaluation protocol's draws and test sets."""
    return n_draws * n_train + test_size


def protocol_split_possible(n_cases: int, n_train: int = 3, n_draws: int = 3, test_size: int = 10) -> bool:
    """Whether a target of ``n_cases`` labelled cases can be split for the evaluation protocol."""
    return n_cases >= protocol_cases_needed(n_train, n_draws, test_size)


def target_split(
    name: str,
    case_ids: Sequence[str],
    seed: int = 0,
    n_train: int = 3,
    n_draws: int = 3,
    n_test_sets: int = 3,
    test_size: int = 10,
) -> TargetSplit:
    """Split a target's cases into training draws and test sets.

    Args:
        name: seed name of the split (:attr:`Task.split_key`: tasks of one site share it).
        case_ids: the target's cases.
        seed: protocol seed.
        n_train: training cases per draw (3 in the paper).
        n_draws: number of training draws.
        n_test_sets: number of test sets.
        test_size: cases per test set (10 in the paper).

    Raises:
        ConfigError: fewer cases than ``n_draws * n_train + test_size``.
    """
    if n_train < 1 or n_draws < 1 or n_test_sets < 1 or test_size < 1:
        raise ConfigError("n_train, n_draws, n_test_sets and test_size must be at least 1")
    ids = sorted(case_ids)
    needed = protocol_cases_needed(n_train, n_draws, test_size)
    if len(ids) < needed:
        raise ConfigError(
            f"target {name!r} has {len(ids)} labelled case(s); the evaluation protocol ({n_draws} draw(s) of "
            f"{n_train} training case(s) and test sets of {test_size}) needs at least {needed}. "
            "To use a target with fewer labelled cases, run `seqtransfer adapt` (or graph build, select and transfer)"
        )
    rng = _rng(seed, "target", name)
    order = [ids[i] for i in rng.permutation(len(ids))]
    reservoir, rest = order[: n_draws * n_train], order[n_draws * n_train :]
    draws = tuple(tuple(sorted(reservoir[d * n_train : (d + 1) * n_train])) for d in range(n_draws))
    test_sets = tuple(
        tuple(sorted(rest[i] for i in rng.choice(len(rest), size=test_size, replace=False))) for _ in range(n_test_sets)
    )
    return TargetSplit(draws=draws, test_sets=test_sets)


def sample_size_split(
    name: str, case_ids: Sequence[str], n: int, seed: int = 0, n_draws: int = 3, test_size: int = 10
) -> TargetSplit:
    """The split of the sample-size study: ``n`` labelled training cases per draw.

    Every draw and every ``n`` is scored on one test set, the protocol's first
    (:func:`target_split` with the paper's 3 training cases), and trains on cases outside it.
    Draw ``d``'s cases are nested: its protocol cases first (so ``n = 3`` is the protocol's
    draw exactly and ``n = 2`` the first two of them), then the other cases outside the test
    set in a seeded order of the draw. Draws of more than 3 cases may share cases.

    Raises:
        ConfigError: ``n`` < 1, or more than the cases outside the test set.
    """
    protocol = target_split(name, case_ids, seed=seed, n_train=3, n_draws=n_draws, test_size=test_size)
    test = protocol.test_sets[0]
    pool = [c for c in sorted(case_ids) if c not in set(test)]
    if n < 1 or n > len(pool):
        raise ConfigError(
            f"target {name!r}: {n} training case(s) asked; {len(pool)} lie outside its test set of {test_size} "
            f"(need 1..{len(pool)})"
        )
    draws = []
    for d, own in enumerate(protocol.draws):
        rest = [c for c in pool if c not in set(own)]
        rng = _rng(seed, "sample-size", name, str(d))
        order = [*own, *(rest[i] for i in rng.permutation(len(rest)))]
        draws.append(tuple(sorted(order[:n])))
    return TargetSplit(draws=tuple(draws), test_sets=(test,))


#: O rests on at least this many held-out cases of a source (METHOD section 4) ...
MIN_HELD_OUT = 5
#: ... or this share of its cases, whichever is larger
HELD_OUT_SHARE = 0.2


def held_out_count(n_cases: int) -> int:
    """Cases a source of ``n_cases`` holds out for its O: 20 %, and at least 5 (a source of
    fewer than 10 cases holds out half, so that it keeps as many to train on)."""
    return max(1, math.ceil(HELD_OUT_SHARE * n_cases), min(MIN_HELD_OUT, n_cases // 2))


def source_split(
    name: str, case_ids: Sequence[str], seed: int = 0, max_train: int = 60, min_test: int | None = None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Training and held-out cases of a source task (its zoo model and its O).

    Up to ``max_train`` cases train, keeping at least ``min_test`` held out (default
    :func:`held_out_count`: 5 or 20 % of the cases, so that O is not the Dice of one case).

    Raises:
        ConfigError: fewer than 2 cases (or ``min_test + 1``).
    """
    ids = sorted(case_ids)
    if min_test is None:
        if len(ids) < 2:
            raise ConfigError(
                f"source {name!r} has {len(ids)} case(s); need at least 2 (one to train, one to measure O)"
            )
        min_test = held_out_count(len(ids))
    if len(ids) < min_test + 1:
        raise ConfigError(f"source {name!r} has {len(ids)} case(s); need at least {min_test + 1}")
    rng = _rng(seed, "source", name)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n_train = min(max_train, len(ids) - min_test)
    return tuple(sorted(order[:n_train])), tuple(sorted(order[n_train:]))


def sample_cases(
    name: str, case_ids: Sequence[str], k: int, seed: int = 0, purpose: str = "affinity"
) -> tuple[str, ...]:
    """A seeded sample of up to ``k`` cases (all when there are fewer), sorted."""
    ids = sorted(case_ids)
    if len(ids) <= k:
        return tuple(ids)
    rng = _rng(seed, purpose, name)
    return tuple(sorted(ids[i] for i in rng.choice(len(ids), size=k, replace=False)))
