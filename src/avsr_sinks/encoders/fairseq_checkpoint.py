"""Reading fairseq checkpoints without running the code their pickles name.

A fairseq checkpoint is a ``torch.save``'d dict: ``"model"`` (the state dict), ``"cfg"`` (an omegaconf
``DictConfig``; older releases store an ``argparse.Namespace`` under ``"args"``), and bookkeeping such as
the optimizer history, the task state (fairseq ``Dictionary`` objects) and training-log values.

The file is read with torch's own ``weights_only`` unpickler. Before anything is unpickled, the globals
the pickle names are listed statically. Globals outside torch's allowlist are admitted only when they
belong to the configuration and bookkeeping namespaces below, and then only as *inert stand-ins*:
objects that record the arguments and state the pickle hands them and run none of the named class's
code (omegaconf and fairseq need not be installed). Any other global refuses the file before a single
object is built. After loading, every stand-in is turned into plain data (dicts, lists, scalars).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch

# Configuration classes (omegaconf containers and nodes, fairseq and AV-HuBERT dataclasses and enums,
# typing annotations kept in omegaconf metadata) and bookkeeping values (numpy scalars in training logs).
INERT_NAMESPACES = ("omegaconf.", "fairseq.", "avhubert.", "typing.", "numpy.")
INERT_NAMES = frozenset(
    {
        "argparse.Namespace",  # "args" of checkpoints written before fairseq moved to omegaconf
        "_operator.getitem",  # how a subscripted annotation such as List[str] is pickled
        # Types that omegaconf metadata names as key and element types.
        "builtins.bool",
        "builtins.bytes",
        "builtins.dict",
        "builtins.float",
        "builtins.int",
        "builtins.list",
        "builtins.object",
        "builtins.str",
        "builtins.tuple",
    }
)
# omegaconf keeps a resolver cache in a defaultdict; reading it as a plain dict lets the items be set.
DICT_STAND_INS = frozenset({"collections.defaultdict"})


class CheckpointRefusedError(ValueError):
    """A checkpoint names a global that is neither torch's nor an admitted configuration class."""


class InertGlobal:
    """Stand-in for a class or function named in a pickle: it records what the pickle asks and runs nothing.

    ``args`` holds the positional arguments of the call or ``__new__`` the pickle requests, ``state`` the
    object state it then sets.
    """

    qualified_name: ClassVar[str] = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> InertGlobal:
        inst = super().__new__(cls)
        inst.args = args
        inst.state = None
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments were recorded by ``__new__``; nothing else to do."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def plain(self) -> Any:
        """The object as plain data, following the layouts omegaconf and argparse pickle."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:  # (instance dict, slot dict)
            merged = dict(state[0] or {})
            merged.update(state[1] or {})
            state = merged
        if isinstance(state, dict):
            if "_content" in state:  # omegaconf DictConfig / ListConfig
                return plain_data(state["_content"])
            if "_val" in state:  # omegaconf value node
                return plain_data(state["_val"])
            # Underscored attributes are internal bookkeeping (omegaconf's _parent back-references would
            # loop); the public ones carry the data (argparse.Namespace, fairseq Dictionary).
            return {k: plain_data(v) for k, v in state.items() if not str(k).startswith("_")}
        if state is None and len(self.args) == 1:  # an enum member or a scalar rebuilt from one value
            return plain_data(self.args[0])
        return {"global": self.qualified_name, "args": [plain_data(a) for a in self.args]}


def plain_data(obj: Any) -> Any:
    """Replace every stand-in in ``obj`` by plain data; tensors and builtin values are kept as they are."""
    if isinstance(obj, InertGlobal):
        return obj.plain()
    if isinstance(obj, type) and issubclass(obj, InertGlobal):
        return obj.qualified_name
    if isinstance(obj, dict):
        return {k: plain_data(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [plain_data(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(plain_data(v) for v in obj)
    return obj


def _admitted(name: str, extra_inert_globals: frozenset[str]) -> bool:
    return (
        name in INERT_NAMES
        or name in DICT_STAND_INS
        or name in extra_inert_globals
        or name.startswith(INERT_NAMESPACES)
    )


def _stand_in(name: str) -> Any:
    if name in DICT_STAND_INS:

        def empty_dict(*_factory: Any) -> dict:
            return {}

        return empty_dict
    return type(name.rpartition(".")[2], (InertGlobal,), {"qualified_name": name})


def read_fairseq_checkpoint(
    path: str | os.PathLike[str], extra_inert_globals: Iterable[str] = ()
) -> dict[str, Any]:
    """Load a fairseq checkpoint as tensors plus plain data, refusing any global it has no reason to name.

    Args:
        path: the ``.pt`` file (torch's zip format, which ``torch.save`` has written since torch 1.6).
        extra_inert_globals: further fully qualified names to admit as inert stand-ins, for configuration
            classes that live outside the admitted namespaces (say, a fork's own config module).

    Raises:
        CheckpointRefusedError: naming the file and every global that is not admitted.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    if not zipfile.is_zipfile(path):
        raise CheckpointRefusedError(
            f"{path}: not a torch zip checkpoint; only files written by torch.save with torch >= 1.6 are "
            "read, because their globals can be listed before anything is unpickled"
        )
    extra = frozenset(extra_inert_globals)
    try:
        # A static listing: it walks the pickle's opcodes and builds nothing.
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except (pickle.UnpicklingError, ValueError, EOFError) as err:
        raise CheckpointRefusedError(f"{path}: its pickle cannot be inspected safely: {err}") from err
    refused = [n for n in names if not _admitted(n, extra)]
    if refused:
        raise CheckpointRefusedError(
            f"{path}: refused to unpickle global(s) {', '.join(refused)}: a fairseq checkpoint needs only "
            "tensors, containers and configuration classes, so this file is either not a fairseq "
            "checkpoint or built to run code when loaded; nothing was unpickled. Use the checkpoint as the "
            "AV-HuBERT release publishes it, or admit a fork's own configuration class with --inert-global"
        )
    stand_ins = [(_stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(stand_ins):
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CheckpointRefusedError(f"{path}: torch's weights-only unpickler refused it: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: holds a {type(raw).__name__}, not a fairseq checkpoint dict")
    return plain_data(raw)
