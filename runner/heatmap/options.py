"""heatmap's options: defaults, and the checks that need no network (the rest are in command.py).

    methods   cam, gradcam, occlusion (default: all three; cam only where the network ends in gap-fc)
    images    the first --images test images, or those of --class, or the test indices --index
    target    the class whose evidence the maps show: --target, or each image's predicted class
    layer     Grad-CAM's conv layer (1-based spec index, as `nbnets shapes` numbers them; default the last)
    patch     occlusion's square side and stride in pixels (defaults from the image size)
"""

from __future__ import annotations

import math

from runner.common.lists import parse_ints

COMMAND = "heatmap"
METHODS = ("cam", "gradcam", "occlusion")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_IMAGES = 8

DEFAULTS = {
    "methods": None,       # None: every method that applies to the network
    "images": DEFAULT_IMAGES,
    "index": None,         # "3,17,42": test-set indices instead of the first --images
    "image_class": None,   # --class K: the first --images test images of true class K
    "target": None,        # None: each image's predicted class
    "layer": None,         # None: the last conv layer
    "patch": None,         # None: default_patch(image size)
    "stride": None,        # None: default_stride(patch)
    "sanity": False,
    "sanity_images": 50,   # the test images the checks run on (the first N, of --class; not --index)
    "seed": 0,
    "data": None,
    "device": "auto",
    "out": "results",
    "plot": True,
}


def parse_methods(text: str | None) -> list[str] | None:
    """'gradcam,occlusion' -> ['gradcam', 'occlusion'] in the order given; None or 'all' -> None (every one
    that applies)."""
    if text is None or text.strip() == "all":
        return None
    names = [p.strip() for p in text.split(",") if p.strip()]
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise ValueError(f"--method {text}: expected a comma list of {', '.join(METHODS)} (or all), "
                         f"got {bad[0] if bad else 'nothing'!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"--method {text}: a method appears twice")
    return names


def validate(opts: dict, given=()) -> dict:
    """Check the options that need no network; ValueError naming the option. Returns a resolved copy
    (methods and index parsed to lists)."""
    o = {**DEFAULTS, **{k: v for k, v in opts.items() if k in DEFAULTS}}
    o["methods"] = parse_methods(o["methods"])
    if o["index"] is not None:
        if "images" in given:
            raise ValueError("give --images N or --index LIST, not both")
        if o["image_class"] is not None:
            raise ValueError("give --class K or --index LIST, not both")
        o["index"] = parse_ints(o["index"], "--index", low=0)
    for name, flag, low in (("images", "--images", 1), ("sanity_images", "--sanity-images", 1),
                            ("patch", "--patch", 1), ("stride", "--stride", 1),
                            ("image_class", "--class", 0), ("target", "--target", 0), ("layer", "--layer", 1)):
        value = o[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ValueError(f"{flag} must be an integer >= {low}, got {value!r}")
    if o["device"] not in DEVICES:
        raise ValueError(f"--device must be one of {', '.join(DEVICES)}, got {o['device']!r}")
    return o


def default_patch(height: int, width: int) -> int:
    """Occlusion's default square: a quarter of the shorter image side (2 on the 8x8 digits, 8 on 32x32)."""
    return max(1, math.ceil(min(height, width) / 4))


def default_stride(patch: int) -> int:
    """Occlusion's default stride: half the patch (1 for a 2-pixel patch), so every pixel is covered twice
    or more along each axis."""
    return max(1, patch // 2)
