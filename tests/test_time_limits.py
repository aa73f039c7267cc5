"""Time limits in SLURM's own grammar: the same minutes from YAML, --time and --set as sbatch --time gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpc_runner import spec
from hpc_runner.errors import SpecError
from hpc_runner.slurm_time import TimeFormatError, format_time, parse_time

from .conftest import EMULATOR, hpc_run

BASE = "name: job\nentrypoint:\n  function: pkg.mod:main\n"

# Input -> minutes as `sbatch --time=INPUT` reads it (src/common/parse_time.c: seconds round up).
TABLE = [
    # minutes
    ("90", 90),
    ("1", 1),
    ("0090", 90),
    ("20000", 20000),
    # minutes:seconds
    ("10:00", 10),
    ("01:30", 2),
    ("0:30", 1),
    ("1:01", 2),
    ("0:90", 2),  # no range check on fields: 90 seconds
    # hours:minutes:seconds
    ("2:00:00", 120),
    ("01:30:00", 90),
    ("00:00:30", 1),
    ("0:0:1", 1),
    ("1:00:59", 61),
    ("36:00:00", 2160),
    ("1:90:00", 150),
    # days-hours
    ("1-12", 2160),
    ("0-1", 60),
    ("2-0", 2880),
    # days-hours:minutes
    ("1-12:30", 2190),
    ("0-0:5", 5),
    # days-hours:minutes:seconds
    ("1-00:00:00", 1440),
    ("1-12:30:15", 2191),
    ("0-0:0:1", 1),
    ("10-01:02:03", 14463),
]


@pytest.mark.parametrize(("text", "minutes"), TABLE)
def test_parse_time_table(text: str, minutes: int) -> None:
    assert parse_time(text) == minutes


def test_an_int_is_minutes() -> None:
    assert parse_time(90) == 90
    assert parse_time(1) == 1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("", "an empty value is not a time"),
        ("0", "must be at least one minute"),
        ("0:00", "must be at least one minute"),
        ("00:00:00", "must be at least one minute"),
        ("0-0", "must be at least one minute"),
        (0, "must be at least one minute"),
        (-5, "must be at least one minute"),
        ("-5", "not a time"),
        ("-1", "not a time"),  # SLURM's INFINITE: refused, like 0
        ("UNLIMITED", "not a time"),
        ("soon", "not a time"),
        ("1h", "not a time"),
        ("1.5", "not a time"),
        (1.5, "not a time"),
        (True, "not a time"),
        (None, "not a time"),
        ("1:2:3:4", "not a time"),
        ("1-2-3", "not a time"),
        ("1-", "not a time"),
        ("-12", "not a time"),
        ("1:", "not a time"),
        (":30", "not a time"),
        ("1::2", "not a time"),
        (" 90", "not a time"),
        ("90\n", "not a time"),
        ("\u0669\u0660", "not a time"),  # Arabic-Indic digits: SLURM reads 0-9 only
    ],
)
def test_bad_values_are_refused_with_the_accepted_forms(value: object, words: str) -> None:
    with pytest.raises(TimeFormatError) as err:
        parse_time(value)  # type: ignore[arg-type]
    message = str(err.value)
    assert words in message
    for form in ("MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM", "D-HH:MM:SS"):
        assert form in message


@pytest.mark.parametrize(("minutes", "text"), [(1, "00:01:00"), (90, "01:30:00"), (1440, "1-00:00:00"), (2191, "1-12:31:00")])
def test_format_time_is_what_slurm_prints(minutes: int, text: str) -> None:
    assert format_time(minutes) == text
    assert parse_time(text) == minutes


def write(tmp_path: Path, time_line: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(BASE + time_line + "\n")
    return path


@pytest.mark.parametrize(("text", "minutes"), TABLE)
def test_yaml_quoted(tmp_path: Path, text: str, minutes: int) -> None:
    assert spec.load(write(tmp_path, f"time: '{text}'")).time_minutes == minutes


@pytest.mark.parametrize(("text", "minutes"), TABLE)
def test_yaml_unquoted(tmp_path: Path, text: str, minutes: int) -> None:
    """YAML 1.1 reads 2:00:00 as the base-60 int 7200 and 10:00 as 600: the spec loader must not."""
    assert spec.load(write(tmp_path, f"time: {text}")).time_minutes == minutes


def test_yaml_int_stays_minutes(tmp_path: Path) -> None:
    assert spec.load(write(tmp_path, "time: 90")).time_minutes == 90


@pytest.mark.parametrize(("text", "minutes"), TABLE)
def test_set_override(tmp_path: Path, text: str, minutes: int) -> None:
    job = spec.load(write(tmp_path, "time: 5"), [spec.parse_set(f"time={text}")])
    assert job.time_minutes == minutes


def test_set_keeps_sexagesimal_as_text() -> None:
    assert spec.parse_set("time=2:00:00") == ("time", "2:00:00")
    assert spec.parse_set("time=10:00") == ("time", "10:00")


def test_cli_time_string_override(tmp_path: Path) -> None:
    """--time arrives as a string override of key 'time'."""
    assert spec.load(write(tmp_path, "time: 5"), [("time", "90")]).time_minutes == 90
    assert spec.load(write(tmp_path, "time: 5"), [("time", "10:00")]).time_minutes == 10


def test_other_yaml_values_keep_their_types() -> None:
    loaded = spec._yaml_load(
        "i: 90\nneg: -3\nhex: 0x1f\noct: 017\nunder: 1_000\nf: 1.5\nexp: 1.0e+3\ninf: .inf\n"
        "b: true\nnope: no\nn: null\nl: [1, 2.0, yes]\ns: hello\nd: 2024-01-01\n")
    assert loaded == {"i": 90, "neg": -3, "hex": 31, "oct": 15, "under": 1000, "f": 1.5, "exp": 1000.0,
                      "inf": float("inf"), "b": True, "nope": False, "n": None, "l": [1, 2.0, True],
                      "s": "hello", "d": __import__("datetime").date(2024, 1, 1)}
    assert [type(v) for v in (loaded["i"], loaded["f"], loaded["b"])] == [int, float, bool]
    # only base-60 scalars change: they stay text
    assert spec._yaml_load("a: 1:30\nb: 1:30.5\nc: -1:30") == {"a": "1:30", "b": "1:30.5", "c": "-1:30"}
    assert spec.parse_set("data.samples=4096") == ("data.samples", 4096)
    assert spec.parse_set("entrypoint.params.lr=0.5") == ("entrypoint.params.lr", 0.5)
    assert spec.parse_set("x=[1, 2]") == ("x", [1, 2])


@pytest.mark.parametrize(
    ("time_line", "words"),
    [
        ("time: 0", "must be at least one minute"),
        ("time: '0:00'", "must be at least one minute"),
        ("time: 0:00", "must be at least one minute"),
        ("time: -5", "must be at least one minute"),
        ("time: soon", "not a time"),
        ("time: ''", "an empty value is not a time"),
        ("time: 1.5", "not a time"),
        ("time: true", "not a time"),
        ("time: [1]", "not a time"),
        ("time: 1:2:3:4", "not a time"),
    ],
)
def test_bad_yaml_time_names_file_and_key(tmp_path: Path, time_line: str, words: str) -> None:
    path = write(tmp_path, time_line)
    with pytest.raises(SpecError) as err:
        spec.load(path)
    message = str(err.value)
    assert str(path) in message
    assert "key 'time'" in message
    assert words in message
    assert "D-HH:MM:SS" in message


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("90", "01:30:00"), ("10:00", "00:10:00"), ("1-12", "1-12:00:00"), ("2:00:00", "02:00:00"), ("0:30", "00:01:00")],
)
def test_cli_time_flag_renders_slurm_time(flag: str, expected: str) -> None:
    result = hpc_run(["render", EMULATOR, "--time", flag])
    assert result.returncode == 0, result.stderr
    assert f"#SBATCH --time={expected}\n" in result.stdout


@pytest.mark.parametrize(("item", "expected"), [("time=2:00:00", "02:00:00"), ("time=10:00", "00:10:00"), ("time=90", "01:30:00")])
def test_cli_set_time_renders_slurm_time(item: str, expected: str) -> None:
    result = hpc_run(["render", EMULATOR, "--set", item])
    assert result.returncode == 0, result.stderr
    assert f"#SBATCH --time={expected}\n" in result.stdout


def test_cli_unquoted_yaml_time_renders_two_hours(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(Path(EMULATOR).read_text().replace('time: "00:20:00"', "time: 2:00:00"))
    assert "time: 2:00:00" in path.read_text()
    result = hpc_run(["render", str(path)])
    assert result.returncode == 0, result.stderr
    assert "#SBATCH --time=02:00:00\n" in result.stdout


@pytest.mark.parametrize(("flag", "words"), [("0", "must be at least one minute"), ("soon", "not a time")])
def test_cli_bad_time_flag_is_a_clean_input_error(flag: str, words: str) -> None:
    result = hpc_run(["render", EMULATOR, "--time", flag])
    assert result.returncode == 2
    assert "key 'time'" in result.stderr and words in result.stderr
    assert "Traceback" not in result.stderr
