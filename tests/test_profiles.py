"""Site profiles: which file wins, how env/setup/modules merge, the errors, and what render and submit make of them."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from hpc_runner import profiles, render, request
from hpc_runner.cli import cli
from hpc_runner.errors import SpecError

from .conftest import make_fake_srun, run_with_fake_srun
from .test_one_job import compare

SPEC = {"name": "job", "mode": "gloo", "entrypoint": {"function": "hpc_runner.demo.echo:run"}}
USER, PROJECT = "<user>: profile site", "hpc_runner.yaml: profile site"  # <user>: the user file's path


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def load(tmp_path: Path, user: dict | None = None, project: dict | None = None, spec: dict | None = None,
         overrides: list[tuple[str, Any, str]] | None = None, profile: str | None = "site",
         user_text: str | None = None, project_text: str | None = None) -> profiles.LayeredSpec:
    """profiles.load on a project folder (tmp_path/proj, no git: the current directory is the project)."""
    root = tmp_path / "proj"
    root.mkdir(exist_ok=True)
    if user is not None or user_text is not None:
        write(tmp_path / "user.yaml", user_text if user_text is not None else {"profiles": {"site": user}})
    if project is not None or project_text is not None:
        write(root / "hpc_runner.yaml", project_text if project_text is not None else {"profiles": {"site": project}})
    write(root / "job.yaml", {k: v for k, v in {**SPEC, **(spec or {})}.items() if v is not None})
    return profiles.load("job.yaml", overrides or [], profile, str(root), {profiles.USER_CONFIG_VAR: str(tmp_path / "user.yaml")})


# One row per combination of layers: what each layer says, then the final values and their sources.
PRECEDENCE = [
    pytest.param(None, None, {}, [],
                 {"partition": None, "env": {}, "setup": (), "modules": ()},
                 {"partition": "default"}, id="no-file-no-profile-keys"),
    pytest.param({"partition": "long", "env": {"A": "u"}, "setup": ["u1"], "modules": ["gcc/12"]}, None, {}, [],
                 {"partition": "long", "env": {"A": "u"}, "setup": ("u1",), "modules": ("gcc/12",)},
                 {"partition": USER, "env.A": USER, "setup[0]": USER, "modules[0]": USER}, id="user-only"),
    pytest.param(None, {"partition": "long", "qos": "high"}, {}, [],
                 {"partition": "long", "qos": "high"},
                 {"partition": PROJECT, "qos": PROJECT}, id="project-only"),
    pytest.param({"partition": "debug", "account": "acct", "env": {"A": "u", "B": "u"}, "setup": ["u1"], "modules": ["gcc/12"]},
                 {"partition": "long", "env": {"B": "p", "C": "p"}, "setup": ["p1"], "modules": ["mpi/4"]}, {}, [],
                 {"partition": "long", "account": "acct", "env": {"A": "u", "B": "p", "C": "p"},
                  "setup": ("u1", "p1"), "modules": ("gcc/12", "mpi/4")},
                 {"partition": PROJECT, "account": USER, "env.A": USER, "env.B": PROJECT, "env.C": PROJECT,
                  "setup[0]": USER, "setup[1]": PROJECT, "modules[0]": USER, "modules[1]": PROJECT}, id="project-over-user"),
    pytest.param({"partition": "debug", "env": {"A": "u"}, "setup": ["u1"]},
                 {"partition": "long", "env": {"A": "p", "B": "p"}, "setup": ["p1"], "modules": ["mpi/4"]},
                 {"partition": "spec", "env": {"B": "s", "D": "s"}, "setup": ["s1"], "modules": ["cuda/12"]}, [],
                 {"partition": "spec", "env": {"A": "p", "B": "s", "D": "s"}, "setup": ("u1", "p1", "s1"),
                  "modules": ("mpi/4", "cuda/12")},
                 {"partition": "job.yaml", "env.A": PROJECT, "env.B": "job.yaml", "setup[2]": "job.yaml",
                  "modules[0]": PROJECT, "modules[1]": "job.yaml"}, id="spec-over-profiles"),
    pytest.param({"partition": "debug", "env": {"A": "u"}}, {"mode": "threading", "launcher": "srun"},
                 {"partition": "spec", "mode": "gloo"},
                 [("env.A", "set", "--set"), ("partition", "viaset", "--set"), ("partition", "flag", "--partition")],
                 {"partition": "flag", "env": {"A": "set"}, "mode": "gloo", "launcher": "srun"},
                 {"partition": "--partition", "env.A": "--set", "mode": "job.yaml", "launcher": PROJECT},
                 id="flags-over-set-over-spec"),
    pytest.param({"setup": ["u1"], "modules": ["gcc/12"]}, {"setup": ["p1"]}, {"setup": ["s1"]},
                 [("setup", ["only"], "--set"), ("modules", [], "--set")],
                 {"setup": ("only",), "modules": ()},
                 {"setup[0]": "--set", "modules": "--set"}, id="set-replaces-a-list"),
]


@pytest.mark.parametrize(("user", "project", "spec", "overrides", "values", "sources"), PRECEDENCE)
def test_precedence(tmp_path: Path, user: dict | None, project: dict | None, spec: dict, overrides: list,
                    values: dict, sources: dict) -> None:
    layered = load(tmp_path, user, project, spec, overrides, profile="site" if user or project else None)
    assert {key: getattr(layered.spec, key) for key in values} == values
    user_file = str(tmp_path / "user.yaml")
    assert {path: layered.merged.origin(path) for path in sources} == {k: v.replace("<user>", user_file) for k, v in sources.items()}


def test_default_profile_project_file_wins_over_user_file(tmp_path: Path) -> None:
    layered = load(tmp_path, profile=None,
                   user_text=yaml.safe_dump({"default_profile": "a", "profiles": {"a": {"qos": "ua"}, "b": {"qos": "ub"}}}),
                   project_text=yaml.safe_dump({"default_profile": "b", "profiles": {}}))
    assert (layered.selection.name, layered.spec.qos) == ("b", "ub")
    assert layered.selection.chosen_by == "default_profile in hpc_runner.yaml"


def test_project_file_is_found_at_the_git_root_of_the_spec(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    write(repo / "hpc_runner.yaml", {"profiles": {"site": {"partition": "long"}}})
    write(repo / "jobs" / "job.yaml", SPEC)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layered = profiles.load(str(repo / "jobs" / "job.yaml"), [], "site", str(elsewhere), {})
    assert layered.spec.partition == "long"
    assert layered.merged.origin("partition") == f"{repo / 'hpc_runner.yaml'}: profile site"


def test_profile_templates_are_relative_to_their_file(tmp_path: Path) -> None:
    layered = load(tmp_path, project={"templates": "site-templates"})
    assert layered.spec.templates == str(tmp_path / "proj" / "site-templates")


ERRORS = [
    pytest.param({"project": {"nodes": 4}}, "hpc_runner.yaml: profile site: unknown key(s) nodes; valid keys: partition", id="unknown-key"),
    pytest.param({"project": {"partition": "a b"}}, "hpc_runner.yaml: profile site: key 'partition': 'a b' is not allowed", id="bad-partition"),
    pytest.param({"user": {"modules": ["-rf"]}}, "<user>: profile site: key 'modules[0]': '-rf' is not allowed", id="bad-module"),
    pytest.param({"user": {"modules": "gcc"}}, "<user>: profile site: key 'modules': expected a list", id="modules-not-a-list"),
    pytest.param({"project": {"constraint": "a;b"}}, "key 'constraint': 'a;b' is not allowed", id="bad-constraint"),
    pytest.param({"project": {"mode": "mpi"}}, "hpc_runner.yaml: profile site: key 'mode': 'mpi' is not one of", id="bad-mode"),
    pytest.param({"project": {"env": {"A-B": "1"}}}, "hpc_runner.yaml: profile site: key 'env key 'A-B''", id="bad-env-name"),
    pytest.param({"project": {"setup": ["a\nb"]}}, "key 'setup[0]': newlines", id="newline-in-setup"),
    pytest.param({"project_text": "profiles:\n  site: {partition: [\n"}, "hpc_runner.yaml: invalid YAML at line", id="malformed-yaml"),
    pytest.param({"project_text": "profile:\n  site: {}\n"}, "hpc_runner.yaml: unknown key(s) profile; a profiles file holds", id="unknown-file-key"),
    pytest.param({"project_text": "- a\n"}, "hpc_runner.yaml: a profiles file is a YAML mapping, got list", id="not-a-mapping"),
    pytest.param({"project_text": "profiles: [a]\n"}, "key 'profiles': expected a mapping", id="profiles-not-a-mapping"),
    pytest.param({"project_text": "profiles: {site: long}\n"},
                 "hpc_runner.yaml: profile site: expected a mapping of spec keys (partition, account", id="profile-not-a-mapping"),
    pytest.param({"project_text": "default_profile: [a]\nprofiles: {}\n", "profile": None},
                 "hpc_runner.yaml: key 'default_profile': expected a profile name", id="default-not-a-name"),
    pytest.param({"project": {"partition": "long"}, "profile": "nope"},
                 "profile 'nope' (--profile) is in no profiles file; known profiles: site; files: <user> (not found), "
                 "hpc_runner.yaml (read)", id="unknown-profile"),
    pytest.param({"project_text": "default_profile: gone\nprofiles: {site: {}}\n", "profile": None},
                 "profile 'gone' (default_profile in hpc_runner.yaml) is in no profiles file; known profiles: site", id="default-missing"),
    pytest.param({"profile": "site"}, "known profiles: none; files: <user> (not found), hpc_runner.yaml (not found)", id="no-files"),
    pytest.param({"project": {"mode": "threading"}, "spec": {"mode": None, "nodes": 2}},
                 "job.yaml (with profile site): key 'nodes': threading mode runs on one node", id="profile-and-spec-contradict"),
]


@pytest.mark.parametrize(("kwargs", "message"), ERRORS)
def test_errors_name_the_file_the_profile_and_the_key(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, **kwargs)
    assert message.replace("<user>", str(tmp_path / "user.yaml")) in str(caught.value)


def test_missing_template_folder_is_refused_when_the_request_is_built(tmp_path: Path) -> None:
    layered = load(tmp_path, project={"templates": "nowhere"})
    with pytest.raises(SpecError, match=r"templates: .*/proj/nowhere is not a folder"):
        request.build(layered.spec, cwd=str(tmp_path))


def site_job(tmp_path: Path) -> request.JobRequest:
    layered = load(tmp_path, user={"setup": ["echo user-setup"], "env": {"SITE": "user"}},
                   project={"partition": "long", "account": "proj42", "constraint": "ib&skylake",
                            "modules": ["gcc/12.2", "openmpi/4.1"], "setup": ["echo project-setup"], "env": {"SITE": "a b"}},
                   spec={"setup": ["echo spec-setup"], "modules": ["cuda/12.1"], "nodes": 2})
    return request.build(layered.spec, cwd=str(tmp_path))


def fake_module(bin_dir: Path) -> None:
    """A ``module`` command (the testbed has no module system) that appends each call to module.log in its cwd."""
    module = bin_dir / "module"
    module.write_text('#!/bin/bash\necho "module $*" >> module.log\n')
    module.chmod(0o755)


def test_module_lines_come_first_then_site_setup_then_spec_setup(tmp_path: Path) -> None:
    script = render.render(site_job(tmp_path))
    setup = script[script.index("# setup from the job spec"):script.index("# environment")].splitlines()[1:-1]
    assert setup == ["module load gcc/12.2", "module load openmpi/4.1", "module load cuda/12.1",
                     "echo user-setup", "echo project-setup", "echo spec-setup"]
    assert "#SBATCH --constraint='ib&skylake'" in script and "#SBATCH --partition=long" in script
    assert "export SITE='a b'" in script
    bin_dir = make_fake_srun(tmp_path)
    fake_module(bin_dir)
    _, env = run_with_fake_srun(script, bin_dir, tmp_path)
    assert (tmp_path / "module.log").read_text().splitlines() == ["module load gcc/12.2", "module load openmpi/4.1",
                                                                  "module load cuda/12.1"]
    assert env["SITE"] == "a b"


def test_render_and_submit_build_one_job_from_a_profile(tmp_path: Path) -> None:
    job = site_job(tmp_path)
    folder = tmp_path / "compare"
    folder.mkdir()
    fake_module(make_fake_srun(folder))
    compare(job, folder)


def test_profile_templates_come_before_the_site_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours = write(tmp_path / "proj" / "site-templates" / "gloo.sh.j2",
                 '{% extends "base.sh.j2" %}\n{% block mode_notes %}\n# from the profile\n{% endblock %}\n').parent
    env_folder = write(tmp_path / "env-templates" / "gloo.sh.j2", "# from HPC_RUNNER_TEMPLATES\n").parent
    write(env_folder / "threading.sh.j2", "# threading from HPC_RUNNER_TEMPLATES\n")
    monkeypatch.setenv("HPC_RUNNER_TEMPLATES", str(env_folder))
    layered = load(tmp_path, project={"templates": "site-templates"})
    assert layered.spec.templates == str(ours)
    assert "# from the profile\n" in render.render(request.build(layered.spec, cwd=str(tmp_path)))
    threading = load(tmp_path, project={"templates": "site-templates"}, spec={"mode": "threading"})
    assert render.render(request.build(threading.spec, cwd=str(tmp_path))) == "# threading from HPC_RUNNER_TEMPLATES\n"


def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "proj"
    write(root / "hpc_runner.yaml", {"default_profile": "site",
                                     "profiles": {"site": {"partition": "long", "env": {"A": "p"}, "modules": ["gcc/12"]}}})
    write(root / "job.yaml", {**SPEC, "env": {"B": "s"}})
    write(tmp_path / "user.yaml", {"profiles": {"site": {"qos": "low"}, "other": {"partition": "debug"}}})
    monkeypatch.chdir(root)
    monkeypatch.setenv(profiles.USER_CONFIG_VAR, str(tmp_path / "user.yaml"))
    return root


def test_render_explain_names_the_source_of_each_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    cli_project(tmp_path, monkeypatch)
    result = runner.invoke(cli, ["render", "job.yaml", "--explain", "--nodes", "2", "--set", "env.C=1"])
    assert result.exit_code == 0, result.output
    table = {line.split()[0]: line.split()[1:] for line in result.output.splitlines() if not line.startswith("#")}
    assert table["partition"] == ["long", "hpc_runner.yaml:", "profile", "site"]
    assert table["qos"] == ["low", str(tmp_path / "user.yaml") + ":", "profile", "site"]
    assert (table["env.A"][1], table["env.B"][1], table["env.C"][1]) == ("hpc_runner.yaml:", "job.yaml", "--set")
    assert table["nodes"] == ["2", "--nodes"] and table["cpus_per_task"] == ["1", "default"]
    assert table["modules[0]"] == ["gcc/12", "hpc_runner.yaml:", "profile", "site"]
    assert "# profile: site (default_profile in hpc_runner.yaml)" in result.output
    assert "#!/bin/bash" not in result.output


def test_plain_render_prints_only_the_script_and_profile_flag_picks_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           runner: CliRunner) -> None:
    cli_project(tmp_path, monkeypatch)
    plain = runner.invoke(cli, ["render", "job.yaml"])
    assert plain.exit_code == 0 and plain.output.startswith("#!/bin/bash\n")
    assert "#SBATCH --partition=long" in plain.output and "module load gcc/12\n" in plain.output
    other = runner.invoke(cli, ["render", "job.yaml", "--profile", "other"])
    assert "#SBATCH --partition=debug" in other.output and "module load" not in other.output


@pytest.mark.parametrize("command", [["render", "job.yaml"], ["submit", "job.yaml", "--dry-run", "--executor", "local"],
                                     ["check"], ["scaling", "job.yaml"]])
def test_every_spec_command_refuses_an_unknown_profile_with_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    runner: CliRunner, command: list[str]) -> None:
    cli_project(tmp_path, monkeypatch)
    result = runner.invoke(cli, [*command, "--profile", "nope"])
    assert result.exit_code == 2, result.output
    assert "profile 'nope' (--profile) is in no profiles file; known profiles: other, site" in result.output
    assert "Traceback" not in result.output


def test_submit_dry_run_carries_the_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    cli_project(tmp_path, monkeypatch)
    result = runner.invoke(cli, ["submit", "job.yaml", "--dry-run", "--executor", "slurm"])
    assert result.exit_code == 0, result.output
    assert "#SBATCH --partition=long" in result.output and "module load gcc/12" in result.output


def test_explain_with_output_file_writes_the_script_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner) -> None:
    root = cli_project(tmp_path, monkeypatch)
    result = runner.invoke(cli, ["render", "job.yaml", "--explain", "-o", "job.sh"])
    assert result.exit_code == 0, result.output
    assert "partition" in result.output and "hpc_runner.yaml: profile site" in result.output
    assert "#SBATCH --partition=long" in (root / "job.sh").read_text()
