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
# # 7 · Write your own cell
#
# Every cell in tinyseq — the built-in vanilla RNN, GRUs and LSTM included — reaches
# the library the same way: as a **plugin** that registers a cell class through one
# hook, `register_cells(register)`. A cell only says how **one step** works; tinyseq
# lifts it to a full layer with variable lengths, both directions, stacking, gradient
# checks and training. This tutorial
#
# 1. reads a cell written as a **single file** (a peephole LSTM), loads it with
#    `--plugin FILE.py` (or the `TINYSEQ_PLUGINS` environment variable) and checks it
#    with `tinyseq check-cell`;
# 2. uses it bidirectional and stacked, with no change to tinyseq;
# 3. looks at a cell shipped as a **package** with an entry point (minGRU), the way
#    you would publish one;
# 4. trains both on the adding problem of tutorial 3, against the built-in LSTM.

# %%
import argparse
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq import registry
from tinyseq.testing import check_cell

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
    HIDDEN, LENGTH, MAX_STEPS, MAX_SECONDS, EVAL_EVERY = 32, 20, 60, 10.0, 20
else:
    HIDDEN, LENGTH, MAX_STEPS, MAX_SECONDS, EVAL_EVERY = 64, 50, 2500, 150.0, 50

# %% [markdown]
# ## 1 · A cell in a single file
#
# The contract (`tinyseq.cell.Cell`) asks for little: parameters, the names of the
# state's parts (`state_names`, e.g. `("h", "c")`), and
# `step(x_t, state) -> (output, new_state)` written with tinyseq tensor ops. An
# optional `input_projection(x)` computes the part of the step that reads only the
# input for **all** time steps at once — one big matrix product outside the loop —
# and `step` then receives its slice. Autograd derives the backward pass.
#
# Here is a peephole LSTM (Gers & Schmidhuber 2000): its gates also look at the cell
# state `c`.

# %%
PLUGIN_FILE = HERE / "cell_plugins" / "peephole_lstm.py"
print(PLUGIN_FILE.read_text(encoding="utf-8"))

# %% [markdown]
# The last lines are the plugin: a function marked `@ts.hookimpl` named
# `register_cells`, which calls `register(name, factory)`. No packaging is needed for
# a single file: name it on the command line or in an environment variable.
#
# ### The conformance kit
#
# `tinyseq check-cell NAME` runs a cell through everything tinyseq will do with it:
# shapes, batch size 1 and one-step sequences, a float64 gradient check against
# central differences, padding (each sequence in a padded batch must give what it
# gives alone, in both directions), bidirectional and stacked use, `state_dict`
# round trips, and — for cells with a fused fast path — agreement with the step path.

# %%
env = dict(os.environ, TINYSEQ_PLUGINS=str(PLUGIN_FILE))  # same as --plugin FILE.py
cmd = [sys.executable, "-m", "tinyseq.cli", "check-cell", "peephole_lstm"]
print("$ TINYSEQ_PLUGINS=cell_plugins/peephole_lstm.py tinyseq check-cell peephole_lstm")
done = subprocess.run(cmd, env=env, capture_output=True, text=True)
print(done.stdout + done.stderr)
assert done.returncode == 0, "check-cell failed"

# %% [markdown]
# In Python, load the file into the process-wide plugin manager, and the cell is a
# name like any other:

# %%
pm = registry.get_plugin_manager()
if "peephole_lstm" not in registry.available_cells():
    registry.load_plugin_file(pm, PLUGIN_FILE)
print("cells:", registry.available_cells())

# %% [markdown]
# ## 2 · Bidirectional and stacked, for free
#
# `ts.nn.Recurrent` wraps any registered cell: two layers, the first bidirectional,
# sequences of different lengths in one batch. Nothing in tinyseq knows about
# peepholes.

# %%
rnn = ts.nn.Recurrent("peephole_lstm", input_size=3, hidden_size=8, num_layers=2,
                      bidirectional=True)
print(rnn)
x = ts.randn(6, 4, 3)  # (T, B, I)
out, (h, c) = rnn(x, lengths=[6, 3, 5, 1])
print(f"output {out.shape} (T, B, 2*H); final h {h.shape} and c {c.shape} (layers*2, B, H)")
out.sum().backward()
print("every parameter has a gradient:",
      all(p.grad is not None for p in rnn.parameters()))

# %% [markdown]
# ## 3 · A cell as a package with an entry point
#
# To share a cell, publish it as a package that declares an **entry point** in the
# group `tinyseq`; installing the package is then all a user does — tinyseq finds it
# at start-up, lists it in `tinyseq cells` and `tinyseq plugins`, and names its
# distribution in every error. The example package `tinyseq_mingru` ships the minGRU
# of Feng et al. (2024), whose gates read only the input:
#
#     z<t>  = σ(W_z x<t> + b_z)
#     h~<t> = W_h x<t> + b_h
#     h<t>  = (1 - z<t>) * h<t-1> + z<t> * h~<t>
#
# Its `pyproject.toml`:

# %%
PACKAGE = HERE / "tinyseq_mingru"
toml = (PACKAGE / "pyproject.toml").read_text(encoding="utf-8")
print(toml[toml.index("# tinyseq finds"):])

# %% [markdown]
# With `pip install ./tutorials/tinyseq_mingru` done, "mingru" is simply there. If it
# is not installed, we register the same module from code
# (`registry.register_plugin(module)`), the third way in.

# %%
if "mingru" in registry.available_cells():
    spec = registry.get_cell_spec("mingru")
    print(f"mingru comes from the installed package: {spec.source}")
else:
    sys.path.insert(0, str(PACKAGE))
    mingru = importlib.import_module("tinyseq_mingru")
    registry.register_plugin(mingru)
    print("tinyseq-mingru is not installed (pip install ./tutorials/tinyseq_mingru): "
          "registered its module from code instead")
report = check_cell("mingru")
print(report)

# %% [markdown]
# ## 4 · Training the new cells: the adding problem
#
# The task of tutorial 3 (T steps of (value, marker); predict the sum of the two
# marked values; chance MSE ≈ 0.167). The built-in LSTM uses tinyseq's fused kernel;
# the plugin cells run through the generic step path (one autograd graph node per
# operation per step), which is slower per step but needs no extra code.

# %%
def adding_batch(rng, batch, length):
    values = rng.uniform(0.0, 1.0, size=(length, batch))
    markers = np.zeros((length, batch))
    rows = np.arange(batch)
    markers[rng.integers(0, length // 2, batch), rows] = 1.0
    markers[rng.integers(length // 2, length, batch), rows] = 1.0
    x = np.stack([values, markers], axis=-1).astype(np.float32)
    y = (values * markers).sum(axis=0, keepdims=True).T.astype(np.float32)
    return ts.tensor(x), ts.tensor(y)


class Adder(ts.nn.Module):
    def __init__(self, cell, hidden, **options):
        super().__init__()
        self.rnn = ts.nn.Recurrent(cell, 2, hidden, **options)
        self.head = ts.nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[-1])


def train(cell, **options):
    ts.manual_seed(0)
    rng = np.random.default_rng(0)
    model = Adder(cell, HIDDEN, **options)
    params = list(model.parameters())
    opt = ts.optim.Adam(params, lr=3e-3)
    x_val, y_val = adding_batch(np.random.default_rng(1), 1000, LENGTH)
    curve, step, t0 = [], 0, time.perf_counter()
    while True:
        if step % EVAL_EVERY == 0:
            with ts.no_grad():
                curve.append((step, ts.mse_loss(model(x_val), y_val).item()))
            if curve[-1][1] < 0.01 or step >= MAX_STEPS or time.perf_counter() - t0 > MAX_SECONDS:
                break
        x, y = adding_batch(rng, 64, LENGTH)
        loss = ts.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        ts.optim.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
    return curve, time.perf_counter() - t0


runs = {}
for cell, options in (("lstm", {"forget_bias": 1.0}), ("peephole_lstm", {}), ("mingru", {})):
    curve, seconds = train(cell, **options)
    runs[cell] = (curve, seconds)
    steps, mse = curve[-1]
    status = "solved (< 0.01)" if mse < 0.01 else "not solved"
    print(f"{cell:>14}: MSE {mse:.4f} {status} after {steps} steps, {seconds:.0f} s "
          f"({1000 * seconds / max(steps, 1):.0f} ms/step)", flush=True)

# %%
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
    for cell, (curve, _) in runs.items():
        steps, mse = zip(*curve)
        ax.semilogy(steps, mse, label=cell)
    ax.axhline(1 / 6, color="gray", ls="--", lw=1, label="chance (1/6)")
    ax.axhline(0.01, color="gray", ls=":", lw=1, label="solved (0.01)")
    ax.set_xlabel("training step")
    ax.set_ylabel("held-out MSE")
    ax.set_title(f"adding problem, T = {LENGTH}: plugin cells vs the built-in LSTM")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


plot(FIGURES / "07_plugin_cells_adding.png")

# %% [markdown]
# ## Result
#
# Two new cells, one from a single file and one from a package, passed the
# conformance kit, ran bidirectional and stacked, and trained on the adding problem
# — without a line changed in tinyseq. To make a new cell fast, add a
# `fused_sequence` method (a whole-sequence forward with its own backward, as the
# built-in cells have); `check-cell` then also checks it against the step path.
#
# Measured in full mode on a shared 2-core CPU (one BLAS thread; see tutorials/README.md):
# at T = 50 the LSTM solves the adding problem at step 900 (13 s), the peephole LSTM
# at step 950 (33 s), minGRU at step 1,450 (11 s); 59 s for the whole script.

# %%
summary = ", ".join(f"{c} {curve[-1][1]:.4f} ({curve[-1][0]} steps, {s:.0f} s)"
                    for c, (curve, s) in runs.items())
print(f"RESULT: adding problem T={LENGTH}, final MSE: {summary}; "
      f"total {time.perf_counter() - START:.0f} s")
