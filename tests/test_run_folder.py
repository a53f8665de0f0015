"""The training skeleton's run-folder guarantees (issues 12 and 18), exercised through real commands.

- exact resume through the real data path: SIGKILL a CLI run (loader workers on), re-run, and every
  tensor of the final checkpoint equals a straight run's (StyleGAN2 pretraining and fine-tuning);
- one process per run folder (lock naming the owner; a dead owner's lock is taken over);
- stale temporaries of a killed write are removed on start;
- a checkpoint write that fails keeps the previous complete checkpoint and stops with one line;
- a read-only output folder is one line naming the path and the cause, for every trainer;
- a resume with changed settings names them and refuses, unless they may change mid-run;
- a corrupt newest checkpoint is moved aside and the previous one is used;
- skipped images are summarised in one line, without Python warning source lines.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from stylegan2.checkpoint import load_checkpoint
from stylegan2.training import StyleGAN2Trainer, TrainConfig
from toonlab.checkpoint import load_torch_file
from toonlab.cli import load_command
from toonlab.lock import FolderLock, FolderLocked
from toonlab.training import SettingsChanged

REPO = Path(__file__).resolve().parents[1]
TINY = ["--size", "32", "--batch", "4", "--style-dim", "16", "--n-mlp", "2", "--channel-max", "16",
        "--channel-base", "128", "--device", "cpu", "--sample-every", "0"]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def flatten(obj, prefix=""):
    """Every leaf of a checkpoint as {path: value} (tensors, numbers, lists of ints...)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}{i}."))
        return out
    if hasattr(obj, "__dict__") and not isinstance(obj, torch.Tensor):  # argparse.Namespace
        return flatten(vars(obj), prefix)
    return {prefix.rstrip("."): obj}


def assert_same_checkpoint(a: Path, b: Path) -> int:
    """Every tensor (and every number) of two checkpoints is equal; returns how many tensors were compared."""
    fa, fb = flatten(load_torch_file(a)), flatten(load_torch_file(b))
    fa = {k: v for k, v in fa.items() if not k.startswith("toonlab.config.")}
    fb = {k: v for k, v in fb.items() if not k.startswith("toonlab.config.")}
    assert fa.keys() == fb.keys()
    n = 0
    for k, v in fa.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, fb[k]), k
            n += 1
        else:
            assert v == fb[k], k
    return n


def _kill_after_first_checkpoint(cmd: list[str], ckpts: Path, final: Path) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpts.glob("0*.pt")) and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    out = proc.communicate()[0].decode()
    assert list(ckpts.glob("0*.pt")), out[-2000:]
    assert not final.exists(), "the run finished before it could be killed"


@pytest.mark.parametrize("script,args", [
    ("stylegan2/train.py", ["synthetic:photo:64", *TINY]),
    ("finetune/train.py", ["--target", "webtoon", "--batch", "4", "--device", "cpu", "--sample-every", "0",
                           "--freeze", "2", "--structure-loss", "2"]),
], ids=["stylegan2", "finetune"])
def test_sigkill_and_rerun_equals_a_straight_run_through_the_cli(tmp_path, script, args):
    iters = 24 if script.startswith("stylegan2") else 12
    base = [sys.executable, str(REPO / script), *args, "--iters", str(iters), "--snapshot-every", "4",
            "--workers", "2", "--keep", "0"]
    straight = subprocess.run(base + ["--out", str(tmp_path / "straight")], capture_output=True, text=True, env=ENV,
                              timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = tmp_path / "killed"
    final = killed / "checkpoints" / f"{iters:06d}.pt"
    _kill_after_first_checkpoint(base + ["--out", str(killed)], killed / "checkpoints", final)
    rerun = subprocess.run(base + ["--out", str(killed)], capture_output=True, text=True, env=ENV, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resumed from" in rerun.stdout
    n = assert_same_checkpoint(tmp_path / "straight" / "checkpoints" / f"{iters:06d}.pt", final)
    assert n > 100  # networks, EMA copy, both optimisers' moments, RNG states


def test_sigterm_to_the_whole_process_group_saves_and_the_rerun_equals_a_straight_run(tmp_path):
    """What `timeout`, `kill -- -PGID` and schedulers do: SIGTERM to the trainer *and* its loader workers.
    The workers (their own process group) live on; the trainer finishes its step, saves there, exits 2
    with one line, and leaves no process behind; re-running continues to the same final checkpoint."""
    iters = 400
    base = [sys.executable, str(REPO / "stylegan2/train.py"), "synthetic:photo:64", *TINY, "--iters", str(iters),
            "--snapshot-every", "0", "--workers", "2", "--keep", "0"]
    out = tmp_path / "stopped"
    proc = subprocess.Popen(base + ["--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)
    deadline = time.time() + 300
    stats = out / "stats.jsonl"
    while time.time() < deadline and proc.poll() is None and not (stats.is_file() and stats.read_text().strip()):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: stopped by SIGTERM at step ") and "re-run the same command" in last, last
    step = int(last.split("at step ")[1].split()[0])
    assert 0 < step < iters and (out / "checkpoints" / f"{step:06d}.pt").is_file()
    # No loader worker outlived its trainer (forked, they carry its command line, --out included).
    def left() -> list[str]:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(out).encode() in cmdline.read_bytes():
                    found.append(cmdline.parent.name)
            except OSError:
                pass
        return found

    deadline = time.time() + 30
    while left() and time.time() < deadline:
        time.sleep(0.2)
    assert not left()
    rerun = subprocess.run(base + ["--iters", str(step + 6), "--out", str(out)], capture_output=True, text=True,
                           env=ENV, timeout=600)
    assert rerun.returncode == 0 and "resumed from" in rerun.stdout, rerun.stderr[-2000:]
    straight = subprocess.run(base + ["--iters", str(step + 6), "--out", str(tmp_path / "straight")],
                              capture_output=True, text=True, env=ENV, timeout=600)
    assert straight.returncode == 0, straight.stderr[-2000:]
    name = f"{step + 6:06d}.pt"
    assert assert_same_checkpoint(tmp_path / "straight" / "checkpoints" / name, out / "checkpoints" / name) > 100


def test_a_killed_loader_worker_is_one_line_and_the_last_checkpoint_stays(tmp_path):
    """`pkill -f train.py` or the OOM killer ends a loader worker mid-step: one line, exit 2, no traceback;
    that half step is not saved, so re-running resumes from the last checkpoint."""
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "stylegan2/train.py"), "synthetic:photo:64", *TINY, "--iters", "400",
           "--snapshot-every", "2", "--workers", "2", "--keep", "0", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list((out / "checkpoints").glob("*.pt")):
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-2000:]
    children = [int(p.parent.name) for p in Path("/proc").glob("[0-9]*/stat")
                if _ppid(p) == proc.pid]
    assert children
    os.kill(children[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: DataLoader worker") and "re-run the same command to resume from" in last, last
    assert list((out / "checkpoints").glob("*.pt"))


def _ppid(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


# --------------------------------------------------------------------------- the tiny trainer

def tiny_trainer(out: Path, **kw) -> StyleGAN2Trainer:
    cfg = TrainConfig(out=str(out), **{**dict(size=16, batch=4, iters=4, style_dim=16, n_mlp=2, channel_max=16,
                                              channel_base=128, snapshot_every=2, sample_every=0, workers=0,
                                              log_every=1, n_samples=4, device="cpu"), **kw})
    torch.manual_seed(0)
    return StyleGAN2Trainer(cfg, dataset=None, device=torch.device("cpu"))


def batches(n: int = 8):
    g = torch.Generator().manual_seed(0)
    return iter([torch.rand(4, 3, 16, 16, generator=g) * 2 - 1 for _ in range(n)])


def _hold_lock(folder: Path) -> subprocess.Popen:
    code = ("import sys, time; sys.path.insert(0, %r); from toonlab.lock import FolderLock; "
            "FolderLock(%r, 'run folder').acquire(); print('locked', flush=True); time.sleep(600)") % (str(REPO), str(folder))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_trainer_on_a_locked_folder_exits_2_naming_the_owner(tmp_path):
    out = tmp_path / "run"
    owner = _hold_lock(out)
    try:
        with pytest.raises(FolderLocked, match=f"in use by process {owner.pid} on "):
            tiny_trainer(out).resume()
        r = CliRunner().invoke(load_command("train"), ["synthetic:photo:8", *TINY, "--workers", "0", "--iters", "1",
                                                        "--out", str(out)])
        assert r.exit_code == 2 and f"process {owner.pid}" in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1
        assert not (out / "checkpoints" / "000001.pt").exists() and not (out / "stats.jsonl").exists()
    finally:
        owner.kill()
        owner.wait()
    # The owner died (SIGKILL) holding the lock: the next run takes it over and says so.
    t = tiny_trainer(out, iters=2)
    t.resume()
    assert any(f"left by process {owner.pid}" in n and "no longer running" in n for n in t.notes)
    t.train(batches())
    assert not (out / ".lock").exists()  # released on exit


def test_lock_is_released_and_reacquired_in_one_process(tmp_path):
    lock = FolderLock(tmp_path, "output folder").acquire()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    with pytest.raises(FolderLocked, match=f"process {os.getpid()}"):
        FolderLock(tmp_path).acquire()
    lock.release()
    with FolderLock(tmp_path) as again:
        assert again.held and again.took_over is None


def test_stale_temporaries_are_removed_on_start(tmp_path):
    out = tmp_path / "run"
    t = tiny_trainer(out, iters=2)
    t.train(batches())
    stale = [out / "checkpoints" / ".000004.pt.k2j3h4.tmp", out / "samples" / ".000004.png.abc_12.tmp",
             out / ".config.json.x9y8z7.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    keep = out / "checkpoints" / "notes.txt"
    keep.write_text("mine")
    t2 = tiny_trainer(out, iters=3)
    assert t2.resume().startswith("resumed from")
    assert not any(p.exists() for p in stale) and keep.exists()
    assert any("removed 3 temporary files of an interrupted write" in n for n in t2.notes)


@pytest.mark.parametrize("fault", ["enospc", "unexpected pos"])
def test_a_failed_checkpoint_write_keeps_the_previous_one_and_stops(tmp_path, monkeypatch, fault):
    import toonlab.atomic
    import toonlab.run

    out = tmp_path / "run"
    real = toonlab.atomic.torch_save_atomic

    def save(obj, path):
        if Path(path).name == "000004.pt":
            with toonlab.atomic.atomic_path(path) as tmp:  # a partial temporary, as a real failure leaves
                tmp.write_bytes(b"partial")
                if fault == "enospc":
                    raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1024 vs 960")
        return real(obj, path)

    monkeypatch.setattr(toonlab.run, "torch_save_atomic", save)
    r = CliRunner().invoke(load_command("train"), ["synthetic:photo:8", *TINY, "--workers", "0", "--iters", "6",
                                                    "--snapshot-every", "2", "--out", str(out)])
    assert r.exit_code == 2, r.output
    err = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err) == 1 and "000004.pt" in err[0] and "000002.pt is kept" in err[0] and "Traceback" not in r.output
    assert ("No space left on device" if fault == "enospc" else "unexpected pos") in err[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002.pt"]  # no temporary left either
    load_checkpoint(out / "checkpoints" / "000002.pt")
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("command,args", [
    ("train", ["synthetic:photo:8", *TINY, "--workers", "0", "--iters", "1"]),
    ("finetune", ["--iters", "1", "--batch", "2", "--device", "cpu", "--workers", "0"]),
    ("translate-train", ["--iters", "1", "--init-iters", "0", "--size", "32", "--batch", "1", "--features", "random",
                         "--workers", "0", "--device", "cpu"]),
    ("cyclegan", ["--iters", "1", "--size", "32", "--n-blocks", "1", "--synthetic-length", "4", "--workers", "0",
                  "--device", "cpu"]),
    ("stargan2", ["train", "--iters", "1", "--size", "32", "--batch", "1", "--dim-in", "4", "--max-conv-dim", "8",
                  "--mapping-hidden", "8", "--synthetic-length", "4", "--workers", "0", "--device", "cpu"]),
])
def test_a_read_only_output_folder_is_one_line_and_exit_2(tmp_path, monkeypatch, command, args):
    out = tmp_path / "ro" / "run"
    real_mkdir = Path.mkdir

    def mkdir(self, *a, **kw):  # the machine's read-only file system, as the audit met it
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    r = CliRunner().invoke(load_command(command), [*args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and "Read-only file system" in last and str(tmp_path / "ro") in last
    assert "Traceback" not in r.output


def test_a_resume_with_changed_settings_names_them_and_refuses(tmp_path):
    out = tmp_path / "run"
    cli = load_command("train")
    base = ["synthetic:photo:8", *TINY, "--workers", "0", "--snapshot-every", "2", "--out", str(out)]
    assert CliRunner().invoke(cli, [*base, "--iters", "2"]).exit_code == 0
    r = CliRunner().invoke(cli, [*base, "--iters", "4", "--lr", "0.5", "--seed", "5"])
    assert r.exit_code == 2 and "--lr 0.002 → 0.5" in r.output and "--seed 0 → 5" in r.output, r.output
    assert "--iters" not in r.output.splitlines()[-1]  # the run length may change
    with pytest.raises(SettingsChanged):
        tiny_trainer(out, iters=4, r1=1.0, size=16).resume()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000002.pt"]  # nothing was trained
    # Settings that may change mid-run apply and are recorded.
    r = CliRunner().invoke(cli, [*base, "--iters", "4", "--keep", "1"])
    assert r.exit_code == 0 and "applied changed settings: --iters 2 → 4, --keep 5 → 1" in r.output, r.output
    change = json.loads((out / "config_changes.jsonl").read_text().splitlines()[-1])
    assert change["step"] == 2 and "--iters 2 → 4" in change["changed"]
    assert json.loads((out / "config.json").read_text())["iters"] == 4
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["000004.pt"]


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    out = tmp_path / "run"
    tiny_trainer(out, iters=4).train(batches())
    newest = out / "checkpoints" / "000004.pt"
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a half-copied file
    t = tiny_trainer(out, iters=6)
    assert t.resume() == f"resumed from {out / 'checkpoints' / '000002.pt'} at step 2"
    assert any("000004.pt is unreadable" in n and "000004.pt.corrupt" in n for n in t.notes)
    assert (out / "checkpoints" / "000004.pt.corrupt").exists()
    assert "weights_only" not in " ".join(t.notes)
    t.train(batches())
    assert t.run.latest().name == "000006.pt"


def test_skipped_images_are_summarised_without_warning_source_lines(tmp_path):
    data = tmp_path / "faces"
    data.mkdir()
    for i in range(5):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(data / f"{i}.png")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cmd = [sys.executable, str(REPO / "stylegan2/train.py"), str(data), *TINY, "--workers", "2", "--iters", "3",
           "--out", str(tmp_path / "run")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"skipped 1 unreadable image: {data / 'broken.png'}" in r.stdout
    assert "warnings.warn" not in r.stderr and "UnreadableImageWarning" not in r.stderr
    assert "warning: skipping unreadable image" in r.stderr
