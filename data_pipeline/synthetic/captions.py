"""Captions and per-modality prompts generated from a scene description.

Wording varies with a dedicated generator (templates, synonyms, optional details) so captions
are not one template, while counts, colours, actions and camera motion always come from the
scene itself.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .scene import Scene

NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PERSON_NOUNS = (
    ("person", "people"),
    ("person", "persons"),
    ("figure", "figures"),
    ("pedestrian", "pedestrians"),
)
# Verb phrases per motion as (plural, singular) forms.
PERSON_VERBS = {
    "walking": (("walk", "walks"), ("stroll", "strolls"), ("walk along", "walks along")),
    "jogging": (("jog", "jogs"), ("run", "runs")),
    "waving": (("stand and wave", "stands and waves"), ("wave", "waves")),
}
OBJECT_NOUNS = {"box": ("box", "boxes", "block", "blocks"), "sphere": ("sphere", "spheres", "ball", "balls")}
TEXTURE_WORDS = {
    "plain": ("", "plain"),
    "striped": ("striped",),
    "checkered": ("checkered",),
    "dotted": ("dotted", "polka-dot"),
}
MOTION_WORDS = {
    "static": "",
    "sliding": "sliding",
    "spinning": "spinning",
    "rolling": "rolling",
    "bouncing": "bouncing",
}
CAMERA_PHRASES = {
    "static": ("the camera stays still", "the camera is static", "the camera holds its view"),
    "pan left": ("the camera pans left", "the camera turns to the left"),
    "pan right": ("the camera pans right", "the camera turns to the right"),
    "dolly in": ("the camera dollies in", "the camera moves forward", "the camera pushes in"),
    "dolly out": ("the camera dollies out", "the camera pulls back", "the camera moves backward"),
    "orbit left": ("the camera orbits to the left", "the camera circles left around the scene"),
    "orbit right": ("the camera orbits to the right", "the camera circles right around the scene"),
}
CAMERA_NOUNS = {
    "static": "a static camera",
    "pan left": "a panning camera",
    "pan right": "a panning camera",
    "dolly in": "a camera dollying in",
    "dolly out": "a camera dollying out",
    "orbit left": "an orbiting camera",
    "orbit right": "an orbiting camera",
}
SKY_PHRASES = {"clear": "under a clear sky", "dusk": "at dusk", "overcast": "under an overcast sky"}


def _count(n: int, singular: str, plural: str, article: str = "a") -> str:
    return f"{article} {singular}" if n == 1 else f"{NUMBERS[n]} {plural}"


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _pick(rng, options):
    return options[rng.integers(len(options))]


def _persons_clause(rng, persons: list) -> str:
    """A clause such as "two people in red and blue shirts walk" or
    "three people, two walking and one waving, appear"."""
    singular, plural = _pick(rng, PERSON_NOUNS)
    subject = _count(len(persons), singular, plural, article=_pick(rng, ("a", "one")))
    if rng.uniform() < 0.5:
        shirts = _join(list(dict.fromkeys(p["color"] for p in persons)))
        subject += f" in a {shirts} shirt" if len(persons) == 1 else f" in {shirts} shirts"
    motions = Counter(p["motion"] for p in persons)
    if len(motions) == 1:
        verb = _pick(rng, PERSON_VERBS[next(iter(motions))])[int(len(persons) == 1)]
        return f"{subject} {verb}"
    parts = [f"{NUMBERS[n]} {motion}" for motion, n in motions.items()]
    return f"{subject}, {_join(parts)}, {_pick(rng, ('appear', 'move about'))}"


def _objects_phrase(rng, objects: list) -> str:
    """A list such as "a rolling red striped ball and two plain blue boxes"."""
    groups = Counter((o["motion"], o["color"], o["texture"], o["category"]) for o in objects)
    items = []
    for (motion, color, texture, category), n in groups.items():
        noun = OBJECT_NOUNS[category][2 * int(rng.integers(2)) + (n > 1)]
        pattern = _pick(rng, TEXTURE_WORDS[texture])
        words = [pattern, color] if texture == "plain" else [color, pattern]
        phrase = " ".join(w for w in [MOTION_WORDS[motion], *words, noun] if w)
        article = "an" if phrase[0] in "aeiou" else "a"
        items.append(f"{article} {phrase}" if n == 1 else f"{NUMBERS[n]} {phrase}")
    return _join(items)


def _caption(rng, scene: Scene) -> str:
    """One or two sentences on the people, objects, ground, (sometimes) sky and camera."""
    persons = [o for o in scene.objects if o["category"] == "person"]
    objects = [o for o in scene.objects if o["category"] != "person"]
    ground = f"{_pick(rng, ('on', 'across'))} a {scene.ground}"
    camera = _pick(rng, CAMERA_PHRASES[scene.camera_motion])
    sky = " " + SKY_PHRASES[scene.sky] if rng.uniform() < 0.3 else ""
    stuff = _objects_phrase(rng, objects) if objects else ""
    be = "is" if len(objects) == 1 else "are"
    if not persons and not objects:
        return f"An empty {scene.ground}{sky}; {camera}."
    if not persons:
        return _pick(
            rng, [f"There {be} {stuff} {ground}{sky}, and {camera}.", f"{_cap(stuff)} {ground} while {camera}."]
        )
    people = _persons_clause(rng, persons)
    if not objects:
        return f"{_cap(people)} {ground}{sky} while {camera}."
    return _pick(
        rng,
        [
            f"{_cap(people)} {ground} near {stuff} while {camera}.",
            f"{_cap(ground)}{sky}, {people} near {stuff}. {_cap(camera)}.",
            f"There {be} {stuff} {ground}. {_cap(people)}, and {camera}.",
            f"A scene{sky} with {stuff}: {people} as {camera}.",
        ],
    )


def seg_prompt(query: dict) -> str:
    """Text naming the segmentation targets, e.g. "segment two persons", "segment the red box"."""
    kind = query["kind"]
    if kind == "persons":
        return f"segment {NUMBERS[query['count']]} person{'s' if query['count'] != 1 else ''}"
    if kind == "single":
        return f"segment the {query['color']} {query['category']}"
    noun = "object" if kind == "objects" else query["category"]
    plural = "boxes" if noun == "box" else noun + "s"
    return f"segment {NUMBERS[query['count']]} {noun if query['count'] == 1 else plural}"


def _prompts(scene: Scene) -> dict:
    """Per-modality prompts naming what each ground-truth stream shows."""
    persons = [o for o in scene.objects if o["category"] == "person"]
    objects = [o for o in scene.objects if o["category"] != "person"]
    people = _count(len(persons), "person", "people", article="one")
    content = [people] if persons else []
    if objects:
        content.append(_count(len(objects), "object", "objects", article="one"))
    movers = [_count(n, f"{m} person", f"{m} people") for m, n in Counter(p["motion"] for p in persons).items()]
    moving = Counter((o["motion"], o["category"]) for o in objects if o["motion"] != "static")
    movers += [_count(n, f"{m} {c}", f"{m} {OBJECT_NOUNS[c][1]}") for (m, c), n in moving.items()]
    movers.append(CAMERA_NOUNS[scene.camera_motion])
    return {
        "depth": f"depth map of {_join(content) if content else 'an empty scene'}, near is bright",
        "flow": f"optical flow of {_join(movers)}",
        "seg": seg_prompt(scene.seg_query),
        "pose": f"skeleton{'s' if len(persons) != 1 else ''} of {people if persons else 'no people'}",
        "densepose": f"DensePose of {people if persons else 'no people'}",
    }


def describe(scene: Scene, rng: np.random.Generator):
    """``(caption, prompts)`` for a scene; ``rng`` only chooses the wording."""
    return _caption(rng, scene), _prompts(scene)
