"""UniBench-style evaluation of a trained run: ``python -m eval.unibench --ckpt RUN_OR_CKPT --data DIR --out DIR``.

For each split with ground truth under ``--data`` (``test``, and ``zeroshot`` when present, reported
separately) and each auxiliary modality:

- **estimation**: the modality estimated from the real RGB, scored against the ground truth, beside
  trivial baselines (the mean training map for continuous modalities, the background for
  categorical ones, the RGB's luminance read as disparity for depth), a negative control (another
  clip's estimate) and the ceiling (the ground-truth visual form read back);
- **controllable generation**: RGB generated from the ground-truth modality; its fidelity to the
  control is the modality estimated back from it by the same model, scored against the ground truth
  (the same score on the real RGB is the ceiling; on the control video itself, a copy baseline; on
  another clip's real video, the negative control); plus VBench-style dimensions of the generated
  RGB, beside those of the real videos;
- **joint generation**: RGB and the modality generated together from the caption; VBench-style
  dimensions of the RGB, and cross-stream consistency (``eval.consistency``: clips without structure
  left out, shuffled pairs as the control, the real-data ceiling; ``--referee`` for an independent
  estimator);
- **text to video**: RGB alone (one stream) from the caption, with its VBench-style dimensions.
- **several streams** (``eval.multistream``; by default for runs that route k >= 2 auxiliary streams):
  RGB generated from several controls together against each alone (fidelity to each control), and
  several modalities estimated in one pass against one at a time (quality and seconds per clip).

Modalities default to those the run trained on that the clips carry ground truth for; a run trained
without auxiliary modalities is judged on text to video alone.

Predictions are read back without any parameter of the ground truth (``eval.scores``). Every set of
videos scored for VBench-style dimensions carries the static-video flag (``eval.static_flag``).
Writes ``results.json``, PNG grids (RGB | ground truth | prediction) and a self-contained ``report.html``
(``eval.report``: tables, bar charts, flags and the run's loss curves).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from data_pipeline.benchmark import CATEGORICAL, BenchmarkClip, clip_features, load_clips, training_prior
from data_pipeline.modalities import MODALITIES
from data_pipeline.preview import film_strip, write_image
from data_pipeline.video_io import VideoDecodeError
from eval import multistream, vbench, vbench_quality
from eval.consistency import joint_consistency
from eval.report import format_tables, write_report
from eval.scores import score_predictions
from eval.static_flag import static_flag
from eval.vbench_models import load_backbone, load_raft
from unity.inference.loading import Trained, find_checkpoint, load_trained
from unity.inference.pipeline import SamplerSettings, run_task
from unity.sample import parse_weights

SPLITS = ("test", "zeroshot")
AUXILIARY = tuple(MODALITIES)[1:]


class Bench:
    """One trained model, its sampler settings and the VBench models, evaluated split by split."""

    def __init__(
        self,
        trained: Trained,
        gen: SamplerSettings,
        est: SamplerSettings,
        train_root: str | None,
        vbench_dims: list[str],
        weights_dir: str | None,
        fps: float,
        referee: Trained | None = None,
    ):
        self.trained, self.gen, self.est, self.train_root = trained, gen, est, train_root
        self.referee = referee  # an independent model that estimates the references of joint consistency
        self.dims, self.weights_dir, self.fps = vbench_dims, weights_dir, fps
        self.models = {}
        if "subject_consistency" in vbench_dims:
            self.models["dino"] = load_backbone("dino", weights_dir)
        if "background_consistency" in vbench_dims:
            self.models["clip"] = load_backbone("clip", weights_dir)
        if vbench.RAFT_DIMENSION in vbench_dims:
            self.models["raft"] = load_raft(weights_dir)
        self.models.update(vbench_quality.load_models(vbench_dims, weights_dir)[0])  # aesthetic, ..., AMT-S

    def quality(self, videos: np.ndarray, prompts: list[str] | None = None) -> dict:
        """``{"vbench": dims, "static": flag}`` of ``videos [N, T, H, W, 3]``: VBench-style dimensions averaged
        over the videos (backbone ones need ``--weights``) and the static-video flag (``eval.static_flag``).
        ``prompts``: each video's caption, for overall consistency."""
        prompts = prompts or [None] * len(videos)
        scores = vbench.mean_over_videos(
            [
                vbench.evaluate_video(v, self.fps, self.dims, self.weights_dir, models=self.models, prompt=p)
                for v, p in zip(videos, prompts)
            ]
        )
        for dim in vbench.WEIGHTED:
            scores.setdefault(dim, {"value": None, "reason": "needs the DINO / CLIP weights: pass --weights DIR"})
        return {"vbench": scores, "static": static_flag(videos)}

    def estimate(
        self, modality: str, rgb: np.ndarray, clips: list[BenchmarkClip], model: Trained | None = None
    ) -> np.ndarray:
        """``modality`` estimated from ``rgb [N, T, H, W, 3]`` by ``model`` (default: the model evaluated)."""
        return run_task(
            model or self.trained,
            "est",
            modality,
            [c.caption for c in clips],
            rgb=rgb,
            prompts=[c.prompts.get(modality, MODALITIES[modality].prompt) for c in clips],
            settings=self.est,
            features=clip_features(clips),
        )[modality]

    def baselines(self, modality: str, clips: list[BenchmarkClip]) -> dict[str, np.ndarray]:
        """Trivial predictions of ``modality`` for every clip, by name."""
        shape = (len(clips), *clips[0].videos["rgb"].shape)
        if modality in CATEGORICAL:
            return {"background only": np.zeros(shape, np.uint8)}
        out = {}
        if self.train_root is not None:
            out["mean training map"] = np.broadcast_to(training_prior(self.train_root, modality), shape)
        if modality == "depth":  # the input copied: luminance read as disparity (depth = 255 / luminance)
            out["rgb luminance"] = np.stack(
                [MODALITIES["depth"].encode(255.0 / np.maximum(c.videos["rgb"].mean(-1), 1.0), {}) for c in clips]
            )
        return out

    def split(self, clips: list[BenchmarkClip], modalities: list[str], images: Path, name: str, bar) -> dict:
        rgb = np.stack([c.videos["rgb"] for c in clips])
        captions, features = [c.caption for c in clips], clip_features(clips)
        t2v = run_task(self.trained, "t2v", "rgb", captions, settings=self.gen, features=features)["rgb"]
        result = {
            "clips": len(clips),
            "estimation": {},
            "generation": {},
            "joint": {},
            "real": self.quality(rgb, captions),
            "t2v": self.quality(t2v, captions),
        }
        write_image(str(images / f"{name}_t2v.png"), film_strip([("rgb", rgb[0]), ("text to\nvideo", t2v[0])]))
        for modality in modalities:
            truth = np.stack([c.videos[modality] for c in clips])
            estimated = self.estimate(modality, rgb, clips)
            rows = {"model": score_predictions(modality, estimated, clips)}
            rows.update(
                {
                    label: score_predictions(modality, videos, clips)
                    for label, videos in self.baselines(modality, clips).items()
                }
            )
            shuffled = np.roll(estimated, 1, axis=0)  # clip i scored with the estimate of clip i - 1
            if len(clips) > 1:  # negative control: an estimate that ignores its own input
                rows["model, another clip's estimate"] = score_predictions(modality, shuffled, clips)
            rows["ground truth read back (ceiling)"] = score_predictions(modality, truth, clips)
            result["estimation"][modality] = rows
            bar.update()

            generated = run_task(
                self.trained, "cond", modality, captions, control=truth, settings=self.gen, features=features
            )["rgb"]
            result["generation"][modality] = {
                "model": {
                    "fidelity": score_predictions(modality, self.estimate(modality, generated, clips), clips),
                    **self.quality(generated, captions),
                },
                "real video": {"fidelity": rows["model"], **result["real"]},
                "control copied as rgb": {
                    "fidelity": score_predictions(modality, self.estimate(modality, truth, clips), clips),
                    **self.quality(truth, captions),
                },
            }
            if len(clips) > 1:  # negative control: a real video of another clip
                result["generation"][modality]["another clip's real video"] = {
                    "fidelity": rows["model, another clip's estimate"]
                }
            bar.update()

            joint = run_task(self.trained, "joint", modality, captions, settings=self.gen, features=features)
            joint_estimated = self.estimate(modality, joint["rgb"], clips, self.referee)
            real_estimated = estimated if self.referee is None else self.estimate(modality, rgb, clips, self.referee)
            real = (truth, real_estimated, rgb)  # the ceiling: ground truth vs the estimate from the real rgb
            consistency = joint_consistency(modality, joint[modality], joint_estimated, joint["rgb"], clips, real)
            result["joint"][modality] = {"consistency": consistency, **self.quality(joint["rgb"], captions)}
            bar.update()
            write_image(
                str(images / f"{name}_{modality}.png"),
                film_strip(
                    [
                        ("rgb", rgb[0]),
                        (f"{modality}\nground truth", truth[0]),
                        (f"{modality}\nestimated", estimated[0]),
                        ("rgb from\nground truth", generated[0]),
                        ("joint rgb", joint["rgb"][0]),
                        (f"joint\n{modality}", joint[modality][0]),
                    ]
                ),
            )
        return result


def training_curves(checkpoint: str, window: int = 10) -> dict[str, list[tuple[int, float]]]:
    """The run's loss curves from its ``metrics.jsonl`` (beside the checkpoint folder), for the report.

    Training loss as a running mean over ``window`` records, the validation loss, and the text-to-video
    rgb validation loss; empty when the run folder has no metrics (a checkpoint copied alone).
    """
    metrics = Path(checkpoint).parent.parent / "metrics.jsonl"
    if not metrics.is_file():
        return {}
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [(r["step"], r["loss"]) for r in records if isinstance(r.get("loss"), float)]
    smooth = [
        (step, float(np.mean([v for _, v in train[max(0, i - window + 1) : i + 1]])))
        for i, (step, _) in enumerate(train)
    ]
    curves = {f"train loss (mean of {window})": smooth}
    for key, name in (("val/loss", "val loss"), ("val/loss/t2v/rgb", "val loss t2v rgb")):
        curves[name] = [(r["step"], r[key]) for r in records if key in r]
    return {name: points for name, points in curves.items() if points}


def find_splits(data: Path) -> dict[str, Path]:
    """``{split: folder}``: ``data`` itself when it is one shard folder, else its test / zeroshot folders."""
    if not data.is_dir():
        raise FileNotFoundError(f"--data {data}: no such folder")
    if (data / "dataset.json").is_file():
        return {data.name if data.name in SPLITS else "test": data}
    found = {split: data / split for split in SPLITS if (data / split / "dataset.json").is_file()}
    if not found:
        raise FileNotFoundError(f"--data {data} holds neither dataset.json nor test/ or zeroshot/ shard folders")
    return found


def check_clips(clips: list[BenchmarkClip], trained: Trained, folder: Path) -> None:
    frames, size = trained.clip_shape
    if not clips:
        raise ValueError(
            f"{folder} holds no readable clip (see the warnings above); rebuild it with `python -m data_pipeline "
            f"synth --out {folder} --frames {frames} --size {size} --with-gt --split {folder.name} --clips 16`"
        )
    shape = clips[0].videos["rgb"].shape
    if shape != (frames, size, size, 3):
        raise ValueError(
            f"{folder} holds clips of shape {shape} but the model was trained on {frames}x{size}x{size}; "
            f"build a matching split with `python -m data_pipeline synth --out {folder} --frames {frames} "
            f"--size {size} --with-gt --split {folder.name} --clips 16`"
        )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m eval.unibench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ckpt", required=True, help="run folder (its latest checkpoint) or checkpoint folder")
    parser.add_argument(
        "--data", required=True, help="a shard folder with ground truth, or a folder of test/ and zeroshot/"
    )
    parser.add_argument("--out", required=True, help="output folder: results.json, report.html, images/")
    parser.add_argument(
        "--train-data",
        default=None,
        help="training shards for the mean-map baselines (default: the run's data.root/train)",
    )
    parser.add_argument(
        "--modalities",
        nargs="*",
        default=None,
        choices=AUXILIARY,
        help="default: all trained; bare: text to video only",
    )
    parser.add_argument("--clips", type=int, default=16, help="clips per split")
    parser.add_argument("--steps", type=int, default=20, help="ODE steps for generation")
    parser.add_argument(
        "--est-steps", type=int, default=None, help="ODE steps for estimation (default: the run's eval.steps)"
    )
    parser.add_argument("--method", default="euler", choices=("euler", "heun"))
    parser.add_argument("--cfg", type=float, default=1.0, help="classifier-free guidance scale for generation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--weights",
        default=None,
        help="folder of VBench weights (DINO, CLIP, RAFT: eval/vbench_models.py; CLIP ViT-L/14 + LAION head, "
        "MUSIQ, ViCLIP, AMT-S: eval/vbench_files.py)",
    )
    parser.add_argument("--no-ema", action="store_true", help="use the trained weights, not their EMA")
    parser.add_argument(
        "--referee",
        default=None,
        help="another run (or checkpoint) of the same clip shape that estimates the references of joint "
        "consistency, independent of the model evaluated (default: the model itself)",
    )
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--multi-control",
        nargs="*",
        default=None,
        choices=AUXILIARY,
        help="rgb generated from these controls together and one by one (default, for runs routing k >= 2: "
        "depth pose; bare: none)",
    )
    parser.add_argument(
        "--multi-estimate",
        nargs="*",
        default=None,
        choices=AUXILIARY,
        help="modalities estimated in one pass and one at a time (default, for runs routing k >= 2: depth flow seg)",
    )
    parser.add_argument(
        "--control-weight", nargs="+", default=[], metavar="MODALITY=W", help="multi-control: a weighted row too"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        splits = find_splits(Path(args.data))
        find_checkpoint(args.ckpt)
        trained = load_trained(args.ckpt, use_ema=not args.no_ema, device=args.device)
        loaded = {}
        for split, folder in splits.items():
            loaded[split] = load_clips(str(folder), args.clips)
            check_clips(loaded[split], trained, folder)
        train_root = args.train_data or os.path.join(trained.config.data.root, "train")
        if not os.path.isfile(os.path.join(train_root, "dataset.json")):
            logging.warning(
                "no training shards at %s: the mean-map baselines are left out (set --train-data)", train_root
            )
            train_root = None
        with_gt = [m for m in AUXILIARY if all(m in c.gt for clips in loaded.values() for c in clips)]
        trained_with_gt = [m for m in trained.config.data.modalities if m in with_gt]
        modalities = args.modalities if args.modalities is not None else trained_with_gt
        missing = sorted(set(modalities) - set(with_gt))
        if missing:
            raise ValueError(f"the clips carry no raw ground truth for {', '.join(missing)}")
        controls, estimated = multistream.choose(args.multi_control, args.multi_estimate, trained, with_gt)
        weights = parse_weights(args.control_weight)
        est_steps = args.est_steps or int(trained.config.eval.steps)
        bench = Bench(
            trained,
            SamplerSettings(steps=args.steps, method=args.method, cfg=args.cfg, seed=args.seed),
            SamplerSettings(steps=est_steps, method=args.method, seed=args.seed),
            train_root,
            vbench.default_dims(args.weights),
            args.weights,
            fps=8.0,
            referee=load_trained(args.referee, device=args.device) if args.referee else None,
        )
        if bench.referee is not None and bench.referee.clip_shape != trained.clip_shape:
            raise ValueError(f"--referee {args.referee} was trained on other clips than --ckpt {args.ckpt}")
    except (FileNotFoundError, ValueError, VideoDecodeError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    out = Path(args.out)
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    results = {
        "checkpoint": trained.checkpoint,
        "weights": trained.weights,
        "modalities": modalities,
        "settings": {
            "steps": args.steps,
            "est_steps": est_steps,
            "method": args.method,
            "cfg": args.cfg,
            "seed": args.seed,
            "clips": args.clips,
            "referee": bench.referee.checkpoint if bench.referee is not None else None,
        },
        "splits": {},
    }
    with tqdm(total=3 * len(modalities) * len(loaded), desc="unibench", unit="task", disable=not modalities) as bar:
        for split, clips in loaded.items():
            results["splits"][split] = bench.split(clips, modalities, images, split, bar)
            results["splits"][split].update(
                multistream.evaluate(bench, clips, controls, estimated, weights, images, split)
            )
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_report(results, out / "report.html", images, training_curves(trained.checkpoint))
    print(format_tables(results))
    print(f"wrote {out / 'results.json'} and {out / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
