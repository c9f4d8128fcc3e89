"""Training engines: one interface over a plain PyTorch loop and DeepSpeed (ZeRO 0-3).

The trainer drives both the same way, once per micro-batch::

    with engine.dtype_context():
        loss = loss_fn(engine.module(batch))
    engine.backward(loss)
    result = engine.step()  # an optimizer step on every train.grad_accum-th call

Both engines scale the loss by ``1 / train.grad_accum``, clip by the global gradient norm, skip the
update (and drop the gradients) when that norm is not finite, and advance the LR schedule at every
accumulation boundary, applied or skipped, so the LR of optimizer step ``n`` depends on ``n`` alone.
State is saved and restored at accumulation boundaries (partial gradients are not part of it).
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from contextlib import nullcontext

import torch
from torch import nn

from unity.config.validate import check_launch
from unity.train import distributed
from unity.train.parallel import data_parallel_rank, sequence_parallel_group
from unity.train.schedule import build_scheduler

DEEPSPEED_TAG = "deepspeed"  # sub-folder of save_state's folder holding DeepSpeed's files


def decay_split(model: nn.Module) -> tuple[dict[str, nn.Parameter], dict[str, nn.Parameter]]:
    """Trainable parameters by name: (decayed, not decayed).

    Weight decay applies to weight matrices and kernels only. Not decayed: parameters with fewer
    than two dimensions (biases, norm gains and shifts), the tables of ``nn.Embedding`` modules and
    parameters named as embeddings (``pos_embed``, ``register_embed``: the parameter's own name
    contains "embed"). Linear layers inside a module called ``*_embed`` (a patch projection, the
    timestep MLP) are ordinary weights and are decayed. A tied parameter counts once, under the
    first module that holds it.
    """
    decay, no_decay, seen = {}, {}, set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{name}" if module_name else name
            plain = param.ndim < 2 or isinstance(module, nn.Embedding) or "embed" in name
            (no_decay if plain else decay)[full_name] = param
    return decay, no_decay


def build_optimizer(model: nn.Module, optim, fused: bool = False, new_parameters=()) -> torch.optim.AdamW:
    """AdamW at ``optim.lr`` with ``optim.weight_decay`` on the decayed group of :func:`decay_split`.

    The parameters named in ``new_parameters`` (created when ``train.init_from``'s checkpoint was grown,
    ``unity.method.grow``) get groups of their own at ``optim.lr * optim.new_param_lr_mult``.
    """
    new = set(new_parameters)
    unknown = sorted(new - {name for name, _ in model.named_parameters()})
    if unknown:
        raise ValueError(f"new parameters the model does not have: {', '.join(unknown[:10])}")
    groups = []
    for params, weight_decay in zip(decay_split(model), (optim.weight_decay, 0.0)):
        for is_new in (False, True):
            chosen = [p for name, p in params.items() if (name in new) == is_new]
            lr = optim.lr * (optim.new_param_lr_mult if is_new else 1.0)
            groups.append({"params": chosen, "weight_decay": weight_decay, "lr": lr})
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=optim.lr, fused=fused)


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """Compute dtype of ``train.precision`` on a device: auto is bf16 on CUDA and fp32 elsewhere; None = fp32."""
    if precision == "bf16" or (precision == "auto" and device_type == "cuda"):
        return torch.bfloat16
    if precision in ("auto", "fp32"):
        return None
    raise ValueError(f"unknown precision {precision!r}; choose auto, fp32 or bf16")


def clip_grads(parameters, max_norm: float) -> float:
    """Global L2 norm of the gradients, clipping them to ``max_norm`` when it is finite (0 = no clipping)."""
    params = [p for p in parameters if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if max_norm > 0 and torch.isfinite(norm):
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm.item()


def step_result(lr: float, grad_norm: float = math.nan, applied: bool = False, boundary: bool = False) -> dict:
    """What ``Engine.step`` reports; ``skipped`` is True whenever the weights did not change."""
    return dict(grad_norm=float(grad_norm), lr=lr, skipped=not applied, boundary=boundary)


class Engine(ABC):
    """Forward through ``module``; ``backward``, ``step`` and the state live here.

    ``model`` is the bare network (parameter names, state dicts, EMA); ``module`` is what to call
    for a training forward: the same object on the plain engine, DeepSpeed's wrapper around it
    (attributes pass through) on the other. Under ZeRO-3 a training forward that bypasses the
    wrapper, calling ``model`` or a submodule directly, gives wrong gradients without any error.
    """

    module: nn.Module
    model: nn.Module
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LambdaLR
    autocast_dtype: torch.dtype | None = None
    rank: int = 0
    world_size: int = 1
    sequence_parallel: int = 1  # ranks per sequence-parallel group (parallel.sequence_parallel)
    sequence_group = None  # this rank's sequence-parallel process group, when sequence_parallel > 1
    sharded: bool = False  # each rank saves its own part of the state (unity/train/sharded.py)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def data_rank(self) -> int:
        """Rank among the data-parallel ranks: the ranks of one sequence-parallel group share it (and their samples)."""
        return data_parallel_rank(self.rank, self.world_size, self.sequence_parallel)[0]

    @property
    def data_world_size(self) -> int:
        """Ranks that train on their own samples: ``world_size / sequence_parallel``."""
        return data_parallel_rank(self.rank, self.world_size, self.sequence_parallel)[1]

    @property
    def lr(self) -> float:
        """The LR the next optimizer step uses."""
        return self.scheduler.get_last_lr()[0]

    def dtype_context(self):
        """Autocast to the run's compute dtype (``train.precision``); nothing for fp32."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @abstractmethod
    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate the gradients of ``loss / grad_accum``."""

    @abstractmethod
    def step(self) -> dict:
        """Count a micro-batch; at accumulation boundaries clip and update.

        Returns ``grad_norm`` (global, before clipping; NaN between boundaries), ``lr`` (of this
        step), ``skipped`` (the weights did not change: between boundaries or a non-finite norm)
        and ``boundary`` (this call ended an accumulation cycle).
        """

    @abstractmethod
    def zero_grad(self) -> None:
        """Drop the accumulated gradients."""

    @abstractmethod
    def state_dict_consolidated(self) -> dict[str, torch.Tensor]:
        """Full fp32 weights on CPU, keyed like ``model.state_dict()``, on the main rank ({} elsewhere).

        Every rank must call it: under ZeRO the weights are gathered from all of them.
        """

    @abstractmethod
    def save_state(self, folder: str) -> None:
        """Write the optimizer and schedule (and DeepSpeed's own) state into ``folder``; every rank calls it."""

    @abstractmethod
    def load_state(self, folder: str) -> None:
        """Restore what :meth:`save_state` wrote; every rank calls it, on a freshly built engine."""


class PlainEngine(Engine):
    """One process on one device: AdamW (fused on CUDA) and autocast, no distribution."""

    def __init__(self, model: nn.Module, config, device: torch.device | None = None, new_parameters=()):
        self.device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = self.module = model.to(self.device)
        self.autocast_dtype = autocast_dtype(config.train.precision, self.device.type)
        self.grad_accum = config.train.grad_accum
        self.grad_clip = config.optim.grad_clip
        self.optimizer = build_optimizer(model, config.optim, self.device.type == "cuda", new_parameters)
        self.scheduler = build_scheduler(self.optimizer, config.schedule, config.train.max_steps)
        self.micro_steps = 0

    def backward(self, loss: torch.Tensor) -> None:
        (loss / self.grad_accum).backward()

    def step(self) -> dict:
        lr = self.lr
        self.micro_steps += 1
        if self.micro_steps % self.grad_accum:
            return step_result(lr)
        norm = clip_grads(self.model.parameters(), self.grad_clip)
        applied = math.isfinite(norm)
        if applied:
            self.optimizer.step()
        self.zero_grad()
        self.scheduler.step()
        return step_result(lr, norm, applied, boundary=True)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict_consolidated(self) -> dict[str, torch.Tensor]:
        return {name: _to_cpu_fp32(value) for name, value in self.model.state_dict().items()}

    def save_state(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        torch.save(state, os.path.join(folder, "optimizer.pt"))

    def load_state(self, folder: str) -> None:
        state = torch.load(os.path.join(folder, "optimizer.pt"), map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.micro_steps = 0


class DeepSpeedEngine(Engine):
    """DeepSpeed data parallelism with ZeRO stage ``parallel.zero_stage``; bf16 weights on GPU.

    Launched by ``deepspeed`` or ``torchrun`` (one process per device); the process group is
    nccl on GPU and gloo on CPU. The optimizer is the plain engine's AdamW with the same groups
    (DeepSpeed's own Adam kernels are compiled extensions), and the LR schedule is stepped here
    rather than by DeepSpeed, which would hold it still on skipped steps.

    With ``parallel.sequence_parallel = P > 1`` the ranks form groups of ``P`` consecutive ranks
    (``sequence_group``) that split each sample's tokens and hold partial gradients; the loss is
    scaled by ``P`` so that DeepSpeed's average over all ranks sums them within each group
    (``unity/train/parallel.py``).
    """

    sharded = True

    def __init__(self, model: nn.Module, config, new_parameters=()):
        import deepspeed  # seconds to import: plain runs do not pay for it

        cuda = torch.cuda.is_available()
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        self.rank, self.world_size = distributed.rank(), distributed.world_size()
        parallel, train = config.parallel, config.train
        check_launch(parallel, self.world_size)
        self.sequence_parallel, self.zero_stage = parallel.sequence_parallel, parallel.zero_stage
        if self.sequence_parallel > 1:
            self.sequence_group = sequence_parallel_group(self.sequence_parallel)
        self.autocast_dtype = autocast_dtype(train.precision, "cuda" if cuda else "cpu")
        bf16 = cuda and self.autocast_dtype == torch.bfloat16
        # ZeRO and DeepSpeed's bf16 optimizer compute the global norm, clip and skip non-finite
        # steps; the bare fp32 optimizer of stage 0 does none of that, so this engine does.
        self.own_clipping = parallel.zero_stage == 0 and not bf16
        self.grad_clip = config.optim.grad_clip
        optimizer = build_optimizer(model, config.optim, cuda, new_parameters)
        self.scheduler = build_scheduler(optimizer, config.schedule, train.max_steps)
        settings = {
            "train_micro_batch_size_per_gpu": config.data.batch_size,
            "gradient_accumulation_steps": train.grad_accum,
            "gradient_clipping": 0.0 if self.own_clipping else config.optim.grad_clip,
            "zero_optimization": {"stage": parallel.zero_stage},
            "bf16": {"enabled": bf16},
        }
        self.module, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=settings)
        self.model = model
        self.device = self.module.device

    def backward(self, loss: torch.Tensor) -> None:
        # DeepSpeed averages over all ranks; x P makes it a sum of the partial gradients of each SP group.
        self.module.backward(loss * self.sequence_parallel if self.sequence_parallel > 1 else loss)

    def step(self) -> dict:
        lr = self.lr
        boundary = self.module.is_gradient_accumulation_boundary()
        norm = None
        if boundary and self.own_clipping:  # stage 0 reduced the gradients in the last backward
            norm = clip_grads(self.model.parameters(), self.grad_clip)
            if not math.isfinite(norm):
                for param in self.model.parameters():
                    param.grad = None  # AdamW leaves parameters without gradients untouched
        self.module.step()
        if not boundary:
            return step_result(lr)
        self.scheduler.step()
        if norm is None:
            norm = self.module.get_global_grad_norm()
            norm = math.nan if norm is None else float(norm)
        applied = self.module.was_step_applied() and math.isfinite(norm)
        return step_result(lr, norm, applied, boundary=True)

    def zero_grad(self) -> None:
        self.module.optimizer.zero_grad()

    def state_dict_consolidated(self) -> dict[str, torch.Tensor]:
        import deepspeed
        from deepspeed.utils import safe_get_full_fp32_param

        state = {}
        for name, value in self.model.state_dict(keep_vars=True).items():
            # The fp32 master copy where the optimizer keeps one (ZeRO, bf16): a collective under
            # ZeRO; otherwise the module's own tensor, gathered first if ZeRO-3 partitioned it.
            full = safe_get_full_fp32_param(value) if isinstance(value, nn.Parameter) and value.requires_grad else None
            if full is None:
                with deepspeed.zero.GatheredParameters(value):
                    full = value.detach().clone() if self.is_main else None
            if self.is_main:
                state[name] = _to_cpu_fp32(full)
        return state

    def save_state(self, folder: str) -> None:
        client_state = {"scheduler": self.scheduler.state_dict()}
        self.module.save_checkpoint(folder, tag=DEEPSPEED_TAG, client_state=client_state, save_latest=False)

    def load_state(self, folder: str) -> None:
        location = os.path.join(folder, DEEPSPEED_TAG)
        if not os.path.isdir(location):
            raise FileNotFoundError(f"no DeepSpeed state in {location}")
        path, client_state = self.module.load_checkpoint(folder, tag=DEEPSPEED_TAG)
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load the state in {location}")
        self.scheduler.load_state_dict(client_state["scheduler"])


def _to_cpu_fp32(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy; floating tensors in fp32, others (step counters, ids) as they are."""
    tensor = tensor.detach()
    return tensor.to("cpu", torch.float32 if tensor.is_floating_point() else tensor.dtype, copy=True)


def build_engine(config, model: nn.Module, new_parameters=()) -> Engine:
    """The engine ``parallel.engine`` names, around ``model`` (micro-batch = ``data.batch_size``);
    ``new_parameters`` train at ``optim.new_param_lr_mult`` times the LR (:func:`build_optimizer`)."""
    if config.parallel.engine == "deepspeed":
        return DeepSpeedEngine(model, config, new_parameters)
    check_launch(config.parallel, distributed.world_size())
    return PlainEngine(model, config, new_parameters=new_parameters)
