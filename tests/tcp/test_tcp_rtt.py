"""RFC 6298: the smoothed RTT, its variance and the retransmission timeout."""
import pytest

from lwstack.proto.tcp.rtt import RttEstimator


def test_before_the_first_sample_the_rto_is_the_initial_one():
    # RFC 6298 2.1: RTO = 1 s until a measurement is made.
    est = RttEstimator()
    assert est.srtt is None and est.rttvar is None and est.min_rtt is None
    assert est.rto == 1.0
    est.reset_backoff()
    assert est.rto == 1.0


def test_first_sample_sets_srtt_and_half_rttvar():
    # RFC 6298 2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, K*RTTVAR).
    est = RttEstimator(min_rto=0.001)
    est.sample(0.1)
    assert est.srtt == pytest.approx(0.1)
    assert est.rttvar == pytest.approx(0.05)
    assert est.rto == pytest.approx(0.1 + 4 * 0.05)
    assert est.min_rtt == pytest.approx(0.1)
    assert est.samples == 1


def test_subsequent_samples_update_rttvar_from_the_old_srtt():
    # RFC 6298 2.3: RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'| (with the old SRTT), then
    # SRTT <- 7/8 SRTT + 1/8 R'.
    est = RttEstimator(min_rto=0.001)
    srtt, rttvar = 0.1, 0.05
    est.sample(0.1)
    for r in (0.3, 0.05, 0.12, 0.12, 0.5):
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
        est.sample(r)
        assert est.rttvar == pytest.approx(rttvar)
        assert est.srtt == pytest.approx(srtt)
        assert est.rto == pytest.approx(srtt + max(0.001, 4 * rttvar))
    assert est.min_rtt == pytest.approx(0.05)
    assert est.latest_rtt == pytest.approx(0.5)


def test_granularity_term_when_the_variance_vanishes():
    # A perfectly steady path drives RTTVAR towards 0; the clock granularity G then keeps
    # the RTO above SRTT (RFC 6298 2.3).
    est = RttEstimator(min_rto=0.0001, granularity=0.01)
    for _ in range(200):
        est.sample(0.05)
    assert est.rttvar < 1e-9
    assert est.rto == pytest.approx(0.05 + 0.01)


def test_rto_is_clamped_to_min_and_max():
    est = RttEstimator()                     # Linux's 200 ms floor
    est.sample(0.001)
    assert est.rto == 0.2
    est = RttEstimator(max_rto=60.0)
    est.sample(40.0)                         # 40 + 4*20 = 120 -> 60
    assert est.rto == 60.0


def test_backoff_doubles_up_to_the_maximum_and_a_sample_ends_it():
    # RFC 6298 5.5: RTO <- RTO * 2 on expiry; "a maximum value MAY be placed".
    est = RttEstimator(max_rto=10.0)
    est.sample(0.5)                          # rto = 0.5 + 4*0.25 = 1.5
    assert est.rto == pytest.approx(1.5)
    seen = []
    for _ in range(5):
        est.backoff()
        seen.append(est.rto)
    assert seen == pytest.approx([3.0, 6.0, 10.0, 10.0, 10.0])
    assert est.backoffs == 5
    est.sample(0.5)                          # Karn: a valid sample recomputes the RTO
    assert est.backoffs == 0
    assert est.rto == pytest.approx(est.srtt + 4 * est.rttvar)


def test_reset_backoff_recomputes_from_the_estimates():
    est = RttEstimator()
    est.sample(0.4)
    normal = est.rto
    est.backoff()
    est.backoff()
    assert est.rto == pytest.approx(4 * normal)
    est.reset_backoff()
    assert est.rto == pytest.approx(normal)
    assert est.srtt == pytest.approx(0.4)    # the estimates themselves are untouched


def test_backoff_before_any_sample_starts_from_the_initial_rto():
    est = RttEstimator()
    est.backoff()
    assert est.rto == 2.0
    est.reset_backoff()
    assert est.rto == 1.0


def test_zero_rtt_is_a_valid_sample_on_virtual_time():
    est = RttEstimator()
    est.sample(0)
    assert est.srtt == 0.0 and est.rto == 0.2 and est.min_rtt == 0.0


@pytest.mark.parametrize("kwargs", [
    dict(min_rto=0), dict(min_rto=2.0, max_rto=1.0), dict(initial_rto=0.1),
    dict(initial_rto=500.0), dict(granularity=-1),
])
def test_inconsistent_configuration_is_refused(kwargs):
    with pytest.raises(ValueError):
        RttEstimator(**kwargs)


def test_negative_sample_is_refused():
    est = RttEstimator()
    with pytest.raises(ValueError):
        est.sample(-0.001)
    assert est.srtt is None and est.samples == 0
