"""common.seeding: one seed mixer, giving training's per-epoch seeds unchanged."""

from __future__ import annotations

import pytest
import torch

from dctq.common.seeding import mix_seed


def test_mix_seed_keeps_trainings_epoch_seeds():
    """(seed * 1_000_003 + epoch * 7_919) % 2**31, the per-epoch seed `dctq train` has always drawn."""
    known = {(0, 0): 0, (0, 1): 7_919, (1, 0): 1_000_003, (7, 5): 7_039_616, (123_456, 30): 1_050_040_002}
    known |= {(0, -1): 2_147_475_729, (2**40 + 3, 9): 3_071_280}
    for (seed, epoch), value in known.items():
        assert mix_seed(seed, epoch) == value


def test_mix_seed_folds_parts_deterministically_and_in_range():
    values = {}
    for parts in [
        (0,),
        (5,),
        (1, 2),
        (2, 1),
        (1, 2, 3),
        (3, 2, 1),
        (2, 1, 3),
        (1, 3, 2),
        (0, 0, 0, 1),
        (0, 0, 1, 0),
    ]:
        value = mix_seed(*parts)
        assert value == mix_seed(*parts) and 0 <= value < 2**31
        values[parts] = value
        if len(parts) > 2:
            assert value == mix_seed(mix_seed(*parts[:-1]), parts[-1])
    assert len(set(values.values())) == len(values)  # permuted parts give other seeds
    assert mix_seed(-1) == 2**31 - 1 and mix_seed(2**31 + 4) == 4
    torch.Generator().manual_seed(mix_seed(2**62, 2**62, 2**62))  # every value fits an RNG
    with pytest.raises(ValueError, match="at least one part"):
        mix_seed()
