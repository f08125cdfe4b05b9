"""The CPU calibration's probes (infersim/kernels/calibrate.py): the exp probe keeps its best round, and a
rate no CPU of the last decade would measure is called out instead of written silently."""
import numpy as np

from infersim.kernels import calibrate
from infersim.kernels.measure import interleaved_times_s


def test_interleaved_times_have_a_row_per_round_and_a_column_per_function():
    times = interleaved_times_s([lambda: None, lambda: None], rounds=3, warmup=1, sample_s=0.0)
    assert times.shape == (3, 2) and np.all(times >= 0)


def test_the_exp_probe_keeps_its_best_round_and_the_others_their_median(monkeypatch):
    for name, probe in calibrate.PROBES.items():  # every probe one unit of work a call, timed as below
        monkeypatch.setitem(calibrate.PROBES, name, probe._replace(make=lambda: (lambda: None, 1.0)))
    # Three rounds: every probe 1 s, 4 s and 2 s, except exp, stalled by load in two rounds (4 s, 400 s).
    seconds = np.tile([[1.0], [4.0], [2.0]], (1, len(calibrate.PROBES)))
    exp = list(calibrate.PROBES).index("exp")
    seconds[:, exp] = [4.0, 0.5, 400.0]
    monkeypatch.setattr(calibrate, "interleaved_times_s", lambda fns, rounds, progress: seconds)
    rates = calibrate.measure_rates()
    assert rates["exp"] == 1 / 0.5  # the best round; the median (4 s) would say 0.25/s
    assert rates["GEMM fp32"] == rates["STREAM triad"] == 1 / 2.0  # median of 1, 4 and 2 s


def test_an_exp_rate_of_a_busy_machine_is_called_out_naming_the_field_to_distrust():
    # The walkthrough's busy 2-core machine: 1.4e7 exponentials/s written as special_function_per_s
    # (an idle one measures ~1.7e9 with the old probe).
    [warning] = calibrate.implausible_rates({"exp": 1.4e7, "kernel call": 1e5})
    assert warning.startswith("warning: exp measured 1.4e+07/s, below the 1e+08/s")
    assert "busy" in warning and "special_function_per_s" in warning


def test_plausible_rates_pass_without_a_warning():
    # 1.7e9 exponentials/s; 1e5 calls/s is a 10 us call, Numba's usual
    assert calibrate.implausible_rates({"exp": 1.7e9, "kernel call": 1e5}) == []
