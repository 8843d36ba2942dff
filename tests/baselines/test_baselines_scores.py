"""LogME, LEEP and NCE against independent computations, the reference's values, and their inputs."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from scipy.optimize import minimize

from seqtransfer.baselines import leep, logme, nce
from seqtransfer.baselines.scores import logme_per_class
from seqtransfer.core.errors import ConfigError


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def _class_features(
    rng: np.random.Generator, n: int, d: int, classes: int, noise: float, flip: float
) -> tuple[np.ndarray, np.ndarray]:
    """Features around one centre per class; a fraction ``flip`` of the labels redrawn."""
    truth = np.arange(n) % classes
    features = rng.normal(size=(classes, d))[truth] + noise * rng.normal(size=(n, d))
    labels = truth.copy()
    flipped = rng.random(n) < flip
    labels[flipped] = rng.integers(0, classes, int(flipped.sum()))
    return features, labels


def _log_evidence(features: np.ndarray, target: np.ndarray, alpha: float, beta: float) -> float:
    """L(alpha, beta) / N written directly, with a D x D log-determinant."""
    n, d = features.shape
    precision = alpha * np.eye(d) + beta * features.T @ features
    mean = beta * np.linalg.solve(precision, features.T @ target)
    residual = target - features @ mean
    _, log_det = np.linalg.slogdet(precision)
    value = (
        n / 2 * math.log(beta)
        + d / 2 * math.log(alpha)
        - n / 2 * math.log(2 * math.pi)
        - beta / 2 * residual @ residual
        - alpha / 2 * mean @ mean
        - log_det / 2
    )
    return float(value) / n


# N > D (Gram-matrix branch) and N < D (thin-SVD branch), inputs on which the fixed point converges.
_BRANCHES = {
    "n_greater_than_d": {"seed": 1, "n": 60, "d": 5, "classes": 3, "noise": 0.5, "flip": 0.0},
    "n_less_than_d": {"seed": 0, "n": 20, "d": 40, "classes": 3, "noise": 0.02, "flip": 0.3},
}


@pytest.mark.parametrize("case", sorted(_BRANCHES))
def test_logme_is_the_log_evidence_at_its_fixed_point(case: str) -> None:
    spec = dict(_BRANCHES[case])
    features, labels = _class_features(np.random.default_rng(spec.pop("seed")), **spec)
    fit = logme_per_class(features, labels)
    for c in range(spec["classes"]):
        target = (labels == c).astype(np.float64)
        assert fit.evidence[c] == pytest.approx(_log_evidence(features, target, fit.alpha[c], fit.beta[c]), abs=1e-6)
    assert logme(features, labels) == pytest.approx(float(np.mean(fit.evidence)), abs=1e-12)


@pytest.mark.parametrize("case", sorted(_BRANCHES))
def test_logme_fixed_point_is_a_local_maximum(case: str) -> None:
    spec = dict(_BRANCHES[case])
    features, labels = _class_features(np.random.default_rng(spec.pop("seed")), **spec)
    fit = logme_per_class(features, labels)
    for c in range(spec["classes"]):
        target = (labels == c).astype(np.float64)
        start = np.log([fit.alpha[c], fit.beta[c]])
        at_fixed_point = _log_evidence(features, target, fit.alpha[c], fit.beta[c])

        def negative(log_params: np.ndarray, target: np.ndarray = target) -> float:
            return -_log_evidence(features, target, math.exp(log_params[0]), math.exp(log_params[1]))

        best = minimize(negative, start, method="L-BFGS-B", bounds=[(s - 1.0, s + 1.0) for s in start])
        assert -best.fun <= at_fixed_point + 1e-6
        for step_alpha in (-1e-2, 0.0, 1e-2):
            for step_beta in (-1e-2, 0.0, 1e-2):
                assert -negative(start + np.array([step_alpha, step_beta])) <= at_fixed_point + 1e-6


def test_logme_matches_the_reference_value() -> None:
    # Value of thuml/LogME LogME.py (LogME().fit, fixed point) on these inputs; N > D, full rank.
    rng = np.random.default_rng(7)
    labels = np.arange(40) % 3
    features = rng.normal(size=(40, 6)) + np.eye(3, 6)[labels]
    assert logme(features, labels) == pytest.approx(_REFERENCE_LOGME, abs=1e-6)


def test_logme_matches_the_reference_where_the_iteration_is_capped() -> None:
    # Uninformative features: two classes stop at the 11-step cap, so the value depends on the
    # reference's start (alpha = beta = 1), cap and tolerance, not only on the maximum.
    rng = np.random.default_rng(12)
    features = rng.normal(size=(50, 8))
    labels = rng.integers(0, 3, 50)
    assert logme(features, labels) == pytest.approx(_REFERENCE_LOGME_CAPPED, abs=1e-6)


def test_logme_ignores_all_zero_feature_columns() -> None:
    # A zero column adds alpha to A's spectrum and D/2 log alpha: they cancel. The unpadded
    # reference (thuml/LogME issue #23) would move by log(alpha) / 2N here.
    features, labels = _class_features(np.random.default_rng(3), 50, 4, 2, 0.8, 0.0)
    padded = np.hstack([features, np.zeros((50, 2))])
    assert logme(padded, labels) == pytest.approx(logme(features, labels), abs=1e-9)


def test_logme_is_higher_for_features_that_separate_the_classes() -> None:
    rng = np.random.default_rng(4)
    labels = np.arange(90) % 3
    separating = 3.0 * np.eye(3, 8)[labels] + rng.normal(size=(90, 8))
    random = rng.normal(size=(90, 8))
    assert logme(separating, labels) > logme(random, labels) + 0.1


def test_logme_accepts_float32_and_python_lists() -> None:
    features, labels = _class_features(np.random.default_rng(5), 30, 4, 2, 0.5, 0.0)
    expected = logme(features, labels)
    assert logme(features.astype(np.float32), labels) == pytest.approx(expected, abs=1e-5)
    assert logme(features.tolist(), labels.tolist()) == pytest.approx(expected, abs=1e-12)


def _leep_by_loops(probs: np.ndarray, labels: np.ndarray) -> float:
    n, source_classes = probs.shape
    target_classes = int(max(labels)) + 1
    joint = [[0.0] * source_classes for _ in range(target_classes)]
    for i in range(n):
        for z in range(source_classes):
            joint[int(labels[i])][z] += probs[i, z] / n
    source_mass = [sum(joint[y][z] for y in range(target_classes)) for z in range(source_classes)]
    total = 0.0
    for i in range(n):
        expected = sum(probs[i, z] * joint[int(labels[i])][z] / source_mass[z] for z in range(source_classes))
        total += math.log(expected)
    return total / n


@pytest.mark.parametrize(
    ("seed", "n", "source_classes", "target_classes"), [(0, 25, 4, 3), (1, 40, 2, 5), (2, 7, 6, 2)]
)
def test_leep_matches_loops(seed: int, n: int, source_classes: int, target_classes: int) -> None:
    rng = np.random.default_rng(seed)
    probs = _softmax(2.0 * rng.normal(size=(n, source_classes)))
    labels = rng.integers(0, target_classes, n)
    assert leep(probs, labels) == pytest.approx(_leep_by_loops(probs, labels), abs=1e-6)


def test_leep_matches_the_reference_value() -> None:
    # Value of thuml/LogME LEEP.py on these inputs.
    rng = np.random.default_rng(8)
    probs = _softmax(2.0 * rng.normal(size=(30, 4)))
    labels = rng.integers(0, 3, 30)
    assert leep(probs, labels) == pytest.approx(_REFERENCE_LEEP, abs=1e-6)


def test_leep_is_higher_when_the_source_predicts_the_labels() -> None:
    rng = np.random.default_rng(6)
    labels = np.arange(60) % 3
    informative = _softmax(4.0 * np.eye(3)[labels] + rng.normal(size=(60, 3)))
    uninformative = _softmax(rng.normal(size=(60, 3)))
    assert leep(informative, labels) > leep(uninformative, labels) + 0.1


def test_leep_gives_an_unused_source_class_no_weight() -> None:
    rng = np.random.default_rng(10)
    probs = _softmax(rng.normal(size=(20, 3)))
    labels = rng.integers(0, 2, 20)
    with_dead_class = np.hstack([probs, np.zeros((20, 1))])
    assert leep(with_dead_class, labels) == pytest.approx(leep(probs, labels), abs=1e-12)


def _nce_by_loops(source_labels: np.ndarray, labels: np.ndarray) -> float:
    n = len(labels)
    pair_counts: dict[tuple[int, int], int] = {}
    source_counts: dict[int, int] = {}
    for z, y in zip(source_labels, labels, strict=True):
        pair_counts[(int(z), int(y))] = pair_counts.get((int(z), int(y)), 0) + 1
        source_counts[int(z)] = source_counts.get(int(z), 0) + 1
    value = 0.0
    for (z, _), count in pair_counts.items():
        value += count / n * math.log(count / source_counts[z])
    return value


@pytest.mark.parametrize(
    ("seed", "n", "source_classes", "target_classes"), [(0, 30, 4, 3), (1, 50, 2, 6), (2, 9, 7, 2)]
)
def test_nce_matches_loops(seed: int, n: int, source_classes: int, target_classes: int) -> None:
    rng = np.random.default_rng(seed)
    source_labels = rng.integers(0, source_classes, n)
    labels = rng.integers(0, target_classes, n)
    assert nce(source_labels, labels) == pytest.approx(_nce_by_loops(source_labels, labels), abs=1e-6)


def test_nce_matches_the_reference_value() -> None:
    # Value of thuml/LogME NCE.py on these inputs.
    rng = np.random.default_rng(9)
    source_labels = rng.integers(0, 5, 50)
    labels = rng.integers(0, 3, 50)
    assert nce(source_labels, labels) == pytest.approx(_REFERENCE_NCE, abs=1e-6)


def test_nce_is_zero_when_labels_are_a_function_of_the_source() -> None:
    rng = np.random.default_rng(11)
    source_labels = rng.integers(0, 6, 40)
    labels = np.array([0, 2, 1, 2, 0, 1])[source_labels]
    assert nce(source_labels, labels) == 0.0
    assert nce(source_labels, rng.integers(0, 3, 40)) < -0.1


_REFERENCE_LOGME = -0.7993599064814543
_REFERENCE_LOGME_CAPPED = -0.840470124040857
_REFERENCE_LEEP = -1.0317535637790625
_REFERENCE_NCE = -0.9789853272819717

_FEATURES = np.arange(12, dtype=np.float64).reshape(6, 2)
_PROBS = np.full((6, 2), 0.5)
_LABELS = np.array([0, 1, 0, 1, 2, 2])
_INVALID: list[tuple[str, Callable[[], float]]] = [
    ("logme features 1-D", lambda: logme(_FEATURES[:, 0], _LABELS)),
    ("logme features 3-D", lambda: logme(_FEATURES[None], _LABELS)),
    ("logme features empty", lambda: logme(np.zeros((0, 2)), np.zeros(0, dtype=int))),
    ("logme features not numeric", lambda: logme(np.array([["a", "b"]] * 6), _LABELS)),
    ("logme features NaN", lambda: logme(np.where(_FEATURES == 3, np.nan, _FEATURES), _LABELS)),
    ("logme features inf", lambda: logme(np.where(_FEATURES == 3, np.inf, _FEATURES), _LABELS)),
    ("logme features all zero", lambda: logme(np.zeros((6, 2)), _LABELS)),
    ("logme labels 2-D", lambda: logme(_FEATURES, _LABELS[:, None])),
    ("logme labels float", lambda: logme(_FEATURES, _LABELS.astype(float))),
    ("logme length mismatch", lambda: logme(_FEATURES, _LABELS[:5])),
    ("logme labels negative", lambda: logme(_FEATURES, _LABELS - 1)),
    ("leep probs 1-D", lambda: leep(_PROBS[:, 0], _LABELS)),
    ("leep probs empty", lambda: leep(np.zeros((0, 2)), np.zeros(0, dtype=int))),
    ("leep probs NaN", lambda: leep(np.where(np.eye(6, 2) > 0, np.nan, _PROBS), _LABELS)),
    ("leep probs negative", lambda: leep(np.tile([1.5, -0.5], (6, 1)), _LABELS)),
    ("leep rows not summing to 1", lambda: leep(_PROBS * 1.01, _LABELS)),
    ("leep logits instead of probs", lambda: leep(_FEATURES, _LABELS)),
    ("leep length mismatch", lambda: leep(_PROBS, _LABELS[:4])),
    ("leep labels negative", lambda: leep(_PROBS, -_LABELS)),
    ("leep labels empty", lambda: leep(_PROBS, np.zeros(0, dtype=int))),
    ("nce source 2-D", lambda: nce(_LABELS[:, None], _LABELS)),
    ("nce source empty", lambda: nce(np.zeros(0, dtype=int), np.zeros(0, dtype=int))),
    ("nce source float", lambda: nce(_LABELS.astype(float), _LABELS)),
    ("nce source negative", lambda: nce(_LABELS - 1, _LABELS)),
    ("nce labels negative", lambda: nce(_LABELS, _LABELS - 1)),
    ("nce length mismatch", lambda: nce(_LABELS, _LABELS[:5])),
]


@pytest.mark.parametrize("call", [call for _, call in _INVALID], ids=[name for name, _ in _INVALID])
def test_invalid_input_raises_config_error_with_one_line(call: Callable[[], float]) -> None:
    with pytest.raises(ConfigError) as raised:
        call()
    assert "\n" not in str(raised.value)
