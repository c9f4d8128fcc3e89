"""Command line of the data pipeline: ``python -m data_pipeline synth|check|preview|ingest|import|external ...``."""

from __future__ import annotations

import argparse
import os
import sys

from data_pipeline.synthetic import SPLITS


def _size(text: str) -> int | tuple[int, int]:
    """``64`` -> 64 (square); ``48x64`` -> (48, 64) as (height, width)."""
    try:
        if "x" in text:
            h, w = text.lower().split("x")
            return int(h), int(w)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not N or HxW") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_pipeline", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    synth = commands.add_parser("synth", help="render synthetic clips with exact ground truth into shards")
    synth.add_argument("--out", required=True, help="output folder for the shards and dataset.json")
    synth.add_argument("--clips", type=int, required=True, help="number of clips")
    synth.add_argument("--frames", type=int, default=16, help="frames per clip")
    synth.add_argument("--size", type=int, default=64, help="frame height and width in pixels")
    synth.add_argument("--seed", type=int, default=0, help="base seed; the same seed gives the same set")
    synth.add_argument(
        "--split",
        default="train",
        choices=SPLITS,
        help="zeroshot holds out a combination never rendered in the other splits",
    )
    synth.add_argument("--with-gt", action="store_true", help="also store raw ground truth as .npy members")
    synth.add_argument("--shard-size", type=int, default=64, help="samples per shard")
    synth.add_argument("--workers", type=int, default=None, help="rendering processes (default: all cores)")

    check = commands.add_parser("check", help="decode and validate every sample of a shard folder")
    check.add_argument("root", help="folder holding dataset.json and the shards")

    preview = commands.add_parser("preview", help="a PNG contact sheet: every stream of the first samples")
    preview.add_argument("root", help="folder holding dataset.json and the shards")
    preview.add_argument("--out", required=True, help="image to write (.png)")
    preview.add_argument("--samples", type=int, default=4, help="samples shown, two frames each")

    ingest = commands.add_parser("ingest", help="cut real videos into clips with optical flow (and estimators)")
    ingest.add_argument("--videos", required=True, help="folder searched recursively for video files")
    ingest.add_argument("--out", required=True, help="output folder for the shards and dataset.json")
    ingest.add_argument("--fps", type=float, default=8.0, help="frames per second of the clips")
    ingest.add_argument("--size", type=_size, default=256, help="N (short side, centre crop) or HxW")
    ingest.add_argument("--frames", type=int, default=16, help="frames per clip")
    ingest.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: --frames)")
    ingest.add_argument("--ext", default="mp4", choices=("mp4", "mkv"), help="container of the RGB clips (mp4: H.264)")
    ingest.add_argument(
        "--modality-ext",
        default="mkv",
        choices=("mkv", "mp4"),
        help="container of the modality streams: mkv (lossless FFV1, the default) keeps flow, seg and skeleton "
        "colours exact; mp4 is lossy",
    )
    ingest.add_argument("--flow", default="dis", choices=("dis", "farneback"), help="OpenCV optical-flow method")
    ingest.add_argument("--depth", default=None, help="local transformers depth-estimation model folder")
    ingest.add_argument("--seg", default=None, help="local transformers segmentation model folder")
    ingest.add_argument(
        "--pose",
        default=None,
        help="folder holding detector/ (a local person detector) and vitpose/ (a COCO-17 VitPose)",
    )
    ingest.add_argument("--split", default="train", help="split name written into every sample")
    ingest.add_argument("--license", default=None, help="licence of the footage, for the dataset card")
    ingest.add_argument("--source-url", default=None, help="where the footage came from, for the dataset card")
    ingest.add_argument("--shard-size", type=int, default=64, help="samples per shard")

    listed = commands.add_parser(
        "import",
        help="write shards from a list of RGB and pre-rendered modality videos "
        "(UnityVideo metadata.csv, VideoX-Fun / DiffSynth lists)",
    )
    source_list = listed.add_mutually_exclusive_group(required=True)
    source_list.add_argument("--csv", help="a CSV list (UnityVideo: video,prompt,depth,densepose,raft,...)")
    source_list.add_argument("--json", help="a JSON list of objects (VideoX-Fun: file_path, control_file_path, text)")
    listed.add_argument("--out", required=True, help="output folder for the shards and dataset.json")
    listed.add_argument("--root", default=None, help="folder that relative paths start from (default: the list's)")
    listed.add_argument(
        "--map", nargs="+", default=[], metavar="COLUMN=MODALITY", help="modality of a column, e.g. raft=flow"
    )
    listed.add_argument(
        "--convention",
        nargs="+",
        default=[],
        metavar="MODALITY=NAME",
        help="the visual convention of a modality's videos: unity when they are Unity's own visual form "
        "(then decoded for metrics), else a name of the source's",
    )
    listed.add_argument("--fps", type=float, default=8.0, help="frames per second of the clips")
    listed.add_argument("--size", type=_size, default=256, help="N (short side, centre crop) or HxW")
    listed.add_argument("--frames", type=int, default=16, help="frames per clip")
    listed.add_argument("--stride", type=int, default=None, help="frames between clip starts (default: --frames)")
    listed.add_argument("--ext", default="mp4", choices=("mp4", "mkv"), help="container of the RGB clips")
    listed.add_argument("--split", default="train", help="split name written into every sample")
    listed.add_argument("--shard-size", type=int, default=64, help="samples per shard")
    listed.add_argument("--license", default=None, help="licence of the footage, for the dataset card")
    listed.add_argument("--source-url", default=None, help="where the footage came from, for the dataset card")

    external = commands.add_parser("external", help="copy a shard set, adding external-encoder caption features")
    external.add_argument("--data", required=True, help="folder holding dataset.json and the shards")
    external.add_argument("--out", required=True, help="output folder for the new shards")
    source = external.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", help="safetensors file mapping each sample key to a [L, W] tensor")
    source.add_argument(
        "--random",
        type=int,
        metavar="W",
        help="random [L, W] features instead: a stand-in to try the path without an encoder",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "synth":
            from data_pipeline.synthetic.build import build_synthetic

            dataset = build_synthetic(
                args.out,
                args.clips,
                frames=args.frames,
                size=args.size,
                seed=args.seed,
                split=args.split,
                with_gt=args.with_gt,
                shard_size=args.shard_size,
                workers=args.workers,
            )
            print(f"wrote {dataset['samples']} samples in {len(dataset['shards'])} shard(s) to {args.out}")
        elif args.command == "check":
            from data_pipeline.check import check_dataset

            report = check_dataset(args.root)
            print(report.summary())
            return 0 if report.ok else 1
        elif args.command == "preview":
            from data_pipeline.preview import write_contact_sheet

            write_contact_sheet(args.root, args.out, args.samples)
            print(f"wrote {args.out}")
        elif args.command == "ingest":
            from data_pipeline.ingest import ingest

            dataset = ingest(
                args.videos,
                args.out,
                fps=args.fps,
                size=args.size,
                frames=args.frames,
                stride=args.stride,
                ext=args.ext,
                modality_ext=args.modality_ext,
                flow=args.flow,
                depth=args.depth,
                seg=args.seg,
                pose=args.pose,
                shard_size=args.shard_size,
                split=args.split,
                license=args.license,
                source_url=args.source_url,
            )
            print(f"wrote {dataset['samples']} samples in {len(dataset['shards'])} shard(s) to {args.out}")
        elif args.command == "import":
            from data_pipeline.import_list import import_list, parse_conventions, parse_map

            conventions = parse_conventions(args.convention)
            dataset = import_list(
                args.csv or args.json,
                args.out,
                kind="csv" if args.csv else "json",
                root=args.root,
                mapping=parse_map(args.map),
                conventions=conventions,
                fps=args.fps,
                size=args.size,
                frames=args.frames,
                stride=args.stride,
                ext=args.ext,
                shard_size=args.shard_size,
                split=args.split,
                license=args.license,
                source_url=args.source_url,
            )
            report = dataset["import"]
            print(
                f"wrote {dataset['samples']} samples from {report['rows']} rows in {len(dataset['shards'])} shard(s) "
                f"to {args.out}; {len(report['missing'])} missing and {len(report['undecodable'])} undecodable "
                "file(s) skipped (listed in dataset.json)"
            )
        elif args.command == "external":
            from safetensors.torch import load_file

            from data_pipeline.external import add_external, random_features

            if args.features:
                features, source = load_file(args.features), os.path.abspath(args.features)
            else:
                features, source = random_features(args.data, args.random), f"random (width {args.random})"
            dataset = add_external(args.data, features, args.out, source)
            print(
                f"wrote {dataset['samples']} samples with {dataset['external']['dim']}-wide features to {args.out}"
                f" ({dataset['without_features']} without features left out)"
            )
    except (ValueError, FileNotFoundError, FileExistsError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
