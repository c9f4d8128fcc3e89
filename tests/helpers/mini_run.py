"""A miniature `python train.py` run shared by the tests: 8-frame 32x32 clips, a 2-block model, 12 steps."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def overrides(tmp, data, **extra):
    """A miniature run: 8-frame 32x32 clips, tiny model, a handful of steps."""
    base = {
        "run.dir": str(tmp),
        "data.root": str(data),
        "data.synth.train_clips": 12,
        "data.synth.val_clips": 2,
        "data.synth.test_clips": 2,
        "data.synth.shard_size": 4,
        "data.frames": 8,
        "data.size": 32,
        "data.batch_size": 2,
        "data.num_workers": 0,
        "data.shuffle_buffer": 4,
        "model.depth": 2,
        "train.max_steps": 12,
        "checkpoint.save_every": 3,
        "train.eval_every": 3,
        "train.log_every": 1,
        "schedule.warmup_steps": 2,
        "routing.curriculum": "[]",
        "eval.clips": 2,
        "eval.steps": 2,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]
