"""One seed mixer: the seed of a random stream named by integers (run seed, epoch, batch, rank, ...)."""

from __future__ import annotations

SEED_RANGE = 2**31
"""Seeds lie in [0, 2**31): what every RNG dctq uses accepts (torch, numpy, DataLoader workers)."""


def mix_seed(*parts: int) -> int:
    """The seed of the stream named by `parts`, in [0, 2**31); deterministic, order-sensitive.

    Two parts mix as (a * 1_000_003 + b * 7_919) % 2**31, the per-epoch seed training has always used
    (so `dctq demo` draws the same data order), and further parts fold in the same way from the left:
    mix_seed(a, b, c) == mix_seed(mix_seed(a, b), c). One part is taken modulo 2**31. Callers that
    need two streams from the same (seed, step) add a constant part to tell them apart.
    Raises ValueError without parts.
    """
    if not parts:
        raise ValueError("mix_seed needs at least one part")
    value = parts[0] % SEED_RANGE
    for part in parts[1:]:
        value = (value * 1_000_003 + part * 7_919) % SEED_RANGE
    return value
