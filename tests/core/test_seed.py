import random

import numpy as np
import torch

from paperzoo.core import seed as seedlib


def test_rng_state_round_trip_restores_every_stream(tmp_path):
    gen = seedlib.seed_everything(3)
    state = seedlib.rng_state({"g": gen})
    torch.save(state, tmp_path / "s.pt")
    first = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    seedlib.set_rng_state(torch.load(tmp_path / "s.pt", weights_only=True), {"g": gen})
    again = (random.random(), np.random.rand(), torch.rand(1).item(), torch.rand(1, generator=gen).item())
    assert first == again
