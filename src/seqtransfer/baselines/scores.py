"""Transferability scores of the baselines (METHOD section 7): LogME, LEEP and NCE.

Each score is a pure function of arrays and computes what thuml/LogME's ``LogME.py``
(``_fit_fixed_point``), ``LEEP.py`` and ``NCE.py`` compute, to 1e-6 on the same inputs. The
deviations are few, and each is stated in its function's docstring: LogME pads the spectrum
to D (the fix the maintainers agreed in thuml/LogME issue #23), LEEP maps a source class that
has no probability mass to 0 and not to NaN, and NCE uses ``0 log 0 = 0`` and not ``1e-20``.

Every score is in nats (natural logarithms) and larger is better.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from seqtransfer.core.errors import ConfigError

# thuml/LogME's fixed-point constants: the added ``epsilon`` keeps alpha and beta finite when
# the fit is perfect, 11 iterations is their cap (it converges in 2-3 in practice), and the
# iteration stops once lambda = alpha / beta changes by at most 1e-3 relatively.
_LOGME_EPSILON = 1e-5
_LOGME_MAX_ITERATIONS = 11
_LOGME_TOLERANCE = 1e-3
# Singular values at or below this are treated as zero (thuml/LogME's ``truncated_svd``).
_RANK_THRESHOLD = 1e-10
_PROBABILITY_TOLERANCE = 1e-3


class LogMEPerClass(NamedTuple):
    """What LogME's fixed-point iteration reaches for each target class.

    Attributes:
        evidence: ``[C]``, the maximised log evidence of each class divided by N.
        alpha: ``[C]``, the prior precision of the weights at the fixed point.
        beta: ``[C]``, the noise precision at the fixed point.
    """

    evidence: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME, the maximised log marginal evidence of a linear model on the features.

    You et al., "LogME: Practical Assessment of Pre-trained Models for Transfer Learning",
    ICML 2021, computed by the fixed-point algorithm of You et al., "Ranking and Tuning
    Pre-trained Models: A New Paradigm for Exploiting Model Hubs", JMLR 2022
    (arXiv:2110.10545), as thuml/LogME ``LogME.py`` ``_fit_fixed_point`` does.

    Each class c is a regression of its one-hot target ``y = [labels == c]`` on the features
    F ``[N, D]``, with weights ``w ~ N(0, alpha^-1 I)`` and noise ``N(0, beta^-1)``. Its log
    evidence is::

        L(alpha, beta) = N/2 log beta + D/2 log alpha - N/2 log 2 pi
                         - beta/2 ||y - F m||^2 - alpha/2 m^T m - 1/2 log det A,
        A = alpha I + beta F^T F,    m = beta A^-1 F^T y.

    With ``F = U diag(s) V^T`` and ``x = U^T y``, ``sigma_i = s_i^2``, ``t = alpha / beta``,
    starting from ``alpha = beta = 1``, each step sets::

        gamma = sum_i sigma_i / (sigma_i + t)
        alpha = gamma / (m^T m + 1e-5),      m^T m = sum_i sigma_i x_i^2 / (sigma_i + t)^2
        beta = (N - gamma) / (r + 1e-5),     r = ||y - F m||^2

    until ``|t_new - t| / t <= 1e-3`` or 11 steps. The score is ``L / N`` at the last
    (alpha, beta), with ``m^T m`` and ``r`` of that step's ``t`` (as the reference does),
    averaged over the classes ``0 .. labels.max()``.

    The spectrum is the Gram matrix's eigendecomposition when N > D (singular values above
    1e-10 kept) and the thin SVD of F otherwise, as in the reference. Unlike the reference,
    ``log det A`` counts all D eigenvalues (``alpha`` for each of the ``D - k`` zero singular
    values), the fix agreed in thuml/LogME issue #23: the reference omits
    ``(D - k)/2 log alpha`` and so differs whenever N <= D or F has lower column rank. With
    N > D and full column rank the two agree.

    Args:
        features: ``[N, D]`` features of the target samples from the source model.
        labels: ``[N]`` integer target labels in ``0 .. C-1``.

    Returns:
        LogME in nats per sample; larger means the features fit the labels better.

    Raises:
        ConfigError: the shapes are wrong, the input is empty, the labels are negative or not
            integers, a feature is not finite, or every feature is zero.
    """
    return float(np.mean(logme_per_class(features, labels).evidence))


def logme_per_class(features: np.ndarray, labels: np.ndarray) -> LogMEPerClass:
    """The evidence, alpha and beta of each class that :func:`logme` averages.

    Args:
        features: ``[N, D]`` features of the target samples from the source model.
        labels: ``[N]`` integer target labels in ``0 .. C-1``.

    Returns:
        The per-class evidence divided by N, alpha and beta, each ``[C]``
        with ``C = labels.max() + 1``.

    Raises:
        ConfigError: as :func:`logme`.
    """
    matrix = _as_matrix(features, "features")
    targets = _as_labels(labels, "labels", matrix.shape[0])
    n, d = matrix.shape
    sigma, left = _spectrum(matrix)
    if sigma.size == 0:
        raise ConfigError("features are all zero: LogME needs at least one non-zero feature")
    num_classes = int(targets.max()) + 1
    evidence = np.empty(num_classes)
    alpha = np.empty(num_classes)
    beta = np.empty(num_classes)
    for c in range(num_classes):
        onehot = (targets == c).astype(np.float64)
        evidence[c], alpha[c], beta[c] = _class_evidence(sigma, left.T @ onehot, float(onehot.sum()), n, d)
    return LogMEPerClass(evidence, alpha, beta)


def _spectrum(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared non-zero singular values ``[k]`` and left singular vectors ``[N, k]``."""
    n, d = matrix.shape
    if n > d:
        # The D x D Gram matrix is far cheaper than the SVD of a tall F.
        eigenvalues, right = np.linalg.eigh(matrix.T @ matrix)
        singular = np.sqrt(np.clip(eigenvalues, 0.0, None))
        keep = singular > _RANK_THRESHOLD
        singular, right = singular[keep], right[:, keep]
        return singular**2, (matrix @ right) / singular
    left, singular, _ = np.linalg.svd(matrix, full_matrices=False)
    keep = singular > _RANK_THRESHOLD
    return singular[keep] ** 2, left[:, keep]


def _class_evidence(
    sigma: np.ndarray, projection: np.ndarray, target_norm2: float, n: int, d: int
) -> tuple[float, float, float]:
    """The fixed point of one class: (evidence / N, alpha, beta).

    ``projection`` is ``U^T y``; the part of ``||y||^2`` outside the span of U is a residual
    that no weight can fit, whatever alpha and beta.
    """
    x2 = projection**2
    outside = target_norm2 - float(x2.sum())
    alpha, beta = 1.0, 1.0
    for _ in range(_LOGME_MAX_ITERATIONS):
        t = alpha / beta
        gamma = float(np.sum(sigma / (sigma + t)))
        weight_norm2 = float(np.sum(sigma * x2 / (sigma + t) ** 2))
        residual2 = float(np.sum(x2 * (t / (sigma + t)) ** 2)) + outside
        alpha = gamma / (weight_norm2 + _LOGME_EPSILON)
        beta = (n - gamma) / (residual2 + _LOGME_EPSILON)
        if abs(alpha / beta - t) / t <= _LOGME_TOLERANCE:
            break
    log_det = float(np.sum(np.log(alpha + beta * sigma))) + (d - sigma.size) * math.log(alpha)
    evidence = (
        d / 2.0 * math.log(alpha)
        + n / 2.0 * math.log(beta)
        - 0.5 * log_det
        - beta / 2.0 * residual2
        - alpha / 2.0 * weight_norm2
        - n / 2.0 * math.log(2.0 * math.pi)
    )
    return evidence / n, alpha, beta


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP, the log expected empirical prediction of the source model's soft labels.

    Nguyen et al., "LEEP: A New Measure to Evaluate Transferability of Learned
    Representations", ICML 2020, as thuml/LogME ``LEEP.py`` computes it. With
    ``theta(x_i)`` the source model's probabilities over its classes z::

        P(y, z) = 1/N sum_{i: y_i = y} theta_z(x_i),    P(y | z) = P(y, z) / sum_y' P(y', z)
        LEEP = 1/N sum_i log( sum_z theta_z(x_i) P(y_i | z) )

    The target classes are ``0 .. labels.max()``; the rows of ``source_probs`` are used as
    given, not renormalised. A source class that no sample gives probability (a zero column)
    contributes nothing; the reference returns NaN there.

    Args:
        source_probs: ``[N, C_s]`` source-model probabilities, non-negative rows summing to 1.
        labels: ``[N]`` integer target labels in ``0 .. C-1``.

    Returns:
        LEEP in nats, at most 0 for rows summing exactly to 1; larger means the source
        predicts the target labels better.

    Raises:
        ConfigError: the shapes are wrong, the input is empty, the labels are negative or not
            integers, a probability is negative or not finite, or a row does not sum to 1
            within 1e-3.
    """
    probs = _as_matrix(source_probs, "source_probs")
    targets = _as_labels(labels, "labels", probs.shape[0])
    if np.any(probs < 0):
        raise ConfigError("source_probs has negative values; expected probabilities (a softmax)")
    row_sums = probs.sum(axis=1)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > _PROBABILITY_TOLERANCE:
        raise ConfigError(
            f"source_probs row {worst} sums to {row_sums[worst]:.6g}, not 1 (tolerance 1e-3); pass a softmax"
        )
    num_classes = int(targets.max()) + 1
    # The 1/N of P(y, z) cancels in P(y | z), so plain sums suffice.
    joint = np.stack([probs[targets == c].sum(axis=0) for c in range(num_classes)])
    source_mass = joint.sum(axis=0)
    conditional = np.divide(joint, source_mass, out=np.zeros_like(joint), where=source_mass > 0)
    expected = np.einsum("iz,iz->i", probs, conditional[targets])
    return float(np.mean(np.log(expected)))


def nce(source_labels: np.ndarray, labels: np.ndarray) -> float:
    """NCE, the negative conditional entropy of the target labels given the source labels.

    Tran et al., "Transferability and Hardness of Supervised Classification Tasks", ICCV 2019,
    as thuml/LogME ``NCE.py`` computes it, in nats. With ``P(y, z)`` the empirical joint
    frequency of target label y and source label z over the N samples::

        NCE = -H(Y | Z) = sum_{z: P(z) > 0} P(z) sum_y P(y | z) log P(y | z)

    with ``0 log 0 = 0``; the reference adds 1e-20 to every ``P(y | z)`` instead, which moves
    the value by less than 1e-18 per target class.

    Args:
        source_labels: ``[N]`` integer source labels (argmax of the source model), ``>= 0``.
        labels: ``[N]`` integer target labels in ``0 .. C-1``.

    Returns:
        NCE in nats, at most 0; 0 exactly when the target label is a function of the source
        label.

    Raises:
        ConfigError: the shapes are wrong, the input is empty, or a label is negative or not
            an integer.
    """
    source = _as_labels(source_labels, "source_labels", None)
    targets = _as_labels(labels, "labels", source.shape[0])
    num_source = int(source.max()) + 1
    num_target = int(targets.max()) + 1
    counts = np.bincount(targets * num_source + source, minlength=num_target * num_source)
    joint = counts.reshape(num_target, num_source) / float(source.shape[0])
    source_mass = joint.sum(axis=0)
    conditional = np.divide(joint, source_mass, out=np.zeros_like(joint), where=source_mass > 0)
    plogp = np.zeros_like(conditional)
    np.multiply(conditional, np.log(conditional, out=np.zeros_like(conditional), where=conditional > 0), out=plogp)
    return float(np.sum(source_mass * plogp.sum(axis=0)))


def _as_matrix(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` as a finite, non-empty ``[N, D]`` float64 array."""
    try:
        matrix = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be a numeric array: {error}") from None
    if matrix.ndim != 2:
        raise ConfigError(f"{name} must be 2-D [N, D], got shape {matrix.shape}")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ConfigError(f"{name} is empty (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError(f"{name} has {int(np.count_nonzero(~np.isfinite(matrix)))} non-finite values (NaN or inf)")
    return matrix


def _as_labels(values: np.ndarray, name: str, length: int | None) -> np.ndarray:
    """``values`` as a non-empty ``[N]`` int64 array of non-negative labels (N = ``length``)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ConfigError(f"{name} must be 1-D [N], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise ConfigError(f"{name} must be integers, got dtype {array.dtype}")
    if array.shape[0] == 0:
        raise ConfigError(f"{name} is empty")
    if length is not None and array.shape[0] != length:
        raise ConfigError(f"{name} has {array.shape[0]} entries but there are {length} samples")
    if int(array.min()) < 0:
        raise ConfigError(f"{name} has negative values (min {int(array.min())}); expected class indices 0 .. C-1")
    return array.astype(np.int64, copy=False)
