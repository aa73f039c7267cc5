"""make bench: measure each figure side by side in one run (medians) and write BENCHMARKS.md."""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent
BENCH_VENV = ROOT / ".venv-bench" / "bin"
RESULTS: list[dict[str, str]] = []


def log(text: str) -> None:
    print(f"[bench] {text}", flush=True)


def wall(cmd: list[str], **kwargs: object) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)  # type: ignore[arg-type]
    return time.perf_counter() - started


def interleaved(commands: dict[str, list[str]], repeats: int, **kwargs: object) -> dict[str, float]:
    """Median wall time of each command, runs interleaved so that drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for cmd in commands.values():  # warm the page cache once
        wall(cmd, **kwargs)
    for _ in range(repeats):
        for name, cmd in commands.items():
            times[name].append(wall(cmd, **kwargs))
    return {name: statistics.median(values) for name, values in times.items()}


def record(name: str, ours: str, theirs: str, ratio: float | None, target: str, met: bool, how: str) -> None:
    shown = "-" if ratio is None else f"{ratio:.2f}x"  # None: a figure with no baseline
    RESULTS.append({"name": name, "ours": ours, "theirs": theirs, "ratio": shown, "target": target,
                    "met": "yes" if met else "NO", "how": how})
    log(f"{name}: {ours} vs {theirs} -> {shown} (target {target}: {'met' if met else 'MISSED'})")


def bench_render(repeats: int = 21) -> None:
    render = [str(VENV / "hpc-run"), "render", str(ROOT / "jobs" / "emulator.yaml"), "--mode", "gloo", "--nodes", "4"]
    imports = [sys.executable, "-c", "import jinja2, click, yaml"]
    commands = {"render": render, "imports": imports}
    torchx = BENCH_VENV / "torchx"
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "train.py").write_text("print('hello')\n")
        if torchx.exists():
            commands["torchx"] = [str(torchx), "run", "--dryrun", "-s", "slurm", "dist.ddp", "-j", "4x1", "--script", "train.py"]
        medians = interleaved(commands, repeats, cwd=tmp)
    ratio = medians["render"] / medians["imports"]
    record("render latency vs its dependencies' import", f"{medians['render'] * 1000:.0f} ms",
           f"{medians['imports'] * 1000:.0f} ms", ratio, "<= 1.3x", ratio <= 1.3,
           f"median of {repeats} interleaved runs: `hpc-run render jobs/emulator.yaml --mode gloo --nodes 4` vs "
           "`python -c 'import jinja2, click, yaml'`, same venv")
    if "torchx" in medians:
        speed = medians["torchx"] / medians["render"]
        record("render vs TorchX dry run (speed-up)", f"{medians['render'] * 1000:.0f} ms", f"{medians['torchx'] * 1000:.0f} ms",
               speed, ">= 2.5x faster", speed >= 2.5,
               f"median of {repeats} interleaved runs: `torchx run --dryrun -s slurm dist.ddp -j 4x1 --script train.py` "
               "(torchx 0.7.0 in .venv-bench only)")


def _wait_marker(path: Path, timeout_s: float = 180) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            match = re.search(r"FIRST_COLLECTIVE (\d+\.\d+)", path.read_text(errors="replace"))
            if match:
                return float(match.group(1))
        time.sleep(0.05)
    raise RuntimeError(f"no FIRST_COLLECTIVE in {path}")


def _wait_gone(job_id: str, env: dict[str, str]) -> None:
    while subprocess.run(["squeue", "-h", "-j", job_id], env=env, capture_output=True, text=True).stdout.strip():
        time.sleep(0.2)


def bench_launch(repeats: int = 9) -> None:
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        log("launch overhead: skipped, the SLURM testbed is not up (make cluster-up as root)")
        return
    env = {**os.environ, "PATH": f"{VENV}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "probe.yaml")
        spec.write_text("name: probe\nmode: gloo\nnodes: 4\nentrypoint:\n  function: benchmarks.probe:first_collective\n")
        ours = subprocess.run([str(VENV / "hpc-run"), "render", str(spec)], capture_output=True, text=True, check=True).stdout
        hand = ("#!/bin/bash\n#SBATCH --nodes=4\n#SBATCH --ntasks-per-node=1\n#SBATCH --output=hand-%j.out\n"
                f"srun --mpi=none {sys.executable} {ROOT / 'benchmarks' / 'handwritten_first_collective.py'}\n")
        times: dict[str, list[float]] = {"ours": [], "hand": []}
        for i in range(repeats + 1):
            for name, script in (("ours", ours), ("hand", hand)):
                submitted = time.time()
                job_id = subprocess.run(["sbatch", "--parsable"], input=script, cwd=tmp, env=env, capture_output=True,
                                        text=True, check=True).stdout.strip()
                out = Path(tmp, f"{'probe' if name == 'ours' else 'hand'}-{job_id}.out")
                done = _wait_marker(out)
                _wait_gone(job_id, env)
                if i:  # the first round warms caches
                    times[name].append(done - submitted)
    a, b = statistics.median(times["ours"]), statistics.median(times["hand"])
    record("launch: submit to first collective, 4 nodes", f"{a:.2f} s", f"{b:.2f} s", a / b, "<= 1.10x", a / b <= 1.10,
           f"median of {repeats} interleaved sbatch submissions on the 4-node testbed: `hpc-run render` of a one-all-reduce "
           "function vs benchmarks/handwritten_first_collective.py under a 5-line sbatch script")


def _submit_to_done(script: str, cwd: str, env: dict[str, str]) -> float:
    from hpc_runner import job_control as jobs

    started = time.monotonic()
    job_id = subprocess.run(["sbatch", "--parsable"], input=script, cwd=cwd, env=env, capture_output=True,
                            text=True, check=True).stdout.strip()
    final = jobs.wait_finished(job_id, poll_s=0.05, timeout_s=300)
    if final.state != "COMPLETED":
        raise RuntimeError(f"job {job_id} ended {final.state}")
    return time.monotonic() - started


def bench_jobs(repeats: int = 3) -> None:
    """Submit-to-done of the emulator (2 and 4 nodes) vs the recipe's hand-written minimal Gloo job."""
    if shutil.which("sinfo") is None or subprocess.run(["sinfo"], capture_output=True).returncode != 0:
        log("submit-to-done: skipped, the SLURM testbed is not up")
        return
    env = {**os.environ, "PATH": f"{VENV}:{os.environ['PATH']}"}
    for nodes in (2, 4):
        with tempfile.TemporaryDirectory() as tmp:
            ours: list[float] = []
            hand: list[float] = []
            for i in range(repeats):
                script = subprocess.run(
                    [str(VENV / "hpc-run"), "render", str(ROOT / "jobs" / "emulator.yaml"), "--mode", "gloo", "--nodes", str(nodes),
                     "--set", "data.samples=2048", "--set", "entrypoint.params.epochs=2", "--set", f"output_dir={tmp}/run{i}"],
                    capture_output=True, text=True, check=True).stdout
                ours.append(_submit_to_done(script, tmp, env))
                minimal = (f"#!/bin/bash\n#SBATCH --nodes={nodes}\n#SBATCH --ntasks-per-node=1\n#SBATCH --output=hand-%j.out\n"
                           f"srun --mpi=none {sys.executable} {ROOT / 'benchmarks' / 'handwritten_first_collective.py'}\n")
                hand.append(_submit_to_done(minimal, tmp, env))
        a, b = statistics.median(ours), statistics.median(hand)
        record(f"submit to done, emulator on {nodes} nodes vs minimal Gloo job", f"{a:.2f} s", f"{b:.2f} s", a / b,
               "(reported)", True, f"median of {repeats}: a 2-epoch emulator (2048 samples) rendered by hpc-run vs the "
               "recipe's hand-written sbatch + one Gloo all-reduce, polled with scontrol")


def _run_ranks(cmd: list[str], world: int, extra_env: dict[str, str] | None = None, cwd: str | None = None) -> list[str]:
    port = 29900 + (os.getpid() % 50) * 2
    procs = []
    for rank in range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
               "LOCAL_WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(extra_env or {})}
        procs.append(subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True))
    outs = [p.communicate(timeout=900)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{cmd} failed: {outs}")
    return outs


def _emulator_throughput(world: int, samples: int, batch: int, hidden: int, epochs: int, stop_check_every: int = 10,
                         comm: str = "ddp") -> float:
    with tempfile.TemporaryDirectory() as tmp:
        from hpc_runner.run_config import RunConfig
        from hpc_runner.schema import DataSpec, FunctionEntry

        params = {"epochs": epochs, "hidden": hidden, "stop_check_every": stop_check_every}
        entry = (FunctionEntry("hpc_runner.demo.emulator:train", params) if comm == "ddp"
                 else FunctionEntry("benchmarks.emulator_variants:train", {**params, "comm": comm}))
        config = RunConfig(mode="gloo", entry=entry, output_dir=f"{tmp}/out", init_timeout_s=300, max_restarts=0,
                           collective_timeout_s=1800, resume="never", requeue_handler="auto", export=None,
                           data=DataSpec(samples=samples, batch_size=batch, val_samples=256, audit=False))
        _run_ranks([sys.executable, "-m", "hpc_runner.entrypoint", *config.to_argv()], world, cwd=tmp)
        return json.loads(Path(tmp, "out", "metrics.json").read_text())["samples_per_second"]


def _handwritten_throughput(world: int, samples: int, batch: int, hidden: int, epochs: int) -> float:
    outs = _run_ranks([sys.executable, str(ROOT / "benchmarks" / "handwritten_ddp.py"), str(samples), str(batch),
                       str(hidden), str(epochs)], world)
    return json.loads(outs[0].strip().splitlines()[-1])["samples_per_second"]


def bench_ddp(repeats: int = 7) -> None:
    shape = dict(samples=16384, batch=128, hidden=256, epochs=5)
    ours, hand = [], []
    for _ in range(repeats):
        ours.append(_emulator_throughput(2, **shape))
        hand.append(_handwritten_throughput(2, **shape))
    ratios = sorted(o / h for o, h in zip(ours, hand))
    a, b, ratio = statistics.median(ours), statistics.median(hand), statistics.median(ratios)
    record("DDP step throughput: entrypoint vs hand-written loop", f"{a:.0f} samples/s", f"{b:.0f} samples/s", ratio,
           ">= 0.98x", ratio >= 0.98,
           f"2 ranks x 1 thread over Gloo, MLP hidden {shape['hidden']}, batch {shape['batch']} per rank, "
           f"{shape['samples']} samples, epochs 2-{shape['epochs']} timed; median of {repeats} interleaved pairs, "
           f"spread {ratios[0]:.2f}x-{ratios[-1]:.2f}x (benchmarks/handwritten_ddp.py vs the emulator through "
           "`python -m hpc_runner.entrypoint`)")


def bench_two_ranks(repeats: int = 7) -> None:
    """2 ranks vs 1, split into what sharing the cores costs and what the gradient exchange costs."""
    shape = dict(samples=32768, batch=2048, hidden=512, epochs=3)
    one, two, alone = [], [], []
    for _ in range(repeats):
        one.append(_emulator_throughput(1, **shape))
        two.append(_emulator_throughput(2, **shape))
        alone.append(_emulator_throughput(2, **shape, comm="none"))
    speedups = sorted(t / o for t, o in zip(two, one))
    sharing = statistics.median(a / o for a, o in zip(alone, one))
    exchange = statistics.median(t / a for t, a in zip(two, alone))
    a, b = statistics.median(two), statistics.median(one)
    record("2 ranks (1 thread each) vs 1 rank (1 thread)", f"{a:.0f} samples/s", f"{b:.0f} samples/s",
           statistics.median(speedups), ">= 1.85x", statistics.median(speedups) >= 1.85,
           f"emulator through the entrypoint, MLP hidden {shape['hidden']}, batch {shape['batch']} per rank, "
           f"{shape['samples']} samples, epochs 2-{shape['epochs']} timed; median of {repeats} interleaved pairs, "
           f"spread {speedups[0]:.2f}x-{speedups[-1]:.2f}x. Where the rest goes: 2 ranks exchanging nothing "
           f"(benchmarks/emulator_variants.py) reach {sharing:.2f}x of 1 rank (the cost of sharing the cores), and the "
           f"gradient all-reduce keeps {exchange:.2f}x of that")


def bench_stop_check(repeats: int = 5) -> None:
    """What the all-ranks stop decision costs: the emulator checking every 10 steps vs never."""
    shape = dict(samples=16384, batch=128, hidden=256, epochs=5)
    checked, unchecked = [], []
    for _ in range(repeats):
        checked.append(_emulator_throughput(2, **shape, stop_check_every=10))
        unchecked.append(_emulator_throughput(2, **shape, stop_check_every=0))
    a, b = statistics.median(checked), statistics.median(unchecked)
    record("stop decision every 10 steps vs none", f"{a:.0f} samples/s", f"{b:.0f} samples/s", a / b, ">= 0.99x",
           a / b >= 0.99, f"2 ranks over Gloo, the DDP throughput shape (hidden {shape['hidden']}, batch {shape['batch']}); "
           f"a one-number all-reduce every 10 steps; median of {repeats} interleaved runs")


def _resolver_safe(cmd: list[str]) -> tuple[list[str], str]:
    """Run ``cmd`` where the v4-mapped loopback has a name in the hosts file.

    torch's store server looks up each client's name as it connects, one at a time; where the
    resolver drops bursts of queries (this VM's does), a thousand connects stall 5 s apiece in
    that lookup and the figure measures DNS, not the store. As root, a private mount namespace
    gives ``::ffff:127.0.0.1`` a name for this run only; otherwise the run says so.
    """
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return cmd, "not root: client-name lookups go to the resolver and may stall"
    hosts = Path(tempfile.mkdtemp()) / "hosts"
    hosts.write_text(Path("/etc/hosts").read_text() + "\n::ffff:127.0.0.1 loopback-v4-mapped\n")
    quoted = " ".join(shlex.quote(c) for c in cmd)
    return ["unshare", "--mount", "sh", "-c", f"mount --bind {shlex.quote(str(hosts))} /etc/hosts && exec {quoted}"], ""


def bench_rendezvous(sizes: tuple[str, ...] = ("64:9", "1024:3", "4096:3", "8192:1")) -> None:
    """N simulated ranks through rendezvous.meet vs torch's store barrier, and naming a missing rank."""
    cmd, caveat = _resolver_safe([sys.executable, str(ROOT / "benchmarks" / "scale_rendezvous.py"), *sizes])
    if caveat:
        log(caveat)
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    for row in (json.loads(line) for line in out.splitlines() if line.startswith("{")):
        log(json.dumps(row))
        world, ratio, spread = row["world"], row["wall_ratio"], row["wall_ratio_spread"]
        target, met = ("<= 1.1x", ratio <= 1.1) if world <= 64 else ("(reported)", True)
        record(f"rendezvous of {world} ranks: wall vs torch's store barrier", f"{row['ours_wall_s']:.3f} s",
               f"{row['torch_wall_s']:.3f} s", ratio, target, met,
               f"simulated ranks (threads in 8 processes, one TCPStore client each) against the real store on "
               f"loopback; median of {row['repeats']} interleaved pairs, ratio spread {spread[0]:.2f}x-{spread[1]:.2f}x; "
               f"store host CPU {row['ours_server_cpu_s']:.3f} s vs {row['torch_server_cpu_s']:.3f} s "
               f"({row['cpu_ratio']:.2f}x, spread {row['cpu_ratio_spread'][0]:.2f}x-{row['cpu_ratio_spread'][1]:.2f}x)")
        named = row["named_after_timeout_s"]
        record(f"naming the missing rank of {world}, after the timeout", f"{named:.3f} s", "-", None, "<= 0.5 s",
               named <= 0.5, f"one rank never starts; rank 0's time past its 5 s timeout until it raises: "
               f"\"{row['named_message'][:90]}\"")


def bench_inference() -> None:
    """Serving the trained emulator: Python eager vs torch.compile vs the C++ AOTInductor package."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import inference  # benchmarks/inference.py (prints its own table, also in bench-out/inference.md)

    timings = inference.main([])
    eager = timings[0]
    how = ("the emulator's MLP as jobs/emulator.yaml trains it, 1 thread for every path, median of 5 interleaved "
           "rounds (benchmarks/inference.py; the package is what `hpc-run export` writes, run by examples/cpp)")
    for t in timings[1:]:
        record(f"inference latency, batch 1: {t.path} vs Python eager", f"{t.latency_s * 1e6:.1f} us",
               f"{eager.latency_s * 1e6:.1f} us", eager.latency_s / t.latency_s, "(reported: above 1x is faster)",
               True, how)
        record(f"inference throughput, batch 1024: {t.path} vs Python eager", f"{t.samples_per_s / 1e6:.2f} M samples/s",
               f"{eager.samples_per_s / 1e6:.2f} M samples/s", t.samples_per_s / eager.samples_per_s,
               "(reported: above 1x is faster)", True, how)


def bench_scale() -> list[str]:
    """Figures for planning past this machine (see README: at 100 and 1000 nodes)."""
    sys.path.insert(0, str(ROOT))
    from hpc_runner import render, request, spec
    from hpc_runner.environment import expand_nodelist

    job = request.build(spec.load(ROOT / "jobs" / "emulator.yaml", [("mode", "gloo"), ("nodes", 1024), ("ntasks_per_node", 8)]))
    started = time.perf_counter()
    for _ in range(100):
        text = render.render(job)
    render_ms = (time.perf_counter() - started) * 10
    nodelist = "gpu[00001-10000]"
    started = time.perf_counter()
    hosts = expand_nodelist(nodelist)
    expand_ms = (time.perf_counter() - started) * 1000
    mixed = ",".join(f"rack{r:02d}-n[{1:03d}-{100:03d}]" for r in range(100))
    started = time.perf_counter()
    mixed_hosts = expand_nodelist(mixed)
    mixed_ms = (time.perf_counter() - started) * 1000
    lines = [f"- render a 1024-node x 8-task spec (8192 ranks): {render_ms:.2f} ms in-process, script {len(text)} bytes",
             f"- expand `{nodelist}` ({len(hosts)} hosts): {expand_ms:.1f} ms",
             f"- expand 100 racks x 100 nodes (`rack00-n[001-100],...`, {len(mixed_hosts)} hosts): {mixed_ms:.1f} ms"]
    for line in lines:
        log(line)
    return lines


def write_report(scale: list[str]) -> None:
    out = ROOT / "BENCHMARKS.md"
    # A partial run (`make bench ARGS=jobs`) replaces its own figures and keeps the others.
    store = ROOT / "bench-out" / "results.json"
    store.parent.mkdir(exist_ok=True)
    previous = json.loads(store.read_text()) if store.exists() else []
    names = {r["name"] for r in RESULTS}
    RESULTS[:0] = [r for r in previous if r["name"] not in names]
    store.write_text(json.dumps(RESULTS, indent=1))
    lines = ["# Benchmarks", "",
             f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. Each ratio is measured "
             "side by side in one run (medians of repeated, interleaved runs). Reproduce: `make bench` (as root it "
             "starts the SLURM testbed for the launch figure and stops it after).", "",
             "| figure | hpc_runner | baseline | ratio | target | met |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['name']} | {r['ours']} | {r['theirs']} | {r['ratio']} | {r['target']} | {r['met']} |" for r in RESULTS]
    lines += ["", "## How each figure is measured", ""]
    lines += [f"- **{r['name']}**: {r['how']}." for r in RESULTS]
    lines += ["", "## What bounds the figures near their targets", "",
              "Spread seen across full runs on 2026-11-24 on this 2-core VM (its speed drifted by ~30% during the "
              "day: the bare imports took 80 ms to 120 ms): render vs imports 1.16x-1.40x, render vs TorchX "
              "2.0x-2.5x, launch 0.81x-1.14x, DDP throughput 0.86x-1.05x, 2 ranks vs 1 1.39x-1.78x. "
              "The table holds the latest run of each figure.", "",
              "- Render: `import jinja2, click, yaml` alone is most of `hpc-run render`; what hpc_runner adds "
              "(frozen dataclasses of the spec, the click command tree, loading the cached template) is 10-15 ms. "
              "Against TorchX's dry run, runs on this machine gave 2.4x to 2.5x: the best possible is TorchX's time "
              "over the bare imports (about 2.8x). `PYTHONDONTWRITEBYTECODE` is set here, so `make` byte-compiles "
              "the package; without that, every start recompiles it (+10 ms).",
              "- 2 ranks vs 1: the row splits the speed-up into two factors measured in the same run: 2 ranks that "
              "exchange nothing against 1 rank (what sharing the two cores costs: memory bandwidth, caches, the "
              "clock of two busy cores, the sandbox's scheduler) and 2 ranks with DDP against those 2 ranks (the "
              "gradient all-reduce: 1 MB per step over loopback TCP, Gloo's only transport). Thread CPU time per "
              "rank shows Gloo's own threads at about 1% of a rank's CPU; the all-reduce costs its wait, not CPU. "
              "Measured by hand on 2026-11-25 to find the rest: two bare training loops of this shape (no "
              "DataLoader, no process group) take 63-64 ms a step alone or two at once, so the cores themselves "
              "allow about 1.97x; a 1 MB Gloo all-reduce between the two ranks takes 1.5 ms (median; 90th "
              "percentile 6 ms); DDP adds 8-18 ms a step over `no_sync`, most of it waiting for the slower rank, "
              "as steps on this VM vary from 65 to 110 ms; DDP buckets of 0.5 MB and `gradient_as_bucket_view` "
              "changed nothing measurable. The same 8 steps of one epoch took 558 ms to 863 ms from one epoch to "
              "the next, which is the row's spread: the 1.85x target is out of reach here, bounded by the "
              "synchronous step on a VM whose step time varies by a third.",
              "- Rendezvous at scale: every simulated rank runs on this machine's 2 cores, so at thousands of "
              "ranks the clients' own work (a thread, a connection, three store calls in Python) sets the wall "
              "time for ours and torch's alike; on a cluster each rank has its own node and the store's single "
              "thread is the shared resource. Its CPU grows linearly with ranks (the table's 'store host CPU'), "
              "so 8192 ranks cost the store about the figure shown and 32768 about four times it. Ours makes "
              "three calls per rank where torch's barrier makes two or three: the roster (missing ranks named "
              "from one read) is the extra one; the owner check (a rank of another job is refused at once "
              "instead of hanging) costs a fourth only to a rank that arrives before rank 0. "
              "torch's store looks up each client's name as it connects, one at a time; this machine's resolver "
              "drops bursts of queries (5 s each), so `make bench` runs the scale rows where the v4-mapped "
              "loopback has a name (a private mount namespace, as root).",
              "- Launch and DDP throughput are within noise of the hand-written baselines (single runs of either "
              "vary by 10-20% on 2 shared cores; the medians are what the table shows).",
              "", "## Scale figures (for the README's 100/1000-node plan)", "", *scale, ""]
    out.write_text("\n".join(lines))
    log(f"wrote {out}")


def main() -> None:
    only = set(sys.argv[1:])
    steps = [("render", bench_render), ("launch", bench_launch), ("jobs", bench_jobs), ("ddp", bench_ddp),
             ("two_ranks", bench_two_ranks), ("stop_check", bench_stop_check),
             ("rendezvous", bench_rendezvous), ("inference", bench_inference)]
    for name, step in steps:
        if not only or name in only:
            log(f"--- {name}")
            step()
    write_report(bench_scale())


if __name__ == "__main__":
    main()
