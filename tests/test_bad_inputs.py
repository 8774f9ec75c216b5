"""Bad input on every entry point: one line on stderr, exit code 2, before any heavy work
(vla/cli.py); --debug / VLA_DEBUG=1 add the traceback; docs/errors.md lists every case.

The cases live in vla/bench/bad_inputs.py (scripts/bad_inputs.py writes the table from them).
The few that must import LeRobot to parse a config (~15 s each) carry the slow marker.
"""

import json
from pathlib import Path

import pytest

from vla import cli
from vla.bench.bad_inputs import BEGIN, CASES, END, make_fixtures, render, run_case, write_checkpoint
from vla.policies import preflight

ROOT = Path(__file__).resolve().parents[1]
NEEDS_LEROBOT = {"--policy.chunk_size=-1", "--policy.decoder=beam", "--policy.chunk_size=five", "--output_dir=dataset"}
SEEN: dict[int, tuple[int, list[str]]] = {}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return make_fixtures(tmp_path_factory.mktemp("bad_inputs"))


def result(i, folder):
    if i not in SEEN:
        SEEN[i] = run_case(CASES[i], folder)
    return SEEN[i]


def test_every_entry_point_has_cases():
    scripts = {"train.py", "eval.py", "collect_demos.py", "serve.py", "run_controller.py", "pipeline.py",
               "results_tabletop.py", "results_metaworld.py", "ablate_recipe.py"}
    assert {c.script for c in CASES} == scripts


@pytest.mark.parametrize("i", [pytest.param(i, id=f"{c.script} {' '.join(c.args)}"[:90],
                                            marks=[pytest.mark.slow] if NEEDS_LEROBOT & set(c.args) else [])
                               for i, c in enumerate(CASES)])
def test_bad_input_fails_with_one_line_and_exit_code_2(i, fixtures):
    code, lines = result(i, fixtures)
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"{CASES[i].script}: error: "), lines
    assert CASES[i].expect in lines[0], lines


@pytest.mark.slow
def test_docs_table_is_current(fixtures):
    table = render([(c, *result(i, fixtures)) for i, c in enumerate(CASES)])
    text = (ROOT / "docs" / "errors.md").read_text()
    assert text.split(BEGIN)[1].split(END)[0].strip() == table, "re-run python scripts/bad_inputs.py"


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback_and_keeps_exit_code_2(fixtures, how):
    case = next(c for c in CASES if c.script == "serve.py" and "--port" in c.args)
    args = (*case.args, "--debug") if how == "flag" else case.args
    code, lines = run_case(type(case)(case.script, args, case.expect), fixtures,
                           env={"VLA_DEBUG": "1"} if how == "env" else None)
    assert code == 2 and lines[0] == "Traceback (most recent call last):" and "UsageError" in "\n".join(lines)
    assert lines[-1].startswith("serve.py: error: --port 70000")


def test_run_passes_the_return_code_and_leaves_bugs_their_traceback():
    with pytest.raises(SystemExit) as done:
        cli.run(lambda argv: 3 if argv == ["x"] else 0, ["x", "--debug"])
    assert done.value.code == 3
    with pytest.raises(ZeroDivisionError):  # not bad input: Python's traceback, exit code 1
        cli.run(lambda argv: 1 // 0, [])


def test_resume_falls_back_to_the_newest_whole_checkpoint(tmp_path):
    ckpts = tmp_path / "out" / "checkpoints"
    write_checkpoint(ckpts, 2)
    write_checkpoint(ckpts, 4)
    write_checkpoint(ckpts, 6, truncated=True)  # `last`
    argv = [f"--config_path={ckpts / 'last' / 'pretrained_model' / 'train_config.json'}", "--resume=true"]
    new, warning = preflight.resume_checkpoint(argv)
    assert new == [f"--config_path={ckpts / '000004' / 'pretrained_model' / 'train_config.json'}", "--resume=true"]
    assert "model.safetensors is truncated" in warning and "resuming from" in warning and "000004" in warning
    assert preflight.resume_checkpoint(new) == (new, None)  # a whole checkpoint resumes as asked
    assert preflight.resume_checkpoint(["--config_path=x.json"]) == (["--config_path=x.json"], None)  # no resume


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("training_step.json", '{"step": "4"}', "holds no integer 'step'"),
    ("training_step.json", "", "is not valid JSON"),
    ("model.safetensors", b"\x10\x00", "is truncated (2 bytes)"),
    ("model.safetensors", b"\x05\x00\x00\x00\x00\x00\x00\x00{oops", "corrupt safetensors header"),
])
def test_file_problem_names_what_is_broken(tmp_path, name, content, problem):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert problem in preflight.file_problem(path)


def test_whole_files_pass(tmp_path):
    ckpt = write_checkpoint(tmp_path / "checkpoints", 2)
    assert preflight.checkpoint_problem(ckpt) is None
    assert json.loads((ckpt / "training_state" / "training_step.json").read_text()) == {"step": 2}
