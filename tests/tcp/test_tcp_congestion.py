"""Congestion control: RFC 5681/6582 (NewReno), RFC 3465 byte counting, RFC 9438 (CUBIC).

The CUBIC expectations are computed here from RFC 9438's formulas (figures 1 and 2), not taken
from the implementation.
"""
import pytest

from lwstack.proto.tcp import congestion
from lwstack.proto.tcp.congestion import (AVAILABLE, DEFAULT, INFINITE_SSTHRESH, Cubic, Reno,
                                          initial_window, make)

MSS = 1000
C = 0.4
BETA_CUBIC = 0.7
ALPHA_CUBIC = 3 * (1 - BETA_CUBIC) / (1 + BETA_CUBIC)


def w_cubic(t, k, w_max):
    """RFC 9438 figure 1, in segments."""
    return C * (t - k) ** 3 + w_max


def k_of(w_max, cwnd_epoch):
    """RFC 9438 figure 2, in segments and seconds."""
    return ((w_max - cwnd_epoch) / C) ** (1 / 3)


def one_round(cc, now, rtt, ack_size=MSS):
    """Send a window, get it acknowledged by ACKs of ``ack_size`` bytes spread over one RTT."""
    window = cc.cwnd
    sizes = [ack_size] * (window // ack_size)
    if window % ack_size:
        sizes.append(window % ack_size)
    for i, size in enumerate(sizes):
        cc.on_ack(size, now + rtt * i / len(sizes), rtt=rtt)
    return now + rtt


def in_avoidance(cls, segments):
    """A controller already in congestion avoidance with a window of ``segments``."""
    cc = cls(MSS, 0.0)
    cc.cwnd = segments * MSS
    cc.ssthresh = segments * MSS
    return cc


# Initial state -------------------------------------------------------------------------------

@pytest.mark.parametrize("mss, expected", [
    (1460, 14600), (536, 5360), (1000, 10000), (9000, 18000), (8960, 17920), (100, 1000),
])
def test_initial_window_rfc6928(mss, expected):
    assert initial_window(mss) == expected
    for name in AVAILABLE:
        cc = make(name, mss, 0.0)
        assert cc.cwnd == expected
        assert cc.ssthresh == INFINITE_SSTHRESH
        assert cc.in_slow_start


# Slow start ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", AVAILABLE)
@pytest.mark.parametrize("segments_per_ack", [1, 2])
def test_slow_start_doubles_per_rtt(name, segments_per_ack):
    # RFC 5681 3.1: cwnd grows by (up to) one SMSS per segment acknowledged; with byte
    # counting and L = 2*SMSS (RFC 3465 2.2) a delayed-ACK receiver doubles it too.
    cc = make(name, MSS, 0.0)
    now = 0.0
    for _ in range(6):
        before = cc.cwnd
        now = one_round(cc, now, 0.05, ack_size=segments_per_ack * MSS)
        assert cc.cwnd == 2 * before
    assert cc.cwnd == 64 * initial_window(MSS)


def test_slow_start_byte_limit_is_two_mss_per_ack():
    # RFC 3465 2.2: a stretch ACK covering ten segments grows cwnd by at most L = 2*SMSS.
    cc = Reno(MSS, 0.0)
    cc.on_ack(10 * MSS, 0.1)
    assert cc.cwnd == initial_window(MSS) + 2 * MSS
    cc.on_ack(300, 0.2)                      # a partial segment counts its bytes
    assert cc.cwnd == initial_window(MSS) + 2 * MSS + 300


def test_slow_start_stops_at_ssthresh_and_the_rest_goes_to_avoidance():
    cc = Reno(MSS, 0.0)
    cc.cwnd = 9500
    cc.ssthresh = 10000
    cc.on_ack(2000, 0.1)                     # 500 bytes of slow start, 1500 bytes of CA
    assert cc.cwnd == 10000
    assert not cc.in_slow_start
    cc.on_ack(8500, 0.2)                     # 1500 + 8500 = one cwnd -> + 1 MSS
    assert cc.cwnd == 11000


@pytest.mark.parametrize("name", AVAILABLE)
def test_no_growth_in_recovery_or_for_nothing_acked(name):
    cc = make(name, MSS, 0.0)
    before = cc.cwnd
    cc.on_ack(MSS, 0.1, rtt=0.05, in_recovery=True)
    cc.on_ack(0, 0.2, rtt=0.05)
    assert cc.cwnd == before
    cc = in_avoidance(type(cc), 40)
    cc.on_ack(40 * MSS, 1.0, rtt=0.05, in_recovery=True)
    assert cc.cwnd == 40 * MSS


# Reno congestion avoidance -------------------------------------------------------------------

@pytest.mark.parametrize("segments_per_ack", [1, 2])
def test_reno_avoidance_adds_one_mss_per_rtt(segments_per_ack):
    # RFC 5681 3.1 / RFC 3465 2.1: cwnd += SMSS once a whole cwnd has been acknowledged.
    cc = in_avoidance(Reno, 20)
    now = 0.0
    for i in range(1, 11):
        now = one_round(cc, now, 0.1, ack_size=segments_per_ack * MSS)
        assert cc.cwnd == (20 + i) * MSS


def test_reno_stretch_ack_of_several_windows_adds_several_mss():
    cc = in_avoidance(Reno, 10)
    cc.on_ack(35 * MSS, 1.0)                 # 3 windows and a half
    assert cc.cwnd == 13 * MSS
    cc.on_ack(8 * MSS, 1.1)                  # 5 + 8 >= 13 -> one more
    assert cc.cwnd == 14 * MSS


# Reductions ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, beta", [("reno", 0.5), ("cubic", BETA_CUBIC)])
def test_congestion_event_sets_ssthresh_from_flight_size(name, beta):
    # RFC 5681 eq. 4 (beta 1/2); RFC 9438 4.6 (beta 0.7).  cwnd = ssthresh.
    cc = in_avoidance(type(make(name, MSS, 0.0)), 50)
    cc.on_congestion_event(1.0, flight_size=40 * MSS)
    assert cc.ssthresh == int(40 * MSS * beta)
    assert cc.cwnd == cc.ssthresh


@pytest.mark.parametrize("name", AVAILABLE)
def test_ssthresh_and_cwnd_floor_is_two_mss(name):
    cc = make(name, MSS, 0.0)
    cc.on_congestion_event(0.1, flight_size=MSS)
    assert cc.ssthresh == 2 * MSS
    assert cc.cwnd == 2 * MSS
    cc.on_rto(0.5, flight_size=0)
    assert cc.ssthresh == 2 * MSS
    assert cc.cwnd == MSS                    # the loss window is one segment


@pytest.mark.parametrize("name", AVAILABLE)
def test_recovery_exit_deflates_to_ssthresh(name):
    # RFC 6582 3.2 step 3: on a full ACK, cwnd = ssthresh (or the burst-avoiding option).
    cc = in_avoidance(type(make(name, MSS, 0.0)), 40)
    cc.on_congestion_event(1.0, flight_size=40 * MSS)
    ssthresh = cc.ssthresh
    cc.cwnd += 10 * MSS                      # the connection inflated it during recovery
    cc.on_recovery_exit(1.3)
    assert cc.cwnd == ssthresh
    cc.cwnd += 10 * MSS
    cc.on_recovery_exit(1.4, flight_size=5 * MSS)
    assert cc.cwnd == 6 * MSS                # min(ssthresh, max(flight, MSS) + MSS)


def test_recovery_exit_without_a_congestion_event_changes_nothing():
    cc = Reno(MSS, 0.0)
    cc.on_recovery_exit(1.0)
    assert cc.cwnd == initial_window(MSS)


@pytest.mark.parametrize("name", AVAILABLE)
def test_recovery_exit_after_a_timeout_keeps_the_slow_start_window(name):
    # RFC 5681 3.1: after a timeout the window grows by slow start from one segment; the
    # end of that recovery must not jump it to ssthresh (a burst).
    cc = in_avoidance(type(make(name, MSS, 0.0)), 40)
    cc.on_congestion_event(1.0, flight_size=40 * MSS)       # fast recovery ...
    cc.on_rto(2.0, flight_size=20 * MSS)                    # ... overtaken by a timeout
    cc.on_ack(MSS, 2.1, rtt=0.1)
    cc.on_ack(MSS, 2.2, rtt=0.1)
    assert cc.cwnd == 3 * MSS
    cc.on_recovery_exit(2.3)
    assert cc.cwnd == 3 * MSS and cc.in_slow_start
    # The next fast recovery deflates as usual.
    cc.cwnd = 30 * MSS
    cc.on_congestion_event(3.0, flight_size=30 * MSS)
    cc.cwnd += 5 * MSS
    cc.on_recovery_exit(3.5)
    assert cc.cwnd == cc.ssthresh


@pytest.mark.parametrize("name, beta", [("reno", 0.5), ("cubic", BETA_CUBIC)])
def test_rto_loss_window_and_ssthresh(name, beta):
    # RFC 5681 3.1: ssthresh per eq. 4, cwnd = LW = 1 SMSS; RFC 9438 4.8 uses beta_cubic.
    cc = in_avoidance(type(make(name, MSS, 0.0)), 60)
    cc.on_rto(2.0, flight_size=60 * MSS)
    assert cc.cwnd == MSS
    assert cc.ssthresh == int(60 * MSS * beta)
    # The same segment timing out again, nothing acknowledged in between: ssthresh is held.
    cc.on_rto(4.0, flight_size=MSS)
    assert cc.ssthresh == int(60 * MSS * beta)
    assert cc.cwnd == MSS
    # Slow start after a timeout grows by at most one MSS per ACK (RFC 3465 2.3) ...
    cc.on_ack(4 * MSS, 4.1)
    assert cc.cwnd == 2 * MSS
    # ... and once new data has been acknowledged, a new timeout reduces again.
    cc.on_rto(6.0, flight_size=2 * MSS)
    assert cc.ssthresh == 2 * MSS


def test_slow_start_limit_is_two_mss_again_after_a_later_recovery():
    cc = in_avoidance(Reno, 8)
    cc.on_rto(1.0, flight_size=8 * MSS)     # ssthresh 4 MSS, L = 1 MSS
    cc.on_ack(2 * MSS, 1.1)
    assert cc.cwnd == 2 * MSS
    cc.on_ack(2 * MSS, 1.2)
    cc.on_ack(2 * MSS, 1.3)
    assert cc.cwnd == 4 * MSS and not cc.in_slow_start
    cc.cwnd = 20 * MSS
    cc.on_congestion_event(5.0, flight_size=20 * MSS)        # ssthresh 10 MSS
    cc.on_recovery_exit(5.5, flight_size=2 * MSS)            # cwnd 3 MSS: slow start
    assert cc.in_slow_start
    cc.on_ack(4 * MSS, 5.6)
    assert cc.cwnd == 5 * MSS                # L = 2 MSS: this slow start follows no timeout


@pytest.mark.parametrize("name", AVAILABLE)
def test_spurious_undo_restores_the_window(name):
    cc = in_avoidance(type(make(name, MSS, 0.0)), 30)
    cc.on_spurious(0.5)                      # nothing to undo
    assert cc.cwnd == 30 * MSS and cc.ssthresh == 30 * MSS
    cc.on_congestion_event(1.0, flight_size=30 * MSS)
    assert cc.cwnd < 30 * MSS
    cc.on_spurious(1.1)
    assert cc.cwnd == 30 * MSS
    assert cc.ssthresh == 30 * MSS
    cc.on_rto(2.0, flight_size=30 * MSS)
    cc.on_spurious(2.1)
    assert cc.cwnd == 30 * MSS
    assert cc.ssthresh == 30 * MSS


def test_cubic_spurious_undo_restores_w_max():
    cc = in_avoidance(Cubic, 100)
    cc.on_congestion_event(1.0, flight_size=100 * MSS)
    assert cc.w_max == 100 * MSS
    cc.on_recovery_exit(1.2)
    cc.cwnd = 80 * MSS
    cc.on_congestion_event(2.0, flight_size=80 * MSS)       # fast convergence lowers W_max
    assert cc.w_max == pytest.approx(80 * MSS * (1 + BETA_CUBIC) / 2)
    cc.on_spurious(2.1)
    assert cc.w_max == 100 * MSS
    assert cc.cwnd == 80 * MSS


# CUBIC ---------------------------------------------------------------------------------------

def cubic_after_loss(w_max_segments, now=0.0, rtt=0.1):
    cc = in_avoidance(Cubic, w_max_segments)
    cc.on_congestion_event(now, flight_size=w_max_segments * MSS)
    cc.on_recovery_exit(now)
    return cc


def test_cubic_k_matches_rfc9438_figure_2():
    cc = cubic_after_loss(100)
    assert cc.cwnd == 70 * MSS
    assert cc.cwnd_epoch == 70 * MSS
    assert cc.w_max == 100 * MSS
    assert cc.k == pytest.approx(k_of(100, 70))
    assert cc.k == pytest.approx(((100 * (1 - BETA_CUBIC)) / C) ** (1 / 3))


def test_cubic_k_is_cached_for_the_epoch():
    cc = cubic_after_loss(100)
    k = cc.k
    now = 0.0
    for _ in range(20):
        now = one_round(cc, now, 0.1)
        assert cc.k == k
    assert cc.epoch_start == 0.0


def test_cubic_window_follows_w_cubic_with_ack_clocking():
    # A 100 ms path, W_max = 100 segments: the cubic term dominates (RFC 9438 4.4, 4.5).
    cc = cubic_after_loss(100)
    k = k_of(100, 70)
    now, rtt = 0.0, 0.1
    checked = 0
    for rounds in range(1, 61):
        now = one_round(cc, now, rtt)
        if rounds % 10 == 0:                 # t = 1, 2, 3, 4, 5, 6 s: concave, plateau, convex
            expected = w_cubic(now, k, 100)
            assert cc.cwnd / MSS == pytest.approx(expected, rel=0.01), now
            checked += 1
    assert checked == 6


@pytest.mark.parametrize("t", [0.25, 1.0, 2.0, 3.5, 4.2, 5.0, 6.0])
def test_cubic_window_equals_w_cubic_when_a_window_is_acked_at_once(t):
    # With RTT 0, acknowledging exactly cwnd bytes moves cwnd to target = W_cubic(t)
    # (cwnd += (target - cwnd)/cwnd per segment acknowledged, RFC 9438 4.4 / 4.5).
    cc = cubic_after_loss(100)
    k = k_of(100, 70)
    step = 0.25
    now = 0.0
    while now < t - 1e-9:
        now = min(t, now + step)
        cc.on_ack(cc.cwnd, now, rtt=0.0)
    assert cc.cwnd / MSS == pytest.approx(w_cubic(t, k, 100), abs=0.002)


def test_cubic_target_is_capped_at_one_and_a_half_cwnd():
    cc = cubic_after_loss(100)
    cc.on_ack(cc.cwnd, 20.0, rtt=0.1)        # W_cubic(20) is far above 1.5 * 70
    assert cc.cwnd == int(1.5 * 70 * MSS)


def test_cubic_fast_convergence_lowers_w_max():
    # RFC 9438 4.7: a congestion event below the previous W_max means a new flow is
    # competing: W_max = cwnd * (1 + beta) / 2.
    cc = cubic_after_loss(100)
    now = 0.0
    for _ in range(10):                      # grow a little, still below W_max
        now = one_round(cc, now, 0.1)
    cwnd = cc.cwnd
    assert cwnd < 100 * MSS
    cc.on_congestion_event(now, flight_size=cwnd)
    assert cc.w_max == pytest.approx(cwnd * (1 + BETA_CUBIC) / 2)
    assert cc.cwnd_prior == cwnd
    cc.on_recovery_exit(now)
    assert cc.k == pytest.approx(k_of(cwnd * 0.85 / MSS, cc.cwnd / MSS))


def test_cubic_without_fast_convergence_or_above_w_max_keeps_cwnd():
    cc = cubic_after_loss(100)
    cc.fast_convergence = False
    cc.cwnd = 90 * MSS
    cc.on_congestion_event(1.0, flight_size=90 * MSS)
    assert cc.w_max == 90 * MSS
    cc = cubic_after_loss(100)
    cc.cwnd = 120 * MSS                      # grew past the old maximum
    cc.on_congestion_event(1.0, flight_size=120 * MSS)
    assert cc.w_max == 120 * MSS


def test_cubic_reno_friendly_region_dominates_at_small_rtt():
    # RFC 9438 4.3: on a 1 ms path with a small window W_est grows much faster than the
    # cubic curve: by alpha_cubic = 3(1-beta)/(1+beta) segments per RTT until it reaches
    # cwnd_prior, by one segment per RTT after.
    cc = cubic_after_loss(20)
    k = k_of(20, 14)
    now, rtt = 0.0, 0.001
    w_est = 14.0
    for _ in range(40):
        acks = cc.cwnd // MSS
        for i in range(acks):
            w_est += (1.0 if w_est >= 20 else ALPHA_CUBIC) * 1 / (cc.cwnd / MSS)
            cc.on_ack(MSS, now + rtt * i / acks, rtt=rtt)
        now += rtt
        assert cc.cwnd / MSS == pytest.approx(w_est, abs=1 / MSS)
        assert cc.cwnd / MSS > w_cubic(now, k, 20)
    assert cc.w_est / MSS == pytest.approx(w_est)
    # About 0.53 segments per RTT up to cwnd_prior = 20 (6 / 0.53 = 11.3 RTTs), then one
    # segment per RTT, like Reno, for the remaining 28.7 RTTs.
    assert cc.cwnd / MSS == pytest.approx(20 + (40 - 6 / ALPHA_CUBIC), abs=1.5)


def test_cubic_after_rto_starts_with_k_zero_and_w_max_at_cwnd_epoch():
    # RFC 9438 4.8: the first congestion avoidance after a timeout uses K = 0 and
    # W_max = the window at the start of that stage; W_est starts there too.
    cc = cubic_after_loss(100)
    cc.on_rto(1.0, flight_size=70 * MSS)
    assert cc.cwnd == MSS
    assert cc.ssthresh == 49 * MSS
    now = 1.0
    while cc.in_slow_start:
        now = one_round(cc, now, 0.1)
    assert cc.epoch_start is not None
    assert cc.k == 0.0
    assert cc.w_max == cc.cwnd_epoch
    assert cc.cwnd_prior == 70 * MSS


def test_cubic_first_avoidance_without_any_loss_has_k_zero():
    cc = in_avoidance(Cubic, 30)
    cc.on_ack(MSS, 5.0, rtt=0.1)
    assert cc.epoch_start == 5.0 and cc.k == 0.0 and cc.w_max == 30 * MSS
    assert cc.cwnd > 30 * MSS                # alpha is 1 with no cwnd_prior to reach


def test_cubic_epoch_waits_for_slow_start_when_recovery_exit_is_below_ssthresh():
    cc = in_avoidance(Cubic, 100)
    cc.on_congestion_event(1.0, flight_size=100 * MSS)
    cc.on_recovery_exit(1.5, flight_size=10 * MSS)
    assert cc.cwnd == 11 * MSS and cc.epoch_start is None
    now = 1.5
    while cc.in_slow_start:
        now = one_round(cc, now, 0.1)
    assert cc.epoch_start is not None
    assert cc.k == pytest.approx(k_of(100, cc.cwnd_epoch / MSS))


def test_cubic_set_mss_restarts_the_epoch():
    cc = cubic_after_loss(100)
    cc.on_ack(MSS, 0.1, rtt=0.1)
    cc.set_mss(500)
    assert cc.mss == 500 and cc.epoch_start is None
    cc.on_ack(500, 0.2, rtt=0.1)
    assert cc.epoch_start == 0.2
    assert cc.k == pytest.approx(((cc.w_max - cc.cwnd_epoch) / 500 / C) ** (1 / 3))


# make() and misuse ---------------------------------------------------------------------------

def test_make_by_linux_name():
    assert AVAILABLE == ("cubic", "reno")
    assert DEFAULT == "cubic"
    assert isinstance(make("cubic", MSS, 0.0), Cubic)
    assert isinstance(make("reno", MSS, 0.0), Reno)
    newreno = make("newreno", MSS, 0.0)
    assert isinstance(newreno, Reno) and newreno.name == "reno"
    assert make(DEFAULT, MSS, 0.0).name == "cubic"
    for name in AVAILABLE:
        assert make(name, MSS, 0.0).name == name
        assert isinstance(make(name, MSS, 0.0), congestion.CongestionControl)


@pytest.mark.parametrize("name", ["bbr", "vegas", "", "Cubic ", None, 3])
def test_make_refuses_unknown_names(name):
    with pytest.raises(ValueError, match="cubic, reno"):
        make(name, MSS, 0.0)


@pytest.mark.parametrize("mss", [0, -1, 1.5, "1460", True])
def test_bad_mss_is_refused(mss):
    with pytest.raises(ValueError):
        Reno(mss, 0.0)
    cc = Cubic(MSS, 0.0)
    with pytest.raises(ValueError):
        cc.set_mss(mss)
    assert cc.mss == MSS


def test_set_mss_changes_increments():
    cc = in_avoidance(Reno, 10)
    cc.set_mss(500)
    cc.on_ack(10 * MSS, 1.0)
    assert cc.cwnd == 10 * MSS + 500
