"""Seq2Seq with attention: trains, resumes bit for bit, decodes every way, plots, checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.checkpoint import CheckpointError
from tinyseq.config import ConfigError, make_config
from tinyseq.data import Batch, SequenceDataset, pad_sequences
from tinyseq.decoding import log_softmax_np
from tinyseq.model_shapes import config_mismatch, parameter_shapes
from tinyseq.models import Seq2Seq
from tinyseq.tasks import build_task
from tinyseq.trainer import Trainer, load_model

ATTENTIONS = ("additive", "dot", "general")
EOS = 3


def reverse_pairs(n: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Reverse a sequence of 3-8 ids: the answer's first token is the source's last."""
    rng = np.random.default_rng(seed)
    xs = [rng.integers(4, 12, size=int(rng.integers(3, 9))) for _ in range(n)]
    return xs, [np.r_[x[::-1], EOS] for x in xs]


def batch_of(xs: list[np.ndarray], ys: list[np.ndarray]) -> Batch:
    x, xl = pad_sequences(xs)
    y, yl = pad_sequences(ys)
    return Batch(x=x, y=y, x_lengths=xl, y_lengths=yl)


def model(attention: str | None, bidirectional: bool = False, **kw: object) -> Seq2Seq:
    ts.manual_seed(0)
    return Seq2Seq(12, src_vocab_size=12, embedding_dim=8, hidden_size=16, cell="gru",
                   bidirectional=bidirectional, attention=attention, **kw)  # type: ignore[arg-type]


def test_attention_learns_reversal_faster_than_the_final_state_alone() -> None:
    xs, ys = reverse_pairs(256, 0)
    losses = {}
    for attention in (None, "general"):
        m = model(attention, bidirectional=True)
        data = SequenceDataset(xs, ys, batch_size=32, y_is_sequence=True, seed=0)
        trainer = Trainer(m, data, lr=1e-2, max_steps=120, epochs=1000, progress=False, seed=0)
        trainer.fit()
        losses[attention] = float(np.mean(trainer.history[-10:]))
    assert losses["general"] < 0.5 * losses[None], losses


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_resume_equals_uninterrupted_run(tmp_path: Path, attention: str) -> None:
    # scheduled sampling and dropout draw random numbers every step: both must resume
    xs, ys = reverse_pairs(48, 1)

    def run(out: Path, steps: int, seed: int = 0, resume: Path | None = None) -> tuple[Trainer, Seq2Seq]:
        m = model(attention, dropout=0.2, teacher_forcing=0.7)
        if seed:
            ts.manual_seed(seed)
            m = Seq2Seq(**m.config)
        data = SequenceDataset(xs, ys, batch_size=16, y_is_sequence=True, seed=0)
        t = Trainer(m, data, lr=5e-3, max_steps=steps, epochs=100, checkpoint_every=2,
                    out_dir=out, progress=False, seed=7)
        t.fit(resume=resume)
        return t, m

    full, m_full = run(tmp_path / "full", 6)
    first, _ = run(tmp_path / "split", 4)
    assert first.history == full.history[:4]
    second, m_second = run(tmp_path / "split", 6, seed=99, resume=tmp_path / "split" / "last.npz")
    assert second.history == full.history[4:]
    reference = m_full.state_dict()
    for name, value in m_second.state_dict().items():
        np.testing.assert_array_equal(value, reference[name], err_msg=name)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_decoding_greedy_sample_and_beam(attention: str) -> None:
    xs, ys = reverse_pairs(5, 2)
    batch = batch_of(xs, ys)
    m = model(attention)
    greedy = m.decode(batch, max_len=10)
    assert len(greedy) == 5 and all(0 < len(g) <= 10 for g in greedy)
    # beam width 1 is greedy; a wider beam finds an output at least as likely
    assert m.decode(batch, max_len=10, method="beam", beam_width=1) == greedy
    beam = m.decode(batch, max_len=10, method="beam", beam_width=4, length_penalty=0.0)
    for b in range(5):
        one = batch_of(xs[b : b + 1], ys[b : b + 1])
        assert log_prob(m, one, beam[b]) >= log_prob(m, one, greedy[b]) - 1e-5
    # each example decodes the same alone as in a padded batch (the padding is masked)
    for b in range(5):
        one = batch_of(xs[b : b + 1], ys[b : b + 1])
        assert m.decode(one, max_len=10) == [greedy[b]]
    sampled = m.decode(batch, max_len=10, method="sample", temperature=0.8, rng=3)
    assert sampled == m.decode(batch, max_len=10, method="sample", temperature=0.8, rng=3)


def log_prob(m: Seq2Seq, batch: Batch, out: list[int]) -> float:
    """log p(out | source) under teacher forcing."""
    forced = Batch(x=batch.x, y=np.array([out]), x_lengths=batch.x_lengths,
                   y_lengths=np.array([len(out)]))
    m.eval()
    with ts.no_grad():
        logp = log_softmax_np(m(forced).detach().numpy()[:, 0])
    return float(sum(logp[t, tok] for t, tok in enumerate(out)))


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_attention_weights_of_a_decoded_output(attention: str) -> None:
    xs, ys = reverse_pairs(4, 3)
    batch = batch_of(xs, ys)
    m = model(attention)
    outputs = m.decode(batch, max_len=10, method="beam", beam_width=3)
    weights = m.attention_weights(batch, outputs)
    for b, w in enumerate(weights):
        assert w.shape == (len(outputs[b]), len(xs[b]))  # padded source steps are cut off
        np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
    # the full weights give padded steps exactly zero, and the targets are the default
    forced = m.attention_weights(batch)
    assert [w.shape[0] for w in forced] == [len(y) for y in ys]
    # greedy decoding: the teacher-forced replay makes the same choices
    greedy = m.decode(batch, max_len=10)
    m.eval()
    with ts.no_grad():
        replay = batch_of(xs, [np.array(g) for g in greedy])
        choices = m(replay).detach().numpy().argmax(axis=-1).T
    for b, g in enumerate(greedy):
        assert choices[b, : len(g)].tolist() == g
    with pytest.raises(ValueError, match="Seq2Seq has no attention"):
        model(None).attention_weights(batch)


def test_padded_source_steps_get_zero_gradient() -> None:
    # the source embeddings of padded steps get no gradient through attention (the
    # encoder reads only valid steps; attention selects, not multiplies)
    xs, ys = reverse_pairs(4, 4)
    xs = [np.minimum(x, 10) for x in xs]  # id 11 only at padded steps
    batch = batch_of(xs, ys)
    m = model("additive", bidirectional=True)
    x, xl = batch.x.copy(), batch.x_lengths
    pad_id = 11
    for b in range(len(xs)):
        x[b, xl[b]:] = pad_id  # a real token id at padded steps: its row would get gradient
    batch = Batch(x=x, y=batch.y, x_lengths=xl, y_lengths=batch.y_lengths)
    assert not any(pad_id in xi for xi in xs)
    loss = m.loss(batch).loss
    loss.backward()
    grad = m.inputs.embedding.weight.grad
    assert grad is not None
    g = grad.numpy()
    assert np.all(g[pad_id] == 0.0) and np.any(g[4:11] != 0.0)
    # every padded column of the weights is exactly zero, and more padding changes nothing
    m.eval()
    with ts.no_grad():
        state, _, memory = m._start(batch)
        _, _, weights = m.decoder.run(m._ids(m._decoder_inputs(batch.y)), state, memory=memory)
        assert weights is not None
        w = weights.detach().numpy()
        assert np.all(w[~np.broadcast_to(batch.x_mask[:, None, :], w.shape)] == 0.0)
        wider = Batch(x=np.pad(x, ((0, 0), (0, 3)), constant_values=pad_id), y=batch.y,
                      x_lengths=xl, y_lengths=batch.y_lengths)
        np.testing.assert_allclose(m.loss(wider).loss.item(), m.loss(batch).loss.item(), rtol=1e-6)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_checkpoint_records_attention_and_shapes_are_predicted(tmp_path: Path, attention: str) -> None:
    xs, ys = reverse_pairs(16, 5)
    m = model(attention, bidirectional=attention != "dot")
    trainer = Trainer(m, SequenceDataset(xs, ys, batch_size=8, y_is_sequence=True), lr=1e-3,
                      max_steps=1, out_dir=tmp_path, progress=False)
    trainer.fit()
    loaded, meta = load_model(tmp_path / "last.npz")
    assert isinstance(loaded, Seq2Seq) and loaded.config["attention"] == attention
    assert meta["model"]["config"]["attention"] == attention
    batch = batch_of(xs[:3], ys[:3])
    assert loaded.decode(batch, max_len=8, method="beam") == m.decode(batch, max_len=8, method="beam")
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert parameter_shapes("seq2seq", m.config) == shapes
    problem = config_mismatch("seq2seq", {**m.config, "attention": None}, shapes)
    assert problem is not None and "attention=None" in problem and "the file holds decoder." in problem
    # a file whose config drops the attention is refused before anything is built
    ckpt = ts.load_checkpoint(tmp_path / "last.npz")
    lying = dict(ckpt.metadata)
    lying["model"] = {**lying["model"], "config": {**m.config, "attention": None}}
    ts.save_checkpoint(tmp_path / "lying.npz", m, metadata=lying)
    with pytest.raises(CheckpointError, match="lying.npz.*attention=None"):
        load_model(tmp_path / "lying.npz")


def test_bad_attention_arguments_name_the_choice() -> None:
    with pytest.raises(ValueError, match="attention must be one of additive, dot, general or None, got 'luong'"):
        model("luong")
    with pytest.raises(ValueError, match="bidirectional=True.*use attention='general' or 'additive'"):
        model("dot", bidirectional=True)


def test_cli_setting_reaches_the_model(tmp_path: Path) -> None:
    data = tmp_path / "pairs.tsv"
    data.write_text("".join(f"{s}\t{s[::-1]}\n" for s in ("abc", "hello", "seq", "tiny", "zyx") * 4))
    cfg = make_config(overrides={"task": "seq2seq", "train": str(data), "attention": "additive"},
                      quick=True)
    task = build_task(cfg)
    assert isinstance(task.model, Seq2Seq) and task.model.config["attention"] == "additive"
    assert make_config(overrides={"task": "seq2seq", "train": str(data), "attention": "none"}).attention is None
    with pytest.raises(ConfigError, match="--attention: unknown attention 'bahdanau'; expected one of "
                                          "none, additive, dot, general"):
        make_config(overrides={"task": "seq2seq", "train": str(data), "attention": "bahdanau"})
    with pytest.raises(ConfigError, match="--attention: attention is for task seq2seq.*'tag'"):
        make_config(overrides={"task": "tag", "train": str(data), "attention": "dot"})
    with pytest.raises(ConfigError, match="--attention: dot attention.*--bidirectional"):
        make_config(overrides={"task": "seq2seq", "train": str(data), "attention": "dot",
                               "bidirectional": True})


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_every_device_matches_cpu(device: str, attention: str) -> None:
    xs, ys = reverse_pairs(4, 6)
    batch = batch_of(xs, ys)
    ref = model(attention, bidirectional=attention != "dot")
    other = model(attention, bidirectional=attention != "dot").to(device)
    loss_ref, loss_dev = ref.loss(batch).loss, other.loss(batch).loss
    np.testing.assert_allclose(loss_dev.item(), loss_ref.item(), rtol=1e-5)
    loss_ref.backward()
    loss_dev.backward()
    for (name, p), (_, q) in zip(ref.named_parameters(), other.named_parameters()):
        assert p.grad is not None and q.grad is not None
        np.testing.assert_allclose(q.grad.numpy(), p.grad.numpy(), rtol=1e-4, atol=1e-6, err_msg=name)
    assert other.decode(batch, max_len=8, method="beam") == ref.decode(batch, max_len=8, method="beam")
    for w_dev, w_ref in zip(other.attention_weights(batch), ref.attention_weights(batch)):
        np.testing.assert_allclose(w_dev, w_ref, rtol=1e-5, atol=1e-7)
