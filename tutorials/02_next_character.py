# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 2 · Next-character prediction (many to many, Tx = Ty)
#
# A language model reads text one character at a time and, at every step, predicts
# the next one: `x<t>` is character `t`, the target `y<t>` is character `t + 1`.
# Trained this way, the network must summarise everything it has read so far in its
# hidden state `a<t>` — and once trained it can *write*: sample a character from
# `ŷ<t>`, feed it back as `x<t+1>`, repeat.
#
# The text is Python's own documentation (the `pydoc_data` topics that every Python
# installation ships, about 460,000 characters): tinyseq's default corpus, so nothing
# is downloaded. We measure
#
# * **bits per character** (bpc) on held-out text: the average of `-log2 p(next char)`.
#   Guessing uniformly among the ~100 characters costs log2(100) ≈ 6.6 bpc; a good
#   model needs much less because text is predictable;
# * samples at several **temperatures**;
# * vanilla RNN vs GRU vs LSTM with the same size and budget.
#
# This tutorial uses tinyseq's training pieces: `Vocab` and `StreamDataset` for the
# data, `LanguageModel` for the model, `Trainer` for the loop (Adam, clipping,
# truncated BPTT with the state carried across batches).

# %%
import argparse
import os
import time
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq.data import StreamDataset, Vocab, default_corpus, encode_stream, split_text
from tinyseq.models import LanguageModel
from tinyseq.trainer import Trainer

parser = argparse.ArgumentParser(description=__doc__)
# in a notebook there is no command line: TINYSEQ_TUTORIAL_QUICK=1 and
# TINYSEQ_TUTORIAL_FIGURES=DIR stand for --quick and --figures DIR
parser.add_argument("--quick", action="store_true",
                    default=os.environ.get("TINYSEQ_TUTORIAL_QUICK", "0") not in ("", "0"),
                    help="short run (CI); or TINYSEQ_TUTORIAL_QUICK=1")
parser.add_argument("--figures", default=os.environ.get("TINYSEQ_TUTORIAL_FIGURES") or None,
                    help="folder for the PNG figures; or TINYSEQ_TUTORIAL_FIGURES=DIR")
args, _ = parser.parse_known_args()  # in a notebook, sys.argv holds the kernel's flags
QUICK = args.quick
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(args.figures) if args.figures else HERE / "figures" / ("quick" if QUICK else "")
START = time.perf_counter()

if QUICK:
    CHARS, EMBED, HIDDEN, BATCH, SEQ_LEN, STEPS = 60_000, 16, 64, 32, 50, 40
else:
    CHARS, EMBED, HIDDEN, BATCH, SEQ_LEN, STEPS = None, 32, 128, 64, 64, 2000
CELLS = ("rnn", "gru", "lstm")

# %% [markdown]
# ## The data
#
# Split off the last 5% of the text as held-out data (at a line break), build the
# character vocabulary from the training part, and turn both into id streams.
# `StreamDataset` lays the stream out as `BATCH` parallel rows and cuts them into
# consecutive windows of `SEQ_LEN` characters. Consecutive batches continue the same
# rows, so the trainer carries the hidden state from one window to the next
# (detached: *truncated* BPTT — gradients flow back `SEQ_LEN` steps at most, but the
# state remembers further).

# %%
text = default_corpus()
if CHARS:
    text = text[:CHARS]
train_text, valid_text = split_text(text, 0.05)
vocab = Vocab.build([train_text], level="char")
train_ids = encode_stream(train_text, vocab)
valid_ids = encode_stream(valid_text, vocab)
train_data = StreamDataset(train_ids, batch_size=BATCH, seq_len=SEQ_LEN)
valid_data = StreamDataset(valid_ids, batch_size=8, seq_len=SEQ_LEN)
print(f"{len(train_text):,} training and {len(valid_text):,} held-out characters, "
      f"{len(vocab)} symbols; {len(train_data)} batches of {BATCH} x {SEQ_LEN} per epoch")
print(repr(train_text[1000:1200]))

# %% [markdown]
# ## The model
#
# `LanguageModel` is an embedding (each character id becomes a learned vector: the
# lecture's "feature vector" for a word, here for a character), a recurrent layer of
# any registered cell, and a linear layer to one logit per character; softmax and the
# loss are in `ts.cross_entropy`.

# %%
def train(cell):
    ts.manual_seed(0)
    model = LanguageModel(len(vocab), embedding_dim=EMBED, hidden_size=HIDDEN, cell=cell)
    trainer = Trainer(model, train_data, valid_data, lr=3e-3, clip_norm=1.0,
                      max_steps=STEPS, epochs=100, eval_every=STEPS, progress=False)
    t0 = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - t0
    metrics = trainer.evaluate(valid_data)
    return model, trainer, metrics, seconds


models, results = {}, {}
for cell in CELLS:
    model, trainer, metrics, seconds = train(cell)
    models[cell] = model
    results[cell] = (metrics, seconds, trainer.history)
    print(f"{cell:>5}: held-out {metrics['bpc']:.3f} bits per character, "
          f"accuracy {metrics['accuracy']:.1%}, {model.num_parameters():,} parameters, "
          f"{STEPS} steps in {seconds:.0f} s", flush=True)

# %% [markdown]
# ## Vanilla RNN vs GRU vs LSTM
#
# Same embedding, hidden size, optimizer, learning rate and number of steps:

# %%
print("| cell | held-out bpc | next-char accuracy | parameters | time |")
print("|---|---|---|---|---|")
for cell in CELLS:
    metrics, seconds, _ = results[cell]
    print(f"| {cell} | {metrics['bpc']:.3f} | {metrics['accuracy']:.1%} | "
          f"{models[cell].num_parameters():,} | {seconds:.0f} s |")


def plot(path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the figure (pip install 'tinyseq[plot]')")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4))
    for cell in CELLS:
        hist = np.asarray(results[cell][2]) / np.log(2)  # nats -> bits
        k = max(1, len(hist) // 50)
        smooth = np.convolve(hist, np.ones(k) / k, mode="valid")
        ax.plot(np.arange(len(smooth)) + k, smooth, label=cell)
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (bits per character)")
    ax.set_title("character language model on the pydoc corpus")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


plot(FIGURES / "02_training_curves.png")

# %% [markdown]
# ## Writing: samples at several temperatures
#
# To generate, the model reads a prompt, then repeatedly samples the next character
# from `softmax(logits / temperature)` and feeds it back. A low temperature sharpens
# the distribution (safe, repetitive text); 1.0 samples the model's own
# probabilities; higher values flatten it (more surprising, more errors).

# %%
best = min(CELLS, key=lambda c: results[c][0]["bpc"])
prompt = "The return statement"
prime = vocab.encode_text(prompt)
for temperature in (0.2, 0.5, 0.8, 1.0):
    out = models[best].generate(prime, 160 if not QUICK else 60, temperature=temperature, rng=0)
    print(f"--- {best}, temperature {temperature}:\n{prompt}{vocab.decode_text(out)}\n")

# %% [markdown]
# ## Result
#
# The gated cells reach lower held-out bits per character than the vanilla RNN in
# the same number of steps; the samples already have the shape of Python
# documentation (words, punctuation, indentation, code-like fragments) even where the
# words are invented.
#
# Measured in full mode on a shared 2-core CPU (one BLAS thread; see tutorials/README.md):
# held-out bits per character after 2,000 steps: rnn 1.78, gru 1.66, lstm 1.69 (253 s
# in all).

# %%
summary = ", ".join(f"{c} {results[c][0]['bpc']:.2f}" for c in CELLS)
print(f"RESULT: held-out bits per character after {STEPS} steps: {summary}; "
      f"total {time.perf_counter() - START:.0f} s")
