"""Generated scenes for captioning (tinyseq.data.scenes), the patch encoder's gradient, and
the ImageCaptioner that joins it to OneToMany's decoder."""

from __future__ import annotations

import numpy as np
import pytest

import tinyseq as ts
from tinyseq.data import Batch, SequenceDataset, Vocab, captions, make_scenes, render_scenes
from tinyseq.data.scenes import COLOURS, SHAPES, SIZES, Scene, SceneObject, render
from tinyseq.models import ImageCaptioner, build_model
from tinyseq.nn.patches import PatchEncoder
from tinyseq.testing.gradcheck import gradcheck

HELD = [("red", "triangle"), ("blue", "circle")]


def test_scenes_are_seeded_and_keep_out_the_held_out_pairs() -> None:
    scenes = make_scenes(300, seed=4, held_out=HELD)
    assert scenes == make_scenes(300, seed=4, held_out=HELD)
    assert scenes != make_scenes(300, seed=5, held_out=HELD)
    kinds = {(o.colour, o.shape) for s in scenes for o in s.objects}
    assert not kinds & set(HELD)
    assert len(kinds) == len(COLOURS) * len(SHAPES) - 2  # every other pair occurs
    novel = make_scenes(100, seed=4, held_out=HELD, novel=True)
    assert all({(o.colour, o.shape) for o in s.objects} & set(HELD) for s in novel)
    counts = {len(s.objects) for s in scenes}
    assert counts == {1, 2}
    for s in scenes:
        if s.relation == "left":
            assert s.objects[0].x + 0.35 < s.objects[1].x
        if s.relation == "above":
            assert s.objects[0].y + 0.35 < s.objects[1].y  # image rows grow downwards


def test_render_draws_each_object_in_its_colour_and_place() -> None:
    a = SceneObject("circle", "red", "large", 0.25, 0.5)
    b = SceneObject("square", "blue", "small", 0.75, 0.5)
    img = render(Scene((a, b), "left"), size=32)
    assert img.shape == (32, 32, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img[16, 8], COLOURS["red"])
    np.testing.assert_allclose(img[16, 24], COLOURS["blue"])
    np.testing.assert_allclose(img[2, 2], 0.92)  # background
    red = np.all(np.isclose(img, COLOURS["red"]), axis=-1).sum()
    blue = np.all(np.isclose(img, COLOURS["blue"]), axis=-1).sum()
    r_large, r_small = SIZES["large"] * 32, SIZES["small"] * 32
    assert red == pytest.approx(np.pi * r_large**2, rel=0.15)  # a disc
    assert blue == pytest.approx((2 * 0.85 * r_small) ** 2, rel=0.3)  # a square
    tri = render(Scene((SceneObject("triangle", "green", "large", 0.5, 0.5),)), size=32)
    green = np.all(np.isclose(tri, COLOURS["green"]), axis=-1)
    rows = green.sum(axis=1)
    assert rows[rows > 0][0] < rows[rows > 0][-1]  # narrow at the top, wide at the bottom
    assert render_scenes(make_scenes(3)).shape == (3, 32, 32, 3)


def test_captions_say_the_same_thing_several_ways() -> None:
    a = SceneObject("circle", "red", "small", 0.25, 0.5)
    b = SceneObject("square", "blue", "large", 0.75, 0.5)
    left = captions(Scene((a, b), "left"))
    assert left[0] == "a small red circle left of a large blue square"
    assert "a large blue square right of a small red circle" in left and len(set(left)) == 4
    above = captions(Scene((a, b), "above"))
    assert above[0] == "a small red circle above a large blue square"
    assert "a large blue square below a small red circle" in above
    assert captions(Scene((a,)))[0] == "a small red circle"
    for text in left + above:
        assert "small red circle" in text and "large blue square" in text


def test_bad_arguments_name_what_is_expected() -> None:
    with pytest.raises(ValueError, match=r"colour in \['red'.*got \('pink', 'circle'\)"):
        make_scenes(3, held_out=[("pink", "circle")])
    with pytest.raises(ValueError, match="give held_out pairs"):
        make_scenes(3, novel=True)
    with pytest.raises(ValueError, match="relation 'left' or 'above', got ''"):
        captions(Scene((SceneObject("circle", "red", "small", 0.2, 0.2),) * 2))
    with pytest.raises(ValueError, match=r"patch 5 must divide.*\(8, 12, 3\)"):
        PatchEncoder((8, 12, 3), 4, patch=5)
    enc = PatchEncoder((8, 12, 3), 4, patch=4)
    with pytest.raises(ValueError, match=r"expected images \(B, 8, 12, 3\), got shape \(2, 12, 8, 3\)"):
        enc(ts.tensor(np.zeros((2, 12, 8, 3), np.float32)))


def test_patch_encoder_gradient_matches_central_differences() -> None:
    ts.manual_seed(0)
    enc = PatchEncoder((4, 6, 2), 3, patch=2, channels=4).double()
    x = ts.tensor(np.random.default_rng(0).standard_normal((2, 4, 6, 2)), dtype=ts.float64,
                  requires_grad=True)
    params = [p for _, p in enc.named_parameters()]

    def fn(x: ts.Tensor, *weights: ts.Tensor) -> ts.Tensor:
        return enc(x)

    assert gradcheck(fn, [x, *params])
    # the patches are the image's 2x2 squares in row order: the one at grid row 1, column 2
    # holds pixel rows 2-3, columns 4-5
    patches = enc.patches(x).detach().numpy()
    assert patches.shape == (2, 6, 8)
    np.testing.assert_array_equal(patches[0, 1 * 3 + 2].reshape(2, 2, 2), x.detach().numpy()[0, 2:4, 4:6])


def test_captioner_decodes_from_the_image_and_rebuilds_from_its_config() -> None:
    scenes = make_scenes(48, seed=1)
    images = render_scenes(scenes, size=16) - 0.8
    vocab = Vocab.build([c.split() for s in scenes for c in captions(s)], level="word")
    ys = [np.array(vocab.encode(captions(s)[0].split(), eos=True)) for s in scenes]
    data = SequenceDataset(list(images), ys, batch_size=16, x_is_sequence=False,
                           y_is_sequence=True, seed=0)
    ts.manual_seed(0)
    model = ImageCaptioner((16, 16, 3), len(vocab), patch=4, channels=4, condition_size=8,
                           embedding_dim=8, hidden_size=16, condition="both",
                           bos_id=vocab.bos_id, eos_id=vocab.eos_id)
    trainer = ts.Trainer(model, data, lr=1e-2, epochs=15, progress=False)
    before = trainer.evaluate(data)["loss"]
    trainer.fit()
    assert trainer.evaluate(data)["loss"] < 0.6 * before
    batch = next(data.batches(0))
    greedy = model.decode(batch, max_len=14)
    beam = model.decode(batch, max_len=14, method="beam", beam_width=3)
    assert len(greedy) == len(beam) == 16
    assert all(g and g[-1] == vocab.eos_id for g in greedy)
    # the caption depends on the image: another image, another start state
    state, extra = model.initial(Batch(x=images[:2], y=np.zeros((2, 1), np.int64)))
    h = ts.backend.to_numpy(state[0].data)
    assert np.abs(h[:, 0] - h[:, 1]).max() > 1e-3 and extra is not None
    rebuilt = build_model(model.kind, model.config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.decode(batch, max_len=14) == greedy
