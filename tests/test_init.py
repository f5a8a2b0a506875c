"""`dsf init`: the projects it writes run as written, through `python main.py` and the `dsf` command, from their own
folder with nothing of the test suite on the path; every project's config holds every section; refusals are one
line, exit 2, and leave nothing behind, as does a failure half-way; and the SLURM script a project gets is the
repository's slurm/train.sh, in the wheel too."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, only_run_folder, results
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression

from dsf_dist import init as dsf_init
from dsf_dist.config import load_config
from dsf_dist.config.schema import DsfConfig
from dsf_dist.errors import DsfError

DSF = Path(sys.executable).with_name("dsf")  # the console script, which (unlike python -m) adds no folder to the path
COUPLE_OF_STEPS = ["--set", "trainer.max_epochs=1", "--set", "trainer.limit_train_batches=2"]


def run(*command: str | Path, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}  # only the project's own files
    env["PYTHONUNBUFFERED"] = "1"
    return subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def init_project(where: Path, *args: str, name: str = "project") -> Path:
    done = run(DSF, "init", name, *args, cwd=where)
    assert done.returncode == 0, done.stderr[-3000:]
    return where / name


def project_module(project: Path, name: str):
    """One of the project's own files, imported under a name of its own (the test suite has no `data` module)."""
    spec = importlib.util.spec_from_file_location(f"init_project_{name}", project / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digits_splits(project: Path):
    """The project's split, by its own data.py, as arrays for scikit-learn."""
    data = project_module(project, "data")
    splits = data.split(data.load_dataset(), [0.7, 0.15, 0.15], 42)
    arrays = []
    for subset in (splits.train, splits.test):
        inputs, targets = zip(*(subset[i] for i in range(len(subset))), strict=True)
        arrays.append((np.stack([x.numpy() for x in inputs]), np.stack([y.numpy() for y in targets])))
    return arrays


def assert_complete_results(run_folder: Path) -> tuple[dict, dict, dict]:
    for name in ("test.json", "eval.json", "comparison.json", "comparison.md", "comparison.html"):
        assert (run_folder / "results" / name).is_file(), name
    test, existing = results(run_folder, "test"), results(run_folder, "eval")
    comparison = results(run_folder, "comparison")
    assert test["num_samples"] == existing["num_samples"]
    for metric, pair in comparison["comparison"].items():
        assert pair == {"trained": test[metric], "eval": existing[metric]}
    return test, existing, comparison


# -- the projects run as written ------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_default_project_runs_through_both_entry_points(tmp_path):
    project = init_project(tmp_path)
    assert yaml.safe_load((project / "config.yaml").read_text())["model"]["task"] == "classification"

    by_script = run(sys.executable, "main.py", cwd=project)
    assert by_script.returncode == 0, by_script.stderr[-3000:]
    first = only_run_folder(project / "runs")
    by_cli = run(DSF, "run", "-c", "config.yaml", cwd=project)
    assert by_cli.returncode == 0, by_cli.stderr[-3000:]
    (second,) = [folder for folder in (project / "runs").iterdir() if folder != first]

    # main.py's Comparison(...).compare() printed the seed's dictionary; both printed the table and the folder.
    assert "{'accuracy': {'trained': " in by_script.stdout
    for done, folder in ((by_script, first), (by_cli, second)):
        assert "trained vs existing model" in done.stdout and f"run folder: runs/{folder.name}" in done.stdout

    (train_x, train_y), (test_x, test_y) = digits_splits(project)
    existing_accuracy = LogisticRegression(max_iter=1000).fit(train_x, train_y).score(test_x, test_y)
    scores = []
    for folder in (first, second):
        recorded = yaml.safe_load((folder / "config.yaml").read_text())
        assert (recorded["data"]["datamodule"], recorded["model"]["network"]) == (
            "data:DigitsDataModule",
            "model:network",
        )
        test, existing, comparison = assert_complete_results(folder)
        assert test["num_samples"] == len(test_y) == 269
        assert existing["accuracy"] == pytest.approx(existing_accuracy, abs=1e-6)  # the project's own split
        assert test["accuracy"] > 0.9 and test["f1"] > 0.9
        assert set(comparison["comparison"]) == {"accuracy", "precision", "recall", "f1", "confusion_matrix"}
        assert comparison["statistics"]["mcnemar"] and comparison["gates"]["passed"] is True
        scores.append({key: test[key] for key in ("accuracy", "precision", "recall", "f1")})
    assert scores[0] == scores[1]  # one config, one seed: the two entry points train the same model


@pytest.mark.slow
def test_the_regression_project_runs_a_couple_of_steps(tmp_path):
    project = init_project(tmp_path, "--task", "regression")
    done = run(DSF, "run", "-c", "config.yaml", *COUPLE_OF_STEPS, cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    test, existing, comparison = assert_complete_results(only_run_folder(project / "runs"))

    (train_x, _), (test_x, test_y) = digits_splits(project)
    pca = PCA(n_components=3).fit(train_x)
    pca_mse = float(((pca.inverse_transform(pca.transform(test_x)) - test_y) ** 2).mean())
    assert existing["mse"] == pytest.approx(pca_mse, rel=1e-4)
    assert test["mse"] > existing["mse"]  # two steps of the autoencoder: not yet near PCA
    assert set(comparison["comparison"]) == {"mse", "mae"}
    assert set(comparison["statistics"]["bootstrap"]["metrics"]) == {"mse", "mae"}


@pytest.mark.slow
def test_the_token_classification_project_runs_a_couple_of_steps(tmp_path):
    project = init_project(tmp_path, "--task", "token_classification")
    for made in ("data/train.jsonl", "data/test.jsonl", "pretrained/config.json", "existing/config.json"):
        assert (project / made).is_file(), made
    assert not list(project.rglob("__pycache__"))
    done = run(DSF, "run", "-c", "config.yaml", *COUPLE_OF_STEPS, cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    test, existing, comparison = assert_complete_results(only_run_folder(project / "runs"))

    sentences = [json.loads(line) for line in (project / "data" / "test.jsonl").read_text().splitlines()]
    assert len(sentences) == 60 and test["num_samples"] == sum(len(s["tokens"]) for s in sentences)
    assert test["labels"] == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert existing["model"] == "existing"
    assert {"entity_f1", "accuracy", "f1"} <= set(comparison["comparison"])
    assert 0 <= existing["entity_f1"] <= 1 and 0 <= test["entity_f1"] <= 1


@pytest.mark.slow  # it trains, as its siblings above do
def test_the_text_classification_project_runs_a_couple_of_steps(tmp_path):
    project = init_project(tmp_path, "--task", "sequence_classification")
    rows = [json.loads(line) for line in (project / "data" / "test.jsonl").read_text().splitlines()]
    train_labels = {json.loads(line)["label"] for line in (project / "data" / "train.jsonl").read_text().splitlines()}
    assert {row["label"] for row in rows} <= train_labels and len(train_labels) >= 3
    done = run(DSF, "run", "-c", "config.yaml", *COUPLE_OF_STEPS, cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    test, existing, comparison = assert_complete_results(only_run_folder(project / "runs"))
    assert test["num_samples"] == len(rows) and sorted(test["labels"]) == sorted(train_labels)
    assert existing["accuracy"] > 1 / len(train_labels)  # TF-IDF fit on the project's own training texts
    assert {"accuracy", "f1"} <= set(comparison["comparison"])


@pytest.mark.slow  # it trains, as its siblings above do
def test_the_causal_lm_project_runs_a_couple_of_steps(tmp_path):
    project = init_project(tmp_path, "--task", "causal_lm")
    test_documents = (project / "data" / "test.jsonl").read_text().splitlines()
    assert test_documents and (project / "data" / "train.jsonl").is_file()
    done = run(DSF, "run", "-c", "config.yaml", *COUPLE_OF_STEPS, cwd=project)
    assert done.returncode == 0, done.stderr[-3000:]
    test, existing, comparison = assert_complete_results(only_run_folder(project / "runs"))
    assert {"perplexity", "token_loss", "next_token_accuracy"} <= set(comparison["comparison"])
    assert existing["perplexity"] < test["perplexity"]  # two steps of a new GPT-2 against a trigram model


def test_every_project_config_holds_every_section_and_loads(tmp_path):
    for task in dsf_init.available_tasks():
        project = tmp_path / task
        dsf_init.write_files(task, project)
        config = project / "config.yaml"
        assert set(yaml.safe_load(config.read_text())) == set(DsfConfig.model_fields), task
        assert load_config(config, check_machine=False).model.task == task  # files: the end-to-end tests
        text = config.read_text()
        assert all(name in text for name in ("ddp_spawn", "fsdp", "deepspeed", "torchrun", "SLURM", "ray job submit"))
        readme = (project / "README.md").read_text()
        for line in (
            "python main.py",
            "dsf run -c config.yaml",
            "torchrun --nproc-per-node=2 -m dsf_dist run -c config.yaml",
        ):
            assert line in readme, (task, line)
        assert "sbatch slurm/train.sh config.yaml" in readme and "ray job submit" in readme
        assert {"main.py", "data.py", "model.py", "config.yaml", "README.md", "slurm"} <= {
            p.name for p in project.iterdir()
        }


# -- refusals: one line, exit 2, nothing written ---------------------------------------------------------------
def snapshot(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["taken"], "taken: exists and is not empty; choose a new or empty folder"),
        (["afile"], "afile: exists and is not a folder"),
        (
            ["new", "--task", "vision"],
            "--task: unknown task 'vision'; choose one of causal_lm, classification, regression",
        ),
    ],
)
def test_a_refusal_is_one_line_and_writes_nothing(tmp_path, args, expected):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine\n")
    (tmp_path / "afile").write_text("a file\n")
    before = snapshot(tmp_path)
    done = run(DSF, "init", *args, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and expected in done.stderr, done.stderr
    assert snapshot(tmp_path) == before


def test_a_failure_half_way_leaves_nothing(tmp_path, monkeypatch):
    templates = tmp_path / "templates"
    shutil.copytree(dsf_init.TEMPLATES / "common", templates / "common", symlinks=True)
    (templates / "broken").mkdir()
    (templates / "broken" / "prepare.py").write_text(
        "from pathlib import Path\nPath('half.txt').write_text('x')\nraise SystemExit('prepare.py: no corpus here')\n"
    )
    monkeypatch.setattr(dsf_init, "TEMPLATES", templates)
    where = tmp_path / "work"
    (where / "empty").mkdir(parents=True)
    for target in (where / "new" / "nested", where / "empty"):
        with pytest.raises(DsfError, match=r"--task broken: the project's prepare.py failed \(prepare.py: no corpus"):
            dsf_init.init(target, "broken")
    assert snapshot(where) == ["empty"]


def test_an_empty_folder_is_filled_in_place(tmp_path):
    folder = tmp_path / "here"
    folder.mkdir()
    inode = folder.stat().st_ino
    init_project(folder, name=".")
    assert folder.stat().st_ino == inode  # the same folder (a shell inside it still sees the project)
    names = sorted(path.name for path in folder.iterdir())
    assert names == ["README.md", "config.yaml", "data.py", "main.py", "model.py", "slurm"]  # no staging folder left


# -- slurm/train.sh: one source, shipped ---------------------------------------------------------------------
def test_the_slurm_script_is_the_repository_one_in_the_project_and_the_wheel(tmp_path):
    link = dsf_init.TEMPLATES / "common" / "slurm" / "train.sh"
    assert link.is_symlink() and link.resolve() == REPO / "slurm" / "train.sh"
    script = (REPO / "slurm" / "train.sh").read_bytes()

    project = tmp_path / "project"
    dsf_init.write_files("classification", project)
    written = project / "slurm" / "train.sh"
    assert not written.is_symlink() and written.read_bytes() == script and os.access(written, os.X_OK)

    # A wheel built from a copy of the source tree holds every template file, the script with its content.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    shutil.copytree(REPO / "slurm", source / "slurm")
    shutil.copytree(REPO / "dsf_dist", source / "dsf_dist", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(tmp_path / 'wheel')!r}))"
    done = subprocess.run([sys.executable, "-c", build], cwd=source, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "wheel" / done.stdout.strip().splitlines()[-1]) as wheel:
        shipped = {name: wheel.read(name) for name in wheel.namelist() if name.startswith("dsf_dist/templates/")}
        mode = wheel.getinfo("dsf_dist/templates/common/slurm/train.sh").external_attr >> 16
    sources = [p for p in dsf_init.TEMPLATES.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert {
        f"dsf_dist/{p.relative_to(dsf_init.TEMPLATES.parent).as_posix()}": p.read_bytes() for p in sources
    } == shipped
    assert shipped["dsf_dist/templates/common/slurm/train.sh"] == script and mode & 0o111
