"""The command line that reruns this Hydra job with some keys set anew, for messages that suggest one."""

from __future__ import annotations

import shlex
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser

SEARCH_GROUP = "hparams_search"  # would turn the rerun into a whole sweep


def rerun_command(changes: dict[str, str]) -> str | None:
    """`python <script> <this job's overrides> <key=value of changes>` quoted for a POSIX shell, or None
    outside a Hydra run (e.g. under the compose API).

    The job's own overrides of the keys in `changes` are left out, and so is `hparams_search`: one job of
    a sweep reruns alone, with the values its sweeper gave it.
    """
    if not HydraConfig.initialized():
        return None
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    kept = [o.input_line for o in overrides if o.key_or_group not in {*changes, SEARCH_GROUP}]
    arguments = [*kept, *(f"{key}={value}" for key, value in changes.items())]
    return shlex.join(["python", sys.argv[0], *arguments])
