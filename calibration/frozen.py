"""A model held fixed for a while: the teacher that inputs are optimised through (zero-shot synthesis)
or that a student is distilled from (KD fine-tuning).

Not zero-shot specific: any calibration step that runs a model without training it (a QAT teacher, a
frozen QSAM base) takes the same context, so it sits at the top of calibration/ beside distributed.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; the previous mode and every parameter's
    requires_grad are restored after, also when the body raises."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    training = model.training
    for p, _ in flags:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        model.train(training)
