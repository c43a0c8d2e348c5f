"""Small generated image trees in the exact layouts of the image datasets: class folders, CUB-200-2011, SOP.

Each class's images share a colour (so a tiny net can learn them) with some noise; sizes and modes vary.
"""

from pathlib import Path

import numpy as np
from PIL import Image

# (extension, PIL mode, size): every format and mode the folder reader must turn into RGB.
KINDS = [
    (".jpg", "RGB", (40, 30)),
    (".png", "L", (24, 24)),
    (".png", "RGBA", (50, 20)),
    (".bmp", "P", (16, 32)),
]
KINDS += [(".webp", "RGB", (33, 33)), (".JPEG", "RGB", (20, 40))]


def write_image(path: Path, colour: np.ndarray, rng: np.random.Generator, kind: int = 0) -> Path:
    """One image of a class colour (RGB in [0, 1]) in the `kind`-th format/mode of `KINDS`."""
    suffix, mode, (width, height) = KINDS[kind % len(KINDS)]
    pixels = np.clip(colour + rng.normal(0, 0.08, (height, width, 3)), 0, 1)
    image = Image.fromarray((pixels * 255).astype(np.uint8))
    image = image.convert("P", palette=Image.Palette.ADAPTIVE) if mode == "P" else image.convert(mode)
    path = path.with_suffix(suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def write_class_folders(
    root: Path, classes: int = 6, per_class: int = 5, seed: int = 0
) -> dict[str, list[Path]]:
    """root/class_XX/img_YY.<ext> in mixed formats; returns the images of each class name."""
    rng = np.random.default_rng(seed)
    written = {}
    for c in range(classes):
        colour = rng.uniform(0, 1, 3)
        name = f"class_{c:02d}"
        written[name] = [
            write_image(root / name / f"img_{i:02d}", colour, rng, c + i) for i in range(per_class)
        ]
    return written


def write_cub(out: Path, classes: int = 6, per_class: int = 3, seed: int = 0) -> Path:
    """`out/CUB_200_2011/` with images/NNN.Name/*.jpg and the three list files; returns the release folder.
    Image ids run through the classes in order, as in the release."""
    rng = np.random.default_rng(seed)
    root = out / "CUB_200_2011"
    images, labels, names = [], [], []
    for c in range(1, classes + 1):
        folder = f"{c:03d}.Bird_{c}"
        names.append(f"{c} {folder}")
        colour = rng.uniform(0, 1, 3)
        for i in range(per_class):
            relative = f"{folder}/Bird_{c}_{i:04d}_{c * 100 + i}.jpg"
            write_image(root / "images" / relative, colour, rng)
            images.append(f"{len(images) + 1} {relative}")
            labels.append(f"{len(labels) + 1} {c}")
    for name, lines in (("images.txt", images), ("image_class_labels.txt", labels), ("classes.txt", names)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def write_sop(
    out: Path, train_classes: int = 4, test_classes: int = 3, per_class: int = 3, seed: int = 0
) -> Path:
    """`out/Stanford_Online_Products/` with <category>_final/*.JPG and Ebay_train.txt / Ebay_test.txt
    (header `image_id class_id super_class_id path`; class ids 1..train, then the test ones)."""
    rng = np.random.default_rng(seed)
    root = out / "Stanford_Online_Products"
    lines = {"train": [], "test": []}
    image_id = 0
    for class_id in range(1, train_classes + test_classes + 1):
        split = "train" if class_id <= train_classes else "test"
        super_id = 1 + class_id % 2
        colour = rng.uniform(0, 1, 3)
        for i in range(per_class):
            image_id += 1
            relative = f"{['bicycle', 'chair'][super_id - 1]}_final/{class_id:06d}_{i}.JPG"
            write_image(root / relative, colour, rng).rename(root / relative)
            lines[split].append(f"{image_id} {class_id} {super_id} {relative}")
    for split, rows in lines.items():
        (root / f"Ebay_{split}.txt").write_text(
            "image_id class_id super_class_id path\n" + "\n".join(rows) + "\n"
        )
    return root
