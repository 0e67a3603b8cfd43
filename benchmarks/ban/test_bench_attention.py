"""Checks that the BAN benchmark measures what it says (run: ``python -m pytest -q benchmarks/ban``; not part of
the default test run). The peer test runs only where ``BAN_VQA`` names a checkout of jnhwkim/ban-vqa."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_attention as bench

PEER = os.environ.get("BAN_VQA")


def _args(**kw) -> argparse.Namespace:
    base = {"repeats": 1, "repeats_official": 1, "gemm_repeats": 1, "ban_vqa": None, "max_wait": 0.0,
            "child_timeout": 120.0}
    return argparse.Namespace(**{**base, **kw})


def _outputs_and_grads(variant: str, d: bench.Dims, ban_vqa: str | None = None):
    torch.set_num_threads(1)
    x = bench.inputs(d)
    model = bench.build_attention(variant, d, ban_vqa).eval()  # eval: no dropout, so outputs are comparable
    q = x["q"].requires_grad_()
    out = model(x["v"], q)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), q.grad.clone()


def test_naive_variant_computes_the_same_with_the_same_parameters():
    ours, g_ours = _outputs_and_grads("ours", bench.TINY)
    naive, g_naive = _outputs_and_grads("naive", bench.TINY)
    assert ours.shape == (bench.TINY.batch, bench.TINY.glimpses, bench.TINY.hidden)
    torch.testing.assert_close(naive, ours)
    torch.testing.assert_close(g_naive, g_ours)
    naive_model = bench.build_attention("naive", bench.TINY)
    assert naive_model.attention.naive and all(p.naive for p in naive_model.pool)
    assert not any(p.naive for p in bench.build_attention("ours", bench.TINY).pool)


@pytest.mark.skipif(not PEER, reason="set BAN_VQA to a checkout of jnhwkim/ban-vqa")
def test_peer_with_our_parameters_computes_the_same():
    d = replace(bench.TINY, v_dim=12)
    ours, g_ours = _outputs_and_grads("ours", d)
    peer, g_peer = _outputs_and_grads("peer", d, PEER)
    torch.testing.assert_close(peer, ours)
    torch.testing.assert_close(g_peer, g_ours)


@pytest.mark.parametrize("whole_step", [True, False])
def test_analytic_flops_equal_the_counter(whole_step):
    torch.set_num_threads(1)
    for d in (bench.TINY, replace(bench.TINY, batch=3, tokens=6, glimpses=3)):
        assert bench.analytic_flops(d, whole_step)["total"] == bench.counted_step_flops(d, whole_step, (1, 2))


def test_official_step_flops_and_joint_tensor_sizes():
    flops = bench.analytic_flops(bench.OFFICIAL)
    assert flops["total"] == 1_235_607_355_392  # 1.236 TFLOP (the issue says "about 1.36")
    assert flops["pool_v_net"] == 2 * 8 * 2 * 256 * 36 * 2048 * 1024
    joint = bench.joint_bytes(bench.OFFICIAL)
    assert joint["attention"] == 4 * 256 * 36 * 14 * 3072 and joint["pooling"] == joint["attention"] // 3


def test_naive_batch_is_halved_until_its_estimate_fits():
    d = bench.OFFICIAL
    est = bench.naive_estimate_bytes(d)
    assert bench.fit_naive_batch(d, est) == 256
    assert bench.fit_naive_batch(d, est - 1) == 128
    assert bench.fit_naive_batch(d, est / 4) == 64
    assert bench.naive_estimate_bytes(replace(d, batch=128)) * 2 == est


def test_naive_peak_memory_exceeds_ours_by_the_joint_tensor():
    d = bench.Dims(batch=32, boxes=36, tokens=14, v_dim=32, hidden=128, glimpses=2, embed=8, answers=5, vocab=9)
    rows = {v: bench.run_child("attention", v, d, 1, _args()) for v in ("ours", "naive")}
    for r in rows.values():
        assert "error" not in r, r
        assert r["median_s"] > 0 and r["median_cpu_s"] > 0 and r["flops"] == bench.analytic_flops(d, False)["total"]
    joint_mib = bench.joint_bytes(d)["attention"] / 2 ** 20  # 24.8 MiB
    assert rows["naive"]["peak_delta_mib"] - rows["ours"]["peak_delta_mib"] > joint_mib


def test_script_at_tiny_size_writes_json_and_table(tmp_path, capsys):
    rc = bench.main(["--preset", "tiny", "--batches", "4", "--variants", "ours,naive,peer", "--max-wait", "0",
                     "--repeats", "2", "--gemm-repeats", "2", "--out", str(tmp_path), "--tag", "_t"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "peer is skipped" in printed and "achieved" in printed and "% of the measured GEMM rate" in printed
    data = json.loads((tmp_path / "bench_attention_t.json").read_text())
    assert [r["variant"] for r in data["attention"]] == ["ours", "naive"]
    for r in data["attention"]:
        assert "error" not in r, r
        assert len(r["wall_s"]) == 2 and r["peak_delta_mib"] >= 0 and r["batch"] == 4
    (step,) = data["step"]
    assert "error" not in step, step
    assert step["flops"] == step["counted_flops"] == bench.analytic_flops(bench.TINY)["total"]
    assert len(step["gemm"]) == 2 and all(g["gflops_per_s"] > 0 for g in step["gemm"])
    md = (tmp_path / "bench_attention_t.md").read_text()
    assert md.strip() == bench.markdown(data) and "| 4 | 1 | naive |" in md
