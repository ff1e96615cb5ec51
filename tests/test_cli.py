"""The grace command line: tiny-models, rank, and exit status 2 with one line on bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grace_cli.main import main
from grace_engine.tiny_models import TinyModels


def test_tiny_models_command_builds_loadable_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tiny-models", str(tmp_path / "t"), "--steps", "4"]) == 0
    out = capsys.readouterr().out
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
    with pytest.raises(SystemExit) as exit_info:
        main(["rank", "--student", "s", "--candidates", "c", "--prompts", "p", "--proj-dim", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


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
    from grace_engine.tiny_models import gsm8k_records

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
