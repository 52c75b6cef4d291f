"""Checkpoint safety: killed saves, directories, hostile sizes and lying configs."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinyseq as ts
from tinyseq import atomic, checkpoint
from tinyseq.model_shapes import parameter_shapes
from tinyseq.models import MODELS, build_model
from tinyseq.trainer import load_model

CHILD = textwrap.dedent("""
    import os, sys
    import tinyseq as ts
    from tinyseq.data import StreamDataset, Vocab
    from tinyseq.models import LanguageModel
    from tinyseq.trainer import Trainer

    out = sys.argv[1]
    text = "a quick brown fox jumps over the lazy dog; " * 12
    vocab = Vocab.build([list(text)])
    ids = vocab.encode_text(text)
    ts.manual_seed(0)
    # big enough that a save (weights and Adam's moments, ~4 MB) takes some milliseconds
    model = LanguageModel(len(vocab), embedding_dim=8, hidden_size=192)
    trainer = Trainer(model, StreamDataset(ids, 4, 20), StreamDataset(ids[:100], 2, 20),
                      lr=1e-3, max_steps=10**6, epochs=10**6, eval_every=1, checkpoint_every=1,
                      out_dir=out, progress=False, seed=1)
    last = os.path.join(out, "last.npz")
    trainer.fit(resume=last if os.path.exists(last) else None)
""")


def ours(directory: Path) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.startswith((".last.npz.", ".best.npz."))
                  and f.endswith(".tmp"))


def stamp(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a file: every save renames a new file in."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns


def test_sigkill_during_training_saves_leaves_loadable_checkpoints_and_no_temporaries(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(CHILD)
    out = tmp_path / "run"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    rng = random.Random(0)
    killed: set[int] = set()
    while len(killed) < 5 or not ours(out):  # end on a kill that interrupted a write
        assert len(killed) < 12, "no kill landed inside a checkpoint write"
        before = stamp(out / "last.npz")
        with open(tmp_path / "stderr.txt", "wb") as err:
            child = subprocess.Popen([sys.executable, str(script), str(out)], env=env,
                                     stdout=subprocess.DEVNULL, stderr=err)
            try:
                start = time.monotonic()  # wait until this child has saved once: it is training
                while stamp(out / "last.npz") == before and time.monotonic() - start < 60:
                    assert child.poll() is None, (tmp_path / "stderr.txt").read_text()
                    time.sleep(0.002)
                time.sleep(rng.uniform(0.0, 0.3))
                # then kill as soon as a temporary shows a save in progress (or after 1 s)
                deadline = time.monotonic() + 1.0
                while not ours(out) and time.monotonic() < deadline:
                    time.sleep(0.0005)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
        assert child.returncode == -signal.SIGKILL, (tmp_path / "stderr.txt").read_text()
        killed.add(child.pid)
        for name in ("last.npz", "best.npz"):
            if (out / name).exists():  # every checkpoint there is whole
                assert load_model(out / name)[1]["trainer"]["step"] >= 1
    # a killed writer's temporaries stay until the next save of the same target ...
    left = ours(out)
    assert {int(f.split(".")[4]) for f in left} <= killed
    ckpt = ts.load_checkpoint(out / "last.npz")
    model, _ = load_model(out / "last.npz")
    for name in ("last.npz", "best.npz"):
        ts.save_checkpoint(out / name, model, metadata=ckpt.metadata)
    assert ours(out) == []  # ... which removes them
    assert load_model(out / "best.npz")[1]["trainer"] == ckpt.metadata["trainer"]


def test_save_removes_only_stale_temporaries_of_its_own_target(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no running process
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        here = atomic._host()
        files = {
            f".run.npz.{here}.{gone.pid}.ab_c9xyz.tmp": "removed",  # a killed writer's
            f".run.npz.{here}.{alive.pid}.k2j4h5g6.tmp": "kept",  # a live writer's, mid-save
            f".run.npz.{here}.{alive.pid}.oldoldol.tmp": "removed",  # untouched for hours
            f".run.npz.elsewhere.{gone.pid}.ab_c9xyz.tmp": "kept",  # another machine's writer
            ".run.npz.legacy12.tmp": "kept",  # an older tinyseq's (no pid), recent
            ".run.npz.legacy_o.tmp": "removed",  # ... and old
            f".other.npz.{here}.{gone.pid}.ab_c9xyz.tmp": "kept",  # another target's
            f".run.npz.{here}.{gone.pid}.ab_c9xyz.tmp.keep": "kept",  # not our pattern
            f".run.npz.{here}.{gone.pid}.AB.tmp": "kept",
            ".run.npz.tmp": "kept",
            f"run.npz.{here}.{gone.pid}.ab_c9xyz.tmp": "kept",
            "notes.tmp": "kept",
        }
        for name in files:
            (tmp_path / name).write_bytes(name.encode())
        old = time.time() - 2 * atomic.STALE_TEMP_SECONDS
        for name in (f".run.npz.{here}.{alive.pid}.oldoldol.tmp", ".run.npz.legacy_o.tmp"):
            os.utime(tmp_path / name, (old, old))
        (tmp_path / f".run.npz.{here}.{gone.pid}.dirdirdi.tmp").mkdir()  # not a file: left alone
        model = ts.nn.Linear(3, 2)
        ts.save_checkpoint(tmp_path / "run.npz", model)
        for name, fate in files.items():
            path = tmp_path / name
            assert path.exists() == (fate == "kept"), name
            if fate == "kept":
                assert path.read_bytes() == name.encode()
        assert (tmp_path / f".run.npz.{here}.{gone.pid}.dirdirdi.tmp").is_dir()
        assert ts.load_checkpoint(tmp_path / "run.npz").model_state.keys() == {"weight", "bias"}
    finally:
        alive.kill()
        alive.wait()


def test_temporaries_carry_the_writers_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real = checkpoint._write_array

    def spying(fh, arr, **kw):  # type: ignore[no-untyped-def]
        seen.append(os.listdir(tmp_path))
        real(fh, arr, **kw)

    monkeypatch.setattr(checkpoint, "_write_array", spying)
    ts.save_checkpoint(tmp_path / "m.npz", ts.nn.Linear(2, 2))
    (temp,) = seen[0]
    assert temp.startswith(f".m.npz.{atomic._host()}.{os.getpid()}.") and temp.endswith(".tmp")
    assert os.listdir(tmp_path) == ["m.npz"]


# ---- case 7: a directory (or an unreadable path) given as a checkpoint ---------------------
def test_directory_as_checkpoint_is_a_checkpoint_error_naming_the_files_inside(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ts.CheckpointError, match=rf"{run} is a directory; expected a checkpoint file \(\.npz\)$"):
        ts.load_checkpoint(run)
    ts.save_checkpoint(run / "best.npz", ts.nn.Linear(2, 2))
    ts.save_checkpoint(run / "last.npz", ts.nn.Linear(2, 2))
    with pytest.raises(ts.CheckpointError, match=rf"did you mean {run / 'best.npz'} or {run / 'last.npz'}\?"):
        ts.load_checkpoint(run)
    with pytest.raises(ts.CheckpointError, match=rf"{run} is a directory"):
        load_model(run)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs file permissions (not root)")
def test_unreadable_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "locked.npz"
    ts.save_checkpoint(path, ts.nn.Linear(2, 2))
    path.chmod(0)
    try:
        with pytest.raises(ts.CheckpointError, match=rf"cannot read checkpoint {path}: Permission denied"):
            ts.load_checkpoint(path)
    finally:
        path.chmod(0o644)


def test_path_through_a_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a directory")
    path = tmp_path / "notes.txt" / "best.npz"
    with pytest.raises(ts.CheckpointError, match=rf"cannot read checkpoint {path}: Not a directory; "
                       r"expected a readable checkpoint file \(\.npz\)"):
        ts.load_checkpoint(path)


def test_missing_checkpoint_is_both_checkpoint_error_and_file_not_found(tmp_path: Path) -> None:
    path = tmp_path / "nope.npz"
    with pytest.raises(FileNotFoundError, match=f"checkpoint not found: {path}") as info:
        ts.load_checkpoint(path)
    assert isinstance(info.value, ts.CheckpointError)


# ---- hostile sizes: declared sizes are checked before anything large is read --------------
def _bomb(path: Path, megabytes: int) -> None:
    """A zip whose one entry is an honest .npy of zeros, deflated ~1000-fold."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open("payload.npy", "w", force_zip64=True) as out:
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<f4", "fortran_order": False, "shape": (megabytes * 2**18,)})
            block = bytes(2**20)
            for _ in range(megabytes):
                out.write(block)


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    _bomb(path, 64)
    assert path.stat().st_size < 2**20  # 64 MiB of array in well under 1 MiB
    tracemalloc.start()
    try:
        with pytest.raises(ts.CheckpointError, match=r"bomb\.npz: refused: entry 'payload' inflates \d+-fold"):
            ts.load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20  # nothing of the 64 MiB was allocated


def test_total_declared_size_is_limited(tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    ts.save_checkpoint(path, ts.nn.Linear(256, 256))  # 257 kB of weights
    with pytest.raises(ts.CheckpointError, match=r"big\.npz: refused: its entries inflate to more "
                       r"than 100000 bytes .*entry 'model/weight'.*max_bytes"):
        ts.load_checkpoint(path, max_bytes=100_000)
    assert ts.load_checkpoint(path).model_state["weight"].shape == (256, 256)


def test_header_that_lies_about_the_entry_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "lying.npz"
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("model/w.npy", "w") as out:  # declares 2**28 floats (1 GiB), holds 16 bytes
            np.lib.format.write_array_header_1_0(
                out, {"descr": "<f4", "fortran_order": False, "shape": (2**14, 2**14)})
            out.write(bytes(16))
    tracemalloc.start()
    try:
        with pytest.raises(ts.CheckpointError, match=r"lying\.npz: corrupt checkpoint: entry 'model/w' "
                           r"declares shape \(16384, 16384\) float32 .* but holds \d+ bytes"):
            ts.load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20


# ---- a stored config that lies about the model's size --------------------------------------
def _lm_checkpoint(path: Path, **config_override: object) -> None:
    model = build_model("language_model", {"vocab_size": 30, "embedding_dim": 16, "hidden_size": 32})
    config = {**model.config, **config_override}
    ts.save_checkpoint(path, model, metadata={"model": {"kind": "language_model", "config": config}})


def test_lying_config_is_refused_before_building_the_model(tmp_path: Path) -> None:
    path = tmp_path / "liar.npz"
    _lm_checkpoint(path, hidden_size=8000)  # would be 4 * 8000 * 8016 floats (1 GB) for the LSTM alone
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(ts.CheckpointError, match=r"liar\.npz: its model config does not fit its stored "
                           r"weights \(hidden_size=8000 \(cell='lstm'\): rnn\.layers\.0\.weight_ih is "
                           r"\(128, 16\) in the file but the config makes it \(32000, 16\)"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 5
    assert peak < 16 * 2**20  # the model would take over 1 GB


@pytest.mark.parametrize(("override", "named"), [
    ({"vocab_size": 10**6}, r"vocab_size=1000000: embedding\.weight is \(30, 16\) in the file"),
    ({"num_layers": 2}, r"num_layers=2, cell='lstm': the config makes rnn\.layers\.1\.weight_ih"),
    ({"num_layers": 10**9}, r"num_layers=1000000000, but only 7 weight arrays are stored"),
    ({"cell": "gru"}, r"cell='gru'.*weight_ih is \(128, 16\) in the file but the config makes it \(96, 16\)"),
])
def test_each_lying_config_key_is_named(tmp_path: Path, override: dict[str, object], named: str) -> None:
    path = tmp_path / "liar.npz"
    _lm_checkpoint(path, **override)
    with pytest.raises(ts.CheckpointError, match=named):
        load_model(path)


def test_honest_checkpoint_still_loads_and_draws_no_random_numbers(tmp_path: Path) -> None:
    path = tmp_path / "ok.npz"
    _lm_checkpoint(path)
    ts.manual_seed(5)
    expected = ts.randn(3).numpy()
    ts.manual_seed(5)
    model, meta = load_model(path)
    assert meta["model"]["config"]["hidden_size"] == 32 and not model.training
    # the shape probes restore the generator; only the real build draws, as before
    ts.manual_seed(5)
    build_model("language_model", meta["model"]["config"])
    after_build = ts.randn(3).numpy()
    ts.manual_seed(5)
    load_model(path)
    np.testing.assert_array_equal(ts.randn(3).numpy(), after_build)
    assert not np.array_equal(after_build, expected)


CONFIGS = {
    "language_model": {"vocab_size": 11, "embedding_dim": 5, "hidden_size": 6, "num_layers": 2, "cell": "gru"},
    "classifier": {"num_classes": 3, "vocab_size": 9, "hidden_size": 5, "bidirectional": True,
                   "pooling": "mean", "cell": "rnn"},
    "tagger": {"num_tags": 4, "input_size": 7, "hidden_size": 5, "num_layers": 2},
    "regressor": {"output_size": 2, "input_size": 3, "hidden_size": 9, "cell": "simple_gru"},
    "seq2seq": {"tgt_vocab_size": 12, "src_vocab_size": 10, "embedding_dim": 4, "hidden_size": 6,
                "bidirectional": True, "num_layers": 2},
    "one_to_many": {"condition_size": 5, "vocab_size": 9, "hidden_size": 7, "condition": "both"},
    "one_to_one": {"input_size": 5, "hidden_size": 7, "output_size": 3, "num_layers": 3},
    "multilabel": {"num_labels": 6, "input_size": 6, "hidden_size": 5, "cell": "gru"},
    "captioner": {"image_shape": [8, 12, 3], "vocab_size": 9, "patch": 4, "channels": 5,
                  "condition_size": 6, "hidden_size": 7, "condition": "both"},
    "transcriber": {"num_classes": 5, "input_size": 6, "hidden_size": 7, "num_layers": 2,
                    "bidirectional": True, "cell": "gru"},
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_parameter_shapes_match_the_built_model(kind: str) -> None:
    config = CONFIGS[kind]
    built = {k: tuple(v.shape) for k, v in build_model(kind, config).state_dict().items()}
    assert parameter_shapes(kind, config) == built


def test_parameter_shapes_of_a_plugin_cell(tmp_path: Path) -> None:
    from tinyseq import registry

    plugin = Path(__file__).parent.parent / "tutorials" / "cell_plugins" / "peephole_lstm.py"
    pm = registry.build_plugin_manager(entrypoints=False, env=False)
    registry.load_plugin_file(pm, plugin)
    config = {"vocab_size": 13, "embedding_dim": 6, "hidden_size": 10, "cell": "peephole_lstm"}
    with registry.use_plugin_manager(pm):
        built = {k: tuple(v.shape) for k, v in build_model("language_model", config).state_dict().items()}
        assert "rnn.layers.0.peephole" in built
        assert parameter_shapes("language_model", config) == built
