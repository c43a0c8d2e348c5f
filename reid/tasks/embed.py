"""Embed a folder tree or a CSV list of images with a trained checkpoint into a features file.

`python embed.py ckpt_path=<file>.ckpt input=<folder or .csv> [output=<file>.npz]` writes the features,
paths, labels and cameras (`reid.retrieval.feature_files`) to `output`, by default `features.npz` in its own
run folder. An `output` that exists is resumed: only the images not in it yet are embedded, and the file is
replaced (atomically) by its earlier rows, unchanged and in order, followed by the new ones. Images that
cannot be decoded are skipped, counted and listed in `<output stem>.skipped.txt` beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

from omegaconf import DictConfig

from reid.errors import ConfigError
from reid.files import write_text
from reid.inference.features import list_input, merged, read_resumable
from reid.inference.images import embed_files
from reid.inference.model import load_model
from reid.retrieval.feature_files import write_features


def embed(cfg: DictConfig) -> dict[str, float]:
    """Embed `cfg.input` with `cfg.ckpt_path` into `cfg.output`; returns the counts of the run."""
    if not cfg.ckpt_path or not cfg.input:
        raise ConfigError(
            "embed.py needs ckpt_path=<run>/checkpoints/<file>.ckpt (written by train.py) and "
            "input=<folder of images or CSV list>, e.g. "
            "python embed.py ckpt_path=outputs/.../last.ckpt input=/path/to/images."
        )
    output = Path(cfg.output) if cfg.output else Path(cfg.paths.output_dir) / "features.npz"
    if output.suffix != ".npz":
        raise ConfigError(f"output='{output}' must name a .npz file, e.g. output=features.npz.")
    model = load_model(cfg.ckpt_path, device=cfg.device)
    meta = {key: model.meta[key] for key in ("checkpoint", "sha256", "embed_dim")}
    earlier = read_resumable(output, meta)
    images = list_input(cfg.input, None if earlier is None else earlier.classes.tolist())
    done = set() if earlier is None else set(earlier.paths.tolist())
    todo = images.select([i for i, path in enumerate(images.paths) if path not in done])
    print(
        f"{len(images.paths)} images in '{cfg.input}': {len(todo.paths)} to embed, {len(done)} in '{output}'."
    )
    start = time.perf_counter()
    result = embed_files(model, todo.paths, cfg.batch_size, cfg.num_workers)
    seconds = time.perf_counter() - start
    if result.indices:
        write_features(output, merged(earlier, todo.select(result.indices), result.features.numpy(), meta))
    skipped_list = output.with_name(f"{output.stem}.skipped.txt")
    if result.skipped or skipped_list.exists():  # it always lists what the latest run could not decode
        write_text(skipped_list, "".join(f"{path}\t{why}\n" for path, why in result.skipped))
    rate, listed = len(result.indices) / seconds, f" (listed in {skipped_list})" if result.skipped else ""
    print(
        f"Embedded {len(result.indices)} new images ({rate:.1f} images/s), skipped {len(result.skipped)} "
        f"that could not be decoded{listed}; '{output}' holds "
        f"{len(done) + len(result.indices)} rows of {model.meta['embed_dim']}-dimensional features."
    )
    return {"embedded": len(result.indices), "skipped": len(result.skipped), "images_per_s": rate}
