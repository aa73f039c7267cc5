"""Sweeps: the values a flag or a sweep: block gives, the tasks they make, what may not vary, the
job-array script (each task's program chosen by SLURM_ARRAY_TASK_ID), submit's sbatch file, results."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from hpc_runner import cli, job_control, render, results, spec, submit, sweep
from hpc_runner.errors import InputError, SpecError
from hpc_runner.run_config import RunConfig

from .conftest import EMULATOR, make_fake_srun
from .test_one_job import directives

LR_HIDDEN = ("entrypoint.params.lr=0.1,0.01", "entrypoint.params.hidden=8,16,32")


def sweep_request(tmp_path: Path, sweeps: tuple[str, ...] = LR_HIDDEN, sets: tuple[str, ...] = (), throttle: int | None = None,
                  path: str = EMULATOR):
    return cli.load_request(path, {}, (f"output_dir={tmp_path / 'out'}", *sets), sweeps, throttle)


# --- values -----------------------------------------------------------------------------------------

def test_flag_values_are_split_on_commas_and_read_as_yaml_scalars() -> None:
    axis = sweep.parse_flag("entrypoint.params.opt=adam,0.5,3,true,1e-3,-2E4,null")
    assert axis.key == "entrypoint.params.opt"
    assert axis.values == ("adam", 0.5, 3, True, 0.001, -20000.0, None)  # 1e-3 is a number (YAML 1.2), not a string


@pytest.mark.parametrize("bad", ["lr", "=0.1", "lr=", "entrypoint.params.x=[1,2]", "lr=0.1,,0.2", "lr=0.1,",
                                 "tag='a,b'"])
def test_malformed_flags_say_how_to_write_one(bad: str) -> None:
    with pytest.raises(SpecError, match=r"--sweep"):
        sweep.parse_flag(bad)


def test_a_flag_replaces_the_blocks_list_for_its_key_and_adds_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(Path(EMULATOR).read_text() + "sweep:\n  entrypoint.params.lr: [1.0, 2.0]\n  entrypoint.params.seed: [0, 1]\n"
                    "  throttle: 3\n")
    from_spec = spec.load(path).sweep
    combined = sweep.combine(from_spec, ("entrypoint.params.lr=0.5",), None)
    assert [(a.key, a.values) for a in combined.axes] == [("entrypoint.params.lr", (0.5,)), ("entrypoint.params.seed", (0, 1))]
    assert combined.throttle == 3
    assert sweep.combine(from_spec, (), 1).throttle == 1  # the flag wins


@pytest.mark.parametrize(("block", "message"), [
    ("sweep: [1, 2]\n", "expected a mapping"),
    ("sweep:\n  entrypoint.params.lr: 0.1\n", "expected a list"),
    ("sweep:\n  entrypoint.params.lr: []\n", "at least one value"),
    ("sweep:\n  throttle: 2\n", "names no key"),
    ("sweep:\n  entrypoint.params.lr: [0.1]\n  throttle: 0\n", "must be >= 1"),
    ("sweep:\n  'bad key': [1]\n", "sweep key"),
])
def test_a_bad_sweep_block_is_refused_naming_the_key(tmp_path: Path, block: str, message: str) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(Path(EMULATOR).read_text() + block)
    with pytest.raises(SpecError, match=message):
        spec.load(path)


def test_flags_given_twice_duplicate_values_and_a_throttle_without_a_sweep_are_refused() -> None:
    with pytest.raises(SpecError, match="given twice"):
        sweep.combine(None, ("a.b=1,2", "a.b=3"), None)
    with pytest.raises(SpecError, match="listed twice"):
        sweep.combine(None, ("entrypoint.params.lr=0.1,0.1",), None)
    assert len(sweep.combine(None, ("entrypoint.params.flag=1,true",), None).axes[0].values) == 2  # 1 == True in Python
    with pytest.raises(SpecError, match="nothing is swept"):
        sweep.combine(None, (), 2)
    with pytest.raises(SpecError, match="1 or more"):
        sweep.combine(None, ("entrypoint.params.lr=1,2",), 0)


# --- one shape --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["nodes=1,2", "time=10,20", "partition=a,b", "mode=gloo,threading", "ntasks_per_node=1,2",
                                 "env.FOO=a,b", "output_dir=a,b"])
def test_keys_that_change_the_resources_or_the_script_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(SpecError, match=rf"sweep over {key.split('=')[0]}:"):
        sweep_request(tmp_path, (key,))


def test_any_other_key_that_changes_what_slurm_sees_is_caught_by_comparing_the_tasks(tmp_path: Path) -> None:
    # requeue.seconds_before is no resource, but it is the --signal directive: one array, one directive.
    with pytest.raises(SpecError, match=r"sweep over requeue.seconds_before: the tasks differ in directives .*signal"):
        sweep_request(tmp_path, ("requeue.seconds_before=30,45",))


def test_a_swept_key_the_spec_does_not_know_fails_like_set_would(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="unknown key"):
        sweep_request(tmp_path, ("epochs=1,2",))


# --- the tasks --------------------------------------------------------------------------------------

def test_the_product_is_one_task_per_combination_each_with_its_own_folder_and_program(tmp_path: Path) -> None:
    request = sweep_request(tmp_path)
    tasks = request.array.tasks
    assert [dict(t.values) for t in tasks] == [{"entrypoint.params.lr": lr, "entrypoint.params.hidden": h}
                                               for lr in (0.1, 0.01) for h in (8, 16, 32)]
    assert [Path(t.output_dir).name for t in tasks] == ["0-lr=0.1_hidden=8", "1-lr=0.1_hidden=16", "2-lr=0.1_hidden=32",
                                                        "3-lr=0.01_hidden=8", "4-lr=0.01_hidden=16", "5-lr=0.01_hidden=32"]
    assert request.output_dir == str(tmp_path / "out") and request.array.table == str(tmp_path / "out" / "sweep.json")
    for task in tasks:
        config = RunConfig.from_argv(list(task.program[task.program.index("hpc_runner.entrypoint") + 1:]))
        assert config.output_dir == task.output_dir
        assert (config.entry.params["lr"], config.entry.params["hidden"]) == tuple(v for _, v in task.values)


def test_keys_sharing_a_last_part_keep_their_full_name_in_labels() -> None:
    names = sweep.short_names(["entrypoint.params.lr", "data.lr", "data.samples"])
    assert names == {"entrypoint.params.lr": "entrypoint.params.lr", "data.lr": "data.lr", "data.samples": "samples"}
    assert sweep.label((("a.x", "p/q r"),), {"a.x": "x"}) == "x=p-q-r"  # safe in a folder name


# --- the array script -------------------------------------------------------------------------------

def run_task(script: str, task: int | None, tmp_path: Path) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the rendered array script as SLURM would run array task ``task``, with the fake srun."""
    fake = make_fake_srun(tmp_path)
    path, argv_out = tmp_path / "job.sh", tmp_path / "argv"
    path.write_text(script)
    argv_out.unlink(missing_ok=True)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "ARGV_OUT": str(argv_out), "ENV_OUT": str(tmp_path / "env"), "HOME": str(tmp_path)}
    if task is not None:
        env |= {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_JOB_ID": "4242"}
    done = subprocess.run(["bash", str(path)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    return done, argv_out.read_bytes().decode().split("\0")[:-1] if argv_out.exists() else []


def test_the_array_script_starts_each_tasks_own_program_and_writes_the_table(tmp_path: Path) -> None:
    request = sweep_request(tmp_path, throttle=2)
    script = render.render(request)
    assert "#SBATCH --array=0-5%2" in script and "#SBATCH --output=emulator-%A_%a.out" in script
    for task in (0, 4):
        done, argv = run_task(script, task, tmp_path)
        assert done.returncode == 0, done.stderr
        assert tuple(argv[-len(request.array.tasks[task].program):]) == request.array.tasks[task].program
    table = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert table["job_id"] == "4242" and [t["label"] for t in table["tasks"]] == [t.label for t in request.array.tasks]


@pytest.mark.parametrize("task", [None, 6])
def test_the_array_script_outside_an_array_task_says_so_and_starts_nothing(tmp_path: Path, task: int | None) -> None:
    done, argv = run_task(render.render(sweep_request(tmp_path)), task, tmp_path)
    assert done.returncode == 2 and argv == []
    assert "is a job array of tasks 0-5" in done.stderr and f"SLURM_ARRAY_TASK_ID={'unset' if task is None else task}" in done.stderr


def test_submit_writes_the_same_array_as_render(tmp_path: Path) -> None:
    request = sweep_request(tmp_path, throttle=3)
    submission = submit.plan(request, "slurm")
    ours, theirs = directives(render.render(request)), directives(submission.sbatch_text())
    for key in ("output", "error", "open-mode", "wckey"):
        ours.pop(key, None)
        theirs.pop(key, None)
    assert ours == theirs and ours["array"] == "0-5%3"
    assert [t.program for t in submission.array_tasks] == [t.program for t in request.array.tasks]
    assert len({t.local_port for t in submit.plan(request, "local").array_tasks}) == 6  # local tasks never share a port


def test_render_and_submit_dry_run_print_the_task_table(runner, tmp_path: Path) -> None:
    args = [EMULATOR, "--set", f"output_dir={tmp_path}", "--sweep", LR_HIDDEN[0], "--sweep", LR_HIDDEN[1]]
    for command in (["render"], ["submit", "--dry-run", "--executor", "slurm"], ["submit", "--dry-run", "--executor", "local"]):
        result = runner.invoke(cli.cli, [*command, *args])
        assert result.exit_code == 0, result.output
        assert "# sweep: 6 task(s) as one job array (--array=0-5%6)" in result.output
        assert f"#   task 5: lr=0.01_hidden=32 -> {tmp_path}/5-lr=0.01_hidden=32" in result.output


def test_follow_is_refused_for_a_sweep(runner, tmp_path: Path) -> None:
    result = runner.invoke(cli.cli, ["submit", EMULATOR, "--sweep", LR_HIDDEN[0], "--follow", "--executor", "local"])
    assert result.exit_code == 2 and "a sweep is many jobs" in result.output


# --- status of an array -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "ids"), [("3", [3]), ("[2-5%2]", [2, 3, 4, 5]), ("0,3-4", [0, 3, 4]), ("[7]", [7])])
def test_task_ids_as_slurm_prints_them(text: str, ids: list[int]) -> None:
    assert job_control.expand_task_ids(text) == ids


def test_an_arrays_status_lists_each_task_pending_ranges_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    scontrol = ("JobId=12 ArrayJobId=10 ArrayTaskId=2 JobState=RUNNING NodeList=n3 RunTime=00:00:05 ExitCode=0:0\n"
                "JobId=10 ArrayJobId=10 ArrayTaskId=3-4%2 JobState=PENDING NodeList=(null) RunTime=00:00:00 ExitCode=0:0\n")
    sacct = "10_0|COMPLETED|n1|00:00:09|0:0\n10_1|FAILED|n2|00:00:03|1:0\n10_2|RUNNING|n3|00:00:05|0:0\n"

    def fake_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(argv, 0, scontrol if argv[0] == "scontrol" else sacct, "")

    monkeypatch.setattr(job_control, "_run", fake_run)
    tasks = job_control.array_tasks("10")
    assert [(t.job_id, t.state) for t in tasks] == [("10_0", "COMPLETED"), ("10_1", "FAILED"), ("10_2", "RUNNING"),
                                                    ("10_3", "PENDING"), ("10_4", "PENDING")]
    summary = job_control.status("10")
    assert summary.state == "RUNNING (array of 5: 1 COMPLETED, 1 FAILED, 2 PENDING, 1 RUNNING)" and not summary.finished
    sacct, scontrol = sacct.replace("RUNNING", "COMPLETED"), ""
    assert job_control.status("10").state.startswith("FAILED (array of 3")  # ended: the worst end state


# --- results ----------------------------------------------------------------------------------------

def finished(tmp_path: Path, losses: dict[int, float | None]) -> results.Sweep:
    """A sweep's table on disk with the given tasks' metrics files (None: that task wrote none)."""
    request = sweep_request(tmp_path)
    sweep.write_table(request, EMULATOR, "99")
    for task in request.array.tasks:
        if losses.get(task.index) is not None:
            Path(task.output_dir).mkdir(parents=True)
            Path(task.output_dir, "metrics.json").write_text(json.dumps({"final_val_loss": losses[task.index], "nested": {"x": 1}}))
    return results.load(tmp_path / "out")


def test_results_sort_by_the_metric_missing_tasks_last_saying_why(tmp_path: Path) -> None:
    table = finished(tmp_path, {0: 0.5, 1: 0.2, 2: None, 3: 0.9, 4: 0.1, 5: 0.3})
    rows = results.ordered(results.collect(table, "final_val_loss"), descending=False)
    assert [r.index for r in rows] == [4, 1, 5, 0, 3, 2]
    assert rows[-1].value is None and "no metrics.json yet" in rows[-1].note
    assert [r.index for r in results.ordered(results.collect(table, "final_val_loss"), descending=True)][:2] == [3, 0]
    text = results.table(table, rows, "final_val_loss")
    assert "sweep emulator (job 99): 5 of 6 task(s) report final_val_loss" in text
    assert text.splitlines()[2].split()[:5] == ["1", "4", "0.01", "16", "0.1"]


def test_an_unknown_metric_names_those_that_exist(tmp_path: Path) -> None:
    table = finished(tmp_path, {0: 0.5})
    with pytest.raises(InputError, match=r"--metric takes one of final_val_loss, nested\.x"):
        results.collect(table, "val_loss")
    assert results.collect(table, "nested.x")[0].value == 1.0


def test_the_plot_has_one_panel_per_swept_key(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image

    table = finished(tmp_path, {i: 0.1 * (i + 1) for i in range(6)})
    one = results.plot(table, results.collect(table, "final_val_loss"), "final_val_loss", tmp_path / "two.png")
    assert Image.open(one).size == (840, 340)  # 2 keys x 4.2 in, 3.4 in, at 100 dpi


def test_results_of_a_folder_without_a_sweep_say_where_to_look(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no sweep was submitted"):
        results.load(tmp_path)


def test_a_command_that_runs_one_job_refuses_a_spec_with_a_sweep(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a sweep of 6 tasks, and this command runs one job"):
        submit.submit(submit.plan(sweep_request(tmp_path), "local"))


def test_a_folder_holding_another_sweeps_table_is_refused_the_same_sweep_again_is_not(tmp_path: Path) -> None:
    first = sweep_request(tmp_path)
    sweep.write_table(first, EMULATOR, "99")
    assert sweep_request(tmp_path).array == first.array  # resubmitted: each task resumes its own checkpoint
    with pytest.raises(SpecError, match=r"sweep.json belongs to another sweep \(6 task\(s\): lr=0.1_hidden=8, "):
        sweep_request(tmp_path, ("entrypoint.params.seed=1,2",))


def test_results_skip_metrics_older_than_the_latest_start_and_say_so(tmp_path: Path) -> None:
    import os

    table = finished(tmp_path, {0: 0.5, 1: 0.2})
    folder = Path(table.tasks[1]["output_dir"])
    (folder / "run.json").write_text("{}")  # the task started again (resubmitted) and has not finished
    os.utime(folder / "metrics.json", (1, 1))
    rows = results.collect(table, "final_val_loss")
    assert rows[0].value == 0.5 and rows[1].value is None and "from an earlier run" in rows[1].note


def test_results_say_a_diverged_metric_is_not_finite(tmp_path: Path) -> None:
    table = finished(tmp_path, {0: 0.5})
    Path(table.tasks[1]["output_dir"]).mkdir()
    Path(table.tasks[1]["output_dir"], "metrics.json").write_text('{"final_val_loss": NaN}')
    assert "is nan in metrics.json (diverged?)" in results.collect(table, "final_val_loss")[1].note


def test_results_find_a_moved_sweep_folder(tmp_path: Path) -> None:
    finished(tmp_path, {0: 0.5})
    (tmp_path / "out").rename(tmp_path / "moved")
    assert results.collect(results.load(tmp_path / "moved"), "final_val_loss")[0].value == 0.5


def test_the_plot_takes_swept_strings_holding_dollars_as_text(tmp_path: Path) -> None:
    request = sweep_request(tmp_path, ("entrypoint.params.tag=$HOME,a$b$c",))
    sweep.write_table(request, EMULATOR, "99")
    for task in request.array.tasks:
        Path(task.output_dir).mkdir(parents=True)
        Path(task.output_dir, "metrics.json").write_text('{"loss": 1.0}')
    table = results.load(tmp_path / "out")
    assert results.plot(table, results.collect(table, "loss"), "loss", tmp_path / "p.png").stat().st_size > 0


def test_only_this_tasks_id_is_requeued_in_an_array() -> None:
    from hpc_runner.requeue import this_job

    # Inside an array SLURM_JOB_ID can be the array's own id: `scontrol requeue` of it requeues every task.
    assert this_job({"SLURM_JOB_ID": "700", "SLURM_ARRAY_JOB_ID": "700", "SLURM_ARRAY_TASK_ID": "5"}) == "700_5"
    assert this_job({"SLURM_JOB_ID": "701"}) == "701"
    assert this_job({}) is None


def test_an_arrays_log_is_asked_for_by_task_and_its_elapsed_is_the_longest(monkeypatch: pytest.MonkeyPatch) -> None:
    sacct = "10_0|COMPLETED|n1|23:00:00|0:0\n10_1|COMPLETED|n2|1-00:00:00|0:0\n"
    monkeypatch.setattr(job_control, "_run", lambda argv: subprocess.CompletedProcess(
        argv, 0 if argv[0] == "sacct" else 1, sacct if argv[0] == "sacct" else "", ""))
    assert job_control.status("10").elapsed == "1-00:00:00"  # by duration, not by text
    with pytest.raises(InputError, match=r"job 10 is a job array of 2 task\(s\), one log each\n  hint: .*hpc-run logs 10_0"):
        job_control.log_lines("10", None, False)
