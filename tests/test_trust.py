"""A shared report is untrusted input: nothing it carries is installed, run or used as a path
until validated, and what differs from this checkout is shown and refused without --trust.
Reports also survive the tools people open them with (JupyterLab's and nbformat's saves)."""

from __future__ import annotations

import json
import shutil
import uuid

import nbformat
import pytest
from conftest import ROOT, repro, resealed, run_folders

from repro import MIME
from repro.driver import integrity, plan, snapshot, untrusted
from repro.errors import UserError

pytestmark = pytest.mark.kernel  # they read the real reports of the session's small runs


def forged(report, tmp_path, change) -> str:
    """`report` with its rerun record changed and every hash a forger can recompute recomputed,
    so that `verify` calls it intact: only the trust gate stands between it and this machine."""
    target = resealed(report, tmp_path / "forged" / "report.ipynb", change)
    assert repro("verify", target).returncode == 0
    return target


def refused(report, runs_dir, code: int = 2) -> str:
    """Rerun `report`: it must stop with `code` and one last line and create no run folder;
    returns stderr."""
    done = repro("rerun", report, "--runs-dir", str(runs_dir))
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("repro: ")
    assert run_folders(runs_dir) == []
    return done.stderr


LOCK_EDITS = {
    "an index option": lambda r: setattr(r, "lock", "--index-url https://example.org\n" + r.lock),
    "a link option": lambda r: setattr(r, "lock", r.lock + "--find-links /tmp/wheels\n"),
    "a URL requirement": lambda r: setattr(
        r, "lock", r.lock + "evil @ https://example.org/e.whl\n"
    ),
    "an editable install": lambda r: setattr(r, "lock", r.lock + "-e /tmp/evil\n"),
    "code in a marker": lambda r: setattr(
        r, "lock", r.lock + f"evil==1.0 ; __import__('os') --hash=sha256:{'a' * 64}\n"
    ),
}


@pytest.mark.parametrize("edit", LOCK_EDITS)
def test_a_lock_with_pip_options_is_refused_even_when_trusted(edit, small_runs, tmp_path):
    report = forged(small_runs["a"] / "report.ipynb", tmp_path, LOCK_EDITS[edit])
    done = repro("rerun", report, "--trust", "--runs-dir", str(tmp_path / "runs"))
    assert done.returncode == 2 and "its lock is refused: unsupported lock line" in done.stderr
    assert run_folders(tmp_path / "runs") == []


def test_packages_the_report_would_install_are_listed_before_anything_is_downloaded(
    small_runs, tmp_path
):
    def swap(record):
        numpy = next(line for line in record.lock.splitlines() if line.startswith("numpy=="))
        version = numpy.split("==")[1].split()[0]
        record.lock = record.lock.replace(f"numpy=={version}", "numpy==1.26.4")
        record.lock += f"evilpkg==6.6.6 \\\n    --hash=sha256:{'a' * 64}\n"

    stderr = refused(forged(small_runs["a"] / "report.ipynb", tmp_path, swap), tmp_path / "runs")
    assert "+++ the report's lock: what a rerun would install" in stderr
    assert "+ evilpkg==6.6.6" in stderr and "-> numpy==1.26.4" in stderr and "~ numpy==" in stderr
    assert "the lock differs (2 packages)" in stderr.splitlines()[-1]
    assert "--trust" in stderr.splitlines()[-1]
    assert not list(ROOT.glob(".kernels/torch-cpu-lock-*"))  # nothing was built or downloaded


def test_a_workload_spec_that_differs_is_shown_and_refused(small_runs, tmp_path):
    def wider(record):
        record.workload.model.config.width = 32

    stderr = refused(forged(small_runs["a"] / "report.ipynb", tmp_path, wider), tmp_path / "runs")
    assert '-   "width": 16' in stderr and '+   "width": 32' in stderr
    assert "workload resnet-tiny differs" in stderr.splitlines()[-1]


def test_a_record_naming_another_workload_than_its_notebook_ran_is_refused(small_runs, tmp_path):
    def other(record):  # this checkout's own spec: no difference for --trust to stop
        record.workload = plan.workloads()["vit-tiny"]

    stderr = refused(forged(small_runs["a"] / "report.ipynb", tmp_path, other), tmp_path / "runs")
    assert stderr.splitlines()[-1].endswith(
        "its rerun record names workload='vit-tiny', but its notebook ran workload='resnet-tiny'"
    )


PATH_EDITS = {
    "workload": lambda r: setattr(r.workload, "name", "../../../escaped"),
    "template": lambda r: setattr(r.code.template, "name", "../../../../escaped.ipynb"),
    "kernel": lambda r: setattr(r, "kernel", "../torch-cpu"),
}


@pytest.mark.parametrize("edit", PATH_EDITS)
def test_names_from_a_report_never_become_paths(edit, small_runs, tmp_path):
    report = forged(small_runs["a"] / "report.ipynb", tmp_path, PATH_EDITS[edit])
    stderr = refused(report, tmp_path / "runs")
    assert "is not a plain name" in stderr
    for place in (ROOT.parent, ROOT, ROOT / "runs", ROOT / ".kernels", tmp_path, tmp_path.parent):
        assert not list(place.glob("escaped*")), place


def test_an_archive_that_is_not_the_code_it_claims_is_named_by_verify(small_runs, tmp_path):
    notebook = nbformat.read(small_runs["a"] / "report.ipynb", as_version=4)
    library = notebook.metadata.repro.rerun.code.library
    files = snapshot.unarchive(library.archive)
    files["repro/kernel/measure.py"] += b"\nimport os  # planted\n"
    library.archive = snapshot.archive(files)  # the claimed sha256 is left as it was
    meta = notebook.metadata.repro
    meta.integrity = integrity.seal({k: v for k, v in meta.items() if k != "integrity"}, notebook)
    report = tmp_path / "report.ipynb"
    nbformat.write(notebook, report)
    done = repro("verify", str(report))
    assert done.returncode == 1
    assert "the library archive it carries does not match its recorded sha256" in done.stdout
    stderr = refused(str(report), tmp_path / "runs", code=1)
    assert "the report changed after its run" in stderr


def test_a_report_edited_after_its_run_is_not_rerun_without_trust(small_runs, tmp_path):
    folder = shutil.copytree(small_runs["a"], tmp_path / "edited")
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["summary"]["throughput"]["samples_per_s"] *= 2
    (folder / "metrics.json").write_text(json.dumps(metrics))
    stderr = refused(str(folder), tmp_path / "runs", code=1)
    assert "the report fails verification: metrics.json was modified" in stderr


def test_an_environment_json_that_disagrees_with_the_report_is_named(small_runs, tmp_path):
    folder = shutil.copytree(small_runs["a"], tmp_path / "env")
    environment = json.loads((folder / "environment.json").read_text())
    environment["cpu"]["model"] = "A faster CPU"
    (folder / "environment.json").write_text(json.dumps(environment))
    (folder / "MANIFEST.sha256").write_text("\n".join(integrity.manifest_lines(folder)) + "\n")
    done = repro("verify", str(folder))
    assert done.returncode == 1
    assert "environment.json differs from the environment the report records" in done.stdout


def js_numbers(value):
    """JSON as JavaScript holds it: one number type, so 1.0 is 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: js_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [js_numbers(v) for v in value]
    return value


def lab_save(path) -> None:
    """What JupyterLab writes when it autosaves a report it opened: its JavaScript model of the
    notebook (numbers, merged streams, images without a trailing newline, cell ids, the running
    kernel's language_info) saved by the Jupyter server with nbformat."""
    notebook = js_numbers(json.loads(path.read_text()))
    notebook["metadata"]["language_info"]["version"] = "3.11.7"
    for cell in notebook["cells"]:
        cell.setdefault("id", uuid.uuid4().hex[:8])
        cell["metadata"]["trusted"] = True
        outputs = []
        for output in cell.get("outputs", []):
            output.pop("transient", None)
            if output["output_type"] == "stream":
                output["text"] = "".join(output["text"])
                if outputs and outputs[-1].get("name") == output["name"]:
                    outputs[-1]["text"] += output["text"]
                    continue
            for mime, value in output.get("data", {}).items():
                if mime == "image/png":
                    output["data"][mime] = "".join(value).rstrip("\n")
            outputs.append(output)
        if cell["cell_type"] == "code":
            cell["outputs"] = outputs
    path.write_text(nbformat.writes(nbformat.from_dict(notebook)))


def test_a_report_saved_by_jupyterlab_or_nbformat_still_verifies(small_runs, tmp_path):
    folder = shutil.copytree(small_runs["a"], tmp_path / "opened")
    report = folder / "report.ipynb"
    spec = nbformat.read(report, as_version=4).metadata.kernelspec
    assert spec == {
        "name": "repro-torch-cpu",
        "display_name": "repro torch-cpu",
        "language": "python",
    }  # Lab opens the report in the kernel it ran in
    before = json.loads(report.read_text())
    nbformat.write(nbformat.read(report, as_version=4), report)  # nbformat's round trip
    assert repro("verify", str(folder)).returncode == 0
    lab_save(report)
    assert json.loads(report.read_text()) != before  # Lab changed the JSON, not the content
    for target in (folder, report):
        done = repro("verify", str(target))
        assert done.returncode == 0 and "intact" in done.stdout, done.stdout

    notebook = nbformat.read(report, as_version=4)  # a real edit is still caught
    index = next(i for i, c in enumerate(notebook.cells) if "report.results(" in c.source)
    output = notebook.cells[index].outputs[0]
    output.data["text/markdown"] = output.data["text/markdown"].replace("|", "| 9", 1)
    nbformat.write(notebook, report)
    done = repro("verify", str(folder))
    assert done.returncode == 1 and f"cell {index} changed" in done.stdout
    assert "report.ipynb was modified" in done.stdout


def set_in(notebook, path: str, value):
    """Set `path` (dotted, from the report's repro metadata; `results.` for its metrics output)."""
    head, *keys = path.split(".")
    if head == "results":
        outputs = [o for c in notebook.cells for o in c.get("outputs", [])]
        results = [o.data[MIME] for o in outputs if MIME in o.get("data", {})]
        node = next(r["data"] for r in results if r["kind"] == "metrics")
    else:
        node = notebook.metadata.repro[head]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value


MALFORMED = {  # what a hand-edited or forged report may hold where repro wrote something else
    "rerun.workload.model": {},
    "rerun.workload.model.config": [],
    "rerun.workload.batch_size": "4",
    "rerun.params.batch_size": [1],
    "rerun.params.lr": float("nan"),
    "rerun.code.library.archive": "not base64!",
    "rerun.code.template.text": "{}",
    "rerun.lock": 42,
    "environment.gpu": "none",
    "environment.packages": [1, 2],
    "run.run_id": "../x",
    "results.samples.step_s": [0.1, -1],
    "results.energy": 3,
}


@pytest.mark.parametrize("path", MALFORMED)
def test_a_malformed_report_is_bad_input_never_a_crash(path, small_runs):
    notebook = nbformat.read(small_runs["a"] / "report.ipynb", as_version=4)
    set_in(notebook, path, MALFORMED[path])
    with pytest.raises(UserError, match="the report"):
        plan.resolve(**rerun_request(notebook))


def rerun_request(notebook) -> dict:
    """What `repro rerun` would hand plan.resolve for `notebook` (nothing runs)."""
    report = untrusted.read(notebook)
    return {
        "workload": report.workload["name"],
        "framework": report.framework,
        "params": report.params,
        "spec": report.workload,
    }
