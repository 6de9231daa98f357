"""The chain (the training env of ``env.embodiment=twin``) gives the same trajectories as recorded:
fixed random action sequences on drawer-close and window-close, seeds 0-2, joint positions and
observations after every policy step and the episodes' records (chain_reference.py made
data/chain_reference.npz). A change meant to alter the chain's results re-records it and says why."""
from __future__ import annotations

import json

import numpy as np
import pytest
from chain_reference import FIELDS, PATH, SEEDS, TASKS, run

pytestmark = pytest.mark.slow  # about 2 minutes on 2 busy cores (six 40-step episodes on the twin)


@pytest.mark.parametrize('task', TASKS)
@pytest.mark.parametrize('seed', SEEDS)
def test_the_chain_reproduces_its_reference_trajectories(task, seed):
    reference = np.load(PATH)
    now = run(task, seed)
    for name in ('positions', 'observations', *FIELDS):
        np.testing.assert_allclose(now[name], reference[f'{task}/{seed}/{name}'], rtol=0, atol=1e-9,
                                   err_msg=f'{task} seed {seed}: {name}')
    assert json.loads(str(now['reasons'])) == json.loads(str(reference[f'{task}/{seed}/reasons']))
