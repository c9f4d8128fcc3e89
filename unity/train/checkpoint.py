"""Checkpoints: weights as safetensors, the run state as JSON, the engine's own files; atomic saves.

Layout of a run's checkpoints::

    <run_dir>/checkpoints/step_0000500/model.safetensors   full weights (written by rank 0; consolidated saves)
                                      /ema.safetensors     the EMA's weights, when the run keeps one
                                      /state.json          step and every rank's state (data position, RNG, ...)
                                      /engine/             optimizer, scheduler, DeepSpeed files (every rank)
                                      /ema_shards/         each rank's part of the EMA (DeepSpeed runs)

Under DeepSpeed most saves hold the sharded state alone (``unity/train/sharded.py``), and
``python -m unity.checkpoint consolidate`` writes their full weights offline.
    <run_dir>/checkpoints/latest                           text file naming the newest one, replaced last

A LoRA run's checkpoints hold its adapters in place of the weights, as PEFT adapter folders
``adapter/`` and ``adapter_ema/`` (``adapter_config.json`` + ``adapter_model.safetensors``, which PEFT's
own tools load); loading one rebuilds the base from the run's ``train.init_from`` and adds them.
Checkpoints saved before hold ``adapter.safetensors`` / ``adapter_ema.safetensors`` and load as well.

A save is written to ``step_XXXXXXX.tmp/``, fsync'd, renamed, and only then named by ``latest``,
so a crash or a full disk mid-save leaves the previous checkpoint and ``latest`` as they were.
Folders ending in ``.tmp`` are never taken for checkpoints and are removed by the next save.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
from omegaconf import OmegaConf
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from unity.method.lora import PEFT_WEIGHTS, adapter_state, from_peft_layout, save_peft_adapter
from unity.train import distributed

log = logging.getLogger(__name__)

WEIGHTS = ("model", "ema")  # file stems of the weights and their EMA
ADAPTER, ADAPTER_EMA = "adapter", "adapter_ema"  # the same in a LoRA run: its adapters alone

STEP_DIR = re.compile(r"step_(\d+)")  # a complete checkpoint's folder name
INITIAL = "step_0000000"  # the untrained weights, kept by pruning
UNFINISHED = (".tmp", ".old")  # suffixes of folders and files a save leaves behind only when interrupted


# ---------------------------------------------------------------------------------------------- saving


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model_state: dict[str, torch.Tensor] | None,
    ema_state: dict[str, torch.Tensor] | None,
    state: dict,
    save_engine: Callable[[str], None] | None = None,
    keep_last: int = 3,
    names: tuple[str, str] = WEIGHTS,
    save_shards: Callable[[str], None] | None = None,
    adapter_config: dict | None = None,
) -> str:
    """Save ``<run_dir>/checkpoints/step_XXXXXXX`` atomically and point ``latest`` at it; returns its path.

    ``model_state`` / ``ema_state``: full weights, used on rank 0 only (other ranks may pass ``{}``);
    None writes no such file (a sharded save: the weights are in the engine's and ``save_shards``' files).
    ``state``: this rank's JSON-able run state (data position, generators, metrics, config hash);
    the RNG states of python, numpy and torch are added under ``"rng"`` unless given.
    ``save_engine(folder)`` writes the optimizer / engine state into ``<checkpoint>/engine``;
    ``save_shards(folder)`` writes whatever else each rank holds into the checkpoint folder itself.
    ``keep_last`` complete checkpoints are kept (0 keeps all); the one ``latest`` names always is, and
    so is step 0 (the untrained reference evaluation compares against).
    ``names``: the files' stems for the weights and their EMA (a LoRA run saves ``adapter``, ``adapter_ema``).
    ``adapter_config``: PEFT's adapter config of a LoRA run; the weights are then written as PEFT adapter
    folders ``<stem>/`` (``unity.method.lora.save_peft_adapter``).

    Under ``torch.distributed`` every rank must call this (DeepSpeed's own save is collective), with
    a ``run_dir`` on a filesystem all ranks share.
    The save runs in three phases, each ended by an all-reduce that is both a barrier and a vote,
    so a failure on any rank raises on every rank instead of leaving the others waiting:

    1. rank 0 removes leftovers of interrupted saves and creates ``step_XXXXXXX.tmp/engine/``;
    2. every rank runs ``save_engine`` and ``save_shards`` into it, then rank 0 writes the weights and state.json;
    3. rank 0 fsyncs the folder, renames it to ``step_XXXXXXX``, replaces ``latest``, prunes.

    ``save_engine`` runs before rank 0's own writes so that a failing write cannot leave the other
    ranks inside a collective of the engine's save. Every rank's ``state`` is gathered before phase 1.
    """
    rank, world_size = _rank_and_world()
    states = _gather({"rng": rng_state(), **state})
    root = Path(run_dir) / "checkpoints"
    final = root / f"step_{step:07d}"
    tmp = final.with_name(final.name + ".tmp")

    def prepare() -> None:
        root.mkdir(parents=True, exist_ok=True)
        for leftover in [p for p in root.iterdir() if p.name.endswith(UNFINISHED)]:
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        (tmp / "engine").mkdir(parents=True)

    def write() -> None:
        if save_engine is not None:
            save_engine(str(tmp / "engine"))
        if save_shards is not None:
            save_shards(str(tmp))
        if rank == 0:
            for tensors, stem in ((model_state, names[0]), (ema_state, names[1])):
                if tensors is not None and adapter_config is not None:
                    save_peft_adapter(tmp / stem, tensors, adapter_config)
                elif tensors is not None:
                    save_file(_for_safetensors(tensors), str(tmp / f"{stem}.safetensors"), metadata={"format": "pt"})
            saved = {"step": step, "world_size": world_size, "ranks": states}
            (tmp / "state.json").write_text(json.dumps(saved, indent=1))

    def commit() -> None:
        _fsync_tree(tmp)
        aside = final.with_name(final.name + ".old")
        if final.exists():  # the same step saved again: a rename cannot replace a non-empty folder
            os.rename(final, aside)
        os.rename(tmp, final)
        _fsync(root)
        _write_atomically(root / "latest", final.name + "\n")
        if aside.exists():
            shutil.rmtree(aside)
        _prune(root, keep_last, keep=final)

    _phase(prepare if rank == 0 else None)
    _phase(write)
    _phase(commit if rank == 0 else None)
    return str(final)


def _rank_and_world() -> tuple[int, int]:
    return (distributed.rank(), distributed.world_size()) if distributed.initialized() else (0, 1)


def _gather(obj) -> list:
    """Every rank's ``obj``, in rank order (a one-item list without torch.distributed)."""
    _, world_size = _rank_and_world()
    if world_size == 1:
        return [obj]
    gathered = [None] * world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def _all_succeeded(ok: bool) -> bool:
    """Barrier that also tells every rank whether all of them succeeded."""
    if _rank_and_world()[1] == 1:
        return ok
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    flag = torch.tensor([int(ok)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _phase(work: Callable[[], None] | None) -> None:
    """Run this rank's part of a save phase (if any), then wait for all ranks; raise if any of them failed."""
    try:
        if work is not None:
            work()
    except Exception:
        _all_succeeded(False)
        raise
    if not _all_succeeded(True):
        raise RuntimeError("saving the checkpoint failed on another rank; see that rank's log")


def _for_safetensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU tensors; a tensor stored under several names (tied weights) gets a copy per name."""
    out, storages = {}, set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.untyped_storage().data_ptr() in storages:
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under ``folder`` (including those other ranks wrote) to disk."""
    for dirpath, _, files in os.walk(folder):
        for name in files:
            _fsync(os.path.join(dirpath, name))
        _fsync(dirpath)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync(path.parent)


def _prune(root: Path, keep_last: int, keep: Path) -> None:
    """Remove all but the ``keep_last`` highest-step checkpoints, never ``keep`` nor step 0."""
    if keep_last <= 0:
        return
    for old in _checkpoints(root)[:-keep_last]:
        if old != keep and old.name != INITIAL:
            shutil.rmtree(old)


# ---------------------------------------------------------------------------------------------- finding


def _checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest step first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def _latest(root: Path) -> Path | None:
    """The checkpoint ``latest`` names, else the newest complete one, else None."""
    marker = root / "latest"
    complete = _checkpoints(root)
    newest = complete[-1] if complete else None
    if marker.is_file():
        named = root / marker.read_text().strip()
        if named.is_dir():
            return named
        log.warning(
            "%s names %s, which does not exist; using the newest complete checkpoint instead: %s",
            marker,
            named.name,
            newest,
        )
    return newest


def resolve_resume(run_dir: str | os.PathLike, resume: str) -> str | None:
    """The checkpoint folder a run continues from, or None to start fresh.

    ``never``: None. ``auto``: the run's latest checkpoint, None when it has none.
    A path: that checkpoint folder, or a run folder (or its ``checkpoints/``) for its latest one.
    """
    if resume == "never":
        return None
    if resume == "auto":
        found = _latest(Path(run_dir) / "checkpoints")
        return None if found is None else str(found)
    path = Path(resume)
    if path.name.endswith(UNFINISHED):
        raise FileNotFoundError(f"resume={resume!r} is an unfinished checkpoint (a save that did not complete)")
    if (path / "state.json").is_file():
        return str(path)
    found = _latest(path / "checkpoints" if (path / "checkpoints").is_dir() else path)
    if found is None:
        raise FileNotFoundError(
            f"resume={resume!r}: no checkpoint there; give a checkpoint folder (holding "
            "state.json), a run folder (holding checkpoints/), 'auto' or 'never'"
        )
    return str(found)


# ---------------------------------------------------------------------------------------------- loading


def state_mismatch(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """Missing keys, unexpected keys and shape mismatches of ``found`` against ``expected``; "" when they fit."""
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    mismatched = [
        f"{name}: checkpoint {list(found[name].shape)} vs model {list(expected[name].shape)}"
        for name in sorted(found.keys() & expected.keys())
        if found[name].shape != expected[name].shape
    ]
    lines = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            more = f", ... {len(items) - 20} more" if len(items) > 20 else ""
            lines.append(f"  {label} ({len(items)}): {', '.join(items[:20])}{more}")
    return "\n".join(lines)


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; ValueError naming the file when it is damaged (a cut copy, ...)."""
    try:
        return load_file(str(path))
    except SafetensorError as e:
        raise ValueError(
            f"{path} is damaged: not a readable safetensors file ({e}); use another checkpoint, e.g. an earlier "
            "step_XXXXXXX folder of the run"
        ) from None


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a checkpoint's model.safetensors (or ema.safetensors) into ``model``; keys and shapes must match."""
    state = read_weights(path)
    problems = state_mismatch(state, model.state_dict())
    if problems:
        raise ValueError(f"{path} does not fit {type(model).__name__}:\n{problems}")
    model.load_state_dict(state)


def weights_file(ckpt_dir: str | os.PathLike, stem: str) -> Path:
    """The file of a checkpoint's weights ``stem``: a PEFT adapter folder's ``<stem>/adapter_model.safetensors``
    when there is one (a LoRA run), else ``<stem>.safetensors``."""
    peft_file = Path(ckpt_dir) / stem / PEFT_WEIGHTS
    return peft_file if peft_file.is_file() else Path(ckpt_dir) / f"{stem}.safetensors"


def load_ema(ckpt_dir: str | os.PathLike, name: str = "ema") -> dict[str, torch.Tensor]:
    """A checkpoint's EMA weights (CPU tensors; adapters in the module's key layout), for ``EMA.load_state_dict``."""
    path = weights_file(ckpt_dir, name)
    if not path.is_file():
        raise FileNotFoundError(f"{ckpt_dir} holds no EMA weights (it was saved with ema.decay=0)")
    return from_peft_layout(read_weights(path))


def read_state(ckpt_dir: str | os.PathLike, rank: int | None = None) -> dict:
    """The state this rank passed to ``save_checkpoint``, with ``rng``, ``step`` and ``world_size``.

    ``rank`` defaults to this process's; when the run now has more ranks than it was saved with,
    rank r reads saved rank ``r % saved_world_size`` (the data order then differs from the saved run).
    """
    saved = json.loads((Path(ckpt_dir) / "state.json").read_text())
    rank = _rank_and_world()[0] if rank is None else rank
    ranks = saved["ranks"]
    return {**ranks[rank % len(ranks)], "step": saved["step"], "world_size": saved["world_size"]}


# ---------------------------------------------------------------------------------------------- RNG, config


def _b64(tensor: torch.Tensor) -> str:
    return base64.b64encode(tensor.numpy().tobytes()).decode("ascii")


def _from_b64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def rng_state() -> dict:
    """The global RNG states of python, numpy, torch CPU and (when present) this process's CUDA device, as JSON."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": _b64(torch.get_rng_state()),
    }
    if torch.cuda.is_available():
        state["cuda"] = _b64(torch.cuda.get_rng_state())
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured, so the same random numbers come next."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_from_b64(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_from_b64(state["cuda"]))


def config_hash(config) -> str:
    """Short sha256 of a resolved config (DictConfig, dataclass or dict), to tell whether a resume changed it."""
    tree = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    return hashlib.sha256(json.dumps(tree, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------- runs


def save_run_config(run_dir: str | os.PathLike, config) -> None:
    """Write the run's resolved ``config.yaml`` (what inference rebuilds the model from)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    _write_atomically(Path(run_dir) / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(config), resolve=True))


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder for ``path``: a checkpoint folder itself, or a run folder (its latest)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such run or checkpoint folder")
    try:
        found = resolve_resume(path.parent, str(path))
    except FileNotFoundError:
        found = None
    if found is None or not any(weights_file(found, stem).is_file() for stem in (WEIGHTS[0], ADAPTER)):
        if found is not None and (Path(found) / "engine").is_dir():
            raise FileNotFoundError(
                f"{found} holds the sharded training state only (a DeepSpeed save between consolidations); "
                f"write its full weights first: python -m unity.checkpoint consolidate {found}"
            )
        raise FileNotFoundError(
            f"{path} is neither a run folder with checkpoints nor a checkpoint folder "
            "holding model.safetensors (or a LoRA run's adapter/ or adapter.safetensors)"
        )
    return Path(found)


def load_init(module: nn.Module, path: str | os.PathLike) -> str:
    """Load the weights of the run or checkpoint ``path`` (its EMA when saved) into ``module``; returns the file."""
    ckpt = find_checkpoint(path)
    for stem in reversed(WEIGHTS):
        if (ckpt / f"{stem}.safetensors").is_file():
            load_weights(module, ckpt / f"{stem}.safetensors")
            return str(ckpt / f"{stem}.safetensors")
    raise FileNotFoundError(
        f"{ckpt} holds only LoRA adapters; start from a full checkpoint (merge it first: python -m unity.lora merge)"
    )


def new_parameters(path: str | os.PathLike) -> list[str]:
    """Names of the parameters that the writer of the run or checkpoint ``path`` created rather than
    carried over (``state.json``'s ``new_parameters``: a Wan grown to auxiliary streams); [] for most."""
    return read_state(find_checkpoint(path), rank=0).get("new_parameters", [])


def load_adapter(module: nn.Module, path: str | os.PathLike) -> None:
    """Load adapter weights (a PEFT adapter folder or its file, or an ``adapter*.safetensors`` in the module's key
    layout) into a module that has the same LoRA layers; keys and shapes must match."""
    path = Path(path) / PEFT_WEIGHTS if Path(path).is_dir() else path
    state = from_peft_layout(read_weights(path))
    problems = state_mismatch(state, adapter_state(module.state_dict()))
    if problems:
        raise ValueError(f"{path} does not fit the model's LoRA layers:\n{problems}")
    module.load_state_dict(state, strict=False)
