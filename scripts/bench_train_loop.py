"""Benchmark Lightning's training loop against a plain PyTorch loop on the MNIST convnet (CPU).

All candidates train the same model (the configured `EmbeddingModule`: the seed's ConvNet, 2-D embedding,
`BatchHardTripletLoss`, Adam) from the same initial weights on the same PK batches (10 x 12 images of
28 x 28, the bundled digits held in memory by `DigitsDataModule`, one epoch of `--warmup + --steps`
batches), for the same number of optimizer steps:

- plain: `for images, labels in loader: forward, loss, zero_grad, backward, step`, nothing logged;
- lightning-bare: `Trainer(logger=False)` with no callbacks, checkpoints or progress bar (the module's
  `self.log` calls still run);
- lightning-configured: the Trainer, callbacks and TensorBoard logger of `configs/train.yaml` (rich
  progress bar, histograms, figures, NaN guard, checkpoints, results file; `log_every_n_steps` 10).

The clocks start when batch `--warmup` starts (so warm-up steps, Trainer setup and the first batches
are excluded) and stop when the epoch's training batches are done, before the end-of-epoch checkpoint;
validation is off (`limit_val_batches=0`). Two clocks: wall time, and the CPU time of the process (all
its threads, so the progress bar's and TensorBoard's threads count), which other jobs on a shared machine
disturb less. The candidates run interleaved, in a rotating order, and each table shows medians over
the repetitions of steps/s, of the ratio to plain and of the extra milliseconds per step (each paired
with the plain run of the same repetition).

    python scripts/bench_train_loop.py [--steps 50] [--warmup 10] [--repeats 7] [--threads 1]

On a CPU shared with other jobs, `--threads 1` gives the stable comparison (see scripts/bench_loss.py).
"""

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig

from reid.tasks.train import instantiate_all

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CLOCKS = {"wall": time.perf_counter, "CPU": time.process_time}


def read_clocks() -> dict[str, float]:
    """The current reading of every clock in `CLOCKS`, in seconds."""
    return {name: clock() for name, clock in CLOCKS.items()}


def seconds_since(start: dict[str, float]) -> dict[str, float]:
    """Seconds elapsed on every clock since the readings `start`."""
    return {name: clock() - start[name] for name, clock in CLOCKS.items()}


class StepTimer(pl.Callback):
    """Seconds (per clock) from the start of training batch `warmup` to the end of the epoch's batches."""

    def __init__(self, warmup: int):
        self.warmup = warmup

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup:
            self.start = read_clocks()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = seconds_since(self.start)


def compose_config(output_dir: Path, batches: int) -> DictConfig:
    """The real train config on the digits: one epoch of `batches` PK batches, no validation, on the CPU."""
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "dataset=digits",
                f"dataset.batches_per_epoch={batches}",
                f"paths.output_dir={output_dir}",
                "trainer.accelerator=cpu",
                "trainer.max_epochs=1",
                "+trainer.limit_val_batches=0",
            ],
        )


def setup(cfg: DictConfig) -> tuple[pl.LightningDataModule, pl.LightningModule]:
    """The datamodule (set up) and a freshly initialised module, with the same weights on every call."""
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    pl.seed_everything(cfg.seed, verbose=False)
    return datamodule, instantiate(cfg.module)


def run_plain(cfg: DictConfig, warmup: int) -> dict[str, float]:
    """Seconds per clock for the timed steps of a hand-written loop: same model, loss, optimizer, batches."""
    datamodule, module = setup(cfg)
    backbone, loss_fn = module.backbone.train(), module.loss
    optimizer = module.optimizer_factory(module.parameters())
    for index, (images, labels) in enumerate(datamodule.train_dataloader()):
        if index == warmup:
            start = read_clocks()
        loss, _ = loss_fn(backbone(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return seconds_since(start)


def run_lightning(cfg: DictConfig, warmup: int, configured: bool) -> dict[str, float]:
    """Seconds per clock for the timed steps of `Trainer.fit`: bare, or with our callbacks and logger."""
    datamodule, module = setup(cfg)
    timer = StepTimer(warmup)
    if configured:
        callbacks = [*instantiate_all(cfg.callbacks), timer]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=instantiate_all(cfg.logger))
    else:
        trainer = pl.Trainer(
            accelerator="cpu",
            max_epochs=1,
            limit_val_batches=0,
            logger=False,
            callbacks=[timer],
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=cfg.paths.output_dir,
        )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="timed optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps before them")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved runs per candidate")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

    candidates = {
        "plain": lambda cfg: run_plain(cfg, args.warmup),
        "lightning-bare": lambda cfg: run_lightning(cfg, args.warmup, configured=False),
        "lightning-configured": lambda cfg: run_lightning(cfg, args.warmup, configured=True),
    }
    rates = {clock: {name: [] for name in candidates} for clock in CLOCKS}  # steps/s per run
    names = list(candidates)
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                cfg = compose_config(Path(tmp) / f"{name}-{rep}", args.warmup + args.steps)
                for clock, seconds in candidates[name](cfg).items():
                    rates[clock][name].append(args.steps / seconds)
                run = ", ".join(f"{clock} {rates[clock][name][-1]:.2f}" for clock in CLOCKS)
                print(f"repeat {rep}: {name} steps/s: {run}", flush=True)

    print(
        f"\ntorch {torch.__version__}, pytorch_lightning {pl.__version__}, {args.threads} threads, "
        f"{args.steps} timed steps after {args.warmup} warm-up steps, {args.repeats} repeats (medians)"
    )
    for clock, by_name in rates.items():
        print(f"\n{clock} time:\n")
        print(f"| {'candidate':<20} | {'steps/s':>7} | {'ratio to plain':>14} | {'overhead ms/step':>16} |")
        print(f"| {'-' * 20} | {'-' * 7}:| {'-' * 14}:| {'-' * 16}:|")
        for name, runs in by_name.items():
            pairs = list(zip(runs, by_name["plain"], strict=True))
            ratio = statistics.median(r / p for r, p in pairs)
            overhead = statistics.median(1e3 / r - 1e3 / p for r, p in pairs)
            print(f"| {name:<20} | {statistics.median(runs):>7.2f} | {ratio:>14.3f} | {overhead:>16.1f} |")


if __name__ == "__main__":
    main()
