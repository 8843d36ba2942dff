"""The one progress protocol of the library.

Long work reports how far it is by calling a :data:`Progress` callback with a
:class:`ProgressEvent`: the stage's name, units done, units in all and, for training, the
last step's loss. The library never draws anything; the command line turns the events into
rich progress bars (one bar per stage name).

A function that runs a sub-stage passes its callback on renamed with :func:`relabel`
(``relabel(progress, "zoo")``) or :func:`prefixed` (``prefixed(progress, "benchmark ")``); a
function that only counts (an executor, a training loop) reports the empty stage name and
leaves the naming to its caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ProgressEvent:
    """How far one stage is.

    Attributes:
        stage: what is being done (``"zoo"``, ``"graph draw 0: pairs"``); empty where the
            reporter does not know (its caller names it with :func:`relabel`).
        done: units finished (steps, cases, runs), counted from 1 for the first one done.
        total: units in all.
        loss: the training loss of the last step, for training stages; otherwise None.
    """

    stage: str
    done: int
    total: int
    loss: float | None = None


#: the callback every function with a ``progress`` argument takes
Progress = Callable[[ProgressEvent], None]


def report(progress: Progress | None, stage: str, done: int, total: int, loss: float | None = None) -> None:
    """Send one :class:`ProgressEvent` to ``progress`` (nothing where it is None)."""
    if progress is not None:
        progress(ProgressEvent(stage, done, total, loss))


def relabel(progress: Progress | None, stage: str) -> Progress | None:
    """``progress`` with every event's stage renamed to ``stage`` (done, total and loss passed
    on); None where ``progress`` is None."""
    if progress is None:
        return None
    target = progress

    def forward(event: ProgressEvent) -> None:
        target(replace(event, stage=stage))

    return forward


def prefixed(progress: Progress | None, prefix: str) -> Progress | None:
    """``progress`` with ``prefix`` put before every event's stage (``prefixed(p, "graph: ")``
    turns ``affinity`` into ``graph: affinity``); None where ``progress`` is None."""
    if progress is None:
        return None
    target = progress

    def forward(event: ProgressEvent) -> None:
        target(replace(event, stage=prefix + event.stage))

    return forward
