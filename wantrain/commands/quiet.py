"""The known, harmless lines third-party libraries print on every launch, silenced at the entry point one by one
(by message and module, each with its reason); wantrain's own warnings are fixed where they arise instead.

`WARNINGS` is the one list of them: the test suite ignores the same warnings (`tests/conftest.py` adds
`pytest_filters()` to pyproject's `filterwarnings`, which keeps only what the tests alone need)."""

from __future__ import annotations

import logging
import warnings

# (message regex, category, module regex, reason)
WARNINGS: tuple[tuple[str, type[Warning], str, str], ...] = (
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"pytorch_lightning\.utilities\._pytree",
     "Lightning 2.6's own use of a torch pytree API torch 2.14 deprecates; nothing to change on our side"),
    (r"The `srun` command is available on your system but is not used", Warning,
     r"lightning_fabric\.plugins\.environments\.slurm",
     "a plain launch on a machine with SLURM installed is intended; slurm/*.sbatch start ranks with srun"),
    (r"Found \d+ module\(s\) in eval mode at the start of training", Warning, r"pytorch_lightning\.loops\.fit_loop",
     "the frozen feature nets (VGG19, LPIPS) of the upsampler stages stay in eval mode by design"),
    (r"Using ModelCheckpoint with manual optimization and every_n_train_steps", Warning,
     r"pytorch_lightning\.callbacks\.model_checkpoint",
     "the upsampler (manual optimization) saves the state after its step on purpose: resume continues from it"),
)

# (logger name, message prefix, reason): Lightning's rank-zero info lines that carry no information for a run
LOG_LINES: tuple[tuple[str, str, str], ...] = (
    ("pytorch_lightning.utilities.rank_zero", "💡 Tip:", "an advertisement for litlogger, printed on every launch"),
    ("pytorch_lightning.utilities.rank_zero", "`Trainer(limit_",
     "Lightning echoes trainer.limit_*_batches back (\"was configured so 100% of the batches will be used\")"),
)


def pytest_filters() -> list[str]:
    """`WARNINGS` as pytest `filterwarnings` lines (`ignore:MESSAGE:CATEGORY:MODULE`, regexes as they are)."""
    lines = []
    for message, category, module, _reason in WARNINGS:
        name = category.__qualname__ if category.__module__ == "builtins" else \
            f"{category.__module__}.{category.__qualname__}"
        lines.append(f"ignore:{message}:{name}:{module}")
    return lines


class _DropPrefixes(logging.Filter):
    """Drops records whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def quiet_third_party() -> None:
    """Install the filters above (idempotent): warnings by message + category + module, log lines by logger."""
    for message, category, module, _reason in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    by_logger: dict[str, tuple[str, ...]] = {}
    for name, prefix, _reason in LOG_LINES:
        by_logger[name] = (*by_logger.get(name, ()), prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropPrefixes) for f in logger.filters):
            logger.addFilter(_DropPrefixes(prefixes))
