"""Fixtures for whole-stack tests on virtual time: ``net`` (a seeded VirtualNetwork), ``pair``
(two stacks on 10.0.0.0/24) and ``peer`` (a scripted peer, see stack_helpers.py)."""
import pytest

from lwstack.sim import VirtualNetwork
from stack_helpers import A_MAC, B_MAC, Peer


@pytest.fixture
def net():
    return VirtualNetwork(seed=1)


@pytest.fixture
def pair(net):
    """Two stacks on 10.0.0.0/24 with known MACs: ``(net, a, b)``."""
    a = net.stack(f"ip=10.0.0.1/24,mac={A_MAC}")
    b = net.stack(f"ip=10.0.0.2/24,mac={B_MAC}")
    return net, a, b


@pytest.fixture
def peer(net):
    return Peer(net)

