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
# # 1 · Autograd and backpropagation through time
#
# A vanilla RNN reads a sequence one step at a time with the **same** weights at
# every step:
#
#     a<t> = tanh(W_aa a<t-1> + W_ax x<t> + b_a)
#     ŷ<t> = softmax(W_ya a<t> + b_y)
#
# Training it means differentiating a loss summed over all steps,
# `L = Σ_t L<t>(ŷ<t>, y<t>)`, with respect to those shared weights. The algorithm is
# called *backpropagation through time* (BPTT): unroll the loop into one long
# computation graph and run ordinary backpropagation on it, from the last step back
# to the first.
#
# In this tutorial we
#
# 1. write the forward pass and BPTT **by hand** in NumPy, following the lecture's
#    equations line by line;
# 2. compute the same gradients with tinyseq's autograd (`ts.nn.Recurrent` + a
#    `ts.nn.Linear` head + `ts.cross_entropy`) and check that both agree to float64
#    precision;
# 3. see what weight sharing means for the gradient: every step adds its own
#    contribution to the same `dW`, and the same weights read sequences of any length.
#
# Run it as a script (`python tutorials/01_autograd_bptt.py`, add `--quick` for the
# short version) or open it as a notebook with Jupytext.

# %%
import argparse
import os
import time
from pathlib import Path

import numpy as np

import tinyseq as ts
from tinyseq.testing import gradcheck

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

ts.set_default_dtype(ts.float64)  # the comparison is to float64 precision
ts.manual_seed(0)
rng = np.random.default_rng(0)

# %% [markdown]
# ## A toy problem
#
# A vocabulary of `V` symbols, one-hot inputs `x<t>`, and as target `y<t>` the next
# symbol. `B` sequences of `T` steps, hidden size `H`. Arrays are time-major,
# (T, B, ...), like tinyseq's (and PyTorch's) default layout.

# %%
V, H, T, B = 5, 4, 6, 3
ids = rng.integers(0, V, size=(T + 1, B))
X = np.eye(V)[ids[:-1]]  # (T, B, V) one-hot inputs x<1..T>
Y = ids[1:]  # (T, B) targets: the next symbol

# the parameters, named as in the lecture
W_ax = rng.normal(0, 0.5, (H, V))
W_aa = rng.normal(0, 0.5, (H, H))
b_a = rng.normal(0, 0.1, H)
W_ya = rng.normal(0, 0.5, (V, H))
b_y = rng.normal(0, 0.1, V)

# %% [markdown]
# ## Forward pass by hand
#
# We keep every `a<t>` and `ŷ<t>`: the backward pass needs them. `a<0>` is zero.

# %%
def softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def forward(X, W_ax, W_aa, b_a, W_ya, b_y):
    """Returns the loss (summed over steps and sequences), a<0..T> and ŷ<1..T>."""
    a = [np.zeros((X.shape[1], W_aa.shape[0]))]  # a<0>
    y_hat = []
    for t in range(X.shape[0]):
        a.append(np.tanh(a[-1] @ W_aa.T + X[t] @ W_ax.T + b_a))
        y_hat.append(softmax(a[-1] @ W_ya.T + b_y))
    loss = -sum(np.log(y_hat[t][np.arange(X.shape[1]), Y[t]]).sum() for t in range(X.shape[0]))
    return loss, a, y_hat


loss_by_hand, a, y_hat = forward(X, W_ax, W_aa, b_a, W_ya, b_y)
print(f"loss by hand: {loss_by_hand:.12f}")

# %% [markdown]
# ## Backpropagation through time by hand
#
# Walk the steps backwards. At step `t` the gradient reaching `a<t>` has two parts:
# from this step's own output (`W_yaᵀ (ŷ<t> - y<t>)`, the softmax-plus-cross-entropy
# gradient) and from the future, through `a<t+1>` (`da_next`). Through the tanh,
# `dz = da * (1 - a<t>²)`. Because the weights are shared, each step **adds** its
# contribution to the same `dW_aa`, `dW_ax`, `db_a`.

# %%
def bptt(X, a, y_hat, W_aa, W_ya):
    dW_ax, dW_aa, db_a = np.zeros_like(W_ax), np.zeros_like(W_aa), np.zeros_like(b_a)
    dW_ya, db_y = np.zeros_like(W_ya), np.zeros_like(b_y)
    da_next = np.zeros_like(a[0])
    for t in reversed(range(X.shape[0])):
        dy = y_hat[t].copy()
        dy[np.arange(X.shape[1]), Y[t]] -= 1.0  # d L<t> / d logits
        dW_ya += dy.T @ a[t + 1]
        db_y += dy.sum(axis=0)
        da = dy @ W_ya + da_next  # from the output and from step t+1
        dz = da * (1.0 - a[t + 1] ** 2)  # through tanh
        dW_aa += dz.T @ a[t]  # a[t] is a<t-1> (a[0] = a<0>)
        dW_ax += dz.T @ X[t]
        db_a += dz.sum(axis=0)
        da_next = dz @ W_aa  # hand the gradient to step t-1
    return {"W_ax": dW_ax, "W_aa": dW_aa, "b_a": db_a, "W_ya": dW_ya, "b_y": db_y}


grads_by_hand = bptt(X, a, y_hat, W_aa, W_ya)

# %% [markdown]
# ## The same model in tinyseq
#
# `ts.nn.Recurrent("rnn", ...)` is the vanilla RNN layer; its parameters use
# PyTorch's names: `weight_ih` is `W_ax`, `weight_hh` is `W_aa`, and the bias is
# split in two (`bias_ih + bias_hh = b_a`). The output layer `ŷ<t>` is a separate
# `ts.nn.Linear` (softmax is folded into `ts.cross_entropy`). We copy our weights in
# and let autograd do the rest.

# %%
rnn = ts.nn.Recurrent("rnn", input_size=V, hidden_size=H)
head = ts.nn.Linear(H, V)
cell = rnn.cell_at(0)
cell.weight_ih.data[...] = W_ax
cell.weight_hh.data[...] = W_aa
cell.bias_ih.data[...] = b_a
cell.bias_hh.data[...] = 0.0
head.weight.data[...] = W_ya
head.bias.data[...] = b_y
print(rnn)

x = ts.tensor(X)
out, h_T = rnn(x)  # out: a<1..T>, (T, B, H); h_T: the final state, (1, B, H)
logits = head(out)  # (T, B, V)
loss = ts.cross_entropy(logits, ts.tensor(Y), reduction="sum")
loss.backward()
print(f"loss by tinyseq: {loss.item():.12f}")

grads_autograd = {
    "W_ax": cell.weight_ih.grad.numpy(),
    "W_aa": cell.weight_hh.grad.numpy(),
    "b_a": cell.bias_ih.grad.numpy(),
    "W_ya": head.weight.grad.numpy(),
    "b_y": head.bias.grad.numpy(),
}

# %% [markdown]
# Both ways give the same loss and the same gradients, up to float64 rounding
# (about 1e-16 relative). The bias gradient shows up twice in tinyseq, once for
# `bias_ih` and once for `bias_hh` — they are one parameter in the lecture, so both
# receive the same gradient.

# %%
print(f"{'parameter':>9}  {'max |by hand - autograd|':>24}  {'relative':>9}")
worst = 0.0
for name, g in grads_by_hand.items():
    diff = np.abs(g - grads_autograd[name]).max()
    rel = diff / np.abs(g).max()
    worst = max(worst, rel)
    print(f"{name:>9}  {diff:24.3e}  {rel:9.1e}")
assert abs(loss.item() - loss_by_hand) < 1e-12
assert np.allclose(cell.bias_hh.grad.numpy(), grads_by_hand["b_a"], rtol=1e-12, atol=1e-14)
assert worst < 1e-12, worst

# %% [markdown]
# tinyseq runs built-in cells through a fused whole-sequence kernel (one graph node
# for the whole time loop, with its own hand-written backward pass — the BPTT above,
# vectorised). The *step path* runs the cell's one-step function `T` times and lets
# autograd record every operation. Both must agree; `ts.nn.Recurrent(..., fused=False)`
# forces the step path.

# %%
rnn_steps = ts.nn.Recurrent("rnn", V, H, fused=False)
rnn_steps.load_state_dict(rnn.state_dict())
loss_steps = ts.cross_entropy(head(rnn_steps(x)[0]), ts.tensor(Y), reduction="sum")
loss_steps.backward()
step_diff = np.abs(rnn_steps.cell_at(0).weight_hh.grad.numpy() - grads_by_hand["W_aa"]).max()
print(f"step path vs by hand, dW_aa: max |diff| = {step_diff:.1e}")
assert step_diff < 1e-12

# %% [markdown]
# ## A numerical check
#
# Neither hand-written nor automatic gradients are worth much unless they match the
# *definition* of a derivative. `tinyseq.testing.gradcheck` compares autograd against
# central differences `(L(w + ε) - L(w - ε)) / 2ε` for every element, in float64.

# %%
w_hh = ts.tensor(W_aa, requires_grad=True)


def loss_through_w(w):
    # the same recurrence, written with tinyseq ops so the weight is an input
    state = ts.zeros(B, H)
    total = ts.tensor(0.0)
    for t in range(T):
        state = ts.tanh(state @ w.T + x[t] @ cell.weight_ih.detach().T + cell.bias_ih.detach())
        total = total + ts.cross_entropy(head(state), ts.tensor(Y[t]), reduction="sum")
    return total


gradcheck(loss_through_w, [w_hh], names=["W_aa"])
print("gradcheck: autograd matches central differences for W_aa")

# %% [markdown]
# ## Weight sharing: the same weights read any length
#
# Nothing in the layer depends on `T`: the parameters are the same few matrices
# whether the sequence has 3 steps or 300. Below, one layer reads sequences of three
# lengths — and a batch that mixes lengths (`lengths=`: padded steps change nothing).
#
# For the gradient, sharing means each step contributes a term, and `dW_aa` is their
# sum. Put the loss on the **last** step only (a long-range question: "what was
# said at the start?") and look at how much each step contributes: the contributions
# from early steps are tiny. That is the vanishing gradient of tutorial 3, already
# visible in a 4-unit RNN.

# %%
with ts.no_grad():  # only looking: no graph needed
    for length in (3, 30, 300):
        seq = ts.tensor(np.eye(V)[rng.integers(0, V, size=(length, 2))])
        out, _ = rnn(seq)
        print(f"T = {length:3d}: output {out.shape}, parameters {rnn.num_parameters()} (unchanged)")

    mixed = ts.tensor(np.eye(V)[rng.integers(0, V, size=(7, 3))])
    out, h_last = rnn(mixed, lengths=[7, 4, 2])
    alone, h_alone = rnn(mixed[:4, 1:2])  # the second sequence on its own, 4 steps
print("lengths [7, 4, 2]: outputs at padded steps are zero:",
      bool(np.all(out.numpy()[4:, 1] == 0) and np.all(out.numpy()[2:, 2] == 0)))
print("the padded sequence's final state equals reading it alone:",
      bool(np.allclose(h_last.numpy()[0, 1], h_alone.numpy()[0, 0])))

T_long = 40 if QUICK else 80
W_aa_small = W_aa * 0.6  # a contracting recurrence, as a tanh RNN usually is
X_long = np.eye(V)[rng.integers(0, V, size=(T_long, B))]
a_long = [np.zeros((B, H))]
for t in range(T_long):
    a_long.append(np.tanh(a_long[-1] @ W_aa_small.T + X_long[t] @ W_ax.T + b_a))
# loss on the last step only: backpropagate and record each step's share of dW_aa
dy = softmax(a_long[-1] @ W_ya.T + b_y)
dy[np.arange(B), 0] -= 1.0
da = dy @ W_ya
contribution = np.zeros(T_long)
for t in reversed(range(T_long)):
    dz = da * (1.0 - a_long[t + 1] ** 2)
    contribution[t] = np.linalg.norm(dz.T @ a_long[t])
    da = dz @ W_aa_small
print("share of dW_aa from the last 5 steps: "
      f"{contribution[-5:].sum() / contribution.sum():.4f}; from the first half: "
      f"{contribution[: T_long // 2].sum() / contribution.sum():.2e}")

# %%
def save_plot(path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the figure (pip install 'tinyseq[plot]')")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    # step 1 reads a<0> = 0, so it adds nothing to dW_aa: start at step 2
    ax.semilogy(np.arange(2, T_long + 1), contribution[1:], marker=".")
    ax.set_xlabel("step t")
    ax.set_ylabel("||contribution of step t to dL/dW_aa||")
    ax.set_title(f"Loss at step {T_long} only: early steps barely contribute")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


save_plot(FIGURES / "01_bptt_contributions.png")

# %% [markdown]
# ## Training: the gradient put to work
#
# Finally, the loop every later tutorial uses: forward, loss, `backward()`, an
# optimizer step. A small RNN learns to continue a repeating phrase; the loss falls
# to nearly zero because every next character is determined by the previous ones.

# %%
text = "hello world, " * 4
chars = sorted(set(text))
idx = np.array([chars.index(c) for c in text])
model_rnn = ts.nn.Recurrent("rnn", len(chars), 32)
model_head = ts.nn.Linear(32, len(chars))
params = list(model_rnn.parameters()) + list(model_head.parameters())
opt = ts.optim.Adam(params, lr=0.01)
xs = ts.tensor(np.eye(len(chars))[idx[:-1]][:, None, :])  # (T, 1, V): one sequence
ys = ts.tensor(idx[1:][:, None])
steps = 100 if QUICK else 300
for step in range(steps + 1):
    out, _ = model_rnn(xs)
    train_loss = ts.cross_entropy(model_head(out), ys)
    opt.zero_grad()
    train_loss.backward()
    opt.step()
    if step % (steps // 4) == 0:
        print(f"step {step:4d}  loss {train_loss.item():.4f}")

# %% [markdown]
# ## Result
#
# Hand-written BPTT and tinyseq's autograd compute the same gradients (relative
# difference around 1e-16, i.e. float64 rounding), the fused kernel and the step path
# agree, and central differences confirm both.
#
# Measured in full mode on a shared 2-core CPU (one BLAS thread; see tutorials/README.md):
# max relative difference 3.0e-16; the whole script takes about 2 s.

# %%
print(f"RESULT: hand-written BPTT and tinyseq autograd agree: max relative difference "
      f"{worst:.1e} (float64); next-char loss {train_loss.item():.3f} after {steps} steps; "
      f"{time.perf_counter() - START:.1f} s")
