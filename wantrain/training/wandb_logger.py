"""The wandb logger of a run: one wandb run per run directory (resumes and requeues continue it), offline when
there is no login or the server cannot be reached, never a reason for training to stop."""

from __future__ import annotations

import netrc
import os
import secrets
import string
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.loggers.logger import rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_warn

from wantrain.training.lightning_private import forget_wandb_run, wandb_init_kwargs

RUN_ID_FILE = "wandb_run_id"


def has_wandb_login() -> bool:
    """True when wandb has credentials: WANDB_API_KEY, or a netrc entry for the wandb host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def stored_run_id(run_dir: Path) -> str:
    """The wandb run id kept in the run directory, or a new one (written by `save_run_id` when the run starts)."""
    path = run_dir / RUN_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))  # wandb's id form


def save_run_id(run_dir: Path, run_id: str) -> None:
    """Keep the run id in the run directory (resumes and requeues continue that run) and create `run_dir/wandb`
    (wandb falls back to /tmp when its dir is missing)."""
    (run_dir / "wandb").mkdir(parents=True, exist_ok=True)
    path = run_dir / RUN_ID_FILE
    if not path.is_file():
        path.write_text(run_id)


class ResilientWandbLogger(WandbLogger):
    """WandbLogger that writes nothing until its run starts (the first log call, after the preflight checks) and
    falls back to offline logging, with one warning, when the wandb server cannot be reached."""

    run_dir: Path | None = None  # where the run id and wandb/ go, created when the run starts

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        kwargs = wandb_init_kwargs(self)
        if self.run_dir is not None and kwargs.get("id") and kwargs.get("mode") != "disabled":
            save_run_id(self.run_dir, kwargs["id"])
        try:
            return WandbLogger.experiment.fget(self)
        except Exception as err:  # wandb raises several types for network failures and timeouts
            if wandb_init_kwargs(self).get("mode") in ("offline", "disabled"):
                raise
            rank_zero_warn(f"wandb server unreachable ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                           f"logging offline to {wandb_init_kwargs(self).get('dir')}; upload later with `wandb sync`")
            import wandb

            wandb.teardown()  # the failed online attempt still holds the run id in wandb's service process
            wandb_init_kwargs(self)["mode"] = "offline"
            forget_wandb_run(self)
            return WandbLogger.experiment.fget(self)


def make_wandb_logger(
    run_dir: str,
    project: str = "wantrain",
    name: str | None = None,
    entity: str | None = None,
    group: str | None = None,
    tags: list[str] | None = None,
    log_model: bool | str = False,
    mode: str | None = None,
    init_timeout: float = 60.0,
) -> ResilientWandbLogger:
    """A wandb logger writing under `run_dir/wandb`, continuing the run of `run_dir` when there is one.

    mode: online | offline | disabled; None takes $WANDB_MODE, else online with a login and offline without.
    """
    import wandb

    path = Path(run_dir)
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if has_wandb_login() else "offline")
    if mode == "dryrun":
        mode = "offline"
    run_id = stored_run_id(path) if mode != "disabled" else None
    logger = ResilientWandbLogger(
        save_dir=str(path), project=project, name=name, entity=entity, group=group, tags=list(tags or []),
        id=run_id, resume="allow" if run_id else None, log_model=log_model, mode=mode,
        settings=wandb.Settings(init_timeout=init_timeout, silent=True),
    )
    logger.run_dir = path
    # Lightning always passes `anonymous` (None by default), which wandb 0.31 answers with a deprecation line
    wandb_init_kwargs(logger).pop("anonymous", None)
    return logger
