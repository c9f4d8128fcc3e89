"""`python -m unity.convert export` on the shared miniature run: a pipeline folder with a model card that
`UnityPipeline.from_pretrained` loads in a fresh process and runs, giving what the run folder gives."""

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from data_pipeline.video_io import decode_video
from unity.convert import main
from unity.inference.loading import load_trained
from unity.inference.pipeline import SamplerSettings, run_task

from mini_run import ENV, ROOT

FRESH_PROCESS = """
import json, sys
import numpy as np
from unity import UnityPipeline

pipe = UnityPipeline.from_pretrained(sys.argv[1], device="cpu")
out = pipe(task="estimate", video=np.load(sys.argv[2]), modality="depth", num_inference_steps=2, seed=3)
np.save(sys.argv[3], out.videos["depth"])
print(json.dumps({"generated": out.generated, "estimate": list(out.estimate.shape), "frames": list(out.frames.shape)}))
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory, finished_run):
    out = tmp_path_factory.mktemp("export") / "tiny-unity"
    assert main(["export", "--ckpt", str(finished_run[0]), "--out", str(out)]) == 0
    return out


def test_the_folder_holds_every_component_and_a_model_card(exported, finished_run):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == "UnityPipeline" and index["transformer"] == ["models.dit", "UnityDiT"]
    assert index["clip"] == {"frames": 8, "height": 32, "width": 32} and index["exported_from"]["step"] == 12
    for name in ("config.yaml", "transformer/config.json", "transformer/model.safetensors"):
        assert (exported / name).is_file(), name
    assert (exported / "text_encoder" / "model.safetensors").is_file()  # the builtin encoder, trained with the model
    assert not (exported / "vae").exists()  # the pixel codec has no weights
    card = (exported / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: unity" in card and "license: apache-2.0" in card
    results = json.loads((finished_run[0] / "eval" / "results.json").read_text())
    assert f"| depth.abs_rel | {results['depth.abs_rel']:.4f} |" in card  # the run's own evaluation figures
    assert "licence of the footage:" in card and "from unity import UnityPipeline" in card


def test_a_fresh_process_loads_and_runs_it_like_the_run_folder(exported, finished_run, data_root, tmp_path):
    with tarfile.open(next((data_root / "test").glob("*.tar"))) as tar:
        member = next(m for m in tar if m.name.endswith(".rgb.mkv"))
        clip = decode_video(tar.extractfile(member).read())  # [8, 32, 32, 3]
    np.save(tmp_path / "clip.npy", clip)
    script = tmp_path / "run_pipeline.py"
    script.write_text(FRESH_PROCESS)
    env = {**ENV, "PYTHONPATH": ROOT + os.pathsep + ENV.get("PYTHONPATH", "")}
    command = [sys.executable, str(script), str(exported), str(tmp_path / "clip.npy"), str(tmp_path / "depth.npy")]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    shapes = json.loads(result.stdout.strip().splitlines()[-1])
    assert shapes == {"generated": ["depth"], "estimate": [1, 8, 32, 32], "frames": [1, 8, 32, 32, 3]}

    trained = load_trained(finished_run[0], device="cpu")  # the same weights through the run folder
    settings = SamplerSettings(steps=2, seed=3)
    expected = run_task(trained, "est", "depth", [""], rgb=clip[None], settings=settings)["depth"]
    np.testing.assert_array_equal(np.load(tmp_path / "depth.npy"), expected)


def test_exporting_again_replaces_and_bad_targets_are_errors(exported, finished_run, tmp_path, capsys):
    assert main(["export", "--ckpt", str(finished_run[0]), "--out", str(exported)]) == 0  # the same command again
    assert (exported / "model_index.json").is_file() and not exported.with_name(exported.name + ".tmp").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert main(["export", "--ckpt", str(finished_run[0]), "--out", str(tmp_path / "other")]) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert main(["export", "--ckpt", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 2
    assert "no such run or checkpoint folder" in capsys.readouterr().err

    from unity import UnityPipeline

    with pytest.raises(FileNotFoundError, match="hf download"):
        UnityPipeline.from_pretrained(tmp_path / "other")
