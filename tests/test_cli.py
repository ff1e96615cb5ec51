"""The grace command line: tiny-models, models, rank, and exit status 2 with one line on bad input."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grace_cli.main import build_parser, main
from grace_cli.service_cmd import client_for, progress_events
from grace_engine.models.data import DEFAULT_INSTRUCTION, StudentFormat
from grace_engine.models.tiny_models import TinyModels


def test_tiny_models_command_builds_loadable_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiny-models", str(tmp_path / "t"), "--steps", "24"]) == 0
    out, err = capsys.readouterr()
    for name in ("student", "tutor", "parrot"):  # a bar per model trained: never minutes of silence
        assert re.search(rf"train +{name} .*\b(\d+)/\1\b", err), err
    for name in ("student", "tutor", "parrot", "noise"):
        assert (tmp_path / "t" / name / "config.json").is_file()
        assert (tmp_path / "t" / name / "model.safetensors").is_file()
    assert "candidates.json" in out


def test_rank_prints_a_table_and_writes_json(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "result.json"
    code = main(
        [
            "rank",
            "--student",
            str(tiny.student),
            "--candidates",
            str(tiny.candidates_file),
            "--prompts",
            str(tiny.prompts_file),
            "-m",
            "2",
            "--proj-dim",
            "128",
            "--splits",
            "5",
            "--gradient-space",
            "lora",
            "--seed",
            "3",
            "--out",
            str(out_file),
            "--quiet",
            "--response-cache",
            str(tmp_path / "responses"),
            "--memory-budget",
            "4",
        ]
    )
    assert code == 0
    stdout = capsys.readouterr().out
    result = json.loads(out_file.read_text())
    names = [r["name"] for r in result["ranking"]]
    assert len(names) == 5
    assert names[-1] == "noise"
    assert result["config"]["proj_dim"] == 128
    assert result["config"]["gradient_space"]["kind"] == "lora"
    assert all(len(c["grace"]["split_scores"]) == 5 for c in result["candidates"].values())
    assert all(len(group) == 2 for c in result["candidates"].values() for group in c["responses"])
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["rank", "candidate", "GRACE"]
    assert lines[2].split()[1] == names[0]  # best teacher on the first row
    assert any(f.suffix == ".json" for f in (tmp_path / "responses").iterdir())
    assert result["memory_budget_gb"] == 4
    # 24 prompts, 2 held out per split, m = 2: 44 training rows against d = 128.
    small = next(w for w in result["warnings"] if w["code"] == "small_sample")
    assert (small["train_rows"], small["proj_dim"]) == (44, 128)
    assert any(line.startswith("warning [small_sample]: each split trains on 44") for line in lines)
    assert any(line.startswith("Ranked by grace: ") for line in lines)
    # The guidance: the tutor was sampled at three temperatures, and two families compete.
    guidance = result["guidance"]
    (tutor,) = [c for c in guidance["best_temperature"] if c["model"].endswith("tutor")]
    assert tutor["temperatures"] == [0.3, 0.6, 1.3]
    assert any(
        line.startswith(f"best temperature for {tutor['model']}: {tutor['temperature']:g} (")
        for line in lines
    )
    assert {c["family"]: c["n_candidates"] for c in guidance["best_per_family"]} == {"gpt2": 4, "llama": 1}
    assert any(line.startswith("best llama: parrot (rank ") for line in lines)
    # grace export: one example per prompt, loadable as a Hugging Face dataset, in either form.
    export = tmp_path / "mixed.jsonl"
    assert main(["export", str(out_file), "--out", str(export)]) == 0
    assert "wrote 24 chat examples" in capsys.readouterr().out
    datasets = pytest.importorskip("datasets")
    loaded = datasets.load_dataset("json", data_files=str(export), split="train")
    assert len(loaded) == 24
    assert set(loaded["teacher"]) <= set(names)
    assert all(len(m) == 2 for m in loaded["messages"])
    assert loaded["messages"][0][0]["content"].startswith(DEFAULT_INSTRUCTION)  # what the teacher saw
    assert main(["export", str(out_file), "--out", str(export), "--format", "prompt_completion"]) == 0
    assert "wrote 24 prompt_completion examples" in capsys.readouterr().out
    first = json.loads(export.read_text("utf-8").splitlines()[0])
    assert first["prompt"] == StudentFormat().head(
        json.loads(tiny.prompts_file.read_text().splitlines()[0])["prompt"]
    )


def _run_bad(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("grace: error: ")
    return err


def test_bad_input_exits_2_with_one_line(
    tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["rank", "--student", str(tiny.student), "--quiet"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    err = _run_bad([*base, "--candidates", str(tiny.candidates_file), "--prompts", str(empty)], capsys)
    assert "prompts: the prompt list is empty" in err

    ghost = tmp_path / "ghost.json"
    ghost.write_text(json.dumps([{"name": "ghost", "model": str(tiny.root / "no-such-teacher")}]))
    err = _run_bad([*base, "--candidates", str(ghost), "--prompts", str(tiny.prompts_file)], capsys)
    assert "candidates[0].model" in err
    assert "no model at" in err

    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    err = _run_bad([*base, "--candidates", str(broken), "--prompts", str(tiny.prompts_file)], capsys)
    assert "candidates: not valid JSON" in err

    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps([{"name": "t", "model": "tutor", "temprature": 0.7}]))
    err = _run_bad([*base, "--candidates", str(typo), "--prompts", str(tiny.prompts_file)], capsys)
    assert "candidates[0]: unknown key(s) temprature" in err


def test_argument_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """A setting out of range is refused before any file is read, naming the field as the API does."""
    assert main(["rank", "--student", "s", "--candidates", "c", "--prompts", "p", "--proj-dim", "0"]) == 2
    err = capsys.readouterr().err
    assert "scoring.proj_dim" in err
    assert "from 1 to" in err
    with pytest.raises(SystemExit) as exit_info:  # what argparse itself refuses
        main(["rank", "--student", "s", "--candidates", "c", "--prompts", "p", "--n-splits", "x"])
    assert exit_info.value.code == 2


def test_console_script_is_installed() -> None:
    script = shutil.which("grace", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run([script, "rank", "--help"], capture_output=True, text=True, check=True)
    assert "--gradient-space" in done.stdout


def test_scaling_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            ["scaling", "predict", "--n-student", "1e9", "--student-tokens", "2e10", "--teacher-loss", "2.0"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "2.2768" in out
    assert "helps" in out
    assert main(["scaling", "plan", "--n-student", "1e9", "--compute", "1e21"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        "best_case",
        "teacher_inference",
        "teacher_pretraining",
        "teacher_pretraining_and_inference",
    ]
    assert lines[1].split()[4:6] == ["free", "free"]
    err = _run_bad(
        ["scaling", "predict", "--n-student", "1e9", "--student-tokens", "1e9", "--teacher-loss", "1.0"],
        capsys,
    )
    assert "teacher_loss" in err


def test_influence_command(tiny: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from grace_engine.models.tiny_models import gsm8k_records

    validation = tmp_path / "val.jsonl"
    validation.write_text(
        "".join(json.dumps(r) + "\n" for r in gsm8k_records()[30:34])
    )  # GSM8K lines as they are
    out_file = tmp_path / "influence.json"
    code = main(
        [
            "influence",
            "--student",
            str(tiny.student),
            "--candidates",
            str(tiny.candidates_file),
            "--prompts",
            str(tiny.prompts_file),
            "--validation",
            str(validation),
            "-m",
            "1",
            "--proj-dim",
            "256",
            "--keep-fraction",
            "0.5",
            "--out",
            str(out_file),
        ]
    )
    assert code == 0
    result = json.loads(out_file.read_text())
    assert len(result["responses"]) == 5 * 24
    assert all(r["influence"] > 0 for r in result["selected"])
    assert len(result["selected"]) <= 60
    assert "mean influence" in capsys.readouterr().out
    # Its --out says how the texts were scored, so `grace export` can write what was scored.
    assert result["config"]["proj_dim"] == 256
    export = tmp_path / "mixed.jsonl"
    assert main(["export", str(out_file), "--out", str(export), "--format", "prompt_completion"]) == 0
    assert "routed by influence" in capsys.readouterr().out
    assert json.loads(export.read_text("utf-8").splitlines()[0])["prompt"].startswith("### Problem:\n")


def test_models_smollm2_on_a_converted_directory_is_a_no_op(
    smollm2_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()}
    assert main(["models", "smollm2", str(smollm2_dir)]) == 0
    out = capsys.readouterr().out
    assert "134,515,008 parameters" in out
    assert f"already converted in {smollm2_dir}; nothing to do" in out
    assert {p.name: p.stat().st_mtime_ns for p in smollm2_dir.iterdir()} == before  # nothing rewritten


def test_models_smollm2_console_script_fast_path_never_imports_transformers(smollm2_dir: Path) -> None:
    script = shutil.which("grace", path=str(Path(sys.executable).parent))
    assert script is not None
    done = subprocess.run(
        [script, "models", "smollm2", str(smollm2_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "nothing to do" in done.stdout
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:")
    }
    assert "grace_engine.models.smollm2" in imported  # the profile is there ...
    assert "transformers" not in imported  # ... and no model code was loaded, let alone the GGUF


# Run in one fresh interpreter: each command's imports add up, so one heavy import anywhere shows.
_SERVICE_COMMANDS = """
import sys
from grace_cli.main import main

for argv in sys.argv[1:]:
    try:
        main(argv.split())
    except SystemExit:
        pass  # --help and argparse errors
print(sorted(m for m in ("torch", "numpy", "scipy", "transformers") if m in sys.modules))
"""


def test_service_and_admin_commands_never_import_the_model_stack(tmp_path: Path) -> None:
    """``--help``, ``--version``, the HTTP commands and the key administration answer without
    torch, numpy or transformers: those cost seconds per call, and these commands need none."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"id": "a", "prompt": "1 + 1?"}\n')
    down = "--url http://127.0.0.1:9"  # nothing listens: each command fails after its imports
    commands = [
        "--help",
        "--version",
        f"jobs list {down}",
        f"jobs show x {down}",
        f"datasets upload {prompts} {down}",
        f"leaderboard --student s --dataset d {down}",
        "migrate",
        "keys list --tenant lab",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRACE_")}
    env["GRACE_DATA_DIR"] = str(tmp_path / "data")
    env["GRACE_RETRY_FOR"] = "0"  # each refused connection fails at once, not after the retries
    done = subprocess.run(
        [sys.executable, "-c", _SERVICE_COMMANDS, *commands],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "database at head" in done.stdout  # the commands did run, not only parse
    assert "cannot reach" in done.stderr
    assert done.stdout.splitlines()[-1] == "[]", done.stdout[-500:]


def test_service_commands_retry_for_the_seconds_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRACE_RETRY_FOR", raising=False)
    default = build_parser().parse_args(["jobs", "list"])
    asked = build_parser().parse_args(["jobs", "list", "--retry-for", "0"])
    assert client_for(default).retry.max_seconds == 15
    assert client_for(asked).retry.max_seconds == 0
    monkeypatch.setenv("GRACE_RETRY_FOR", "3")
    assert (
        client_for(
            build_parser().parse_args(["leaderboard", "--student", "s", "--dataset", "d"])
        ).retry.max_seconds
        == 3
    )


def test_models_smollm2_without_a_converter_module_exits_2_saying_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "gguf", None)  # what `import gguf` meets when it is not installed
    err = _run_bad(["models", "smollm2", str(tmp_path / "smollm2")], capsys)
    assert err.startswith("grace: error: gguf: ")
    assert "pip install gguf accelerate" in err
    assert "bash scripts/setup.sh" in err
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_following_a_job_says_how_to_resume(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from grace_client import Client

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Client, "wait", interrupted)
    assert main(["jobs", "wait", "job-42", "--url", "http://127.0.0.1:9"]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("grace: interrupted; job job-42 keeps running")
    assert "`grace jobs wait job-42`" in err
    assert "`grace jobs cancel job-42`" in err


def test_a_condition_several_candidates_share_is_one_warning_line() -> None:
    from grace_cli.report import format_warnings

    def cut(name: str, n: int) -> dict[str, object]:
        message = f"{n} of 48 responses of {name!r} stopped at max_tokens=96 before the teacher ended them"
        return {
            "code": "responses_at_max_tokens",
            "message": message,
            "candidate": name,
            "n_responses": n,
            "total": 48,
        }

    few = {"code": "few_prompts", "message": "only 6 prompts", "n_prompts": 6, "minimum": 10}
    lines = format_warnings([cut("a", 12), few, cut("b", 20), cut("c", 30)]).splitlines()
    assert lines == [
        "warning [responses_at_max_tokens]: 12 of 48 responses of 'a' stopped at max_tokens=96 before the "
        "teacher ended them (likewise 'b' 20 of 48, 'c' 30 of 48)",
        "warning [few_prompts]: only 6 prompts",
    ]
    assert format_warnings([cut("a", 12)]).count("\n") == 0
    assert format_warnings([]) == ""


def test_keys_before_migrate_say_to_migrate_instead_of_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("GRACE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GRACE_DATA_DIR", str(tmp_path / "data"))
    assert "run `grace migrate` first" in _run_bad(["keys", "create", "--tenant", "lab"], capsys)
    (tmp_path / "data").mkdir()  # a data directory, but no schema in it
    err = _run_bad(["keys", "create", "--tenant", "lab"], capsys)
    assert "the database is empty" in err
    assert "run `grace migrate` first" in err
    assert main(["migrate"]) == 0
    assert main(["keys", "create", "--tenant", "lab"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("gk_")


def test_service_progress_shows_every_stage_the_job_reports() -> None:
    """`grace submit` and `grace jobs wait` draw a bar for each stage a candidate reports, scoring
    and its uncertainty included, in the job's order; a stage not yet reached draws nothing."""
    job = {
        "progress": {
            "candidates": {
                "tutor": {
                    "generate": {"done": 6, "total": 6},
                    "gradients": {"done": 12, "total": 12},
                    "score": {"done": 10, "total": 10},
                    "uncertainty": {"done": 7, "total": 20},
                    "distil": None,
                }
            }
        }
    }
    events = progress_events(job)
    assert [(e.stage, e.done, e.total, e.candidate) for e in events] == [
        ("generate", 6, 6, "tutor"),
        ("gradients", 12, 12, "tutor"),
        ("score", 10, 10, "tutor"),
        ("uncertainty", 7, 20, "tutor"),
    ]
