"""``tiller make-sample-data DIR``: small offline data sets to try every recipe on.

Everything is drawn from a fixed seed, so two runs write the same data:
  lung_ct/     CT-like slices in IQ-OTH/NCCD's three class folders, imbalanced as in
               seed 002, mixed sizes, mostly grayscale, plus one corrupt file
  defects/     seed 003's five defect classes, Chinese folder names, imbalanced
  reviews.csv  labelled movie reviews (text,label)
  imdb.npz     the same reviews as Keras' imdb.npz (word ranks by frequency)
  mnist/       scikit-learn's digits as gzipped MNIST IDX files, 28 x 28
"""

from __future__ import annotations

import csv
import gzip
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from tiller.trainer.data.sequences import tokenize

SEED = 20240601
LUNG_CLASSES = {"Benign cases": 33, "Malignant cases": 150, "Normal cases": 117}  # seed 002: ~1 : 4.5 : 3.5
# seed 003's classes: scratch, stain, missing part, deformation, foreign object
DEFECT_CLASSES = {"划痕": 100, "污点": 70, "缺失": 50, "变形": 35, "异物": 25}
CORRUPT_FILE = "Normal cases/corrupt_example.jpg"
REVIEWS_PER_CLASS = 400
MNIST_TRAIN = 1500  # of sklearn's 1,797 digits; the rest are t10k


def write_sample_data(root: Path, say: Callable[[str], None] = print) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"{root} exists and is a file; give a folder to write the sample data to")
    rng = np.random.default_rng(SEED)
    say(f"Writing sample data to {root}/")
    say(f"  lung_ct/     {write_lung_ct(root / 'lung_ct', rng)}")
    say(f"  defects/     {write_defects(root / 'defects', rng)}")
    reviews = make_reviews(rng)
    say(f"  reviews.csv  {write_reviews_csv(root / 'reviews.csv', reviews)}")
    say(f"  imdb.npz     {write_imdb_npz(root / 'imdb.npz', reviews)}")
    say(f"  mnist/       {write_mnist(root / 'mnist')}")
    for line in next_steps(root):
        say(line)


EXAMPLES = ("lung_effnet.json", "mobilenetv3_defects.json", "imdb_text.json")  # they read sample-data/


def next_steps(root: Path) -> list[str]:
    lines = ["Try, from the repository root:"]
    lines += [f"  tiller train --config examples/{name}" for name in EXAMPLES]
    if root.resolve() != (Path.cwd() / "sample-data").resolve():
        lines.append("  (the examples read sample-data/: run `tiller make-sample-data sample-data` there first)")
    lines += [
        "or train on any of it with your own settings, e.g.:",
        f"  tiller train --set data_dir={root}/lung_ct --set model_name=resnet18 --set img_size=64",
        f"  tiller train --set data_dir={root}/imdb.npz --set model_name=text_embedding_bag",
        f"  tiller train --set data_dir={root}/mnist --set model_name=mlp",
    ]
    return lines


# ------------------------------------------------------------------ drawing

def grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in [-1, 1] across each axis, whatever the image's shape."""
    return np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")


def disc(y, x, cy, cx, ry, rx) -> np.ndarray:
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def blob(y, x, cy, cx, r, rng, roughness: float) -> np.ndarray:
    """A disc whose edge wobbles by ``roughness`` of its radius (0 = smooth)."""
    angle = np.arctan2(y - cy, x - cx)
    wobble = sum(rng.uniform(-roughness, roughness) * np.cos(k * angle + rng.uniform(0, 6.3)) for k in (3, 5, 7))
    return np.hypot(y - cy, x - cx) <= r * (1 + wobble)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return (pixels.clip(0, 1) * 255).round().astype(np.uint8)


# ------------------------------------------------------------------ lung CT

def ct_slice(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A chest slice: body, two dark lungs; benign: one small smooth nodule;
    malignant: several large rough masses; normal: clear lungs. Faint vessels everywhere."""
    height, width = rng.integers(40, 121, size=2)
    y, x = grid(height, width)
    pixels = np.full((height, width), 0.05)
    pixels[disc(y, x, 0, 0, 0.85, 0.92)] = 0.55
    lungs = [(rng.uniform(-0.1, 0.1), side * rng.uniform(0.38, 0.45)) for side in (-1, 1)]
    for cy, cx in lungs:
        pixels[disc(y, x, cy, cx, 0.6, 0.3)] = 0.15
    for _ in range(rng.integers(3, 8)):  # vessels: small faint dots, in every class
        cy, cx = lungs[rng.integers(2)]
        pixels[disc(y, x, cy + rng.uniform(-0.4, 0.4), cx + rng.uniform(-0.15, 0.15), 0.04, 0.03)] = 0.35
    nodules = {"Benign cases": (1, 0.10, 0.13, 0.0), "Malignant cases": (rng.integers(2, 5), 0.13, 0.22, 0.25),
               "Normal cases": (0, 0, 0, 0)}[kind]
    count, r_min, r_max, roughness = nodules
    for _ in range(count):
        cy, cx = lungs[rng.integers(2)]
        mask = blob(y, x, cy + rng.uniform(-0.3, 0.3), cx + rng.uniform(-0.1, 0.1), rng.uniform(r_min, r_max),
                    rng, roughness)
        pixels[mask] = rng.uniform(0.75, 0.95)
    return pixels + rng.normal(0, 0.06, pixels.shape)


def ct_image(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Mostly grayscale; about one in six saved as RGB with a viewer's warm tint."""
    if rng.random() < 1 / 6:
        tint = np.array([1.0, 0.9, 0.75])
        return Image.fromarray(to_uint8(pixels[..., None] * tint), "RGB")
    return Image.fromarray(to_uint8(pixels), "L")


def write_lung_ct(folder: Path, rng: np.random.Generator) -> str:
    for name, count in LUNG_CLASSES.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        singular = name.removesuffix("s")
        for i in range(1, count + 1):
            suffix = ".png" if i % 5 == 0 else ".jpg"
            ct_image(ct_slice(name, rng), rng).save(folder / name / f"{singular} ({i}){suffix}", quality=90)
    (folder / CORRUPT_FILE).write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG: cut off while copying" * 4)
    counts = ", ".join(f"{name} {count}" for name, count in LUNG_CLASSES.items())
    return (f"{sum(LUNG_CLASSES.values())} CT-like images in 3 class folders ({counts}), 40-120 px, "
            f"plus {CORRUPT_FILE} (unreadable on purpose: it is skipped and counted)")


# ------------------------------------------------------------------ defects

def part_image(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A brushed-metal disc on a dark belt, with one defect drawn on it."""
    height, width = rng.integers(48, 81, size=2)
    y, x = grid(height, width)
    background = np.array([0.12, 0.16, 0.22])
    metal = np.array([0.68, 0.70, 0.72]) + rng.normal(0, 0.04, (height, 1, 1))  # brushed: row streaks
    radius = 0.75 * np.ones_like(y)
    if kind == "变形":  # deformation: a warped edge
        angle = np.arctan2(y, x)
        radius = radius * (1 + 0.22 * np.sin(rng.integers(2, 4) * angle + rng.uniform(0, 6.3)))
    part = np.hypot(y, x) <= radius
    pixels = np.where(part[..., None], metal, background)
    cy, cx = rng.uniform(-0.35, 0.35, size=2)
    if kind == "划痕":  # scratch: a thin bright line across the part
        angle = rng.uniform(0, np.pi)
        line = np.abs((y - cy) * np.cos(angle) - (x - cx) * np.sin(angle)) < 0.045
        pixels[line & part] = [0.97, 0.97, 0.95]
    elif kind == "污点":  # stain: a soft dark brown spot
        spot = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 0.14**2))[..., None]
        pixels = pixels * (1 - 0.8 * spot) + np.array([0.25, 0.15, 0.05]) * 0.8 * spot
    elif kind == "缺失":  # missing: a hole through the part
        pixels[disc(y, x, cy, cx, 0.22, 0.22)] = background
    elif kind == "异物":  # foreign object: a small blob of an odd colour
        colour = [[0.9, 0.15, 0.1], [0.15, 0.8, 0.2], [0.95, 0.85, 0.1]][rng.integers(3)]
        pixels[blob(y, x, cy, cx, rng.uniform(0.13, 0.18), rng, 0.2)] = colour
    return pixels + rng.normal(0, 0.03, pixels.shape)


def write_defects(folder: Path, rng: np.random.Generator) -> str:
    for name, count in DEFECT_CLASSES.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            Image.fromarray(to_uint8(part_image(name, rng)), "RGB").save(folder / name / f"{i:03d}.jpg", quality=90)
    counts = ", ".join(f"{name} {count}" for name, count in DEFECT_CLASSES.items())
    return (f"{sum(DEFECT_CLASSES.values())} RGB images of parts in 5 class folders ({counts}: scratch, "
            f"stain, missing, deformation, foreign object), 48-80 px")


# ------------------------------------------------------------------ reviews

POSITIVE = ("great brilliant wonderful moving superb delightful gripping beautiful funny charming "
            "excellent memorable clever touching stunning").split()
NEGATIVE = ("awful boring dull terrible weak clumsy tedious predictable bland forgettable messy "
            "painful lifeless silly pointless").split()
NEUTRAL = ("long short loud quiet french typical recent naïve familiar slow unusual old modern "
           "dark colourful").split()
NOUNS = ("film movie plot story acting cast script ending soundtrack director camera dialogue pacing "
         "villain hero café scene").split()
TEMPLATES = ("the {noun} was {adj}.", "i thought the {noun} was {adj}.", "{adj} {noun} overall.",
             "honestly the {noun} felt {adj}.", "the {noun} and the {noun2} were {adj}.",
             "a {adj} {noun} with a {adj2} {noun2}.")


def make_reviews(rng: np.random.Generator) -> list[tuple[str, str]]:
    """(text, label) pairs, shuffled. Each word of opinion matches the review's label
    with odds 3 : 1, and a few reviews carry none: learnable, but not perfectly."""
    reviews = [(review_text(label, rng), label) for label in ("negative", "positive")
               for _ in range(REVIEWS_PER_CLASS)]
    return [reviews[i] for i in rng.permutation(len(reviews))]


def review_text(label: str, rng: np.random.Generator) -> str:
    own, other = (POSITIVE, NEGATIVE) if label == "positive" else (NEGATIVE, POSITIVE)

    def adjective() -> str:
        draw = rng.random()
        words = NEUTRAL if draw < 0.45 else own if draw < 0.86 else other
        return str(rng.choice(words))

    sentences = [
        str(rng.choice(TEMPLATES)).format(noun=rng.choice(NOUNS), noun2=rng.choice(NOUNS), adj=adjective(),
                                          adj2=adjective())
        for _ in range(rng.integers(2, 7))
    ]
    return " ".join(sentence.capitalize() for sentence in sentences)


def write_reviews_csv(path: Path, reviews: list[tuple[str, str]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows(reviews)
    counts = Counter(label for _, label in reviews)
    return f"{len(reviews)} reviews, columns text,label ({counts['negative']} negative, {counts['positive']} positive)"


def write_imdb_npz(path: Path, reviews: list[tuple[str, str]]) -> str:
    """Keras' layout: word ranks from 1 (the most frequent word), ragged object arrays."""
    tokens = [tokenize(text) for text, _ in reviews]
    counts = Counter(word for words in tokens for word in words)
    rank = {word: i for i, word in enumerate(sorted(counts, key=lambda w: (-counts[w], w)), start=1)}
    half = len(reviews) // 2
    sequences = np.empty(len(reviews), dtype=object)  # filled one by one: equal lengths must stay lists
    for i, words in enumerate(tokens):
        sequences[i] = [rank[word] for word in words]
    labels = np.array([label == "positive" for _, label in reviews], dtype=np.int64)
    np.savez(path, x_train=sequences[:half], y_train=labels[:half], x_test=sequences[half:], y_test=labels[half:])
    return f"the same reviews as Keras imdb.npz word ranks ({half} train, {len(reviews) - half} test)"


# ------------------------------------------------------------------ MNIST

def write_mnist(folder: Path) -> str:
    digits = load_digits()
    images = np.stack([mnist_style(image) for image in digits.images])
    labels = digits.target.astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    for part, rows in (("train", slice(0, MNIST_TRAIN)), ("t10k", slice(MNIST_TRAIN, None))):
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", images[rows], magic=0x00000803)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", labels[rows], magic=0x00000801)
    return (f"{len(labels):,} of scikit-learn's digits as gzipped MNIST IDX files, 28 x 28 "
            f"({MNIST_TRAIN} train, {len(labels) - MNIST_TRAIN} t10k)")


def mnist_style(image: np.ndarray) -> np.ndarray:
    """8x8 at 0..16 -> a 20x20 digit centred in 28x28, as MNIST's are."""
    small = Image.fromarray((image * (255 / 16)).astype(np.uint8))
    out = np.zeros((28, 28), dtype=np.uint8)
    out[4:24, 4:24] = np.asarray(small.resize((20, 20), Image.Resampling.BILINEAR))
    return out


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as file:  # mtime 0: the same bytes on every run
        file.write(header + array.astype(np.uint8).tobytes())
