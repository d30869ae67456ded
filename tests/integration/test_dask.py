"""Chips spread over Dask workers are the serial run's chips: ``reliability simulate --workers``
writes the serial Parquet file row for row, and the DAC/ADC saturation counts add up to the serial
ones."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from reliability.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed")
    from reliability.sampling.parallel import make_client

    c = make_client(workers=2)
    yield c
    cluster = c.cluster
    c.close()
    cluster.close()


def test_simulate_on_workers_writes_the_serial_file(public_case, tmp_path, capsys):
    p = tmp_path / "eval.npz"
    np.savez(p, X=public_case.X, y=public_case.y)
    common = ["simulate", "--model", str(public_case.path / "model.onnx"), "--data", str(p), "--variation",
              "weight-gaussian:sigma=0.05", "--chips", "37", "--chunk-size", "8", "--seed", "4"]
    assert main(common + ["--out", str(tmp_path / "serial.parquet")]) == 0
    assert main(common + ["--workers", "2", "--out", str(tmp_path / "dask.parquet")]) == 0
    serial, dask = pl.read_parquet(tmp_path / "serial.parquet"), pl.read_parquet(tmp_path / "dask.parquet")
    assert dask["chip"].to_list() == list(range(37))
    assert dask.equals(serial)


def test_saturation_counts_on_workers_match_the_serial_run(public_case, client):
    from reliability.cim import ChipSimulator
    from reliability.cim.spec import ChipSpec, MappingSpec, PeripherySpec
    from reliability.devices import load_device
    from reliability.sampling.parallel import simulate_on_cluster

    net, X, y = public_case.network, public_case.X, public_case.y
    spec = ChipSpec(device=load_device("pcm").with_(read_noise=None, drift=None),
                    mapping=MappingSpec(weight_bits=8, device_bits=2, tile_rows=32),
                    periphery=PeripherySpec(adc_bits=3, adc_range="percentile", adc_percentile=90.0))
    serial = ChipSimulator(net, spec).evaluate(X, y, 11, rng=2, chunk_size=3)
    dist = simulate_on_cluster(ChipSimulator(net, spec), X, y, 11, client, rng=2, chunk_size=3)
    np.testing.assert_array_equal(dist.accuracy, serial.accuracy)
    np.testing.assert_array_equal(dist.loss, serial.loss)
    assert dist.chip.tolist() == list(range(11)) and dist.complete
    assert dist.diagnostics == serial.diagnostics and dist.diagnostics["adc_saturated_fraction"] > 0.01
