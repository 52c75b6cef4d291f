"""Trainer: exact resume, checkpoints, NaN stop, Ctrl-C, early stopping, logs, diagnostics."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.checkpoint import CheckpointError
from tinyseq.data import SequenceDataset, StreamDataset, Vocab
from tinyseq.diagnostics import gradient_norms, read_metrics_log
from tinyseq.models import LanguageModel, SequenceClassifier
from tinyseq.trainer import Trainer, TrainingError, load_model

TEXT = "a quick brown fox jumps over the lazy dog; " * 12


def lm_setup(seed: int = 0, dropout: float = 0.2):
    vocab = Vocab.build([list(TEXT)])
    ids = vocab.encode_text(TEXT)
    ts.manual_seed(seed)
    model = LanguageModel(len(vocab), embedding_dim=8, hidden_size=16, num_layers=2, dropout=dropout)
    # 3 windows per epoch, so the runs below cross epoch boundaries
    return model, StreamDataset(ids, 4, 40), StreamDataset(ids[:300], 2, 40)


def make_trainer(model, train, valid, out, steps, **kw):
    return Trainer(model, train, valid, lr=5e-3, max_steps=steps, epochs=100, eval_every=4,
                   checkpoint_every=3, out_dir=out, progress=False, seed=123, **kw)


def schedule(opt):
    return ts.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_resume_equals_uninterrupted_run(tmp_path, interval) -> None:
    # dropout (random masks), Adam state, the learning-rate schedule, the carried LSTM
    # state and epoch boundaries all have to be restored for the losses and weights to
    # match bit for bit
    model, train, valid = lm_setup()
    full = make_trainer(model, train, valid, tmp_path / "full", 14, scheduler=schedule,
                        scheduler_interval=interval)
    full.fit()
    reference = model.state_dict()

    model2, train, valid = lm_setup()
    first = make_trainer(model2, train, valid, tmp_path / "split", 8, scheduler=schedule,
                         scheduler_interval=interval)
    first.fit()
    assert first.history == full.history[:8]

    model3, train, valid = lm_setup(seed=99)  # different initial weights: resume must overwrite them
    second = make_trainer(model3, train, valid, tmp_path / "split", 14, scheduler=schedule,
                          scheduler_interval=interval)
    summary = second.fit(resume=tmp_path / "split" / "last.npz")
    assert summary.steps == 14
    assert second.history == full.history[8:]
    for name, value in model3.state_dict().items():
        np.testing.assert_array_equal(value, reference[name], err_msg=name)
    assert second.optimizer.param_groups[0]["lr"] == full.optimizer.param_groups[0]["lr"] < 5e-3


def test_checkpoints_logs_and_best(tmp_path) -> None:
    model, train, valid = lm_setup(dropout=0.0)
    trainer = make_trainer(model, train, valid, tmp_path, 12)
    summary = trainer.fit()
    assert summary.stop_reason == "max_steps"
    assert os.path.exists(tmp_path / "best.npz") and os.path.exists(tmp_path / "last.npz")
    records = read_metrics_log(tmp_path / "metrics.jsonl")
    valid_records = [r for r in records if r["event"] == "valid"]
    assert [r["step"] for r in valid_records] == [4, 8, 12]
    best = min(valid_records, key=lambda r: r["bpc"])
    assert summary.best == {"step": best["step"], "bpc": best["bpc"]}
    train_records = [r for r in records if r["event"] == "train"]
    assert train_records and all("tokens_per_s" in r and "loss" in r for r in train_records)
    loaded, meta = load_model(tmp_path / "best.npz")
    assert isinstance(loaded, LanguageModel) and meta["trainer"]["step"] == best["step"]
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]  # atomic writes left nothing


def test_corrupt_checkpoint_is_reported_and_changes_nothing(tmp_path) -> None:
    model, train, valid = lm_setup()
    trainer = make_trainer(model, train, valid, tmp_path, 3)
    trainer.fit()
    path = tmp_path / "last.npz"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated
    before = model.state_dict()
    with pytest.raises(CheckpointError, match="last.npz"):
        trainer.resume(path)
    with pytest.raises(CheckpointError, match="last.npz"):
        load_model(path)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    assert trainer.step == 3


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(tmp_path) -> None:
    model, train, valid = lm_setup()
    trainer = make_trainer(model, train, valid, tmp_path, 3)
    trainer.fit()
    last = tmp_path / "last.npz"
    saved = last.read_bytes()
    model.head.bias.data[0] = np.nan  # poison the weights: the next loss is NaN
    trainer.max_steps = 10  # the same run goes on
    with pytest.raises(TrainingError, match=r"loss became nan at step 4 .*last good checkpoint is kept: .*last.npz"):
        trainer.fit()
    assert last.read_bytes() == saved


def test_ctrl_c_saves_and_stops_cleanly(tmp_path) -> None:
    model, train, valid = lm_setup()

    class Interrupting:
        carries_state = True

        def __len__(self):
            return len(train)

        def batches(self, epoch=0, start=0):
            for i, b in enumerate(train.batches(epoch, start)):
                if epoch == 1 and i == 1:
                    os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C
                yield b

    trainer = make_trainer(model, Interrupting(), valid, tmp_path, 50)
    summary = trainer.fit()
    assert summary.stop_reason == "interrupted"
    assert summary.steps == len(train) + 2  # the step in progress was finished
    meta = load_model(tmp_path / "last.npz")[1]
    assert meta["trainer"]["step"] == summary.steps
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_early_stopping_and_time_budget(tmp_path) -> None:
    rng = np.random.default_rng(0)
    xs = [rng.integers(1, 5, size=4) for _ in range(64)]
    ys = list(rng.integers(0, 2, size=64))  # random labels: validation cannot improve for long
    model = SequenceClassifier(2, vocab_size=5, hidden_size=8)
    data = SequenceDataset(xs, ys, 16)
    trainer = Trainer(model, data, SequenceDataset(xs[:16], ys[:16], 16), lr=0.05, epochs=500,
                      patience=2, progress=False, monitor="accuracy")
    summary = trainer.fit()
    assert summary.stop_reason == "early_stopping"
    assert trainer.bad_evals == 2 and summary.epochs_completed < 500
    timed = Trainer(model, data, lr=1e-3, epochs=10_000, max_time=0.5, progress=True)  # bar in seconds
    assert timed.fit().stop_reason == "max_time"


def test_unknown_optimizer_and_monitor() -> None:
    model, train, valid = lm_setup()
    with pytest.raises(ValueError, match="unknown optimizer 'adamx'; expected one of"):
        Trainer(model, train, optimizer="adamx")
    trainer = Trainer(model, train, valid, max_steps=1, monitor="f2", progress=False)
    with pytest.raises(ValueError, match="monitor 'f2' is not among the validation metrics"):
        trainer.fit()


def test_gradient_norms_match_pytorch_step_by_step() -> None:
    torch = pytest.importorskip("torch")
    vocab_size, T, B = 7, 6, 3
    model = LanguageModel(vocab_size, embedding_dim=4, hidden_size=5, cell="lstm")
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab_size, size=(B, T + 1))
    batch = SequenceDataset([ids[0]], [0], 1).collate([0])
    batch.x, batch.y = ids[:, :-1], ids[:, 1:]
    norms = gradient_norms(model, batch, loss_at="last")

    cell = torch.nn.LSTMCell(4, 5)
    ours = model.rnn.cell_at(0).state_dict()
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, name).copy_(torch.tensor(ours[name]))
    emb = torch.tensor(model.embedding.weight.detach().numpy())
    head_w = torch.tensor(model.head.weight.detach().numpy())
    head_b = torch.tensor(model.head.bias.detach().numpy())
    x = emb[torch.tensor(ids[:, :-1])]  # (B, T, E)
    h = torch.zeros(B, 5)
    c = torch.zeros(B, 5)
    hs = []
    for t in range(T):
        h, c = cell(x[:, t], (h, c))
        h.retain_grad()
        hs.append(h)
    logits = hs[-1] @ head_w.T + head_b
    torch.nn.functional.cross_entropy(logits, torch.tensor(ids[:, -1])).backward()
    expected = np.array([hh.grad.norm(dim=1).mean().item() for hh in hs])
    np.testing.assert_allclose(norms, expected, rtol=1e-4, atol=1e-7)


def test_vanishing_gradients_tanh_rnn_vs_lstm() -> None:
    # the lecture's picture: going back in time the tanh RNN's gradient shrinks much faster
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 10, size=(8, 41))
    batch = SequenceDataset([ids[0]], [0], 1).collate([0])
    batch.x, batch.y = ids[:, :-1], ids[:, 1:]
    ratios = {}
    for cell in ("rnn", "lstm"):
        ts.manual_seed(0)
        model = LanguageModel(10, embedding_dim=8, hidden_size=16, cell=cell)
        trainer = Trainer(model, StreamDataset(ids.reshape(-1), 4, 10), progress=False)
        norms = trainer.gradient_norms(batch)
        assert norms.shape == (40,) and np.all(norms > 0)
        ratios[cell] = norms[0] / norms[-1]
    assert ratios["rnn"] < 1e-3
    assert ratios["rnn"] < ratios["lstm"]


def test_plots_when_matplotlib_is_installed(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from tinyseq.diagnostics import plot_gradient_norms, plot_metrics

    model, train, valid = lm_setup()
    trainer = make_trainer(model, train, valid, tmp_path, 4)
    trainer.fit()
    assert os.path.getsize(plot_metrics(tmp_path / "metrics.jsonl", str(tmp_path / "c.png"))) > 0
    out = plot_gradient_norms({"lstm": trainer.gradient_norms()}, str(tmp_path / "g.png"))
    assert os.path.getsize(out) > 0


def test_metrics_log_is_json_lines(tmp_path) -> None:
    model, train, valid = lm_setup()
    make_trainer(model, train, valid, tmp_path, 2).fit()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    events = [json.loads(line)["event"] for line in lines]
    assert events[0] == "start" and events[-1] == "end" and "valid" in events
