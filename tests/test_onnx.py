"""tinyseq.onnx: export to ONNX (checked in onnxruntime) and import (RNN/GRU/LSTM graphs)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.data.batching import Batch
from tinyseq.models import (
    LanguageModel,
    Seq2Seq,
    SequenceClassifier,
    SequenceRegressor,
    SequenceTagger,
)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
tx = pytest.importorskip("tinyseq.onnx")
helper, TP = onnx.helper, onnx.TensorProto

TOL = dict(rtol=1e-5, atol=1e-5)


def ort_run(proto: Any, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(None, feeds))


def host(t: Any) -> np.ndarray:
    return t.detach().numpy() if isinstance(t, ts.Tensor) else np.asarray(t)


def states(s: Any) -> list[np.ndarray]:
    return [host(s)] if isinstance(s, ts.Tensor) else [host(p) for p in s]


def assert_all_close(got: list[Any], want: list[Any]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(host(g), host(w), **TOL)


@pytest.fixture(autouse=True)
def _seed() -> None:
    ts.manual_seed(0)


rng = np.random.default_rng(0)
CELLS = [
    ("lstm", {}),
    ("lstm", {"forget_bias": 1.0}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
]


# ---- export: Recurrent --------------------------------------------------------------------
@pytest.mark.parametrize("cell,opts", CELLS, ids=lambda v: str(v))
def test_two_layer_bidirectional_recurrent_matches_onnxruntime(tmp_path: Any, cell: str, opts: dict[str, Any]) -> None:
    rec = ts.nn.Recurrent(cell, 3, 4, num_layers=2, bidirectional=True, **opts)
    x = rng.standard_normal((5, 3, 3)).astype(np.float32)
    lengths = np.array([5, 2, 3])  # ragged: sequence_lens
    h0 = rng.standard_normal((4, 3, 4)).astype(np.float32)
    state = (ts.tensor(h0), ts.tensor(h0 * 0.5)) if cell == "lstm" else ts.tensor(h0)
    path = tmp_path / "rec.onnx"
    proto = tx.export(rec, path, (x, state, lengths))
    onnx.checker.check_model(str(path), full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count({"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}[cell]) == 2  # one op per layer
    rnn_nodes = [n for n in proto.graph.node if n.op_type in ("RNN", "GRU", "LSTM")]
    assert all(n.input[4] for n in rnn_nodes)  # sequence_lens wired in
    if cell == "gru":
        lbr = {a.name: a.i for a in rnn_nodes[0].attribute}["linear_before_reset"]
        assert lbr == int(opts["reset_after"])
    feeds = {"x": x, "h_0": h0, **({"c_0": h0 * 0.5} if cell == "lstm" else {}), "lengths": lengths}
    assert [i.name for i in proto.graph.input] == list(feeds)
    y, final = rec(ts.tensor(x), state, lengths=lengths)
    want = [y, *states(final)]
    assert_all_close(ort_run(proto, feeds), want)
    # round trip: the exported file loads back into tinyseq with the same outputs
    back = tx.load(path)
    assert_all_close(list(back(*feeds.values())), want)


@pytest.mark.parametrize("kwargs", [
    {"batch_first": True},
    {"bidirectional": [True, False], "num_layers": 2},
    {"bidirectional": True, "merge": "sum"},
    {"bidirectional": True, "merge": "mean"},
    {"bidirectional": True, "merge": "product"},
    {"bias": False, "num_layers": 2},
    {"direction": "reverse", "num_layers": 2},
    {"direction": ["bidirectional", "reverse", "forward"], "num_layers": 3},
], ids=str)
def test_recurrent_layouts_merges_and_dynamic_axes(kwargs: dict[str, Any]) -> None:
    rec = ts.nn.Recurrent("lstm", 3, 4, **kwargs)
    first = kwargs.get("batch_first", False)
    example = rng.standard_normal((2, 4, 3) if first else (4, 2, 3)).astype(np.float32)
    proto = tx.export(rec, None, (example, None, np.array([4, 3])))
    # another batch size and length than the example: batch and time are dynamic
    x = rng.standard_normal((3, 6, 3) if first else (6, 3, 3)).astype(np.float32)
    lengths = np.array([6, 1, 4])
    y, final = rec(ts.tensor(x), lengths=lengths)
    want = [y, *states(final)]
    assert_all_close(ort_run(proto, {"x": x, "lengths": lengths}), want)
    assert_all_close(list(tx.load(proto)(x, lengths)), want)


def test_recurrent_without_lengths_or_state_has_only_x_as_input() -> None:
    rec = ts.nn.Recurrent("gru", 3, 4)
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    proto = tx.export(rec, None, x)
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["y", "h_n"]
    y, h = rec(ts.tensor(x))
    assert_all_close(ort_run(proto, {"x": x}), [y, h])


@pytest.mark.parametrize("cell,opts,named", [
    ("lstm", {"variant": "lecture"}, "variant='lecture'"),
    ("simple_gru", {}, "'simple_gru'"),
])
def test_cells_without_an_onnx_op_are_refused_by_name(cell: str, opts: dict[str, Any], named: str) -> None:
    rec = ts.nn.Recurrent(cell, 3, 4, **opts)
    with pytest.raises(tx.UnsupportedError, match="cannot export") as info:
        tx.export(rec, None, np.zeros((2, 1, 3), np.float32))
    assert named in str(info.value) and cell in str(info.value)


def test_a_cell_factory_is_refused_with_its_name_and_options() -> None:
    from tinyseq.plugins.gru import GRUCell

    rec = ts.nn.Recurrent(GRUCell, 3, 4, reset_after=False)
    with pytest.raises(tx.UnsupportedError, match=r"'GRUCell'.*reset_after"):
        tx.export(rec, None, np.zeros((2, 1, 3), np.float32))


def test_models_without_an_exporter_are_refused() -> None:
    model = Seq2Seq(tgt_vocab_size=7, src_vocab_size=7, embedding_dim=4, hidden_size=4)
    with pytest.raises(tx.UnsupportedError, match="Seq2Seq is not exportable"):
        tx.export(model, None, np.ones((2, 3), np.int64))


def test_a_bad_opset_is_refused() -> None:
    with pytest.raises(ValueError, match="opset must be in 18..21, got 11"):
        tx.export(ts.nn.Recurrent("rnn", 2, 2), None, np.zeros((1, 1, 2), np.float32), opset=11)


# ---- export: the model patterns -------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_language_model_with_state_matches_onnxruntime(cell: str) -> None:
    model = LanguageModel(11, embedding_dim=5, hidden_size=6, cell=cell, num_layers=2).eval()
    ids = rng.integers(0, 11, (4, 3))
    state = model.rnn.layers.initial_state(3)
    proto = tx.export(model, None, (ids, state, np.array([4, 4, 2])), softmax=True)
    names = [i.name for i in proto.graph.input]
    assert names == ["ids", "h_0", "c_0", "lengths"] if cell == "lstm" else ["ids", "h_0", "lengths"]
    h0 = [rng.standard_normal((2, 3, 6)).astype(np.float32) for _ in state]
    lengths = np.array([4, 1, 3])
    logits, final = model(ids, tuple(ts.tensor(h) for h in h0), lengths)
    probs = ts.softmax(logits, -1)
    feeds = dict(zip(names, [ids, *h0, lengths]))
    got = ort_run(proto, feeds)
    assert [o.name for o in proto.graph.output][-1] == "probabilities"
    assert_all_close(got, [logits, *states(final), probs])
    assert_all_close(list(tx.load(proto)(*feeds.values())), [logits, *states(final), probs])


def _batch(x: np.ndarray, lengths: np.ndarray) -> Batch:
    return Batch(x, np.zeros(len(x), np.int64), lengths)


@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_classifier_matches_onnxruntime(pooling: str, bidirectional: bool) -> None:
    model = SequenceClassifier(3, vocab_size=9, embedding_dim=4, hidden_size=5, num_layers=2,
                               bidirectional=bidirectional, pooling=pooling).eval()
    ids, lengths = rng.integers(1, 9, (4, 6)), np.array([6, 2, 5, 1])
    proto = tx.export(model, None, _batch(ids, lengths))
    assert [i.name for i in proto.graph.input] == ["ids", "lengths"]
    want = model(_batch(ids, lengths))
    assert_all_close(ort_run(proto, {"ids": ids, "lengths": lengths}), [want])
    assert_all_close([tx.load(proto)(ids, lengths)], [want])


def test_classifier_on_features_without_lengths() -> None:
    model = SequenceClassifier(2, input_size=3, hidden_size=4, cell="gru", pooling="mean").eval()
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    proto = tx.export(model, None, x)
    assert [i.name for i in proto.graph.input] == ["x"]
    want = model(Batch(x, np.zeros(2, np.int64)))
    assert_all_close(ort_run(proto, {"x": x}), [want])


@pytest.mark.parametrize("cls", [SequenceTagger, SequenceRegressor])
def test_tagger_and_regressor_match_onnxruntime(tmp_path: Any, cls: type) -> None:
    if cls is SequenceTagger:
        model = SequenceTagger(4, vocab_size=9, embedding_dim=4, hidden_size=5, cell="gru",
                               reset_after=False).eval()
        x: np.ndarray = rng.integers(1, 9, (3, 5))
    else:
        model = SequenceRegressor(2, input_size=3, hidden_size=5, cell="rnn", nonlinearity="relu").eval()
        x = rng.standard_normal((3, 5, 3)).astype(np.float32)
    lengths = np.array([5, 3, 1])
    path = tmp_path / "tagger.onnx"
    proto = tx.export(model, path, (x, lengths))
    onnx.checker.check_model(str(path), full_check=True)
    want = model(_batch(x, lengths))
    assert_all_close(ort_run(proto, {proto.graph.input[0].name: x, "lengths": lengths}), [want])
    assert_all_close([tx.load(path)(x, lengths)], [want])


# ---- the CLI ----------------------------------------------------------------------------------
def test_cli_export_writes_a_model_onnxruntime_runs(tmp_path: Any, capsys: Any) -> None:
    from tinyseq.cli import main

    model = SequenceTagger(3, vocab_size=8, embedding_dim=4, hidden_size=4, num_layers=2)
    ckpt = tmp_path / "best.npz"
    ts.save_checkpoint(ckpt, model, metadata={"model": {"kind": model.kind, "config": model.config}})
    out = tmp_path / "tagger.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    onnx.checker.check_model(str(out), full_check=True)
    ids, lengths = rng.integers(1, 8, (2, 7)), np.array([7, 4])
    proto = onnx.load(str(out))
    want = model.eval()(_batch(ids, lengths))
    assert_all_close(ort_run(proto, {"ids": ids, "lengths": lengths}), [want])


def test_cli_export_reports_a_refused_cell_as_one_line(tmp_path: Any, capsys: Any) -> None:
    from tinyseq.cli import main

    model = LanguageModel(8, embedding_dim=4, hidden_size=4, cell="simple_gru")
    ckpt = tmp_path / "lm.npz"
    ts.save_checkpoint(ckpt, model, metadata={"model": {"kind": model.kind, "config": model.config}})
    out = tmp_path / "lm.onnx"
    assert main(["export", "--checkpoint", str(ckpt), "--onnx", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "'simple_gru'" in err
    assert not out.exists()


# ---- import: graphs built with onnx.helper ------------------------------------------------------
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def _recurrent_graph(op: str, direction: str, layout: int, with_bias: bool = True,
                     **attrs: Any) -> tuple[Any, dict[str, np.ndarray]]:
    """One op with initial states and sequence_lens; the feeds for it (time-major data)."""
    T, B, F, H = 5, 3, 2, 4  # F: input features
    D = 2 if direction == "bidirectional" else 1
    G = GATES[op]
    w = rng.standard_normal((D, G * H, F)).astype(np.float32) * 0.5
    r = rng.standard_normal((D, G * H, H)).astype(np.float32) * 0.5
    inits = [onnx.numpy_helper.from_array(w, "W"), onnx.numpy_helper.from_array(r, "R")]
    if with_bias:
        inits.append(onnx.numpy_helper.from_array(rng.standard_normal((D, 2 * G * H)).astype(np.float32), "B"))
    names = ["X", "W", "R", "B" if with_bias else "", "lens", "h0"] + (["c0"] if op == "LSTM" else [])
    outs = ["Y", "Yh"] + (["Yc"] if op == "LSTM" else [])
    seq = ["b", "t"] if layout else ["t", "b"]
    state = ["s0", "s1", H]  # symbolic: the layout-0 twin (see _reference) reads other shapes
    graph_inputs = [helper.make_tensor_value_info("X", TP.FLOAT, [*seq, F]),
                    helper.make_tensor_value_info("lens", TP.INT32, ["b"]),
                    helper.make_tensor_value_info("h0", TP.FLOAT, state)]
    if op == "LSTM":
        graph_inputs.append(helper.make_tensor_value_info("c0", TP.FLOAT, state))
    y_shape = ["y0", "y1", "y2", H]
    graph_outputs = [helper.make_tensor_value_info("Y", TP.FLOAT, y_shape)] + [
        helper.make_tensor_value_info(o, TP.FLOAT, state) for o in outs[1:]]
    node = helper.make_node(op, names, outs, name="rec", hidden_size=H, direction=direction,
                            layout=layout, **attrs)
    graph = helper.make_graph([node], "g", graph_inputs, graph_outputs, inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"X": rng.standard_normal((T, B, F)).astype(np.float32),
             "lens": np.array([5, 2, 4], np.int32),
             "h0": rng.standard_normal((D, B, H)).astype(np.float32)}
    if op == "LSTM":
        feeds["c0"] = rng.standard_normal((D, B, H)).astype(np.float32)
    return proto, feeds


def _reference(proto: Any, feeds: dict[str, np.ndarray], layout: int) -> list[np.ndarray]:
    """onnxruntime's outputs; for layout 1 (which it does not run) from the layout-0 twin."""
    if not layout:
        return ort_run(proto, feeds)
    twin = onnx.ModelProto()
    twin.CopyFrom(proto)
    for a in twin.graph.node[0].attribute:
        if a.name == "layout":
            a.i = 0
    y, *finals = ort_run(twin, feeds)
    return [y.transpose(2, 0, 1, 3), *[f.swapaxes(0, 1) for f in finals]]


def _batch_major(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: (v.swapaxes(0, 1) if v.ndim == 3 else v) for k, v in feeds.items()}


@pytest.mark.parametrize("layout", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("op,attrs", [
    ("LSTM", {}),
    ("GRU", {"linear_before_reset": 1}),
    ("GRU", {"linear_before_reset": 0}),
    ("RNN", {}),
    ("RNN", {"activations": ["Relu", "Relu"]}),
], ids=str)
def test_loaded_recurrent_graphs_match_onnxruntime(op: str, attrs: dict[str, Any], direction: str, layout: int) -> None:
    if "activations" in attrs and direction != "bidirectional":
        attrs = {"activations": ["Relu"]}
    proto, feeds = _recurrent_graph(op, direction, layout, **attrs)
    onnx.checker.check_model(proto, full_check=True)
    want = _reference(proto, feeds, layout)
    if layout:
        feeds = _batch_major(feeds)
    module = tx.load(proto)
    assert module.input_names == list(feeds)
    assert_all_close(list(module(*feeds.values())), want)


def test_loaded_layout_one_matches_its_layout_zero_twin_in_onnxruntime() -> None:
    proto, feeds = _recurrent_graph("GRU", "bidirectional", 1, linear_before_reset=1)
    bm = _batch_major(feeds)
    assert_all_close(list(tx.load(proto)(*bm.values())), _reference(proto, feeds, 1))


def test_a_graph_without_bias_or_states_loads() -> None:
    proto, feeds = _recurrent_graph("LSTM", "reverse", 0, with_bias=False)
    want = ort_run(proto, feeds)
    assert_all_close(list(tx.load(proto)(*feeds.values())), want)
    module = tx.load(proto)
    assert all(getattr(c, "bias_ih", None) is None for *_, c in module.rec.rec.cells())


def test_head_ops_gather_matmul_gemm_softmax_match_onnxruntime() -> None:
    V, E, C = 7, 4, 3
    emb = rng.standard_normal((V, E)).astype(np.float32)
    w = rng.standard_normal((E, C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    wg = rng.standard_normal((C, E)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["e"], name="lookup"),
        helper.make_node("MatMul", ["e", "w"], ["m"], name="mm"),
        helper.make_node("Add", ["m", "b"], ["logits"], name="add"),
        helper.make_node("Softmax", ["logits"], ["p"], name="sm", axis=-1),
        helper.make_node("Gemm", ["feat", "wg", "b"], ["g"], name="gemm", transB=1, alpha=0.5),
        helper.make_node("LogSoftmax", ["g"], ["lp"], name="lsm", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "heads",
        [helper.make_tensor_value_info("ids", TP.INT64, ["t", "b"]),
         helper.make_tensor_value_info("feat", TP.FLOAT, ["b", E])],
        [helper.make_tensor_value_info("p", TP.FLOAT, ["t", "b", C]),
         helper.make_tensor_value_info("lp", TP.FLOAT, ["b", C])],
        [onnx.numpy_helper.from_array(a, n) for a, n in ((emb, "emb"), (w, "w"), (b, "b"), (wg, "wg"))],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    feeds = {"ids": rng.integers(0, V, (5, 2)), "feat": rng.standard_normal((2, E)).astype(np.float32)}
    module = tx.load(proto)
    assert_all_close(list(module(*feeds.values())), ort_run(proto, feeds))
    assert {"emb", "w", "b", "wg"} <= {n for n, _ in module.named_parameters()}


# ---- import: graphs torch.onnx.export writes ----------------------------------------------------
@pytest.mark.parametrize("kind,kwargs", [
    ("LSTM", {"num_layers": 2, "bidirectional": True}),
    ("GRU", {"num_layers": 2, "batch_first": True}),
    ("RNN", {"num_layers": 2, "bidirectional": True, "nonlinearity": "relu"}),
    ("LSTM", {"num_layers": 1, "batch_first": True, "bias": False}),
], ids=str)
def test_torch_exported_stacks_load_and_match(tmp_path: Any, kind: str, kwargs: dict[str, Any]) -> None:
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = getattr(torch.nn, kind)(3, 4, **kwargs).eval()
    first = kwargs.get("batch_first", False)
    example = torch.randn((2, 5, 3) if first else (5, 2, 3))
    outputs = ["y", "h_n"] + (["c_n"] if kind == "LSTM" else [])
    seq_axes = {0: "batch", 1: "time"} if first else {0: "time", 1: "batch"}
    path = tmp_path / f"{kind}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], output_names=outputs,
                          dynamic_axes={"x": seq_axes, "y": seq_axes, **{o: {1: "batch"} for o in outputs[1:]}})
    x = rng.standard_normal((3, 6, 3) if first else (6, 3, 3)).astype(np.float32)
    proto = onnx.load(str(path))
    want = ort_run(proto, {"x": x})
    got = list(tx.load(path)(x))
    assert_all_close(got, want)
    with torch.no_grad():
        y, final = net(torch.from_numpy(x))
    assert_all_close(got, [y.numpy(), *([final] if kind != "LSTM" else final)])


# ---- import: what is refused ----------------------------------------------------------------------
@pytest.mark.parametrize("op,attrs,named", [
    ("LSTM", {"clip": 3.0}, "clip=3.0"),
    ("LSTM", {"input_forget": 1}, "input_forget=1"),
    ("GRU", {"activations": ["HardSigmoid", "Tanh"]}, "activations=['HardSigmoid', 'Tanh']"),
    ("RNN", {"activations": ["Sigmoid"]}, "activations=['Sigmoid']"),
    ("RNN", {"activations": ["Tanh"], "activation_alpha": [0.5]}, "activation_alpha=[0.5]"),
], ids=str)
def test_refused_attributes_are_named(op: str, attrs: dict[str, Any], named: str) -> None:
    proto, _ = _recurrent_graph(op, "forward", 0, **attrs)
    with pytest.raises(tx.UnsupportedError) as info:
        tx.load(proto)
    message = str(info.value)
    assert f"node 'rec' ({op})" in message and f"attribute {named}" in message


def test_lstm_peepholes_are_refused() -> None:
    proto, _ = _recurrent_graph("LSTM", "forward", 0)
    node = proto.graph.node[0]
    node.input.append("P")
    proto.graph.initializer.append(onnx.numpy_helper.from_array(np.zeros((1, 12), np.float32), "P"))
    with pytest.raises(tx.UnsupportedError, match=r"node 'rec' \(LSTM\): input P"):
        tx.load(proto)


def test_an_unknown_op_is_refused_with_the_node_named(tmp_path: Any) -> None:
    graph = helper.make_graph(
        [helper.make_node("Erf", ["x"], ["y"], name="mystery")], "g",
        [helper.make_tensor_value_info("x", TP.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TP.FLOAT, [2])])
    path = tmp_path / "erf.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    with pytest.raises(tx.UnsupportedError, match=r"erf.onnx: node 'mystery' \(Erf\): op 'Erf'"):
        tx.load(path)


def test_wrong_number_of_inputs_names_the_inputs() -> None:
    proto, feeds = _recurrent_graph("GRU", "forward", 0)
    with pytest.raises(TypeError, match=r"takes 3 inputs \('X', 'lens', 'h0'\), got 1"):
        tx.load(proto)(feeds["X"])


# ---- the loaded module is a tinyseq module: it trains ----------------------------------------------
def test_loaded_module_gradients_match_central_differences() -> None:
    from tinyseq.testing import gradcheck

    rec = ts.nn.Recurrent("gru", 2, 3, bidirectional=True, dtype=np.float64)
    x = rng.standard_normal((4, 2, 2))
    lengths = np.array([4, 2])
    module = tx.load(tx.export(rec, None, (x, None, lengths)))
    params = list(module.parameters())
    assert params and all(p.dtype == np.float64 for p in params)
    xt = ts.tensor(x, requires_grad=True)
    assert gradcheck(lambda a, *_: module(a, lengths), [xt, *params[:2]])
