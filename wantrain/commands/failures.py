"""Turning the ways a user's config or files fail deep inside Hydra, Lightning or a loader worker into the one-line
WantrainError the CLI prints (exit 1), with the key to fix."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from hydra.errors import InstantiationException

from wantrain.errors import WantrainError


def _from_instantiation(err: InstantiationException) -> BaseException:
    """The error to show for a failed `hydra.utils.instantiate`. Unknown and missing keys never get here (the config
    schema checks every `_target_` node's keys against its signature first); what is left is a constructor refusing
    a value: its own message (a WantrainError names the key and the fix), or the first line of a ValueError,
    TypeError or KeyError (wantrain's constructors name the key in it)."""
    cause = err.__cause__
    if isinstance(cause, (WantrainError, FileNotFoundError)):
        return cause
    if isinstance(cause, (TypeError, ValueError, KeyError)) and str(cause):
        return WantrainError(str(cause).splitlines()[0])
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
