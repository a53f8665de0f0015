"""The StyleGAN2 training loop on tiny models: a tick runs, resume is exact, kill -9 loses nothing,
NaN stops the run, and data-parallel ranks agree."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from stylegan2.checkpoint import load_checkpoint, load_generator
from stylegan2.training import StyleGAN2Trainer, TrainConfig
from toonlab.checkpoint import CheckpointError
from toonlab.errors import UserInputError
from toonlab.training import NonFiniteLoss

REPO = Path(__file__).resolve().parents[1]
TINY = dict(size=16, batch=4, style_dim=16, n_mlp=2, channel_max=16, channel_base=128, d_reg_every=2,
            g_reg_every=2, workers=0, log_every=1, n_samples=4, ada_every=1, ada_kimg=0.1)
TINY_FLAGS = ["--size", "32", "--batch", "4", "--style-dim", "16", "--n-mlp", "2", "--channel-max", "16",
              "--channel-base", "128", "--workers", "0", "--device", "cpu"]


def batches(n: int, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(4, 3, 16, 16, generator=g) * 2 - 1 for _ in range(n)]


def trainer(tmp_path: Path, **kw) -> StyleGAN2Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(out=str(tmp_path), **{**TINY, **kw})
    return StyleGAN2Trainer(cfg, dataset=None, device=torch.device("cpu"))


def test_one_tick_runs_and_writes_run_folder(tmp_path):
    t = trainer(tmp_path / "run", iters=4, snapshot_every=2, sample_every=2)
    last = t.train(iter(batches(4)))
    assert last is not None and last.name == "000004.pt"
    lines = [json.loads(line) for line in (tmp_path / "run/stats.jsonl").read_text().splitlines()]
    assert len(lines) == 4
    for key in ("loss/d", "loss/g", "kimg"):
        assert all(torch.isfinite(torch.tensor(line[key])) for line in lines if key in line)
    assert any("loss/r1" in line for line in lines) and any("loss/path" in line for line in lines)
    assert json.loads((tmp_path / "run/config.json").read_text())["size"] == 16
    assert (tmp_path / "run/samples/000002.png").exists()
    ckpt = load_checkpoint(last)
    assert {"g", "d", "g_ema", "g_optim", "d_optim", "args", "ada_aug_p"} <= set(ckpt)
    assert ckpt["args"].size == 16
    load_generator(last)  # the community layout loads back strictly


def test_resume_is_exact(tmp_path):
    data = batches(6, seed=1)
    straight = trainer(tmp_path / "a", iters=6, snapshot_every=0, sample_every=0, ada_p=0.2)
    straight.train(iter(data))

    first = trainer(tmp_path / "b", iters=3, snapshot_every=3, sample_every=0, ada_p=0.2)
    first.train(iter(data[:3]))
    second = trainer(tmp_path / "b", iters=6, snapshot_every=0, sample_every=0, ada_p=0.2)
    assert "resumed" in second.resume() and second.step == 3
    # Optimiser state came back identical to what was saved.
    saved = load_checkpoint(tmp_path / "b/checkpoints/000003.pt")["g_optim"]["state"]
    for k, v in second.g_optim.state_dict()["state"].items():
        assert torch.equal(v["exp_avg"], saved[k]["exp_avg"])
    second.train(iter(data[3:]))
    for (name, a), b in zip(straight.G.state_dict().items(), second.G.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(straight.G_ema.state_dict()["style.1.weight"], second.G_ema.state_dict()["style.1.weight"])
    assert straight.ada.p == second.ada.p


def test_kimg_counts_images_across_a_warm_start_with_another_batch(tmp_path):
    first = trainer(tmp_path / "a", iters=3, snapshot_every=3, sample_every=0)
    first.train(iter(batches(3)))
    ckpt = tmp_path / "a/checkpoints/000003.pt"
    assert load_checkpoint(ckpt)["toonlab"]["nimg"] == 3 * 4
    # a new run at batch 8 from that file: it continues at 12 images, then adds 8 per step
    second = trainer(tmp_path / "b", iters=5, snapshot_every=0, sample_every=0, batch=8, resume=str(ckpt))
    assert "started from" in second.resume() and second.step == 3 and second.nimg == 12
    g = torch.Generator().manual_seed(2)
    second.train(iter([torch.rand(8, 3, 16, 16, generator=g) * 2 - 1 for _ in range(2)]))
    lines = [json.loads(line) for line in (tmp_path / "b/stats.jsonl").read_text().splitlines()]
    assert [round(line["kimg"] * 1000) for line in lines if "kimg" in line][-1] == 12 + 2 * 8  # not 5 × 8
    # a file from before the count was stored: its step × its own batch
    old = load_checkpoint(ckpt)
    del old["toonlab"]["nimg"]
    torch.save(old, tmp_path / "old.pt")
    third = trainer(tmp_path / "c", iters=5, snapshot_every=0, sample_every=0, batch=8, resume=str(tmp_path / "old.pt"))
    third.resume()
    assert third.step == 3 and third.nimg == 12
    # an exported (slim, float16) file keeps the count: what the GPU plan warm-starts from
    from stylegan2.export import export_snapshot

    slim = export_snapshot(ckpt, tmp_path / "slim.pt", half=True)
    fourth = trainer(tmp_path / "d", iters=5, snapshot_every=0, sample_every=0, batch=8, resume=str(slim))
    fourth.resume()
    assert fourth.step == 3 and fourth.nimg == 12
    # an exact resume keeps counting
    again = trainer(tmp_path / "a", iters=4, snapshot_every=0, sample_every=0)
    assert "resumed" in again.resume() and again.nimg == 12


def test_warm_start_keeps_adam_moments_but_takes_this_runs_learning_rate(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    ckpt = tmp_path / "a/checkpoints/000002.pt"
    second = trainer(tmp_path / "b", iters=4, snapshot_every=0, sample_every=0, lr=0.0005, resume=str(ckpt))
    second.resume()
    # lazy regularisation scales lr by every/(every+1) (here 2/3) and the betas likewise
    for optim, key in ((second.g_optim, "g_optim"), (second.d_optim, "d_optim")):
        assert optim.param_groups[0]["lr"] == pytest.approx(0.0005 * 2 / 3)
        assert optim.param_groups[0]["betas"][1] == pytest.approx(0.99 ** (2 / 3))
        saved = load_checkpoint(ckpt)[key]
        assert saved["param_groups"][0]["lr"] == pytest.approx(0.002 * 2 / 3)  # what the file had
        for k, v in optim.state_dict()["state"].items():
            assert torch.equal(v["exp_avg"], saved["state"][k]["exp_avg"])


def test_wider_discriminator_keeps_the_trained_generator_and_widens_d_keeping_its_function(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    ckpt = tmp_path / "a/checkpoints/000002.pt"
    saved = load_checkpoint(ckpt)
    second = trainer(tmp_path / "b", iters=4, snapshot_every=2, sample_every=0, resume=str(ckpt),
                     d_channel_max=32, d_channel_base=256)
    assert set(second.D.channels.values()) == {32} and set(second.G.channels.values()) == {16}
    with pytest.warns(UserWarning, match="other widths.*widened, keeping its function"):
        second.resume()
    for k, v in second.G.state_dict().items():
        assert torch.equal(v, saved["g"][k])
    # what the trained D said of an image, the widened one says too (up to the symmetry-breaking noise)
    x = batches(1, seed=5)[0]
    with torch.no_grad():
        said, says = first.D(x), second.D(x)
    assert (says - said).abs().max() < 0.05 * said.abs().mean() + 1e-3
    assert second.step == 2 and not second.d_optim.state_dict()["state"]  # D's Adam starts empty
    assert second.g_optim.state_dict()["state"]  # G's moments came with it
    last = second.train(iter(batches(2)))
    # the wider D is what the run saves, and an exact resume of the new folder loads it
    assert load_checkpoint(last)["toonlab"]["d_config"]["channels"] == second.D.channels
    again = trainer(tmp_path / "b", iters=4, snapshot_every=0, sample_every=0, d_channel_max=32, d_channel_base=256)
    assert "resumed" in again.resume()


def test_wider_generator_draws_what_the_trained_one_did_and_keeps_d(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    ckpt = tmp_path / "a/checkpoints/000002.pt"
    saved = load_checkpoint(ckpt)
    wide = {k: 2 * v for k, v in first.G.channels.items()}
    second = trainer(tmp_path / "b", iters=4, snapshot_every=2, sample_every=0, resume=str(ckpt),
                     channel_base=2 * TINY["channel_base"], channel_max=2 * TINY["channel_max"],
                     d_channel_base=TINY["channel_base"], d_channel_max=TINY["channel_max"])
    assert second.G.channels == wide and second.D.channels == first.D.channels
    with pytest.warns(UserWarning, match="generator has other widths.*widened, keeping what it draws"):
        second.resume()
    z = torch.randn(3, first.G.style_dim)
    with torch.no_grad():
        for old, new in ((first.G_ema, second.G_ema), (first.G, second.G)):
            torch.testing.assert_close(new([z], noise_mode="const")[0], old([z], noise_mode="const")[0],
                                       rtol=1e-4, atol=1e-4)
    for k, v in second.D.state_dict().items():
        assert torch.equal(v, saved["d"][k])
    assert not second.g_optim.state_dict()["state"] and second.d_optim.state_dict()["state"]
    last = second.train(iter(batches(2)))
    assert load_checkpoint(last)["toonlab"]["g_config"]["channels"] == wide
    narrower = trainer(tmp_path / "c", iters=2, resume=str(last))  # the file is wider than this run: no way back
    with pytest.raises(UserInputError, match="cannot widen.*cannot be narrowed"):
        narrower.resume()


def test_a_discriminator_not_a_whole_multiple_wider_starts_fresh_and_says_why(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    second = trainer(tmp_path / "b", iters=2, resume=str(tmp_path / "a/checkpoints/000002.pt"), d_channel_max=24,
                     d_channel_base=256)
    with pytest.warns(UserWarning, match="starting D and its optimiser fresh .*not a multiple of 16"):
        second.resume()
    assert not second.d_optim.state_dict()["state"]


def test_d_warmup_holds_g_still_for_its_kimg_then_g_trains_and_a_resume_keeps_the_count(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    ckpt = tmp_path / "a/checkpoints/000002.pt"
    g0, d0 = load_checkpoint(ckpt)["g"], load_checkpoint(ckpt)["d"]

    def run_to(iters: int, **kw) -> dict:
        t = trainer(tmp_path / "b", iters=iters, snapshot_every=1, sample_every=0, keep=0, d_warmup_kimg=0.008, **kw)
        t.resume()
        assert t.run_start_nimg == 8  # where this folder began, also after a resume (not 0)
        return load_checkpoint(t.train(iter(batches(iters - t.step))))

    # batch 4: 0.008 kimg = 8 images = the steps at 2 and 3 train D alone; G trains from step 4 on
    after3 = run_to(3, resume=str(ckpt))
    assert all(torch.equal(v, g0[k]) for k, v in after3["g"].items())
    assert any(not torch.equal(v, d0[k]) for k, v in after3["d"].items())
    after4 = run_to(4)  # resumed: still held
    assert all(torch.equal(v, g0[k]) for k, v in after4["g"].items())
    after5 = run_to(5)
    assert any(not torch.equal(v, g0[k]) for k, v in after5["g"].items())


def test_a_discriminator_of_another_architecture_is_a_one_line_error(tmp_path):
    first = trainer(tmp_path / "a", iters=2, snapshot_every=2, sample_every=0)
    first.train(iter(batches(2)))
    ckpt = tmp_path / "a/checkpoints/000002.pt"
    bad = load_checkpoint(ckpt)
    bad["d"] = {k: v for k, v in bad["d"].items() if not k.startswith("final_linear")}
    torch.save(bad, tmp_path / "bad.pt")
    second = trainer(tmp_path / "b", iters=4, resume=str(tmp_path / "bad.pt"))
    with pytest.raises(CheckpointError, match="d is missing key 'final_linear"):
        second.resume()


def test_nan_stops_with_step_and_keeps_last_good_checkpoint(tmp_path):
    t = trainer(tmp_path / "run", iters=10, snapshot_every=2, sample_every=0)
    data = batches(10)
    data[3] = data[3] * float("nan")
    with pytest.raises(NonFiniteLoss, match="at step 3"):
        t.train(iter(data))
    assert [p.name for p in t.run.checkpoints()] == ["000002.pt"]
    load_checkpoint(t.run.latest())


def test_kill_9_then_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "stylegan2/train.py"), "synthetic:photo", *TINY_FLAGS, "--out", str(out),
           "--iters", "400", "--snapshot-every", "3", "--sample-every", "0", "--keep", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=tmp_path)
    ckpts = out / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(ckpts.glob("0*.pt"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(ckpts.glob("0*.pt"))
    assert done, proc.stdout.read().decode()[-2000:]
    # A half-written file from the killed save must never be picked up.
    (ckpts / ".000999.pt.abc.tmp").write_bytes(b"partial")
    latest = max(int(p.stem) for p in ckpts.glob("0*.pt"))
    load_checkpoint(ckpts / f"{latest:06d}.pt")
    rerun = subprocess.run(cmd[:-8] + ["--iters", str(latest + 2), "--snapshot-every", "0", "--sample-every", "0"],
                           capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"resumed from {ckpts / f'{latest:06d}.pt'} at step {latest}" in rerun.stdout
    final = load_checkpoint(ckpts / f"{latest + 2:06d}.pt")
    assert final["toonlab"]["step"] == latest + 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, q) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK="0")
    import torch.distributed as dist

    from stylegan2.training import close_distributed, init_distributed

    info, device = init_distributed("cpu")
    torch.manual_seed(0)  # same initial weights on every rank
    cfg = TrainConfig(out=out, iters=2, snapshot_every=0, sample_every=0, **TINY)
    t = StyleGAN2Trainer(cfg, dataset=None, device=device, info=info)
    torch.manual_seed(100 + rank)  # different latents and data per rank, as in real training
    t.train(iter(batches(2, seed=rank)))
    flat = torch.cat([p.detach().reshape(-1) for p in t.G.parameters()] + [p.detach().reshape(-1) for p in t.D.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    if rank == 0:
        q.put([bool(torch.equal(gathered[0], g)) for g in gathered])
    close_distributed(info)
    # Skip interpreter teardown: gloo can still be freeing the last collective's tensors on its own
    # thread, and that decref during finalisation aborts the rank (PyTorch's race, not this test's
    # subject; see close_distributed). The result is in the queue already.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.slow
def test_data_parallel_ranks_agree(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "ddp"), q), nprocs=2, join=True,
                       start_method="spawn")
    assert q.get() == [True, True]
    # Only rank 0 wrote the run folder.
    assert (tmp_path / "ddp/checkpoints/000002.pt").exists()


def test_dry_run_prints_config(tmp_path):
    from click.testing import CliRunner

    from stylegan2.train import main

    r = CliRunner().invoke(main, ["synthetic:photo", "--size", "32", "--kimg", "1", "--batch", "8", "--dry-run"])
    assert r.exit_code == 0, r.output
    cfg = json.loads(r.output)
    assert cfg["size"] == 32 and cfg["iters"] == 125
    r = CliRunner().invoke(main, ["synthetic:photo", "--size", "48", "--dry-run"])
    assert r.exit_code == 2 and "power of two" in r.output
    r = CliRunner().invoke(main, [str(tmp_path / "nothing"), *TINY_FLAGS, "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "not found" in r.output, r.output


def test_ema_decay_is_a_half_life_in_images():
    """The community's fixed per-step decay 0.5 ** (32 / 10000) is ours only at a global batch of 32."""
    from stylegan2.training import ema_decay

    assert ema_decay(10.0, None, 1000, 32) == pytest.approx(0.5 ** (32 / (10 * 1000)))
    assert ema_decay(10.0, None, 1000, 16) == pytest.approx(0.5 ** (16 / 10000))  # rosinality: still 32/10000
    assert ema_decay(10.0, None, 1000, 16) ** 2 == pytest.approx(ema_decay(10.0, None, 1000, 32))
    # Ramp-up: the half-life is at most 5 % of the images seen (step 0 with batch 32: 1.6 images).
    assert ema_decay(10.0, 0.05, 0, 32) == pytest.approx(0.5 ** (32 / 1.6))
    assert ema_decay(10.0, 0.05, 10**6, 32) == ema_decay(10.0, None, 0, 32)
    # the ramp-up goes by the images seen (which a warm start at another batch carries over)
    assert ema_decay(10.0, 0.05, 12, 4) == pytest.approx(0.5 ** (4 / ((12 + 4) * 0.05)))
