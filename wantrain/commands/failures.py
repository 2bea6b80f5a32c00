"""Turning the ways a user's config or files fail deep inside Hydra, Lightning or a loader worker into the one-line
WantrainError the CLI prints (exit 1), with the key to fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException

from wantrain.errors import WantrainError

_UNEXPECTED = re.compile(r"unexpected keyword argument '([^']+)'")
_MISSING = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$")


def _from_instantiation(err: InstantiationException) -> BaseException:
    """The error to show for a failed `hydra.utils.instantiate` (unknown keys, missing keys, bad values)."""
    cause = err.__cause__
    text = str(err)
    match = re.search(r"full_key: (\S+)", text)
    key = match.group(1) if match else "the config"
    if isinstance(cause, (WantrainError, FileNotFoundError)):
        return cause
    message = str(cause).splitlines()[0] if cause is not None and str(cause) else text.splitlines()[0]
    if isinstance(cause, TypeError):
        unknown = _UNEXPECTED.search(message)
        if unknown:
            return WantrainError(f"unknown config key {key}.{unknown.group(1)}: remove it or fix its spelling "
                                 f"(`python -m wantrain fit --cfg job` shows the valid keys of {key})")
        missing = _MISSING.search(message)
        if missing:
            return WantrainError(f"{key} needs {missing.group(1)}: set it in the config or on the command line")
    if isinstance(cause, (TypeError, ValueError, KeyError)):
        return WantrainError(f"{key}: {message}")
    return err


def _from_worker(err: WantrainError) -> WantrainError:
    """A WantrainError re-raised from a DataLoader worker carries the worker's traceback: keep its last line."""
    text = str(err)
    if "\n" not in text:
        return err
    last = [line for line in text.splitlines() if line.strip()][-1]
    return type(err)(re.sub(r"^[\w.]+: ", "", last.strip()))


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise config, data and checkpoint failures a user can fix as one-line WantrainErrors."""
    try:
        yield
    except InstantiationException as err:
        raise _from_instantiation(err) from None
    except WantrainError as err:
        raise _from_worker(err) from None
