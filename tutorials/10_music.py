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
# # 10 · Music composition: Bach chorales as piano rolls (many to many, then one to many)
#
# The lecture lists music composition among the applications of recurrent networks: a
# model that has learned what comes next in music can write music, one step at a
# time, from a few notes or from nothing. We use real music — Bach's four-part
# chorales, which the `music21` package ships (no download) — and the task of
# Chung et al. (2014) and Boulanger-Lewandowski et al. (2012) on the same chorales:
#
# * **Polyphonic next-step prediction** (many to many, Tx = Ty). Each chorale is a
#   *piano roll*: one row per time step, one column per piano key (88 keys, MIDI
#   21–108), 1 where the key sounds. At each step the model reads the notes so far
#   and predicts which keys sound at the next step. Several keys sound at once (four
#   voices), so the output is **multi-label**: a sigmoid per key and binary
#   cross-entropy, not one softmax. The negative log-likelihood of a step, summed over
#   the 88 keys, in nats, is the number the papers report.
# * **Composition** (one to many): prime the trained network with a few steps of a
#   real chorale, then let it sample each next step's notes and feed them back in.
#
# We compare a vanilla (tanh) RNN, a GRU and an LSTM of about the same number of
# parameters, as Chung et al. did, and put our held-out NLL beside theirs.

# %%
import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq.data import SequenceDataset, next_step_examples, split_pieces
from tinyseq.models import MultiLabelTagger
from tinyseq.trainer import Trainer, load_model

parser = argparse.ArgumentParser(description=__doc__)
# in a notebook there is no command line: TINYSEQ_TUTORIAL_QUICK=1 and
# TINYSEQ_TUTORIAL_FIGURES=DIR stand for --quick and --figures DIR
parser.add_argument("--quick", action="store_true",
                    default=os.environ.get("TINYSEQ_TUTORIAL_QUICK", "0") not in ("", "0"),
                    help="short run (CI); or TINYSEQ_TUTORIAL_QUICK=1")
parser.add_argument("--figures", default=os.environ.get("TINYSEQ_TUTORIAL_FIGURES") or None,
                    help="folder for the PNG figures and MIDI files; or TINYSEQ_TUTORIAL_FIGURES=DIR")
parser.add_argument("--data-dir", default=None,
                    help="cache for the chorales' piano rolls (default ~/.cache/tinyseq)")
args, _ = parser.parse_known_args()  # in a notebook, sys.argv holds the kernel's flags
QUICK = args.quick
HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
FIGURES = Path(args.figures) if args.figures else HERE / "figures" / ("quick" if QUICK else "")
START = time.perf_counter()



def stop_here():
    """End the tutorial early: a script exits (status 0); a notebook skips its other cells."""
    try:
        shell = get_ipython()  # noqa: F821 (defined only inside IPython)
    except NameError:
        sys.exit(0)
    shell.input_transformers_cleanup.append(lambda lines: [])


if importlib.util.find_spec("music21") is None:
    print("music21 is not installed: this tutorial needs it for Bach's chorales. "
          "pip install tinyseq[music]")
    print("RESULT: held-out NLL per step: skipped (music21 is not installed; "
          "pip install tinyseq[music])")
    stop_here()

# Chung et al. (2014) matched the models' sizes by parameter count (about 20,000 each, by
# their count): 100 tanh units, 46 GRU units, 36 LSTM units. We keep their sizes; with 88
# inputs, 88 outputs and every bias, tinyseq counts 27,888, 22,904 and 21,400 parameters.
CELLS = {"rnn": 100, "gru": 46, "lstm": 36}
PUBLISHED = {"rnn": 8.82, "gru": 8.54, "lstm": 8.67}  # Chung et al. 2014, Table 2, JSB test
if QUICK:
    LIMIT, MAX_EPOCHS, MAX_SECONDS, SAMPLE_STEPS = 12, 15, 10.0, 16
else:
    LIMIT, MAX_EPOCHS, MAX_SECONDS, SAMPLE_STEPS = None, 200, 75.0, 60

# %% [markdown]
# ## From a score to a piano roll
#
# `tinyseq.data.pianoroll.bach_chorales` parses every chorale of music21's corpus
# (Riemenschneider's 371) and turns it into a piano roll. Parsing a few hundred
# MusicXML files takes about a minute, so the rolls are cached as one `.npz` file
# (`~/.cache/tinyseq`, or `--data-dir`); the quick run uses the first 12 chorales.
#
# **The time step is a quarter note.** A chorale's harmony moves in quarter notes: one
# chord per beat, with eighth-note passing tones in single voices. A quarter-note grid
# keeps every chord and drops the passing tones (a key counts as sounding at a step
# when it sounds at the grid time); it is also the grid of the published JSB piano
# rolls, which keeps the comparison close. An eighth-note grid (`step=0.5`) would keep
# the passing tones, but double the steps, most of which would repeat the step before.

# %%
from tinyseq.data.pianoroll import bach_chorales, write_midi  # noqa: E402

t0 = time.perf_counter()
chorales = bach_chorales(args.data_dir, step=1.0, limit=LIMIT)
lengths = np.array([r.shape[0] for r in chorales.rolls])
every = np.concatenate(chorales.rolls)
keys = np.flatnonzero(every.any(axis=0)) + chorales.low
print(f"{len(chorales)} chorales in {time.perf_counter() - t0:.1f} s: {lengths.min()}–{lengths.max()} "
      f"steps (mean {lengths.mean():.0f}), {every.sum(axis=1).mean():.2f} keys per step, "
      f"keys used MIDI {keys.min()}–{keys.max()} of {chorales.low}–{chorales.low + 87}")

# %% [markdown]
# ## Splits by chorale
#
# Train, validation and test sets are whole chorales (70% / 15% / 15%, seeded): no
# held-out step ever belongs to a piece seen in training. The model reads steps 1 … T-1
# of a chorale and predicts steps 2 … T; chorales in a batch have different lengths,
# and the masks make the padded steps count for nothing.

# %%
train_idx, valid_idx, test_idx = split_pieces(len(chorales), valid=0.15, test=0.15, seed=0)


def dataset(index, shuffle):
    xs, ys = next_step_examples(chorales.subset(index))
    return SequenceDataset(xs, ys, batch_size=16, y_is_sequence=True, shuffle=shuffle,
                           bucket=4 if shuffle else 0, seed=0)


train_data, valid_data, test_data = (dataset(train_idx, True), dataset(valid_idx, False),
                                     dataset(test_idx, False))
print(f"chorales: {len(train_idx)} train, {len(valid_idx)} validation, {len(test_idx)} test")

# %% [markdown]
# Two baselines without a network set the scale. If each key were on independently with
# its frequency in the training chorales, a step would cost the sum of the keys' binary
# entropies. "The next step is like this one" does better: a key that sounds now sounds
# next with one probability, a silent key starts with another, both counted on the
# training chorales.

# %%
train_steps = np.concatenate([chorales.rolls[i] for i in train_idx]).astype(np.float64)
test_x, test_y = next_step_examples(chorales.subset(test_idx))
tx, ty = np.concatenate(test_x), np.concatenate(test_y)
freq = train_steps.mean(axis=0).clip(1e-4, 1 - 1e-4)
nll_freq = -(ty * np.log(freq) + (1 - ty) * np.log(1 - freq)).sum(axis=1).mean()
ax, ay = (np.concatenate(a) for a in next_step_examples(chorales.subset(train_idx)))
stay = np.clip(ay[ax == 1].mean(), 1e-4, 1 - 1e-4)  # P(on next | on now)
start = np.clip(ay[ax == 0].mean(), 1e-4, 1 - 1e-4)  # P(on next | off now)
p_next = np.where(tx == 1, stay, start)
nll_markov = -(ty * np.log(p_next) + (1 - ty) * np.log(1 - p_next)).sum(axis=1).mean()
print(f"test NLL per step: key frequencies {nll_freq:.2f} nats; 'like this step' "
      f"(P(on | on) {stay:.2f}, P(on | off) {start:.3f}) {nll_markov:.2f} nats")

# %% [markdown]
# ## Training the three cells
#
# `MultiLabelTagger` is a unidirectional recurrent layer over the 88-key steps and a
# linear layer to 88 logits; its loss is the masked binary cross-entropy summed over
# keys and averaged over valid steps — the NLL per step in nats. Adam (learning rate
# 3e-3), gradient norm clipped to 1, validation after every epoch; the weights with the
# best validation NLL are kept (early stopping after 10 epochs without improvement, or
# when the time budget is spent).

# %%
results, models = {}, {}
for cell, hidden in CELLS.items():
    ts.manual_seed(0)
    model = MultiLabelTagger(88, input_size=88, hidden_size=hidden, cell=cell)
    with tempfile.TemporaryDirectory() as run:
        trainer = Trainer(model, train_data, valid_data, lr=3e-3, clip_norm=1.0, epochs=MAX_EPOCHS,
                          max_time=MAX_SECONDS, monitor="loss", patience=10, out_dir=run,
                          progress=False)
        t0 = time.perf_counter()
        trainer.fit()
        seconds = time.perf_counter() - t0
        best, _ = load_model(trainer.best_path)
    valid_nll = trainer.evaluate(valid_data)["loss"]
    test_nll = Trainer(best, train_data, progress=False).evaluate(test_data)["loss"]
    models[cell] = best
    results[cell] = (model.num_parameters(), trainer.step, test_nll, seconds)
    print(f"{cell:>5} (H = {hidden}, {model.num_parameters():,} parameters): {trainer.step} steps, "
          f"{seconds:.0f} s; last validation NLL {valid_nll:.2f}, best model's test NLL "
          f"{test_nll:.2f} nats per step", flush=True)

# %%
print("| cell | units | parameters | test NLL per step (nats) | Chung et al. 2014 (JSB) | steps | time |")
print("|---|---|---|---|---|---|---|")
for cell, (params, steps, nll, seconds) in results.items():
    print(f"| {cell} | {CELLS[cell]} | {params:,} | {nll:.2f} | {PUBLISHED[cell]:.2f} | {steps} | {seconds:.0f} s |")

# %% [markdown]
# ### How our numbers compare with the published ones
#
# Lower is better; the published figures are Chung et al. (2014), Table 2 (test set of
# the JSB chorales of Boulanger-Lewandowski et al. 2012). The comparison is close but
# not exact, and the differences are in the data more than in the models:
#
# * **Different chorales and split.** The JSB data set holds 382 chorales in a fixed
#   split (229 / 76 / 77). We have music21's 371 and a random split by chorale, so our
#   test set is other chorales, fewer of them (about 56) and a different mix.
# * **Our own quantisation.** We sample the keys that sound at each quarter-note grid
#   time; the JSB piano rolls were quantised to quarter notes by their authors' own
#   procedure, which can treat short notes differently. Neither is transposed to a
#   common key by us (we have not checked whether the published files were).
# * **First steps.** Our model predicts steps 2 … T of each chorale from the ones
#   before; step 1 is never scored.
# * **Training.** Chung et al. trained with RMSProp and weight noise and stopped early
#   on the validation set; we use Adam, clipping, early stopping and a time budget of
#   a little over a minute per cell on a CPU.
#
# In the full run (tutorials/README.md) the three cells land 0.5–0.7 nats per step above
# the published figures — 9.35 (tanh), 9.27 (GRU), 9.29 (LSTM) — and in the same order:
# the GRU best, the LSTM close behind, the tanh RNN last, with gaps as small as theirs
# (0.06 to 0.3 nats). All three are far below the baselines without a network (11.7
# and 14.0 nats). A longer run with a lower learning rate (1e-3, patience 20) gave the
# GRU 9.24; dropout 0.3 made it worse (10.8): on 259 chorales the data, not the
# optimiser, sets the limit.

# %% [markdown]
# ## Composing: prime with a chorale's first bar, then sample
#
# One to many: the model reads the first four steps (a bar) of a test chorale, then
# each next step's keys are drawn, each key on with its predicted probability, and the
# drawn step goes back in as the next input. A temperature below 1 sharpens the
# probabilities (fewer stray notes). `write_midi` turns a piano roll into a MIDI file
# through music21; each run of a key over consecutive steps becomes one held note.

# %%
best_cell = min(results, key=lambda c: results[c][2])
composer = models[best_cell]
# the first test chorale long enough to show beside a sample of the same length
shown = next((i for i in test_idx if chorales.rolls[i].shape[0] >= 4 + SAMPLE_STEPS), test_idx[0])
real = chorales.rolls[shown][: 4 + SAMPLE_STEPS]
prime = real[:4]
rng = np.random.default_rng(0)
sample = composer.generate(prime, SAMPLE_STEPS, temperature=0.7, rng=rng)
print(f"{best_cell}: sampled {SAMPLE_STEPS} steps after a 4-step prime from {chorales.names[shown]}; "
      f"{sample[4:].sum(axis=1).mean():.2f} keys per sampled step (the chorales: "
      f"{every.sum(axis=1).mean():.2f})")
FIGURES.mkdir(parents=True, exist_ok=True)
write_midi(sample, FIGURES / "10_music_sample.mid")  # the real one: write_midi(real, ...)
print(f"MIDI file: {FIGURES / '10_music_sample.mid'}")


# %%
def plot(path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the figure (pip install 'tinyseq[plot]')")
        return
    lo, hi = 36, 84  # C2 .. C6: where the chorales' voices are
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for ax, roll, title in ((axes[0], real, f"real chorale ({chorales.names[shown]})"),
                            (axes[1], sample, f"sampled by the {best_cell} (after a 4-step prime)")):
        ax.imshow(roll[:, lo - chorales.low: hi - chorales.low].T, origin="lower", aspect="auto",
                  cmap="Greys", extent=(-0.5, roll.shape[0] - 0.5, lo - 0.5, hi - 0.5))
        ax.axvline(3.5, color="tab:red", lw=1, ls="--")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("time step (quarter notes)")
    axes[0].set_ylabel("MIDI pitch")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    print(f"figure: {path}")


plot(FIGURES / "10_music_pianoroll.png")

# %% [markdown]
# The sample stays in the chorales' register and keeps some of their habits: upper
# voices that hold or step to a neighbouring key, roughly three keys per step. But it
# is not four-part harmony. Given the past, this model draws every key of a step
# *independently*, so it cannot say "if this key sounds, that one should not": chords
# come out thin or crowded and the bass wanders. That is the limit Boulanger-Lewandowski
# et al. (2012) addressed with a joint distribution over each step's keys (the
# RNN-RBM). It also lacks the long view — phrases that cadence, a key that holds for a
# whole piece — which a step-by-step model of about 20,000 parameters, trained on a
# few hundred pieces, does not learn.
#
# ## Result
#
# Measured in full mode on a shared 2-core CPU (one BLAS thread; see tutorials/README.md):
# held-out NLL per step 9.35 (tanh RNN), 9.27 (GRU), 9.29 (LSTM) nats on 56 test
# chorales, beside Chung et al.'s 8.82, 8.54, 8.67 on JSB (60 s).

# %%
summary = ", ".join(f"{c} {results[c][2]:.2f}" for c in CELLS)
published = ", ".join(f"{c} {PUBLISHED[c]:.2f}" for c in CELLS)
print(f"RESULT: held-out NLL per step (nats, {len(test_idx)} test chorales): {summary} "
      f"(Chung et al. 2014 on JSB: {published}); total {time.perf_counter() - START:.0f} s")
