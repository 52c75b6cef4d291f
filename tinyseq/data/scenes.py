"""Generated scenes for image captioning: a few coloured shapes drawn on a small RGB image,
with captions made from each scene's description in several phrasings.

    scenes = make_scenes(1000, seed=0, held_out=[("red", "triangle")])  # never a red triangle
    images = render_scenes(scenes, size=32)      # (N, 32, 32, 3) float32 in [0, 1]
    captions(scenes[0])                          # ["a small red circle left of a blue square", ...]

One or two objects per scene; two objects sit side by side or one above the other, and
the caption says which is where. ``held_out`` colour–shape pairs never appear in a
scene unless ``novel=True``, which makes every scene hold at least one of them: the
test of whether a captioner composes a colour and a shape it never saw together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["COLOURS", "SHAPES", "SIZES", "SceneObject", "Scene", "make_scenes", "render",
           "render_scenes", "captions"]

Arr = npt.NDArray[np.float32]
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1), "green": (0.1, 0.7, 0.2), "blue": (0.15, 0.3, 0.95),
    "yellow": (0.95, 0.85, 0.1), "purple": (0.6, 0.2, 0.75),
}
SHAPES = ("circle", "square", "triangle")
SIZES: dict[str, float] = {"small": 0.11, "large": 0.19}  # half-width, a fraction of the side
_BACKGROUND = 0.92  # a light grey


@dataclass(frozen=True)
class SceneObject:
    """One shape: its kind, colour and size names, and its centre (x, y) in [0, 1]."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    def phrase(self) -> str:
        return f"a {self.size} {self.colour} {self.shape}"


@dataclass(frozen=True)
class Scene:
    """One or two objects; with two, ``relation`` is "left" (the first is left of the
    second) or "above" (the first is above the second)."""

    objects: tuple[SceneObject, ...]
    relation: str = ""


def _pairs(held_out: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    pairs = {(c, s) for c, s in held_out}
    for c, s in pairs:
        if c not in COLOURS or s not in SHAPES:
            raise ValueError(f"held_out pairs are (colour, shape) with a colour in {list(COLOURS)} "
                             f"and a shape in {list(SHAPES)}, got {(c, s)}")
    return pairs


def make_scenes(n: int, seed: int = 0, held_out: Sequence[tuple[str, str]] = (),
                novel: bool = False, two_objects: float = 0.8) -> list[Scene]:
    """``n`` random scenes (seeded): two objects with probability ``two_objects``.

    held_out: (colour, shape) pairs kept out of every scene, or, with ``novel``, put in
    every scene (at least one object is a held-out pair).
    """
    pairs = _pairs(held_out)
    if novel and not pairs:
        raise ValueError("novel=True makes scenes with a held-out pair: give held_out pairs")
    rng = np.random.default_rng(seed)
    allowed = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in pairs]
    novel_pairs = sorted(pairs)
    out = []
    for _ in range(n):
        two = rng.random() < two_objects
        kinds = [allowed[rng.integers(len(allowed))] for _ in range(2 if two else 1)]
        if novel:  # one object (either one) is a held-out pair
            kinds[rng.integers(len(kinds))] = novel_pairs[rng.integers(len(novel_pairs))]
        sizes = [list(SIZES)[rng.integers(len(SIZES))] for _ in kinds]
        if not two:
            x, y = rng.uniform(0.3, 0.7, 2)
            out.append(Scene((SceneObject(kinds[0][1], kinds[0][0], sizes[0], x, y),)))
            continue
        relation = "left" if rng.random() < 0.5 else "above"
        # along the relation's axis the centres are >= 0.4 apart: large shapes never touch
        first, second = rng.uniform(0.2, 0.3), rng.uniform(0.7, 0.8)
        across = rng.uniform(0.3, 0.7, 2)
        centres = ([(first, across[0]), (second, across[1])] if relation == "left"
                   else [(across[0], first), (across[1], second)])
        objs = tuple(SceneObject(k[1], k[0], sz, cx, cy) for k, sz, (cx, cy) in zip(kinds, sizes, centres))
        out.append(Scene(objs, relation))
    return out


def render(scene: Scene, size: int = 32) -> Arr:
    """The scene drawn on a (size, size, 3) float32 image in [0, 1]."""
    img = np.full((size, size, 3), _BACKGROUND, dtype=np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    for obj in scene.objects:
        r = SIZES[obj.size] * size
        dx, dy = xx - obj.x * size, yy - obj.y * size
        if obj.shape == "circle":
            inside = dx * dx + dy * dy <= r * r
        elif obj.shape == "square":
            inside = (np.abs(dx) <= 0.85 * r) & (np.abs(dy) <= 0.85 * r)  # same area as the circle, about
        elif obj.shape == "triangle":  # pointing up: as wide at the bottom as it is tall
            inside = (dy >= -r) & (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
        else:
            raise ValueError(f"unknown shape {obj.shape!r}; expected one of {SHAPES}")
        img[inside] = COLOURS[obj.colour]
    return img


def render_scenes(scenes: Sequence[Scene], size: int = 32) -> Arr:
    """Every scene drawn: (N, size, size, 3) float32."""
    return np.stack([render(s, size) for s in scenes]) if scenes else np.zeros((0, size, size, 3), np.float32)


def captions(scene: Scene) -> list[str]:
    """Every phrasing of the scene's description; the first is the plain one."""
    if len(scene.objects) == 1:
        a = scene.objects[0].phrase()
        return [a, f"there is {a}", f"{a} on its own"]
    a, b = (o.phrase() for o in scene.objects)
    if scene.relation == "left":
        return [f"{a} left of {b}", f"{b} right of {a}", f"{a} to the left of {b}",
                f"{b} to the right of {a}"]
    if scene.relation == "above":
        return [f"{a} above {b}", f"{b} below {a}", f"{a} on top of {b}", f"{b} under {a}"]
    raise ValueError(f"a scene of two objects needs relation 'left' or 'above', got {scene.relation!r}")
