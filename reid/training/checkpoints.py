"""Reading checkpoints written by training: checks that they fit the model they are loaded into."""

from pathlib import Path

import torch

from reid.errors import ConfigError


def check_checkpoint(path: str, module: torch.nn.Module) -> None:
    """Fail clearly when a checkpoint to resume from is missing or was written by another model."""
    if not Path(path).is_file():
        raise ConfigError(
            f"ckpt_path='{path}' does not exist. Pass the path of a .ckpt file of an earlier run."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ConfigError(f"ckpt_path='{path}' is not a readable Lightning checkpoint ({error}).") from error
    expected = module.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if problems:
        raise ConfigError(
            f"Checkpoint '{path}' does not match the configured model ({len(problems)} differences, e.g. "
            f"{'; '.join(problems[:3])}). Resume with the model settings of the run that wrote it "
            "(its .hydra/config.yaml: model, embed_dim), or start a new run without ckpt_path."
        )
