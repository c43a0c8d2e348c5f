"""Learning-rate schedules, built as `scheduler(optimizer, total_steps)` and stepped once per step.

Configs give them as `_partial_: true` nodes; `EmbeddingModule.configure_optimizers` finishes them with
the trainer's total number of optimizer steps, so a schedule follows `trainer.max_epochs` or
`trainer.max_steps` without repeating the number in the config.
"""

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, final_factor: float = 0.0
) -> LambdaLR:
    """Linear warm-up over `warmup_steps`, then cosine decay to `final_factor` x lr at `total_steps`."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_factor + (1.0 - final_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def constant_then_exponential(
    optimizer: Optimizer, total_steps: int, decay_start: int = 15_000, final_factor: float = 0.001
) -> LambdaLR:
    """The paper's schedule: lr constant until `decay_start`, then exponential decay reaching
    `final_factor` x lr at `total_steps` (Hermans et al.: 15,000 -> 25,000 steps, 0.001x)."""

    def factor(step: int) -> float:
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return final_factor**progress

    return LambdaLR(optimizer, factor)
