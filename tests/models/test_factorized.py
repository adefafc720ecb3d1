"""mf_bpr and ials internals: the solvers and updates behind the speed work of issue 13.

* ials' conjugate-gradient half step solves the same normal equations as the exact solver, and
  both solve the equations of the documented loss (unobserved weight, confidence, frequency-scaled
  regularization all enter; a solver that dropped one would fail here).
* mf_bpr's hand-written SGD step on the touched rows equals autograd + ``torch.optim.SGD`` on the
  summed BPR loss (the data-parallel path), repeated rows in a batch included.
* The negative sampler never hands back a seen item, with its dense table or its sorted keys.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models import FitOptions, build_model
from recsys.models._sampling import NegativeSampler
from recsys.models.ials import _csr_tensors, _half_step
from recsys.models.mf import _bpr_loss, _BPRModule, _sgd_step


def _random_csr(n_rows: int, n_cols: int, density: float, seed: int):
    import scipy.sparse as sp

    m = sp.random(n_rows, n_cols, density=density, format="csr", random_state=seed,
                  dtype=np.float32)
    m.data = 1.0 + 2.0 * m.data  # confidences > 1
    m.sort_indices()
    return m


def _normal_equations_solution(y: np.ndarray, m, reg: np.ndarray, a0: float) -> np.ndarray:
    """Row by row in float64: (a0 Y'Y + sum_i (c_i - a0) y_i y_i' + reg_u I) x_u = sum_i c_i y_i."""
    f = y.shape[1]
    out = np.zeros((m.shape[0], f))
    gram = a0 * y.T @ y
    for u in range(m.shape[0]):
        idx, c = m.indices[m.indptr[u]:m.indptr[u + 1]], m.data[m.indptr[u]:m.indptr[u + 1]]
        a = gram + (y[idx].T * (c - a0)) @ y[idx] + reg[u] * np.eye(f)
        out[u] = np.linalg.solve(a, (c[:, None] * y[idx]).sum(0))
    return out


@pytest.mark.parametrize("cg_steps", [0, 40])
def test_ials_half_step_solves_the_weighted_normal_equations(cg_steps):
    m = _random_csr(30, 25, 0.2, seed=1)
    rng = np.random.default_rng(0)
    y = rng.normal(0, 0.3, (25, 6))
    reg = 0.5 + rng.random(30)
    a0 = 0.3
    x = torch.zeros(30, 6)
    _half_step(x, torch.tensor(y, dtype=torch.float32), _csr_tensors(m, torch.device("cpu")),
               torch.tensor(reg, dtype=torch.float32), a0, cg_steps)
    # cg_steps >= factors: CG is exact up to rounding (from a zero start, any row).
    np.testing.assert_allclose(x.numpy(), _normal_equations_solution(y, m, reg, a0),
                               rtol=1e-3, atol=1e-4)


def test_ials_few_cg_steps_warm_started_approach_the_exact_solution():
    m = _random_csr(40, 30, 0.2, seed=2)
    y = torch.tensor(np.random.default_rng(1).normal(0, 0.3, (30, 8)), dtype=torch.float32)
    reg, csr = torch.full((40,), 0.2), _csr_tensors(m, torch.device("cpu"))
    exact = torch.zeros(40, 8)
    _half_step(exact, y, csr, reg, 0.1, 0)
    x = torch.zeros(40, 8)
    errors = []
    for _ in range(8):  # repeated 3-step solves from the previous answer, as epochs do
        _half_step(x, y, csr, reg, 0.1, 3)
        errors.append(float((x - exact).norm() / exact.norm()))
    assert all(b < a for a, b in zip(errors, errors[1:])) and errors[-1] < 1e-3, errors


def test_ials_unobserved_weight_and_regularization_change_the_model(blocks):
    train, _ = blocks
    base = {"factors": 8, "epochs": 3}

    def item_vectors(**over):
        return build_model("ials", {**base, **over}).fit(train, FitOptions(seed=1)).item_vectors()

    ref = item_vectors(unobserved_weight=0.1)
    assert not np.allclose(ref, item_vectors(unobserved_weight=1.0), atol=1e-3)
    assert not np.allclose(ref, item_vectors(unobserved_weight=0.1, reg=1.0), atol=1e-3)
    assert not np.allclose(ref, item_vectors(unobserved_weight=0.1, alpha=5.0), atol=1e-3)


def test_bpr_hand_written_sgd_step_equals_autograd_sgd_on_the_summed_loss():
    torch.manual_seed(0)
    fused = _BPRModule(7, 9, 5)
    for p in fused.parameters():  # non-zero biases, so their update is checked too
        torch.nn.init.normal_(p, std=0.3)
    reference = _BPRModule(7, 9, 5)
    reference.load_state_dict(fused.state_dict())
    # Repeated users and items in one batch: their updates must add up, as gradients do.
    u = torch.tensor([0, 1, 1, 3, 6, 0])
    i = torch.tensor([2, 2, 4, 8, 0, 2])
    j = torch.tensor([5, 1, 2, 2, 7, 3])
    lr, reg = 0.1, 0.05

    loss = _sgd_step(fused, u, i, j, lr, reg)

    full = _bpr_loss(reference, u, i, j, reg, 1.0)
    full.backward()
    with torch.no_grad():  # what torch.optim.SGD(lr) does, without its import cost
        for p in reference.parameters():
            p -= lr * p.grad
    for name, p in fused.state_dict().items():
        torch.testing.assert_close(p, reference.state_dict()[name], rtol=1e-5, atol=1e-6,
                                   msg=name)
    # The reported loss is the summed -log sigmoid part (the L2 term left out).
    assert 0 < loss.item() < full.item()


@pytest.mark.parametrize("dense_cells", [10**9, 0])  # dense table; sorted keys
def test_negative_sampler_never_returns_a_seen_item(dense_cells):
    rng = np.random.default_rng(3)
    n_users, n_items = 50, 40
    users = np.repeat(np.arange(n_users), 30)  # 30 of 40 items seen: collisions are common
    items = np.concatenate([rng.choice(n_items, 30, replace=False) for _ in range(n_users)])
    sampler = NegativeSampler(users, items, n_items, rounds=50, dense_cells=dense_cells)
    assert (sampler.dense is not None) == (dense_cells > 0)
    draw = torch.from_numpy(np.repeat(np.arange(n_users), 20))
    negs = sampler.sample(draw, torch.Generator().manual_seed(0), per_user=3)
    assert negs.shape == (len(draw), 3)
    seen = set(zip(users.tolist(), items.tolist()))
    pairs = zip(np.repeat(draw.numpy(), 3).tolist(), negs.reshape(-1).tolist())
    assert not any(p in seen for p in pairs)


def test_negative_sampler_modes_draw_the_same_items():
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, 30, 300), rng.integers(0, 25, 300)
    draw = torch.from_numpy(rng.integers(0, 30, 500))
    a = NegativeSampler(users, items, 25, dense_cells=10**9).sample(draw, torch.Generator().manual_seed(1))
    b = NegativeSampler(users, items, 25, dense_cells=0).sample(draw, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_mf_bpr_learns_with_the_default_config_shape(blocks):
    """The default factors/lr/reg (conf/models/mf_bpr.yaml) learn the blocks, not only FAST's."""
    from recsys.config import load_config

    train, held = blocks
    params = dict(load_config().model_params("mf_bpr"))
    params["epochs"] = 30
    model = build_model("mf_bpr", params).fit(train, FitOptions(seed=3))
    items, _ = model.recommend(np.arange(train.n_users), 1)
    assert np.mean(items[:, 0] == held) >= 0.9
