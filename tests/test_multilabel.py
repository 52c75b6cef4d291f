"""MultiLabelTagger: a sigmoid per label and step, masked binary cross-entropy, generation.

The loss is the negative log-likelihood per valid step summed over labels (nats), the
figure polyphonic-music papers report; padded steps must change neither the loss nor
any gradient, whatever the padded targets hold.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.data import Batch, SequenceDataset, pad_sequences
from tinyseq.models import MultiLabelTagger, build_model


def _pieces(rng: np.random.Generator, lengths: list[int], labels: int = 5) -> list[np.ndarray]:
    return [(rng.random((n, labels)) < 0.3).astype(np.float32) for n in lengths]


def _batch(seqs: list[np.ndarray], targets: list[np.ndarray], pad: float = 0.0) -> Batch:
    x, lx = pad_sequences(seqs, pad_value=pad)
    y, _ = pad_sequences(targets, pad_value=pad)
    return Batch(x=x, y=y, x_lengths=lx, y_lengths=lx)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_padded_steps_contribute_nothing(cell: str) -> None:
    rng = np.random.default_rng(0)
    xs, ys = _pieces(rng, [7, 3, 5]), _pieces(rng, [7, 3, 5])
    ts.manual_seed(0)
    model = MultiLabelTagger(5, input_size=5, hidden_size=6, cell=cell)
    # the same examples padded with zeros and with garbage (in [0, 1]) at the padded steps
    grads, losses = [], []
    for pad in (0.0, 1.0):
        model.zero_grad()
        out = model.loss(_batch(xs, ys, pad))
        out.loss.backward()
        losses.append(out.loss.item())
        assert out.count == 15
        grads.append({k: p.grad.numpy().copy() for k, p in model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for k in grads[0]:
        np.testing.assert_allclose(grads[0][k], grads[1][k], rtol=1e-5, atol=1e-7, err_msg=k)
    # and the summed loss is each sequence's own (unpadded) summed loss
    alone = sum(model.evaluate_batch(_batch([x], [y]))[0]["loss_sum"] for x, y in zip(xs, ys))
    together = model.evaluate_batch(_batch(xs, ys, 1.0))[0]
    assert together["count"] == 15
    assert together["loss_sum"] == pytest.approx(alone, rel=1e-5)


def test_loss_is_nats_per_step_summed_over_labels_as_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    xs, ys = _pieces(rng, [4, 6]), _pieces(rng, [4, 6])
    ts.manual_seed(1)
    model = MultiLabelTagger(5, input_size=5, hidden_size=4, cell="gru")
    batch = _batch(xs, ys)
    logits = torch.tensor(ts.backend.to_numpy(model(batch).data)).swapaxes(0, 1)  # (B, T, L)
    mask = torch.tensor(batch.y_mask)
    per = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, torch.tensor(batch.y), reduction="none").sum(-1)  # (B, T): nats per step
    expected = per[mask].mean().item()
    assert model.loss(batch).loss.item() == pytest.approx(expected, rel=1e-5)


def test_trains_and_survives_a_checkpoint_config() -> None:
    rng = np.random.default_rng(2)
    # a deterministic rhythm: label t % 3 is on at step t; the next step is predictable
    seqs = [np.eye(3, dtype=np.float32)[np.arange(s, s + n) % 3] for s, n in zip(range(12), [9, 6] * 6)]
    data = SequenceDataset([s[:-1] for s in seqs], [s[1:] for s in seqs], batch_size=4,
                           y_is_sequence=True, seed=0)
    ts.manual_seed(2)
    model = MultiLabelTagger(3, input_size=3, hidden_size=8, cell="lstm")
    trainer = ts.Trainer(model, data, lr=0.05, epochs=60, progress=False)
    before = trainer.evaluate(data)["loss"]
    trainer.fit()
    after = trainer.evaluate(data)["loss"]
    assert before > 1.5 and after < 0.2, (before, after)
    rebuilt = build_model(model.kind, model.config)
    rebuilt.load_state_dict(model.state_dict())
    out = rebuilt.generate(seqs[0][:2], 6, temperature=0.5, rng=rng)
    assert out.shape == (8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:2], seqs[0][:2])
    # the rhythm goes on: one label per step, the next one round
    np.testing.assert_array_equal(out[2:].argmax(1), (np.arange(2, 8)) % 3)


def test_generate_refuses_what_it_cannot_continue() -> None:
    model = MultiLabelTagger(4, input_size=4, hidden_size=3)
    with pytest.raises(ValueError, match=r"\(T0 >= 1, 4\).*\(3, 5\)"):
        model.generate(np.zeros((3, 5)), 2)
    with pytest.raises(ValueError, match="input_size == num_labels"):
        MultiLabelTagger(4, input_size=6, hidden_size=3).generate(np.zeros((1, 6)), 2)
    with pytest.raises(ValueError, match=r"targets \(B, T, 4\).*\(1, 2, 3\)"):
        model.loss(Batch(x=np.zeros((1, 2, 4), np.float32), y=np.zeros((1, 2, 3), np.float32)))
