"""The all-reduce model against NCCL's own arithmetic (hand-worked from its tuning tables) and against real
NCCL measurements on A100 nodes (Vidur's, data/profiles/a100/LICENSE.md)."""
import csv

import numpy as np
import pytest

from infersim.roofline.collectives import Fabric, all_reduce_s, choices, chosen

A100_NODE = Fabric("nvswitch", "ampere", 300e9)
H100_NODE = Fabric("nvswitch", "hopper", 450e9, nvls=True)


def bus_gbs(fabric, algorithm, protocol, gpus):
    """NCCL's bus bandwidth of a choice: its algorithm bandwidth x 2 (n - 1) / n (ring, NVLS)."""
    c = next(c for c in choices(fabric, gpus) if (c.algorithm, c.protocol) == (algorithm, protocol))
    return c.algorithm_bandwidth_bytes_per_s * 2 * (gpus - 1) / gpus / 1e9


def test_nccl_channels_and_bandwidths_as_its_search_finds_them():
    # A100: 12 NVLinks x 20 GB/s = 240 GB/s: 12 ring channels of 20 GB/s. H100: 18 x 20.6 = 370.8 GB/s: 6
    # channels of 60 found first, duplicated to 12 of 30 = 360 (the ~370 GB/s NCCL's maintainer quotes,
    # NVIDIA/nccl-tests#212). NVLS on 8 H100s: 8 channels, intra speed 40 (9 shares x 40 <= 370.8), inter
    # raised to 60; 8 x min(2 x 40 x 0.85 x 7/8, 60) = 8 x 59.5 = 476 ("~480 GB/s", same thread).
    assert bus_gbs(A100_NODE, "ring", "Simple", 8) == pytest.approx(240)
    assert bus_gbs(H100_NODE, "ring", "Simple", 8) == pytest.approx(360)
    assert bus_gbs(H100_NODE, "nvls", "Simple", 8) == pytest.approx(476)


def test_nccl_runs_low_latency_rings_for_small_payloads_and_nvls_for_large_ones_on_hopper():
    # ring/LL latency on 8 GPUs: 6.6 + 14 x 0.6 = 15 us; NVLS's is 25 us, but its bandwidth wins from ~1 MB
    small, large = chosen(H100_NODE, 4096, 8), chosen(H100_NODE, 64 << 20, 8)
    assert (small.algorithm, small.protocol, small.latency_s) == ("ring", "LL", pytest.approx(15e-6))
    assert (large.algorithm, large.protocol) == ("nvls", "Simple")
    assert chosen(A100_NODE, 64 << 20, 8).algorithm == "ring"  # no NVLS before Hopper


def test_a_large_all_reduce_moves_at_the_efficiency_of_nccls_bandwidth():
    # 1 GiB on 8 A100s: ring/Simple, 240 x 0.8 = 192 GB/s bus = 192 x 8 / 14 = 109.7 GB/s algorithm:
    # 30 us + 8.4 us + 14 x 3.4 us + 2^30 B / 109.7e9 B/s = 9.83 ms
    assert all_reduce_s(A100_NODE, 2 ** 30, 8) == pytest.approx(30e-6 + 8.4e-6 + 47.6e-6 + 2 ** 30 / (192e9 * 8 / 14))
    assert all_reduce_s(A100_NODE, np.array([1e3, 1e6]), 1).tolist() == [0.0, 0.0]


def _measured(path, fabric_of):
    rows = []
    with open(path) as f:
        for row in csv.DictReader(f):
            gpus, per_node = int(row["num_workers"]), int(row["devices_per_node"])
            if gpus == per_node:  # one node
                rows.append((fabric_of(gpus), gpus, float(row["size"]), float(row["time_stats.all_reduce.median"]) * 1e-3))
    return rows


@pytest.mark.parametrize("name,fabric_of", [
    ("all_reduce_dgx.csv", lambda gpus: A100_NODE),
    # an NVLink-bridged pair (12 links), and two such pairs joined over PCIe Gen4 x16
    ("all_reduce_pairwise_nvlink.csv",
     lambda gpus: Fabric("nvlink", "ampere", 300e9) if gpus == 2 else Fabric("pcie", "ampere", 32e9))])
def test_the_model_predicts_real_nccl_all_reduces_within_15_percent(profile_dir, name, fabric_of):
    rows = _measured(profile_dir / name, fabric_of)
    by_gpus = {}
    for fabric, gpus, size, measured in rows:
        by_gpus.setdefault(gpus, []).append(abs(all_reduce_s(fabric, size, gpus) - measured) / measured)
    for gpus, errors in by_gpus.items():
        assert np.median(errors) < 0.15, (name, gpus, np.median(errors))
    large = [abs(all_reduce_s(f, s, g) - t) / t for f, g, s, t in rows if s >= 1e6]
    assert np.median(large) < 0.10 and np.percentile(large, 90) < 0.25
