"""mf_bpr's single-process fit (one packed user+item table, one gather and one scatter a batch)
takes the same steps as autograd + SGD on the summed BPR loss over the same triples: the batch
order, the negatives, the partial last batch and the copies between the table and the module's
embeddings included."""
from __future__ import annotations

import pytest
import torch

from recsys.models import FitOptions, build_model
from recsys.models._sampling import NegativeSampler
from recsys.models.loop import epoch_generator
from recsys.models import mf
from recsys.models.mf import _bpr_loss, _BPRModule, _Packed

PARAMS = {"factors": 6, "epochs": 3, "batch_size": 16, "lr": 0.1, "weight_decay": 0.05}


def _reference_fit(train, params, seed):
    """What fit does, written with autograd and a plain SGD step per batch."""
    torch.manual_seed(seed)
    module = _BPRModule(train.n_users, train.n_items, params["factors"])
    sampler = NegativeSampler(train.user_idx, train.item_idx, train.n_items)
    users, items = torch.from_numpy(train.user_idx), torch.from_numpy(train.item_idx)
    n, batch, losses = len(users), params["batch_size"], []
    for epoch in range(params["epochs"]):
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(n, generator=gen)
        negs = sampler.sample(users[order], gen).squeeze(1)
        u_all, i_all, total = users[order], items[order], 0.0
        for start in range(0, n, batch):
            u, i, j = (t[start:start + batch] for t in (u_all, i_all, negs))
            with torch.no_grad():
                x = (module(u, i) - module(u, j)).double()
                total += float(torch.nn.functional.softplus(-x).sum())
            module.zero_grad(set_to_none=True)
            _bpr_loss(module, u, i, j, params["weight_decay"], 1.0).backward()
            with torch.no_grad():
                for p in module.parameters():
                    p -= params["lr"] * p.grad
        losses.append(total / n)
    return module, losses


@pytest.mark.parametrize("triples_at_once", [1 << 16, 40])  # one chunk of rows; several
def test_fit_equals_autograd_sgd_on_the_same_triples(blocks, monkeypatch, triples_at_once):
    monkeypatch.setattr(mf, "_TRIPLES_AT_ONCE", triples_at_once)
    train, _ = blocks
    assert len(train) % PARAMS["batch_size"] != 0  # a partial last batch is part of the check
    history = []
    model = build_model("mf_bpr", PARAMS).fit(
        train, FitOptions(seed=7, on_epoch=lambda _e, m: history.append(m)))
    reference, losses = _reference_fit(train, PARAMS, seed=7)
    for name, p in model.module.state_dict().items():
        torch.testing.assert_close(p, reference.state_dict()[name], rtol=1e-4, atol=1e-5,
                                   msg=name)
    assert [m["loss"] for m in history] == pytest.approx(losses, rel=1e-5)


def test_packed_table_round_trips_the_module_and_keeps_the_user_column_at_one():
    torch.manual_seed(0)
    module = _BPRModule(5, 7, 4)
    torch.nn.init.normal_(module.item_bias.weight)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    packed = _Packed(module, 8)
    packed.load(module)
    u, i, j = torch.tensor([0, 0, 4]), torch.tensor([1, 1, 6]), torch.tensor([2, 3, 1])
    neg_x = torch.empty(3, 1)
    packed.sgd(*packed.rows(u, i + 5, j + 5), 0.1, 0.01, neg_x)
    assert torch.equal(packed.table[:5, 4], torch.ones(5))  # the constant column
    assert not packed.table[:, 5:].any()  # the padding stays zero
    packed.store(module)
    after = module.state_dict()
    assert not torch.equal(after["user.weight"][0], before["user.weight"][0])
    assert torch.equal(after["user.weight"][1:4], before["user.weight"][1:4])  # untouched rows
    packed.load(module)
    packed.store(module)
    for name, p in module.state_dict().items():
        assert torch.equal(p, after[name]), name
