"""Write the checkpoint of an untrained network, to evaluate as the baseline a training run must beat.

    python scripts/untrained_checkpoint.py untrained.ckpt experiment=market_smoke
    python evaluate.py ckpt_path=untrained.ckpt dataset=market1501 dataset.root=...

The backbone is configured by train.py's config with the given overrides and initialised from its `seed`,
as train.py would start it; the file carries the same model card as a trained checkpoint. An existing file
is never overwritten.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from reid.files import atomic_file
from reid.training.checkpoints import MODEL_CARD, card_from_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def main(out: str, *overrides: str) -> None:
    path = Path(out)
    if path.exists():
        sys.exit(f"Error: '{path}' exists; pass a new file name.")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides))
    torch.manual_seed(cfg.seed)
    backbone = instantiate(cfg.model).eval()
    checkpoint = {
        "state_dict": {f"backbone.{key}": value for key, value in backbone.state_dict().items()},
        MODEL_CARD: card_from_config(cfg, backbone),
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    with atomic_file(path) as file:
        file.write(buffer.getbuffer())
    print(f"Wrote the untrained {cfg.model._target_.rsplit('.', 1)[-1]} (seed {cfg.seed}) to '{path}'.")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:])
