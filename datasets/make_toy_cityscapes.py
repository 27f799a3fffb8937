#!/usr/bin/env python
"""Generate a small dataset of street-like scenes in the full Cityscapes layout.

Real Cityscapes needs a registration to download, so the pipeline is exercised on
this stand-in: ``leftImg8bit/<split>/<city>/*_leftImg8bit.png`` and
``gtFine/<split>/<city>/*_gtFine_{polygons.json,labelIds.png,instanceIds.png,color.png}``
with real Cityscapes label names and ids. The label images are made from the
JSON by cityscapesScripts itself, and the picture is painted from the same
rasterisation, so picture and annotation agree pixel for pixel.

Each class has its own texture (window grids, tiles, foliage, lane marks, ...)
but colours overlap between classes and vary per scene and per object, and the
whole picture gets lighting changes and noise: a model has to use texture,
shape and context, not a colour lookup.

    python datasets/make_toy_cityscapes.py --out datasets/toy_cityscapes --seed 0
"""
import argparse
import json
import os

import numpy as np
from PIL import Image

from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import id2label, name2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage

CITIES = {"train": ("aachen", "bochum", "bremen"), "val": ("frankfurt", "lindau", "munster")}


# ---------------------------------------------------------------- scene layout
def box(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def ellipse(cx, cy, rx, ry, rng, points=14, jitter=0.15):
    angles = np.linspace(0, 2 * np.pi, points, endpoint=False)
    radii = 1 + rng.uniform(-jitter, jitter, points)
    return [[cx + rx * r * np.cos(a), cy + ry * r * np.sin(a)] for a, r in zip(angles, radii)]


def car(x, bottom, width, rng):
    """Side view: body, cabin with a sloped front and back."""
    h = width * rng.uniform(0.45, 0.6)
    body = bottom - 0.55 * h
    return [
        [x, bottom], [x + width, bottom], [x + width, body], [x + 0.8 * width, body],
        [x + 0.68 * width, bottom - h], [x + 0.3 * width, bottom - h],
        [x + 0.18 * width, body], [x, body],
    ]  # fmt: skip


def person(x, bottom, height):
    """A standing silhouette: legs, torso with arms, head."""
    w = 0.4 * height
    return [
        [x - 0.3 * w, bottom], [x - 0.05 * w, bottom], [x, bottom - 0.4 * height],
        [x + 0.05 * w, bottom], [x + 0.3 * w, bottom], [x + 0.3 * w, bottom - 0.45 * height],
        [x + 0.5 * w, bottom - 0.45 * height], [x + 0.45 * w, bottom - 0.8 * height],
        [x + 0.2 * w, bottom - 0.82 * height], [x + 0.25 * w, bottom - 0.9 * height],
        [x, bottom - height], [x - 0.25 * w, bottom - 0.9 * height],
        [x - 0.2 * w, bottom - 0.82 * height], [x - 0.45 * w, bottom - 0.8 * height],
        [x - 0.5 * w, bottom - 0.45 * height], [x - 0.3 * w, bottom - 0.45 * height],
    ]  # fmt: skip


def scene_objects(width, height, rng):
    """(label, polygon) pairs in drawing order, back to front."""
    W, H = width, height
    horizon = H * rng.uniform(0.42, 0.55)
    vanish_x = W * rng.uniform(0.35, 0.65)
    road_left, road_right = W * rng.uniform(-0.3, 0.15), W * rng.uniform(0.85, 1.3)
    objects = [("sky", box(0, 0, W, horizon + 2))]

    # Facades along both sides, leaving gaps of sky between some of them.
    x = -rng.uniform(0, 0.1) * W
    while x < W:
        w = W * rng.uniform(0.12, 0.3)
        if rng.random() > 0.15:
            top = H * rng.uniform(0.05, 0.35)
            objects.append(("building", box(x, top, x + w, horizon + 4)))
        x += w
    for _ in range(rng.integers(1, 4)):
        cx = W * rng.uniform(0, 1)
        r = H * rng.uniform(0.08, 0.18)
        objects.append(("vegetation", ellipse(cx, horizon - 0.6 * r, 1.3 * r, r, rng)))

    # Ground: sidewalk everywhere below the horizon, the road as a trapezoid on it.
    objects.append(("sidewalk", box(0, horizon, W, H)))
    road = [[vanish_x - 0.02 * W, horizon], [vanish_x + 0.02 * W, horizon], [road_right, H], [road_left, H]]
    objects.append(("road", road))
    if rng.random() < 0.85:
        side = rng.choice([0, W])
        y0 = horizon + 0.03 * H
        reach = W * rng.uniform(0.25, 0.4)
        objects.append(("terrain", [[side, y0], [abs(side - reach), y0], [side, H * rng.uniform(0.8, 1.0)]]))
    if rng.random() < 0.8:
        x0 = W * rng.uniform(0.0, 0.55)
        fence_h = H * rng.uniform(0.1, 0.16)
        top = horizon - 0.5 * fence_h
        objects.append(("fence", box(x0, top, x0 + W * rng.uniform(0.2, 0.45), top + fence_h)))

    # Poles with a sign on the sidewalk, cars on the road, people on the sidewalk.
    for _ in range(rng.integers(2, 5)):
        px = rng.choice([W * rng.uniform(0.02, 0.25), W * rng.uniform(0.75, 0.98)])
        base = H * rng.uniform(0.62, 0.85)
        top = base - H * rng.uniform(0.4, 0.55)
        pw = max(3.0, W * rng.uniform(0.02, 0.03))
        objects.append(("pole", box(px, top, px + pw, base)))
        if rng.random() < 0.85:
            s = H * rng.uniform(0.1, 0.15)
            objects.append(("traffic sign", box(px - s / 2 + pw / 2, top - s, px + s / 2 + pw / 2, top)))
    road_users = []
    for _ in range(rng.integers(1, 5)):
        bottom = horizon + (H - horizon) * rng.uniform(0.2, 0.95)
        depth = (bottom - horizon) / (H - horizon)
        w = W * (0.1 + 0.3 * depth) * rng.uniform(0.8, 1.2)
        road_users.append((bottom, "car", car(vanish_x + rng.uniform(-0.6, 0.5) * W * depth - w / 2, bottom, w, rng)))
    for _ in range(rng.integers(1, 5)):
        bottom = horizon + (H - horizon) * rng.uniform(0.2, 0.9)
        depth = (bottom - horizon) / (H - horizon)
        side = rng.choice([-1, 1])
        x = vanish_x + side * (W * 0.1 + rng.uniform(0.3, 0.6) * W * depth)
        road_users.append((bottom, "person", person(x, bottom, H * (0.2 + 0.4 * depth))))
    objects += [(label, polygon) for _, label, polygon in sorted(road_users, key=lambda u: u[0])]

    if rng.random() < 0.5:
        hood = H * rng.uniform(0.05, 0.1)
        objects.append(("ego vehicle", [[0, H], [0, H - 0.5 * hood], [W / 2, H - hood], [W, H - 0.5 * hood], [W, H]]))
    return [(label, np.clip(np.round(p), -1, [W, H]).tolist()) for label, p in objects]


# ------------------------------------------------------------------- painting
def smooth_noise(shape, cells, rng):
    """Low-frequency noise in [0, 1]: a coarse random grid upsampled bilinearly."""
    grid = Image.fromarray((rng.random((cells, 2 * cells)) * 255).astype(np.uint8))
    return np.asarray(grid.resize(shape[::-1], Image.BILINEAR), dtype=np.float32) / 255


def paint(label, shape, rng):
    """An RGB texture for one object of ``label`` over the whole canvas."""
    H, W = shape
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    grey = rng.uniform(70, 150)
    if label == "sky":
        top = np.array([rng.uniform(90, 180), rng.uniform(140, 200), rng.uniform(200, 255)])
        if rng.random() < 0.3:  # overcast
            top = np.full(3, rng.uniform(150, 210))
        t = (yy / H)[..., None]
        return top * (1 - 0.5 * t) + 230 * 0.5 * t + 10 * smooth_noise(shape, 3, rng)[..., None]
    if label == "building":
        base = rng.choice([[150, 120, 100], [120, 120, 125], [170, 150, 120], [130, 80, 70]]) * rng.uniform(0.7, 1.2)
        sx, sy = rng.uniform(8, 16, 2) * W / 320
        windows = ((xx % sx) < 0.5 * sx) & ((yy % sy) < 0.5 * sy)
        return base * (1 - 0.45 * windows[..., None]) + 20 * smooth_noise(shape, 6, rng)[..., None]
    if label in ("vegetation", "terrain"):
        leaf = rng.random(shape) if label == "vegetation" else smooth_noise(shape, 20, rng)
        base = np.array([rng.uniform(40, 110), rng.uniform(90, 150), rng.uniform(20, 70)])
        if label == "terrain":
            base = base + [rng.uniform(20, 50), 10, 0]
        return base * (0.6 + 0.4 * smooth_noise(shape, 8, rng)[..., None]) * (0.75 + 0.4 * leaf[..., None])
    if label == "road":
        marks = (np.abs(xx - W * rng.uniform(0.45, 0.55)) < 1.5) & ((yy // (H / 16)) % 2 == 0)
        return grey * 0.7 + 12 * rng.random(shape)[..., None] + 130 * marks[..., None]
    if label == "sidewalk":
        tile = rng.uniform(5, 10) * W / 320
        joints = ((xx % tile) < 1) | ((yy % (0.6 * tile)) < 1)
        tint = rng.choice([[1, 1, 1], [1.15, 0.9, 0.85]])
        return grey * 1.2 * np.array(tint) * (1 - 0.3 * joints[..., None])
    if label == "fence":
        slats = (xx % rng.uniform(3, 6)) < 1.5
        return np.array([grey, grey * 0.9, grey * 0.8]) * (0.6 + 0.6 * slats[..., None])
    if label == "pole":
        return np.full((H, W, 3), grey * 0.8) + 25 * np.sin(xx / 1.5)[..., None]
    if label == "traffic sign":
        return np.array(rng.choice([[200, 30, 30], [30, 70, 190], [220, 190, 30]])) * np.ones((H, W, 1))
    if label == "car":
        colour = rng.uniform(20, 230, 3)  # any colour: cars are told by shape, windows and wheels
        return colour * np.ones((H, W, 1)) + 15 * smooth_noise(shape, 4, rng)[..., None]
    if label == "person":
        colour = rng.uniform(20, 200, 3)
        return colour * (0.8 + 0.2 * smooth_noise(shape, 12, rng)[..., None])
    return np.full((H, W, 3), rng.uniform(10, 50))  # ego vehicle and anything void


def render(instances, rng):
    """Paint each object of the instanceIds image (class id * 1000 + index) with its texture."""
    H, W = instances.shape
    image = np.zeros((H, W, 3), np.float32)
    for value in np.unique(instances):
        label = id2label[int(value) // 1000 if value >= 1000 else int(value)].name
        mask = instances == value
        image[mask] = paint(label, (H, W), rng)[mask]
        if label == "car":  # dark windows in the cabin, wheels at the bottom
            ys, xs = np.nonzero(mask)
            top, bottom = ys.min(), ys.max()
            cabin = mask & (np.arange(H)[:, None] < top + 0.4 * (bottom - top))
            image[cabin] *= 0.35
            wheels = mask & (np.arange(H)[:, None] > bottom - 0.15 * (bottom - top))
            image[wheels] = 25
    # Lighting, sensor noise and a slight blur, so no class has a fixed colour.
    image = image * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20, 3)
    image += rng.normal(0, 6, image.shape)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


# -------------------------------------------------------------------- writing
def write_sample(out, split, city, index, width, height, seed):
    rng = np.random.default_rng([seed, ("train", "val").index(split), index])
    stem = f"{city}_{index:06d}_000019"
    image_dir = os.path.join(out, "leftImg8bit", split, city)
    gt_dir = os.path.join(out, "gtFine", split, city)
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(gt_dir, exist_ok=True)

    objects = [{"label": label, "polygon": polygon} for label, polygon in scene_objects(width, height, rng)]
    gt = os.path.join(gt_dir, stem + "_gtFine_")
    with open(gt + "polygons.json", "w") as f:
        json.dump({"imgHeight": height, "imgWidth": width, "objects": objects}, f)

    annotation = Annotation()
    annotation.fromJsonFile(gt + "polygons.json")
    createLabelImage(annotation, "ids").save(gt + "labelIds.png")
    createLabelImage(annotation, "color").save(gt + "color.png")
    instances = np.asarray(createInstanceImage(annotation, "ids"))
    # Cityscapes stores instanceIds as 16-bit PNG (Pillow cannot write its 32-bit mode "I").
    Image.fromarray(instances.astype(np.uint16)).save(gt + "instanceIds.png")
    render(instances, rng).save(os.path.join(image_dir, stem + "_leftImg8bit.png"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join("datasets", "toy_cityscapes"), help="dataset root to write")
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--train", type=int, default=200, help="number of training images")
    parser.add_argument("--val", type=int, default=50, help="number of validation images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.width < 64 or args.height < 32:
        parser.error(f"--width/--height must be at least 64x32, got {args.width}x{args.height}")

    for split, count in (("train", args.train), ("val", args.val)):
        cities = CITIES[split]
        for index in range(count):
            write_sample(args.out, split, cities[index % len(cities)], index, args.width, args.height, args.seed)
    print(f"Wrote {args.train} train and {args.val} val images ({args.width}x{args.height}) to {args.out}")


if __name__ == "__main__":
    main()
