"""Executors (infersim/executors.py): a Ray address nobody answers at is one line, not minutes of retries."""
import socket
import time

import pytest

from infersim.executors import check_ray_address, make_executor
from infersim.roofline import SpecError


def closed_port() -> int:
    """A local port nothing listens on: bound (so free a moment ago), then let go."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_nothing_listens_at_is_one_line_at_once():
    address = f"127.0.0.1:{closed_port()}"
    started = time.monotonic()
    with pytest.raises(SpecError) as err:
        make_executor("ray", 1, address)
    assert str(err.value) == ("--address: no Ray cluster answers there (start one with `ray start --head`, or "
                              f"leave --address out to start a local one), got '{address}'")
    assert time.monotonic() - started < 1  # refused at once, well inside the connect timeout


def test_a_ray_client_address_is_checked_at_its_host_and_port():
    with pytest.raises(SpecError, match="no Ray cluster answers there"):
        check_ray_address(f"ray://127.0.0.1:{closed_port()}")


@pytest.mark.parametrize("address", ["auto", "local"])
def test_addresses_ray_resolves_itself_pass_unchecked(address):
    check_ray_address(address)


def test_a_listening_address_passes_the_check():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        check_ray_address(f"127.0.0.1:{server.getsockname()[1]}")
