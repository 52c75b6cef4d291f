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
# # 8 · Speech recognition with CTC (many to many, unaligned)
#
# Speech recognition is the lecture's last application: audio in, text out. The input
# is a sequence of short frames of sound (about 50 a second here), the output a much
# shorter sequence of symbols, and **nobody says which frames belong to which
# symbol**. That is neither Tx = Ty tagging (no label per frame) nor a free Tx ≠ Ty
# encoder–decoder: the output comes in the input's order, just at its own pace.
#
# **Connectionist temporal classification** (CTC; Graves et al. 2006) handles exactly
# this. The network outputs, at every frame t, a distribution over the symbols plus one
# extra symbol, the **blank** `-` ("no new symbol here"). An *alignment* is one choice per
# frame; it is read by merging repeats and then dropping blanks:
#
#     frames     t1 t2 t3 t4 t5 t6 t7 t8
#     alignment   -  3  3  -  -  1  1  -     →  "3 1"
#     alignment   3  -  -  -  1  -  -  1     →  "3 1 1"   (a blank separates repeats)
#
# The CTC loss is -log p(y | x), where p(y | x) sums the probabilities of **every**
# alignment that reads as y. There are exponentially many, but a forward–backward
# recursion over the target with blanks between its symbols (`- 3 - 1 -`) sums them in
# O(T · |y|) steps. So the network learns where the digits are by itself.
#
# The data is real audio made on this machine: the speech synthesizer **eSpeak NG**
# speaks random digit strings ("three one four") in several English voices, at several
# speeds and pitches, and we add noise. A bidirectional GRU reads log-mel frames and is
# trained with `ts.ctc_loss`; we report the **digit error rate** (edit distance per
# reference digit) on voices and on speeds that training never heard.

# %%
import argparse
import os
import shutil
import subprocess
import tempfile
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from itertools import product
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq import backend, decoding
from tinyseq.data import Batch, SequenceDataset
from tinyseq.metrics import error_counts
from tinyseq.models import SequenceTranscriber
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
START = time.perf_counter()

if QUICK:
    N_TRAIN, N_TEST, MAX_DIGITS, STEPS, HIDDEN, LAYERS = 160, 24, 3, 100, 32, 1
else:
    N_TRAIN, N_TEST, MAX_DIGITS, STEPS, HIDDEN, LAYERS = 2400, 300, 5, 1500, 96, 2

# %% [markdown]
# ## The synthesizer
#
# eSpeak NG is one system package (`apt install espeak-ng` on Debian/Ubuntu, `brew install
# espeak-ng` on macOS, the installer from its GitHub releases on Windows). Without it
# this tutorial says so and stops here.

# %%
ESPEAK = shutil.which("espeak-ng")
if ESPEAK is None:
    print("eSpeak NG is not installed, so there is no audio to train on. Install it with\n"
          "    sudo apt-get install espeak-ng     # Debian, Ubuntu\n"
          "    brew install espeak-ng             # macOS\n"
          "and run this tutorial again.")
    print("RESULT: digit error rate: skipped (espeak-ng is not installed)")
    raise SystemExit(0)
print(subprocess.run([ESPEAK, "--version"], capture_output=True, text=True).stdout.strip())

# %% [markdown]
# ## CTC on a toy case, by hand
#
# Before any audio: three frames, classes {blank, "1", "2"}, target "1 2". Listing all
# 3³ = 27 alignments and adding the probabilities of those that read "1 2" gives
# p(y | x); `ts.ctc_loss` must give -log of the same number, by its recursion.

# %%
rng = np.random.default_rng(0)
toy = rng.standard_normal((3, 3))
toy_lp = toy - np.log(np.exp(toy).sum(axis=1, keepdims=True))  # log-softmax per frame
paths = [p for p in product(range(3), repeat=3) if decoding.ctc_collapse(p) == [1, 2]]
p_sum = sum(np.exp(sum(toy_lp[t, c] for t, c in enumerate(p))) for p in paths)
loss = ts.ctc_loss(ts.tensor(toy_lp[:, None, :]), [[1, 2]], [3], [2], reduction="sum")
print("alignments that read '1 2':", ["".join("-12"[c] for c in p) for p in paths])
print(f"-log(sum over them) = {-np.log(p_sum):.6f}   ts.ctc_loss = {loss.item():.6f}")

# %% [markdown]
# ## Spoken digit strings
#
# A *voice* is an English accent (American, British, Scottish, Caribbean, ...) with a
# voice variant (male or female timbres). Training uses some of them at speeds of
# 140–200 words per minute; two test sets hold out what training never heard:
# **new voices** (accent and variant both unseen) at the training speeds, and the
# training voices at **new speeds** (slower and faster than any training utterance).
# Every utterance gets a random pitch and white noise at 10–30 dB signal-to-noise.

# %%
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TRAIN_ACCENTS, TRAIN_VARIANTS = ["en-us", "en-gb", "en-gb-scotland", "en-029"], ["m1", "m3", "f1", "f3"]
TEST_ACCENTS, TEST_VARIANTS = ["en-gb-x-rp", "en-us-nyc", "en-gb-x-gbclan"], ["m2", "m4", "f2", "f4"]
TRAIN_SPEEDS, TEST_SPEEDS = (140, 200), (115, 125, 220, 235)
RATE = 22050  # eSpeak NG's sample rate


def utterances(n, accents, variants, speeds, seed, pick_speed=False):
    """n random digit strings, each with a voice, speed, pitch and noise level."""
    g = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        digits = g.integers(0, 10, int(g.integers(1, MAX_DIGITS + 1))).tolist()
        voice = f"{accents[g.integers(len(accents))]}+{variants[g.integers(len(variants))]}"
        speed = int(g.choice(speeds)) if pick_speed else int(g.integers(*speeds))
        out.append({"digits": digits, "voice": voice, "speed": speed,
                    "pitch": int(g.integers(30, 71)), "snr_db": float(g.uniform(10, 30)),
                    "seed": int(g.integers(2**31))})
    return out


def synthesize(u, folder):
    """The waveform (float32 in [-1, 1]) of one utterance, noise added."""
    path = os.path.join(folder, f"{u['seed']}.wav")
    text = " ".join(WORDS[d] for d in u["digits"])
    subprocess.run([ESPEAK, "-w", path, "-v", u["voice"], "-s", str(u["speed"]),
                    "-p", str(u["pitch"]), text], check=True, capture_output=True)
    with wave.open(path) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16) / 32768.0
    g = np.random.default_rng(u["seed"])
    power = np.mean(audio**2) + 1e-12
    noise = g.standard_normal(audio.shape) * np.sqrt(power / 10 ** (u["snr_db"] / 10))
    return (audio + noise).astype(np.float32)


# %% [markdown]
# ## From waveform to frames: log-mel spectrogram
#
# Each frame is 23 ms of sound (512 samples, Hann window), one every 20 ms. Its power
# spectrum is pooled by 40 triangular filters spaced evenly on the mel scale (about
# like the ear's resolution: fine at low, coarse at high frequencies), and the log
# taken. Subtracting each band's mean and dividing by its deviation over the utterance
# removes much of what differs between voices and recording levels.

# %%
N_FFT, HOP, N_MELS = 512, 441, 40


def mel_filters(n_mels=N_MELS, n_fft=N_FFT, rate=RATE, low=60.0, high=8000.0):
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(low), mel(high), n_mels + 2) / 2595) - 1)
    freqs = np.fft.rfftfreq(n_fft, 1 / rate)
    rise = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    fall = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    return np.clip(np.minimum(rise, fall), 0, None)  # (n_mels, n_fft // 2 + 1)


FILTERS = mel_filters()


def log_mel(audio):
    """(T, N_MELS) normalised log-mel frames of a waveform."""
    n = 1 + max(len(audio) - N_FFT, 0) // HOP
    index = np.arange(N_FFT)[None] + HOP * np.arange(n)[:, None]
    frames = np.pad(audio, (0, N_FFT))[index] * np.hanning(N_FFT)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    feats = np.log(power @ FILTERS.T + 1e-8)
    return ((feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-5)).astype(np.float32)


def make_set(specs):
    """Frames and digit ids (digit d is class d + 1; class 0 is the blank)."""
    with tempfile.TemporaryDirectory() as folder, ThreadPoolExecutor(2) as pool:
        audio = list(pool.map(lambda u: synthesize(u, folder), specs))
    return [log_mel(a) for a in audio], [np.array(u["digits"]) + 1 for u in specs], audio


t0 = time.perf_counter()
train_specs = utterances(N_TRAIN, TRAIN_ACCENTS, TRAIN_VARIANTS, TRAIN_SPEEDS, seed=1)
sets = {
    "training voices and speeds": utterances(N_TEST, TRAIN_ACCENTS, TRAIN_VARIANTS, TRAIN_SPEEDS, 2),
    "new voices": utterances(N_TEST, TEST_ACCENTS, TEST_VARIANTS, TRAIN_SPEEDS, 3),
    "new speeds": utterances(N_TEST, TRAIN_ACCENTS, TRAIN_VARIANTS, TEST_SPEEDS, 4, pick_speed=True),
}
train_x, train_y, _ = make_set(train_specs)
tests = {name: make_set(specs) for name, specs in sets.items()}
n_audio = N_TRAIN + sum(len(s) for s in sets.values())
seconds = sum(len(x) for x in train_x) * HOP / RATE
print(f"synthesized {n_audio} utterances in {time.perf_counter() - t0:.0f} s; training audio "
      f"{seconds / 60:.1f} min, {np.mean([len(x) for x in train_x]):.0f} frames on average")
print("e.g.", train_specs[0])

# %% [markdown]
# ## The model: a bidirectional GRU with a CTC output
#
# `SequenceTranscriber` is the library's model for this pattern: a recurrent encoder
# (here a GRU), a linear layer to the 11 classes (blank and ten digits), a log-softmax
# per frame, and `ts.ctc_loss` over the batch. `Trainer` runs it like every other
# model; evaluation decodes greedily (the best class of each frame, repeats merged,
# blanks dropped) and reports the error rate.
#
# A **bidirectional** encoder lets each frame's output hear the whole utterance. A
# unidirectional one must decide at frame t from frames 1..t alone; CTC lets it
# answer late (a digit may fire a few frames after it was spoken), but it hears less
# of each word when it fires. We train both, same sizes and budget.

# %%
def dataset(xs, ys, shuffle):
    return SequenceDataset(xs, ys, batch_size=16, x_is_sequence=True, y_is_sequence=True,
                           shuffle=shuffle, bucket=4 if shuffle else 0)


valid = dataset(*tests["training voices and speeds"][:2], shuffle=False)
EVAL_EVERY = max(STEPS // 5, 1)


def train(bidirectional):
    ts.manual_seed(0)
    model = SequenceTranscriber(num_classes=11, input_size=N_MELS, hidden_size=HIDDEN, cell="gru",
                                num_layers=LAYERS, bidirectional=bidirectional,
                                dropout=0.0 if QUICK else 0.1)
    trainer = Trainer(model, dataset(train_x, train_y, shuffle=True), valid, lr=3e-3,
                      clip_norm=5.0, max_steps=STEPS, epochs=10_000, eval_every=EVAL_EVERY,
                      monitor="error_rate", progress=False)
    t0 = time.perf_counter()
    trainer.fit()
    curve = ", ".join(f"{(i + 1) * EVAL_EVERY}: {m['error_rate']:.1%}"
                      for i, m in enumerate(trainer.valid_history))
    kind = "bidirectional" if bidirectional else "unidirectional"
    print(f"{kind} GRU, {model.num_parameters():,} parameters: {trainer.step} steps in "
          f"{time.perf_counter() - t0:.0f} s, training loss {trainer.history[-1]:.3f} nats per "
          f"digit; validation digit error rate by step: {curve}")
    return model


models = {"bidirectional": train(True), "unidirectional": train(False)}
model = models["bidirectional"]

# %% [markdown]
# ## Digit error rate on unheard voices and speeds
#
# The digit error rate counts substitutions, insertions and deletions against the
# reference (edit distance), per reference digit. Prefix beam search (Hannun et al.
# 2014) keeps the most probable *labellings* instead of the single best alignment,
# summing the alignments that read the same; with a confident network the two agree.

# %%
def error_rate(model, xs, ys, method="greedy"):
    data = dataset(xs, ys, shuffle=False)
    pred, gold = [], []
    for batch in data.batches(0):
        pred += model.predict(batch, method=method, beam_width=8)
        gold += [batch.y[b, : batch.y_lengths[b]].tolist() for b in range(len(batch))]
    edits, ref = error_counts(pred, gold)
    return edits / ref, pred


results = {}
for kind, m in models.items():
    print(f"{kind} GRU")
    for name, (xs, ys, _) in tests.items():
        greedy, pred = error_rate(m, xs, ys)
        beam, _ = error_rate(m, xs, ys, "beam")
        results[kind, name] = (greedy, beam)
        print(f"{name:>29}: digit error rate greedy {greedy:.1%}, beam(8) {beam:.1%}")
        if kind == "bidirectional":
            for u, p in list(zip(sets[name], pred))[:2]:
                print(f"{'':>31}{u['voice']:<18} {u['speed']} wpm  said "
                      f"{''.join(map(str, u['digits']))}  heard {''.join(str(c - 1) for c in p)}")

# %% [markdown]
# In the full run (numbers in `tutorials/README.md`) the bidirectional GRU makes
# almost no mistakes, on new voices as on the training ones; new speeds cost it a
# little. The unidirectional GRU of the same hidden size, trained as long, makes
# several times more on every set: reading left to right, it has to commit to a digit
# before it has heard what follows, and it has fewer weights.
#
# %% [markdown]
# ## What the network hears, frame by frame
#
# Above: the log-mel frames of a test utterance in a voice training never heard.
# Below: the probability of each digit per frame, with the best class of each frame
# written under it (`-` for blank). CTC networks learn to be *peaky*: a digit fires in
# one or two frames, and the blank covers everything else.

# %%
FIGURES = Path(args.figures) if args.figures else HERE / "figures" / ("quick" if QUICK else "")


def plot(path, frames, spec):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the figure (pip install 'tinyseq[plot]')")
        return
    batch = Batch(x=frames[None], y=np.zeros((1, 1), dtype=np.int64),
                  x_lengths=np.array([len(frames)]))
    model.eval()
    with ts.no_grad():
        probs = np.exp(backend.to_numpy(model(batch).data[:, 0]))  # (T, 11)
    best = probs.argmax(axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, middle, strip) = plt.subplots(3, 1, figsize=(10, 5.6), sharex=True,
                                             gridspec_kw={"height_ratios": [3, 2, 0.35]})
    top.imshow(frames.T, origin="lower", aspect="auto", cmap="magma",
               extent=(-0.5, len(frames) - 0.5, -0.5, N_MELS - 0.5))
    top.set_ylabel("mel band")
    said = " ".join(WORDS[d] for d in spec["digits"])
    top.set_title(f"'{said}' ({spec['voice']}, {spec['speed']} wpm, {spec['snr_db']:.0f} dB SNR)")
    for d in range(10):
        middle.plot(probs[:, d + 1], lw=1.2, label=str(d))
    middle.plot(probs[:, 0], color="0.7", lw=1, ls="--", label="blank")
    middle.set_ylim(0, 1.05)
    middle.set_ylabel("p(class | frame)")
    middle.legend(ncol=11, fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0),
                  frameon=False)
    for t, c in enumerate(best):
        strip.text(t, 0.5, "-" if c == 0 else str(c - 1), ha="center", va="center",
                   fontsize=6 if c == 0 else 9, color="0.6" if c == 0 else "C3")
    strip.set_yticks([])
    strip.set_ylabel("best", rotation=0, ha="right", va="center")
    strip.set_xlabel("frame (20 ms each)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


example = int(np.argmax([len(u["digits"]) for u in sets["new voices"]]))
plot(FIGURES / "08_ctc_spectrogram.png", tests["new voices"][0][example], sets["new voices"][example])

# %%
elapsed = time.perf_counter() - START
bi = [results["bidirectional", k][0] for k in sets]
uni = [results["unidirectional", k][0] for k in sets]
print(f"RESULT: digit error rate (greedy) after {STEPS} steps, bidirectional GRU: training "
      f"voices {bi[0]:.1%}, new voices {bi[1]:.1%}, new speeds {bi[2]:.1%} (beam(8) "
      f"{results['bidirectional', 'new voices'][1]:.1%}, {results['bidirectional', 'new speeds'][1]:.1%}); "
      f"unidirectional {uni[0]:.1%}, {uni[1]:.1%}, {uni[2]:.1%}; {elapsed:.0f} s in all")
