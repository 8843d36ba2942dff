"""Elastic weight consolidation along a transfer path (METHOD section 6).

Each path step fine-tunes the decoder on the next task while a penalty keeps the weights
that mattered for the previous task close to their previous values:

    penalty(theta) = lambda_ewc * sum_k F_k * (theta_k - theta*_k)^2

with theta* the weights after the previous step (the *anchor*) and F the diagonal Fisher
information estimated on the previous task's data (METHOD section 6). Kirkpatrick et al.
(2017) write ``lambda / 2``; METHOD's form has no 1/2, which only rescales lambda_ewc.

The Fisher diagonal is the average, over every case of the previous task's set, of the
squared gradient of the loss of that case alone:

    F_k = (1 / N) * sum_{n=1..N} (d loss(x_n, y_n) / d theta_k)^2

(the empirical Fisher; per case, not per batch, and over the whole set, not the last batch).
It is then divided by its mean over all entries, so mean(F) = 1: raw Fisher magnitudes vary
about 7x between seeds and tasks (METHOD section 6, pilot findings), and after the
normalisation one lambda_ewc (0.25 in the pilot) means the same strength on every step.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from seqtransfer.training.augment import center_patch
from seqtransfer.training.network import decoder_parameters

logger = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor] | Mapping[str, torch.Tensor]


def case_batches(
    cases: Sequence[tuple[np.ndarray, np.ndarray]], patch_size: Sequence[int] | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield every case once as a batch of one, for :func:`estimate_fisher`.

    Args:
        cases: ``(image [C,X,Y,Z], label [X,Y,Z])`` pairs.
        patch_size: when given, each case is cut to a deterministic patch of this size
            centred on its foreground (:func:`~seqtransfer.training.augment.center_patch`),
            which bounds memory on large volumes; the whole volume otherwise (its shape must
            then suit the network's strides).

    Yields:
        ``(image [1, C, ...] float32, label [1, 1, ...] uint8)``.
    """
    for image, label in cases:
        img, lbl = (image, label) if patch_size is None else center_patch(image, label, patch_size)
        yield (
            torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None],
            torch.from_numpy(np.ascontiguousarray(lbl).astype(np.uint8))[None, None],
        )


def _unpack(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(batch, Mapping):
        return batch["image"], batch["label"]
    image, label = batch
    return image, label


def estimate_fisher(
    model: nn.Module,
    loader: Iterable[Batch],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    device: torch.device | str = "cpu",
    parameters: Mapping[str, nn.Parameter] | None = None,
    normalize: bool = True,
) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of ``parameters`` on a whole data set (module docstring).

    Every batch of ``loader`` is split into its cases and the gradient of each case's loss
    is taken alone (batch of one), so the result does not depend on how the set is batched.
    The model is evaluated in eval mode (no dropout, no deep-supervision heads), in float32,
    and its train/eval mode and ``requires_grad`` flags are restored afterwards.

    Args:
        model: the model trained on the previous task.
        loader: batches ``(image [B,C,...], label [B,1,...])`` or dicts with keys
            ``image``/``label``, covering the previous task's set once (:func:`case_batches`).
        loss_fn: the training loss, ``loss_fn(logits, label) -> scalar``.
        device: where to compute.
        parameters: the parameters to estimate the Fisher of, by name; the decoder's
            (:func:`~seqtransfer.training.network.decoder_parameters`) when None, i.e. the
            parameters a frozen-encoder step trains.
        normalize: divide by the mean over all entries (mean 1). Left raw when the Fisher
            is identically zero (a warning is logged).

    Returns:
        One tensor per parameter, same name and shape, on ``device``.

    Raises:
        ValueError: ``loader`` yields no case.
    """
    device = torch.device(device)
    params = dict(parameters) if parameters is not None else decoder_parameters(model)
    names = list(params)
    tensors = [params[n] for n in names]
    fisher = [torch.zeros_like(p, device=device, dtype=torch.float32) for p in tensors]
    was_training = model.training
    flags = [p.requires_grad for p in tensors]
    count = 0
    try:
        model.eval()
        for p in tensors:
            p.requires_grad_(True)
        for batch in loader:
            images, labels = _unpack(batch)
            for b in range(images.shape[0]):
                x = images[b : b + 1].to(device=device, dtype=torch.float32)
                y = labels[b : b + 1].to(device=device)
                loss = loss_fn(model(x), y)
                grads = torch.autograd.grad(loss, tensors, allow_unused=True)
                for f, g in zip(fisher, grads, strict=True):
                    if g is not None:
                        f.add_(g.detach().float() ** 2)
                count += 1
    finally:
        for p, flag in zip(tensors, flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)
    if count == 0:
        raise ValueError("estimate_fisher: the loader yielded no case")
    for f in fisher:
        f.div_(count)
    if normalize:
        total = sum(float(f.double().sum()) for f in fisher)
        entries = sum(f.numel() for f in fisher)
        if total > 0:
            mean = total / entries
            for f in fisher:
                f.div_(mean)
        else:
            logger.warning("the Fisher information is zero everywhere; the EWC penalty will be 0")
    return dict(zip(names, fisher, strict=True))


def anchor_from(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Copy the current parameters (theta*), detached; all of them when ``names`` is None."""
    params = dict(model.named_parameters())
    keys = list(names) if names is not None else list(params)
    return {n: params[n].detach().clone() for n in keys}


def ewc_penalty(
    model: nn.Module,
    fisher: Mapping[str, torch.Tensor],
    anchor: Mapping[str, torch.Tensor],
    lambda_ewc: float,
) -> torch.Tensor:
    """``lambda_ewc * sum_k F_k (theta_k - theta*_k)^2`` over the parameters in ``fisher``.

    Args:
        model: the model being fine-tuned.
        fisher: :func:`estimate_fisher` output.
        anchor: :func:`anchor_from` of the model after the previous step.
        lambda_ewc: strength.

    Returns:
        The penalty, a differentiable scalar (exactly 0 at the anchor).

    Raises:
        KeyError: a Fisher entry names no parameter of the model, or has no anchor.
    """
    params = dict(model.named_parameters())
    first = next(iter(params.values()))
    total = torch.zeros((), device=first.device, dtype=torch.float32)
    for name, f in fisher.items():
        if name not in params or name not in anchor:
            raise KeyError(f"EWC: parameter {name!r} is missing from the model or the anchor")
        diff = params[name].float() - anchor[name].to(params[name].device).float()
        total = total + (f.to(diff.device) * diff**2).sum()
    return total * float(lambda_ewc)


def fisher_summary(fisher: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Entries, mean and max of a Fisher diagonal (for logs and result files)."""
    flat = torch.cat([f.detach().flatten().float().cpu() for f in fisher.values()])
    return {"entries": int(flat.numel()), "mean": float(flat.mean()), "max": float(flat.max())}
