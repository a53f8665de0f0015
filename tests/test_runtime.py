"""toonlab.runtime's CPU sizing: torch's thread pool follows a cgroup CPU quota, not the cores it sees."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from toonlab import runtime


def _fake_cgroup(monkeypatch, files: dict[str, str]) -> None:
    real = Path.read_text

    def read_text(self, *a, **kw):  # noqa: ANN001, ANN202
        if str(self).startswith("/sys/fs/cgroup"):
            if str(self) in files:
                return files[str(self)]
            raise FileNotFoundError(str(self))
        return real(self, *a, **kw)

    monkeypatch.setattr(Path, "read_text", read_text)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))


def test_cpu_limit_reads_v2_and_v1_quotas(monkeypatch):
    _fake_cgroup(monkeypatch, {"/sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert runtime.cpu_limit() == 2  # 1.5 CPUs: two threads
    _fake_cgroup(monkeypatch, {"/sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert runtime.cpu_limit() == 16
    _fake_cgroup(monkeypatch, {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "400000\n",
                               "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert runtime.cpu_limit() == 4
    _fake_cgroup(monkeypatch, {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
                               "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n"})
    assert runtime.cpu_limit() == 16
    _fake_cgroup(monkeypatch, {})
    assert runtime.cpu_limit() == 16


def test_limit_cpu_threads_follows_the_quota_unless_the_user_chose(monkeypatch):
    before = torch.get_num_threads()
    try:
        _fake_cgroup(monkeypatch, {"/sys/fs/cgroup/cpu.max": "100000 100000\n"})
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert runtime.limit_cpu_threads() == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"  # children follow
        torch.set_num_threads(before)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        runtime.limit_cpu_threads()
        assert torch.get_num_threads() == before  # the user's choice stands
    finally:
        torch.set_num_threads(before)
