"""The typed run configuration: one dataclass per component, every knob with a default and a meaning.

Sections match the components that receive them: ``data`` the loader, ``model`` the network
(``models/config.py``), ``train`` the loop, ``optim`` / ``schedule`` the optimizer and its LR,
``ema`` the weight average, ``checkpoint`` the saver, ``parallel`` the engine's distribution,
``routing`` the task router, ``flow`` the noising, ``lora`` the adapters, ``eval`` the evaluation
of a finished run. Allowed values are ``Literal`` types, checked by OmegaConf when a value is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from data_pipeline.modalities import NAMES as MODALITY_NAMES
from models.config import ModelConfig

SCHEMA_VERSION = 2  # bumped when a key moves; older run configs are migrated on load (unity/config/migrate.py)


@dataclass
class RunConfig:
    name: str = "tiny"  # run name; outputs go to <dir>/<name>/
    dir: str = "runs"  # parent folder of run folders
    seed: int = 0  # global seed for model init, routing and noise
    wandb: bool = False  # also send the metrics to Weights & Biases (extra wandb; WANDB_* variables apply)
    wandb_project: str = "unity"  # the W&B project of the run
    wandb_mode: Literal["online", "offline"] = "online"  # offline: kept in <run>/wandb for a later `wandb sync`


@dataclass
class SynthConfig:
    train_clips: int = 512  # clips synthesised for the train split when data.root lacks it
    val_clips: int = 32  # clips for the val split (validation loss)
    test_clips: int = 32  # clips for the test split (evaluation)
    seed: int = 0  # base seed of the synthetic world; splits mix their name into it
    shard_size: int = 64  # samples per shard


@dataclass
class DataConfig:
    root: str = "data/synth"  # folder holding one shard folder per split (train/, val/, test/)
    modalities: list[str] = field(default_factory=lambda: list(MODALITY_NAMES[1:]))  # auxiliary streams loaded
    frames: int = 16  # frames per clip fed to the model
    size: int = 64  # square frame size fed to the model, pixels
    crop_scale: list[float] = field(default_factory=lambda: [0.8, 1.0])  # random-crop area fraction range
    batch_size: int = 8  # samples per step per rank
    num_workers: int = 2  # data-loader worker processes per rank
    shuffle_buffer: int = 256  # samples held in the shuffle buffer
    synth: SynthConfig = field(default_factory=SynthConfig)  # how to build the synthetic splits if absent
    precomputed: Literal["auto", "always", "never"] = "auto"  # use unity.precompute's latents: auto = if stored


@dataclass
class TrainConfig:
    max_steps: int = 1000  # optimizer steps in the run
    grad_accum: int = 1  # micro-batches per optimizer step
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    eval_every: int = 250  # steps between validation-loss passes
    log_every: int = 10  # steps between metrics.jsonl / TensorBoard records
    resume: str = "auto"  # auto (latest checkpoint of the run), never, or a checkpoint path
    init_from: str = ""  # a run or checkpoint whose weights (EMA when saved) start this run; "" = random init
    max_bad_steps: int = 20  # consecutive non-finite losses that stop the run (with a checkpoint)
    peak_tflops: float = 0.0  # device dense bf16 peak for MFU; 0 = look it up
    deterministic: bool = False  # deterministic GPU algorithms: bit-exact reruns and resumes, some speed lost


@dataclass
class OptimConfig:
    lr: float = 3e-4  # peak learning rate of AdamW
    weight_decay: float = 0.01  # AdamW decay, not applied to norms, biases and embeddings
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    new_param_lr_mult: float = 1.0  # LR multiplier of parameters train.init_from marks as new (grown Wan; released: 10)


@dataclass
class ScheduleConfig:
    kind: Literal["constant", "cosine"] = "constant"  # the LR after warmup
    warmup_steps: int = 100  # linear learning-rate warmup
    min_lr_ratio: float = 0.1  # cosine floor as a fraction of optim.lr


@dataclass
class EMAConfig:
    decay: float = 0.999  # EMA of the weights (its decay after the warm-up); 0 disables it
    warmup: bool = True  # decay of update n grows as 1 - (1 + n / warmup_inv_gamma) ** -warmup_power, up to decay
    warmup_power: float = 0.6667  # warm-up exponent: 2/3 suits long runs, 3/4 short ones (diffusers' EMAModel)
    warmup_inv_gamma: float = 1.0  # warm-up time scale in updates (larger: slower growth of the decay)


@dataclass
class CheckpointConfig:
    save_every: int = 250  # steps between checkpoints
    keep_last: int = 3  # complete checkpoints kept (0 keeps all); the newest always is
    keep_initial: bool = True  # save the step-0 weights and keep them: the evaluation's untrained reference
    consolidate_every: int = 0  # steps between DeepSpeed saves that also gather model/ema.safetensors; 0: first, last


@dataclass
class ParallelConfig:
    engine: Literal["plain", "deepspeed"] = "plain"  # plain (one process) or deepspeed (many ranks)
    zero_stage: Literal[0, 1, 2, 3] = 0  # DeepSpeed ZeRO stage
    sequence_parallel: int = 1  # ranks splitting each sample's tokens (DeepSpeed-Ulysses; deepspeed engine only)


@dataclass
class TaskProbs:
    cond: float = 0.25  # conditional generation u(V_r | V_m, C): rgb noised, modality clean
    est: float = 0.25  # estimation u(V_m | V_r): modality noised, rgb clean
    joint: float = 0.5  # joint generation u(V_r, V_m | C): both noised
    sentence: float = 0.0  # visual sentence (A, A', B, B'): only B' noised


@dataclass
class CurriculumStage:
    steps: int = 0  # optimizer steps in this stage; 0 = until the end of the run
    modalities: list[str] = field(default_factory=list)  # auxiliary modalities routed in this stage
    tasks: TaskProbs = field(default_factory=TaskProbs)  # task probabilities in this stage


def _paper_curriculum() -> list[CurriculumStage]:
    """UnityVideo's two stages: pixel-aligned modalities first, then all of them."""
    return [
        CurriculumStage(steps=300, modalities=["depth", "flow", "densepose"]),
        CurriculumStage(steps=0, modalities=["depth", "flow", "seg", "pose", "densepose"]),
    ]


@dataclass
class RoutingConfig:
    tasks: TaskProbs = field(default_factory=TaskProbs)  # task probabilities when no curriculum is set
    modalities: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODALITY_NAMES[1:], 1.0))  # weights
    curriculum: list[CurriculumStage] = field(default_factory=_paper_curriculum)  # stages; empty = no curriculum
    caption_dropout: float = 0.1  # probability of an empty caption, for classifier-free guidance
    sentence_reverse: float = 0.5  # probability that a visual sentence generates video from the modality
    sentence_image_context: float = 0.0  # probability that a sentence's context pair is one frame held still
    aux_streams: list[float] = field(default_factory=lambda: [1.0])  # weights of k = 1, 2, ... auxiliary streams
    subset_tasks: float = 0.0  # k >= 2: probability that a route noises another subset (e.g. rgb, depth from pose)
    control_dropout: float = 0.0  # probability that each clean auxiliary stream (a control) is left out of a sample


@dataclass
class FlowConfig:
    t_logit_mean: float = 0.0  # mean of the logit-normal flow-matching time
    t_logit_std: float = 1.0  # std of the logit-normal flow-matching time
    t_shift: float = 1.0  # time shift s: t -> s t / (1 + (s - 1) t); > 1 favours noisier times
    t_shift_mode: Literal["fixed", "resolution"] = "fixed"  # fixed (t_shift) or growing with tokens per stream


# attention q/k/v/out and the MLP of every block
LORA_TARGETS = ("attn.qkv", "attn.proj", "cross_attn.q", "cross_attn.kv", "cross_attn.proj", "mlp.fc1", "mlp.fc2")


@dataclass
class LoraSettings:
    enabled: bool = False  # train LoRA adapters on a frozen base (train.init_from) instead of the whole model
    rank: int = 8  # LoRA rank r
    alpha: float = 16.0  # LoRA scale numerator: the update is B A · alpha / r
    dropout: float = 0.0  # dropout on the LoRA branch's input
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))  # DiT layers given adapters


@dataclass
class EvalConfig:
    split: Literal["train", "val", "test", "zeroshot"] = "test"  # split evaluated after training
    clips: int = 16  # clips evaluated
    steps: int = 20  # sampler steps


@dataclass
class Config:
    schema_version: int = SCHEMA_VERSION  # layout of this config; older ones are migrated when a run is read
    run: RunConfig = field(default_factory=RunConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)  # the network, codec and text encoder
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)  # LoRA fine-tuning (unity/method/lora.py)
    eval: EvalConfig = field(default_factory=EvalConfig)
